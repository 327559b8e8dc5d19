#!/usr/bin/env python3
"""Checks deploy/compose.yaml, deploy/k8s/*.yaml, deploy/docker/Dockerfile and
deploy/redis/users.acl against what the binaries really do.

Nothing here is a hand-kept list: the facts are read from the sources every run —
  * environment variables: dispatcher FLAT_ENV and std::env::var calls, the callback's
    apply_env get("..") calls, the demo worker's get/req/parse("..") calls, RUST_LOG when a
    crate uses EnvFilter's default env, the Python worker's os.environ/require calls;
  * required variables: the demo worker's req(".."), the Python worker's require("..");
  * HTTP routes: .route("..") / web::resource("..") in dispatcher/src/routes and callback/src;
  * default ports: the set_default("listen"/"application.port") values;
  * binaries and subcommands: [[bin]] names in the crates' Cargo.toml, Some("..") arms of
    dispatcher/src/main.rs;
  * key layout: the prefix format!() of queue/src/keys.rs, "wait:{lane}" and the lane names of
    queue/src/lane.rs.
Then every compose service and Kubernetes container is checked against them.

    python3 deploy/tests/check_manifests.py            # exits non-zero on any mismatch
    python3 deploy/tests/check_manifests.py --self-test # also proves that broken copies fail

The last line is "N passed, M failed".
"""

from __future__ import annotations

import copy
import fnmatch
import glob
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[2]


def ensure_yaml():
    try:
        import yaml  # noqa: F401
    except ImportError:
        print("PyYAML missing; installing it for this user (pip install --user pyyaml)")
        subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "--user", "pyyaml"])
        import site
        import importlib

        sys.path.append(site.getusersitepackages())
        importlib.invalidate_caches()
    import yaml

    return yaml


yaml = ensure_yaml()


def read(rel: str) -> str:
    return (ROOT / rel).read_text()


def rs_files(crate_dir: str) -> list[str]:
    return sorted(glob.glob(str(ROOT / crate_dir / "**" / "*.rs"), recursive=True))


# ------------------------------------------------------------------------------------------
# Facts from the sources


class Facts:
    def __init__(self):
        self.env = {}        # binary -> set of env names it reads
        self.required = {}   # binary -> env names it cannot start without
        self.nested = {}     # binary -> accepts GPUQ__SECTION__FIELD
        self.routes = {}     # binary -> set of HTTP paths
        self.port = {}       # binary -> default port
        self.bins = {}       # package -> set of binary names
        self.subcommands = set()
        self.key_prefix = None  # python format string with {namespace} and {queue}
        self.lanes = []
        self.wait_suffix = None

        # --- environment ---------------------------------------------------------------
        # Both services read the one table of flat names in the service kit, and nested
        # GPUQ__SECTION__FIELD variables through its loader.
        kit = read("service/src/configuration/mod.rs")
        flat = re.search(r"const FLAT_NAMES[^=]*=\s*\[(.*?)\];", kit, re.S)
        names = set(re.findall(r'\(\s*"([A-Z][A-Z0-9_]+)"\s*,', flat.group(1))) if flat else set()
        nested = "Environment::with_prefix(\"GPUQ\")" in kit
        for binary, crate in (("gpuq-dispatcher", "dispatcher"), ("gpuq-callback", "callback")):
            own = read(f"{crate}/src/configuration.rs")
            uses_kit = "impl Layered for Settings" in own or "configuration::load(" in own
            kit_reads = (names | self._env_var_calls("service/src")) if uses_kit else set()
            self.env[binary] = kit_reads | self._env_var_calls(f"{crate}/src")
            self.nested[binary] = nested and uses_kit

        # The demo worker loads its settings with the same loader (and telemetry) as the
        # services; `required(value, "NAME")` marks what it cannot start without.
        demo = read("worker-sdk/src/demo/config.rs") + read("worker-sdk/src/settings.rs")
        demo_uses_kit = "configuration::load(" in demo
        self.env["gpuq-demo-worker"] = (
            (names | self._env_var_calls("service/src")) if demo_uses_kit else set()
        ) | self._env_var_calls("worker-sdk/src")
        self.required["gpuq-demo-worker"] = {
            n for n in re.findall(r'required\(\s*[^"]*?"([A-Z][A-Z0-9_]+)"', demo, re.S)
            if not n.startswith("GPUQ_S3_")
        }
        self.nested["gpuq-demo-worker"] = nested and demo_uses_kit
        # The provider worker: the same loader, plus its `provider` section.
        provider = read("worker-sdk/src/provider/config.rs") + read("worker-sdk/src/settings.rs")
        provider_uses_kit = "configuration::load(" in provider
        self.env["gpuq-provider-worker"] = self.env["gpuq-demo-worker"] if provider_uses_kit else set()
        self.required["gpuq-provider-worker"] = {
            n for n in re.findall(r'(?:required\(\s*[^"]*?|Missing\()"([A-Z][A-Z0-9_]+)"', provider, re.S)
            if not n.startswith("GPUQ_S3_")
        }
        self.nested["gpuq-provider-worker"] = nested and provider_uses_kit

        py = read("deploy/tests/protocol-worker/worker.py")
        self.env["python-worker"] = set(re.findall(r'(?:environ\.get|env\.get|require)\("([A-Z][A-Z0-9_]+)"', py))
        self.required["python-worker"] = set(re.findall(r'require\("([A-Z][A-Z0-9_]+)"\)', py))
        self.nested["python-worker"] = False
        self.required["gpuq-dispatcher"] = {"DATABASE_URL", "REDIS_URL", "GPUQ_LISTEN"}
        self.required["gpuq-callback"] = {"DATABASE_URL", "REDIS_URL", "GPUQ_LISTEN", "GPUQ_CALLBACK_SECRET"}

        # --- routes and ports --------------------------------------------------------------
        droutes = read("dispatcher/src/routes/mod.rs")
        # `.route("/p", ...)`, `web::resource("/p")` and the kit's `resource("/p", "GET")`
        # (a resource that answers 405 with `Allow` to other methods). The kit's server adds
        # /healthz and /readyz to every service.
        route_re = r'(?:\.route|\bresource)\(\s*"(/[^"]*)"'
        shared = set(re.findall(route_re, read("service/src/health.rs")))
        self.routes["gpuq-dispatcher"] = set(re.findall(route_re, droutes)) | shared
        cstart = read("callback/src/startup.rs")
        self.routes["gpuq-callback"] = set(re.findall(route_re, cstart)) | shared
        for binary, crate in (("gpuq-dispatcher", "dispatcher"), ("gpuq-callback", "callback")):
            m = re.search(r"ServiceDefaults\s*\{[^}]*?port:\s*(\d+)", read(f"{crate}/src/configuration.rs"), re.S)
            self.port[binary] = int(m.group(1)) if m else None
        self.callback_paths = {r for r in self.routes["gpuq-callback"] if "callback" in r}

        # --- binaries ------------------------------------------------------------------------
        for crate in ("dispatcher", "callback", "worker-sdk", "worker-sdk/demo-worker",
                      "worker-sdk/provider-worker"):
            toml = read(f"{crate}/Cargo.toml")
            pkg = re.search(r'^\s*name\s*=\s*"([^"]+)"', toml, re.M).group(1)
            self.bins[pkg] = set(re.findall(r'\[\[bin\]\]\s*name\s*=\s*"([^"]+)"', toml))
        self.subcommands = set(re.findall(r'Some\("([a-z-]+)"\)', read("dispatcher/src/main.rs")))

        # --- key layout ----------------------------------------------------------------------
        keys = read("queue/src/keys.rs")
        m = re.search(r'let prefix\s*=\s*format!\("([^"]+)"', keys)
        if m:  # Rust format string -> Python (same brace escaping rules)
            self.key_prefix = m.group(1)
        # `waiting: lanes("wait")`, where `lanes` names each lane `{kind}:{lane}`.
        m = re.search(r'waiting:\s*lanes\("(\w+)"\)', keys)
        per_lane = '&format!("{kind}:{}", lane.as_str())' in keys
        self.wait_suffix = m.group(1) + ":{}" if m and per_lane else None
        lanes = read("queue/src/lane.rs")
        self.lanes = re.findall(r'Lane::\w+\s*=>\s*"([a-z]+)"', lanes.split("fn as_str")[1].split("}")[0]) if "fn as_str" in lanes else []

    @staticmethod
    def _env_var_calls(crate_src: str) -> set[str]:
        out = set()
        for f in rs_files(crate_src):
            text = Path(f).read_text()
            out |= set(re.findall(r'env::var\("([A-Z][A-Z0-9_]+)"\)', text))
            if "try_from_default_env" in text or "from_default_env" in text:
                out.add("RUST_LOG")  # tracing_subscriber::EnvFilter::DEFAULT_ENV
        return out

    def waiting_list(self, namespace: str, queue: str, lane: str) -> str:
        prefix = self.key_prefix.format(namespace=namespace, queue=queue)
        return prefix + self.wait_suffix.replace("{}", lane)


# ------------------------------------------------------------------------------------------
# Inputs


def load_inputs():
    compose = yaml.safe_load(read("deploy/compose.yaml"))
    k8s = {}
    for f in sorted(glob.glob(str(ROOT / "deploy/k8s/*.yaml"))):
        k8s[os.path.relpath(f, ROOT)] = [d for d in yaml.safe_load_all(Path(f).read_text()) if d]
    dockerfile = read("deploy/docker/Dockerfile")
    acl = read("deploy/redis/users.acl")
    return {"compose": compose, "k8s": k8s, "dockerfile": dockerfile, "acl": acl}


def parse_dockerfile(text: str):
    """target -> {'entrypoint': [...], 'expose': [...], 'health': str|None, 'env': {...}, 'copies': [...]}"""
    text = re.sub(r"\\\n", " ", text)
    stages, cur, build_cmd = {}, None, ""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "FROM":
            m = re.match(r"(\S+)(?:\s+AS\s+(\S+))?", rest, re.I)
            base, name = m.group(1), m.group(2)
            cur = {"base": base, "entrypoint": None, "cmd": None, "expose": [], "health": None, "env": {}, "copies": [], "run": []}
            if base in stages:  # inherit from an earlier stage
                parent = stages[base]
                cur.update(copy.deepcopy({k: parent[k] for k in ("entrypoint", "cmd", "expose", "health", "env")}))
            stages[name or base] = cur
        elif word == "RUN":
            cur["run"].append(rest)
            if "cargo build" in rest:
                build_cmd = rest
        elif word == "EXPOSE":
            cur["expose"] = [int(p.split("/")[0]) for p in rest.split()]
        elif word == "ENTRYPOINT":
            cur["entrypoint"] = yaml.safe_load(rest)
        elif word == "CMD":
            cur["cmd"] = yaml.safe_load(rest)
        elif word == "HEALTHCHECK":
            cur["health"] = rest
        elif word == "ENV":
            for k, v in re.findall(r"(\w+)=(\S+)", rest):
                cur["env"][k] = v
        elif word == "COPY":
            cur["copies"].append(rest)
    return stages, build_cmd


# ------------------------------------------------------------------------------------------
# The checks


class Report:
    def __init__(self, quiet=False):
        self.passed = 0
        self.failed = 0
        self.quiet = quiet

    def check(self, cond: bool, what: str, detail: str = ""):
        if cond:
            self.passed += 1
            if not self.quiet:
                print(f"ok    {what}")
        else:
            self.failed += 1
            if not self.quiet:
                print(f"FAIL  {what}" + (f"\n      {detail}" if detail else ""))


def binary_of_image(image: str, targets: dict) -> str | None:
    for target, stage in targets.items():
        ep = stage.get("entrypoint") or []
        if ep and re.search(rf"(^|/)gpuq-{re.escape(target)}(:|$)", image or ""):
            return ep[0]
    return None


def listen_port(value: str) -> int | None:
    m = re.match(r"^\[?[^\]]*\]?:(\d+)$", value or "")
    return int(m.group(1)) if m else None


def env_ok(r: Report, facts: Facts, where: str, binary: str, names: set[str], lenient: set[str] = frozenset()):
    known = facts.env.get(binary, set())
    for n in sorted(names):
        if n.startswith("GPUQ__"):
            r.check(facts.nested.get(binary, False), f"{where}: nested {n} is read by {binary}")
        elif n in lenient:
            r.check(any(n in s for s in facts.env.values()), f"{where}: shared {n} is read by some gpuq binary")
        else:
            r.check(n in known, f"{where}: {n} is read by {binary}", f"{binary} reads {sorted(known)}")
    for n in sorted(facts.required.get(binary, set())):
        r.check(n in names or n in lenient, f"{where}: sets {n}, which {binary} requires")


def run_checks(inputs, facts: Facts, r: Report):
    # --- sources: the derivations themselves must have found something -------------------------
    for b in ("gpuq-dispatcher", "gpuq-callback", "gpuq-demo-worker", "python-worker"):
        r.check(len(facts.env.get(b, ())) >= 3, f"sources: found the env names {b} reads ({len(facts.env.get(b, ()))})")
    for b in ("gpuq-dispatcher", "gpuq-callback"):
        r.check({"/healthz", "/readyz"} <= facts.routes[b], f"sources: {b} serves /healthz and /readyz")
        r.check(facts.port[b] is not None, f"sources: {b} default port found ({facts.port[b]})")
    r.check(bool(facts.key_prefix and facts.wait_suffix and facts.lanes),
            f"sources: key layout found in queue/src/keys.rs and lane.rs ({facts.key_prefix!r}, {facts.wait_suffix!r}, {facts.lanes})")
    r.check({"serve", "migrate", "mint-token"} <= facts.subcommands, f"sources: dispatcher subcommands {sorted(facts.subcommands)}")

    # --- Dockerfile ------------------------------------------------------------------------------
    stages, build_cmd = parse_dockerfile(inputs["dockerfile"])
    all_bins = set().union(*facts.bins.values())
    built_pkgs = set(re.findall(r"-p\s+(\S+)", build_cmd[build_cmd.find("cargo build"):].split("&&")[0]))
    r.check("--release" in build_cmd and "--locked" in build_cmd, "Dockerfile: cargo build --release --locked")
    r.check(built_pkgs <= set(facts.bins), f"Dockerfile: built packages {sorted(built_pkgs)} are workspace crates with binaries")
    r.check(any(s["base"].startswith("rust:") and "bookworm" in s["base"] for s in stages.values()), "Dockerfile: rust:*-bookworm builder")
    targets = {}
    for name, st in stages.items():
        if not st["entrypoint"]:
            continue
        targets[name] = st
        binary = st["entrypoint"][0]
        pkg = next((p for p, b in facts.bins.items() if binary in b), None)
        r.check(binary in all_bins, f"Dockerfile target {name}: ENTRYPOINT {binary} is a [[bin]] of the workspace")
        r.check(pkg in built_pkgs, f"Dockerfile target {name}: its package {pkg} is built by cargo build -p")
        r.check(any(binary in c for c in st["copies"]), f"Dockerfile target {name}: copies {binary} from the builder")
        r.check("bookworm-slim" in stages[st["base"]]["base"] if st["base"] in stages else "bookworm-slim" in st["base"],
                f"Dockerfile target {name}: runs on debian:bookworm-slim")
        runtime_runs = " ".join(stages[st["base"]]["run"]) if st["base"] in stages else ""
        r.check("ca-certificates" in runtime_runs and "useradd" in runtime_runs, f"Dockerfile target {name}: ca-certificates and a non-root user")
        if binary in facts.port:
            port = listen_port(st["env"].get("GPUQ_LISTEN", ""))
            r.check(port == facts.port[binary] and st["env"]["GPUQ_LISTEN"].startswith("0.0.0.0"),
                    f"Dockerfile target {name}: GPUQ_LISTEN {st['env'].get('GPUQ_LISTEN')} binds all interfaces on {facts.port[binary]}")
            r.check(st["expose"] == [facts.port[binary]], f"Dockerfile target {name}: EXPOSE {st['expose']} == {facts.port[binary]}")
            hc = st["health"] or ""
            path = re.search(r'"(/[a-z]+)"', hc)
            r.check(bool(path) and path.group(1) in facts.routes[binary], f"Dockerfile target {name}: HEALTHCHECK GETs a real route ({path and path.group(1)})")
        else:
            r.check((st["health"] or "").strip().upper().startswith("NONE"), f"Dockerfile target {name}: no HTTP, so no HTTP health check")
        if st["cmd"] and binary == "gpuq-dispatcher":
            r.check(st["cmd"][0] in facts.subcommands, f"Dockerfile target {name}: CMD {st['cmd']} is a subcommand")
        for n in st["env"]:
            if n not in ("RUST_LOG",):
                r.check(n in facts.env.get(binary, set()), f"Dockerfile target {name}: ENV {n} is read by {binary}")
    r.check({"dispatcher", "callback", "demo-worker"} <= set(targets), f"Dockerfile: targets for the three binaries ({sorted(targets)})")
    hc_script = ROOT / "deploy/docker/healthcheck.sh"
    r.check(hc_script.exists() and "GPUQ_LISTEN" in hc_script.read_text(), "Dockerfile: healthcheck script derives its port from GPUQ_LISTEN")

    # --- Redis ACL -------------------------------------------------------------------------------
    acl_users = {}
    for line in inputs["acl"].splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "user":
            acl_users[parts[1]] = {
                "on": "on" in parts,
                "passwords": {p[1:] for p in parts if p.startswith(">")},
                "keys": [re.sub(r"^%R?W?~|^~", "", p) for p in parts if re.match(r"^(%R?W?)?~", p)],
            }
    r.check("default" in acl_users and not acl_users["default"]["on"], "users.acl: the default user is off")

    # --- compose ---------------------------------------------------------------------------------
    compose = inputs["compose"]
    services = compose.get("services", {})
    svc_binary = {}
    for name, svc in services.items():
        binary = None
        target = (svc.get("build") or {}).get("target")
        if target:
            r.check(target in targets, f"compose {name}: build target {target} exists in the Dockerfile")
            binary = targets.get(target, {}).get("entrypoint", [None])[0]
            r.check((svc.get("build") or {}).get("dockerfile") == "deploy/docker/Dockerfile"
                    and (ROOT / "deploy" / svc["build"]["context"] / svc["build"]["dockerfile"]).resolve() == (ROOT / "deploy/docker/Dockerfile").resolve(),
                    f"compose {name}: builds deploy/docker/Dockerfile from the repository root")
            r.check(svc.get("image", "").startswith(f"gpuq-{target}:"), f"compose {name}: image {svc.get('image')} named after its target")
        elif "worker.py" in " ".join(map(str, svc.get("command") or [])):
            binary = "python-worker"
        if binary:
            svc_binary[name] = binary
    for name, binary in svc_binary.items():
        svc = services[name]
        env = {k: str(v) for k, v in (svc.get("environment") or {}).items()}
        where = f"compose {name}"
        args = svc.get("command") or []
        if binary == "gpuq-dispatcher":
            r.check(bool(args) and args[0] in facts.subcommands, f"{where}: command {args} is a dispatcher subcommand")
        if binary == "gpuq-dispatcher" and args and args[0] == "migrate":
            r.check({"DATABASE_URL"} <= set(env), f"{where}: migrate has DATABASE_URL")
            continue
        env_ok(r, facts, where, binary, set(env))
        if binary in facts.port:
            port = listen_port(env.get("GPUQ_LISTEN", ""))
            r.check(port == facts.port[binary], f"{where}: GPUQ_LISTEN port {port} == {facts.port[binary]}")
            published = [str(p).split(":")[-1] for p in svc.get("ports", [])]
            r.check(published == [str(port)], f"{where}: publishes container port {port} ({published})")
            test = " ".join(map(str, (svc.get("healthcheck") or {}).get("test", [])))
            paths = re.findall(r"(/[a-z]+)", test)
            r.check(bool(paths) and all(p in facts.routes[binary] for p in paths) and "/healthz" in paths,
                    f"{where}: healthcheck hits /healthz ({test})")
        if "GPUQ_CALLBACK_URL" in env:
            u = urlparse(env["GPUQ_CALLBACK_URL"])
            cb_port = listen_port(services.get(u.hostname, {}).get("environment", {}).get("GPUQ_LISTEN", ""))
            r.check(svc_binary.get(u.hostname) == "gpuq-callback" and u.port == cb_port and u.path in facts.callback_paths,
                    f"{where}: GPUQ_CALLBACK_URL {env['GPUQ_CALLBACK_URL']} is the callback service's route")
        if "REDIS_URL" in env:
            u = urlparse(re.sub(r"\$\{[^}:]*:-([^}]*)\}", r"\1", env["REDIS_URL"]))
            user = acl_users.get(u.username or "")
            r.check(user is not None and user["on"], f"{where}: Redis user {u.username} exists in users.acl")
            if user:
                r.check(u.password in user["passwords"], f"{where}: Redis password default matches users.acl for {u.username}")
                if "GPUQ_QUEUE" in env:
                    ns = env.get("GPUQ_REDIS_NAMESPACE", "gpuq")
                    own = facts.key_prefix.format(namespace=ns, queue=env["GPUQ_QUEUE"]) + "jobs"
                    others = [q for q in ("sdxl_queue", "wan_queue") if q != env["GPUQ_QUEUE"]]
                    r.check(any(fnmatch.fnmatchcase(own, p) for p in user["keys"]), f"{where}: ACL user {u.username} may use {own}")
                    for q in others:
                        k = facts.key_prefix.format(namespace=ns, queue=q) + "jobs"
                        r.check(not any(fnmatch.fnmatchcase(k, p) for p in user["keys"]), f"{where}: ACL user {u.username} may not use {k}")
        for dep, cond in (svc.get("depends_on") or {}).items():
            cond = cond.get("condition") if isinstance(cond, dict) else "service_started"
            r.check(dep in services, f"{where}: depends on existing service {dep}")
            if cond == "service_healthy":
                hc = services.get(dep, {}).get("healthcheck")
                r.check(bool(hc) and not hc.get("disable"), f"{where}: {dep} has the health check service_healthy waits for")
    for q in ("sdxl_queue", "wan_queue"):
        r.check(any(services[n].get("environment", {}).get("GPUQ_QUEUE") == q and b == "gpuq-demo-worker" for n, b in svc_binary.items()),
                f"compose: a demo worker serves {q}")
    redis_svc = services.get("redis", {})
    r.check(str(redis_svc.get("image", "")).startswith("redis:7"), "compose redis: Redis 7.x")
    r.check(any("users.acl" in str(v) for v in redis_svc.get("volumes", [])) and "--aclfile" in redis_svc.get("command", []),
            "compose redis: mounts deploy/redis/users.acl and loads it with --aclfile")
    r.check(re.match(r"postgres:1[56]", str(services.get("postgres", {}).get("image", ""))) is not None, "compose postgres: PostgreSQL 15/16")

    # --- Kubernetes ---------------------------------------------------------------------------------
    objs = [(f, d) for f, docs in inputs["k8s"].items() for d in docs]
    by_kind = {}
    for f, d in objs:
        by_kind.setdefault(d["kind"], []).append((f, d))
    configmaps = {d["metadata"]["name"]: d.get("data", {}) for _, d in by_kind.get("ConfigMap", [])}
    secrets = {d["metadata"]["name"]: set((d.get("stringData") or {}) | (d.get("data") or {})) for _, d in by_kind.get("Secret", [])}
    deployments = {d["metadata"]["name"]: (f, d) for f, d in by_kind.get("Deployment", [])}
    dep_env = {}
    dep_port = {}
    for name, (f, d) in deployments.items():
        pod = d["spec"]["template"]
        r.check(d["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items(), f"{f} {name}: selector matches its pod labels")
        for c in pod["spec"]["containers"]:
            where = f"{f} {name}/{c['name']}"
            binary = binary_of_image(c.get("image", ""), targets)
            r.check(binary is not None, f"{where}: image {c.get('image')} is one of the Dockerfile targets")
            if not binary:
                continue
            names, shared, values = set(), set(), {}
            for e in c.get("env", []):
                names.add(e["name"])
                values[e["name"]] = e.get("value")
                ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    r.check(ref["name"] in secrets and (ref["key"] in secrets[ref["name"]]),
                            f"{where}: {e['name']} comes from Secret {ref['name']} key {ref['key']}, present in secret.example.yaml")
            for src in c.get("envFrom", []):
                cm = (src.get("configMapRef") or {}).get("name")
                r.check(cm in configmaps, f"{where}: envFrom ConfigMap {cm} exists")
                shared |= set(configmaps.get(cm, {}))
                for k, v in configmaps.get(cm, {}).items():
                    values.setdefault(k, v)
            env_ok(r, facts, where, binary, names | shared, lenient=shared)
            dep_env[name] = values
            if c.get("args"):
                r.check(binary == "gpuq-dispatcher" and c["args"][0] in facts.subcommands, f"{where}: args {c['args']} is a subcommand")
            if binary in facts.port:
                port = listen_port(values.get("GPUQ_LISTEN", ""))
                ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
                r.check(port == facts.port[binary] and list(ports.values()) == [port], f"{where}: GPUQ_LISTEN and containerPort are {facts.port[binary]} ({port}, {ports})")
                dep_port[name] = (ports, pod["metadata"]["labels"])
                for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
                    get = (c.get(probe) or {}).get("httpGet") or {}
                    pport = ports.get(get.get("port"), get.get("port"))
                    r.check(get.get("path") == path and path in facts.routes[binary] and pport == port,
                            f"{where}: {probe} GET {get.get('path')} on {pport} (want {path} on {port})")
                sp = (c.get("startupProbe") or {}).get("httpGet")
                if sp:
                    r.check(sp.get("path") in facts.routes[binary], f"{where}: startupProbe path {sp.get('path')} is a route")
            if "GPUQ_CALLBACK_URL" in values:
                u = urlparse(values["GPUQ_CALLBACK_URL"])
                svc_name = (u.hostname or "").split(".")[0]
                svc = next((d for _, d in by_kind.get("Service", []) if d["metadata"]["name"] == svc_name), None)
                r.check(svc is not None and any(p["port"] == u.port for p in svc["spec"]["ports"]) and u.path in facts.callback_paths,
                        f"{where}: GPUQ_CALLBACK_URL {values['GPUQ_CALLBACK_URL']} is the callback Service and route")
            sec = c.get("securityContext") or {}
            psec = pod["spec"].get("securityContext") or {}
            r.check(psec.get("runAsNonRoot") is True and sec.get("allowPrivilegeEscalation") is False, f"{where}: non-root, no privilege escalation")
    for name in ("dispatcher", "callback", "worker-sdxl", "worker-wan"):
        r.check(name in deployments, f"k8s: Deployment {name}")
    for f, s in by_kind.get("Service", []):
        sel = s["spec"]["selector"]
        target = [n for n, (ports, labels) in dep_port.items() if sel.items() <= labels.items()]
        r.check(len(target) == 1, f"{f} Service {s['metadata']['name']}: selects one HTTP Deployment ({target})")
        if target:
            ports = dep_port[target[0]][0]
            for p in s["spec"]["ports"]:
                tp = ports.get(p.get("targetPort"), p.get("targetPort"))
                r.check(tp in ports.values(), f"{f} Service {s['metadata']['name']}: targetPort {p.get('targetPort')} is a containerPort")
    r.check(bool(by_kind.get("PodDisruptionBudget")), "k8s: a PodDisruptionBudget")
    for f, p in by_kind.get("PodDisruptionBudget", []):
        sel = p["spec"]["selector"]["matchLabels"]
        r.check(any(sel.items() <= d["spec"]["template"]["metadata"]["labels"].items() for _, d in deployments.values()),
                f"{f} PDB {p['metadata']['name']}: selects a Deployment's pods")
    hpas = by_kind.get("HorizontalPodAutoscaler", [])
    r.check(any(h["spec"]["scaleTargetRef"]["name"] == "dispatcher" for _, h in hpas), "k8s: an HPA scales the dispatcher")
    for f, h in hpas:
        r.check(h["spec"]["scaleTargetRef"]["name"] in deployments, f"{f} HPA {h['metadata']['name']}: targets an existing Deployment")

    # --- KEDA ------------------------------------------------------------------------------------------
    auths = {d["metadata"]["name"]: d for _, d in by_kind.get("TriggerAuthentication", [])}
    scaled = {}
    for f, so in by_kind.get("ScaledObject", []):
        target = so["spec"]["scaleTargetRef"]["name"]
        where = f"{f} ScaledObject {so['metadata']['name']}"
        r.check(target in deployments, f"{where}: scales Deployment {target}")
        env = dep_env.get(target, {})
        queue, ns = env.get("GPUQ_QUEUE"), env.get("GPUQ_REDIS_NAMESPACE", "gpuq")
        r.check(bool(queue), f"{where}: its Deployment sets GPUQ_QUEUE ({queue})")
        scaled[target] = so
        want = {facts.waiting_list(ns, queue or "?", lane) for lane in facts.lanes}
        got = set()
        names = []
        for t in so["spec"]["triggers"]:
            md = t.get("metadata", {})
            r.check(t["type"] == "redis", f"{where}: trigger type redis ({t['type']})")
            got.add(md.get("listName"))
            names.append(t.get("name"))
            r.check(str(md.get("listLength", "")).isdigit() and int(md["listLength"]) > 0, f"{where}: listLength {md.get('listLength')} is a positive target per replica")
            ref = (t.get("authenticationRef") or {}).get("name")
            r.check(ref in auths, f"{where}: authenticationRef {ref} exists")
            if ref in auths:
                for p in auths[ref]["spec"]["secretTargetRef"]:
                    r.check(p["name"] in secrets and p["key"] in secrets[p["name"]], f"{where}: KEDA {p['parameter']} from Secret {p['name']}/{p['key']}")
            keda = acl_users.get("keda")
            r.check(keda is not None and any(fnmatch.fnmatchcase(md.get("listName", ""), p) for p in keda["keys"]),
                    f"{where}: the keda ACL user may read {md.get('listName')}")
        r.check(got == want, f"{where}: listNames are the real waiting LISTs {sorted(want)}", f"got {sorted(got)}")
        mods = ((so["spec"].get("advanced") or {}).get("scalingModifiers") or {})
        if mods:
            formula = mods.get("formula", "")
            r.check(all(n and re.search(rf"\b{re.escape(n)}\b", formula) for n in names) and "+" in formula,
                    f"{where}: scalingModifiers formula adds every lane ({formula})")
    for name in ("worker-sdxl", "worker-wan"):
        r.check(name in scaled, f"k8s: a KEDA ScaledObject scales {name}")

    # --- kustomization lists every manifest -------------------------------------------------------------
    kust = next((d for f, docs in inputs["k8s"].items() for d in docs if d.get("kind") == "Kustomization"), None)
    if kust:
        listed = set(kust.get("resources", []))
        for f in inputs["k8s"]:
            base = os.path.basename(f)
            if base not in ("kustomization.yaml", "secret.example.yaml") and not base.endswith(".example.yaml"):
                r.check(base in listed, f"kustomization.yaml lists {base}")


# ------------------------------------------------------------------------------------------
# Self-test: each mutation must make the checks fail


def mutations():
    def k8s_doc(inputs, kind, name):
        for docs in inputs["k8s"].values():
            for d in docs:
                if d["kind"] == kind and d["metadata"]["name"] == name:
                    return d
        raise KeyError((kind, name))

    def container(inputs, name):
        return k8s_doc(inputs, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]

    def m1(i):
        """the classic mistake: the list name without the hash tag"""
        k8s_doc(i, "ScaledObject", "worker-sdxl")["spec"]["triggers"][1]["metadata"]["listName"] = "gpuq:sdxl_queue:wait:normal"

    def m2(i):
        """one lane forgotten"""
        k8s_doc(i, "ScaledObject", "worker-wan")["spec"]["triggers"].pop(0)

    def m3(i):
        """a misspelt variable"""
        i["compose"]["services"]["worker-sdxl"]["environment"]["GPUQ_CALLBACK_SECRETS"] = "x"

    def m4(i):
        """probe on a path nobody serves"""
        container(i, "callback")["livenessProbe"]["httpGet"]["path"] = "/health"

    def m5(i):
        """wrong port"""
        container(i, "dispatcher")["ports"][0]["containerPort"] = 8081

    def m6(i):
        """a worker given another queue's Redis user"""
        i["compose"]["services"]["worker-wan"]["environment"]["REDIS_URL"] = "redis://worker_sdxl:dev-worker-sdxl-password@redis:6379"

    def m7(i):
        """Dockerfile exposing the wrong port"""
        i["dockerfile"] = i["dockerfile"].replace("EXPOSE 8081", "EXPOSE 8080")

    def m8(i):
        """an image that no Dockerfile target builds"""
        container(i, "worker-wan")["image"] = "ghcr.io/your-org/gpuq-worker:latest"

    return [m1, m2, m3, m4, m5, m6, m7, m8]


def main() -> int:
    facts = Facts()
    inputs = load_inputs()
    r = Report()
    run_checks(inputs, facts, r)
    if "--self-test" in sys.argv:
        for m in mutations():
            broken = copy.deepcopy(inputs)
            m(broken)
            probe = Report(quiet=True)
            run_checks(broken, facts, probe)
            r.check(probe.failed > 0, f"self-test: a copy with '{m.__doc__ or m.__name__}' fails ({probe.failed} failure(s))")
    print(f"{r.passed} passed, {r.failed} failed")
    return 1 if r.failed else 0


if __name__ == "__main__":
    sys.exit(main())
