#!/usr/bin/env python3
"""A gpuq worker in plain Python, following docs/protocol.md with redis-py and requests.

It does what the Rust SDK does, in the open:

* claims jobs atomically with ``claim_jobs.lua`` (``prelude.lua`` + script, ``SCRIPT LOAD``
  once, ``EVALSHA`` afterwards, reloaded on ``NOSCRIPT``), and sleeps on ``BLPOP <K>signal``
  when nothing waits (no polling);
* renews the lease of every held job from its own thread with ``extend_lease.lua`` every
  ``lease_ms / 3``, so slow "GPU" work never loses its job, and stops a job that was
  cancelled (reply 2) or lost (reply 0);
* reports ``processing``, ``progress`` and ``completed``/``failed`` with HMAC-signed callbacks,
  retried with backoff on network errors, 5xx, 408 and 429;
* acks with ``ack_job.lua`` only after the callback service answered 2xx to ``completed``;
  after an accepted ``failed`` report it runs ``fail_job.lua`` (a no-op when the callback
  service already scheduled the retry), never ``ack_job.lua``, which would drop the retry;
* on SIGTERM/SIGINT stops claiming, lets running jobs finish until a deadline, and hands the
  rest back with ``release_job.lua``.

The "model" renders a small real PNG per requested image (``config.num_images``) or an
animated GIF for video types, written to ``$GPUQ_STORAGE_DIR/<bucket>/<user_id>/<job_id>/<i>.<ext>``
(the layout of the SDK's LocalStorage), and reports the bucket-relative key.

Environment: REDIS_URL, GPUQ_QUEUE, GPUQ_CALLBACK_URL, GPUQ_CALLBACK_SECRET,
GPUQ_REDIS_NAMESPACE (default gpuq), GPUQ_STORAGE_DIR; optional GPUQ_CONCURRENCY (1),
GPUQ_LEASE_MS (30000), GPUQ_SHUTDOWN_DEADLINE_SECS (30), GPUQ_WORK_SECONDS (0.2 simulated
work per job), GPUQ_LUA_DIR (default: queue/lua of this repository).

    python worker.py --max-jobs 5      # exit after five jobs
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import logging
import os
import random
import re
import signal
import socket
import struct
import sys
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import redis
import requests

log = logging.getLogger("gpuq-python-worker")

HERE = Path(__file__).resolve().parent
DEFAULT_LUA_DIR = HERE.parent.parent.parent / "queue" / "lua"
SIGNAL_CAP = 256  # the wake-up list bound the Rust services use (QueueConfig::signal_cap)
BLOCK_SECONDS = 5  # BLPOP timeout: the safety net if a wake-up token is lost


# --------------------------------------------------------------------------------------
# Redis side: keys and scripts


class Keys:
    """The key layout of one queue (docs/protocol.md §1, queue/src/keys.rs)."""

    def __init__(self, namespace: str, queue: str):
        if not re.fullmatch(r"[a-z0-9_-]{1,64}", queue):
            raise ValueError(f"invalid queue name {queue!r}")
        self.prefix = f"{namespace}:{{{queue}}}:"

    def __getattr__(self, name: str) -> str:  # keys.wait_high -> "<ns>:{q}:wait:high"
        return self.prefix + name.replace("_", ":")


class Scripts:
    """prelude.lua + <name>.lua, loaded with SCRIPT LOAD and run with EVALSHA."""

    NAMES = ("claim_jobs", "extend_lease", "ack_job", "fail_job", "release_job")

    def __init__(self, client: redis.Redis, lua_dir: Path):
        prelude = (lua_dir / "prelude.lua").read_text()
        self.client = client
        self.text = {n: prelude + (lua_dir / f"{n}.lua").read_text() for n in self.NAMES}
        self.sha = {n: hashlib.sha1(t.encode()).hexdigest() for n, t in self.text.items()}

    def run(self, name: str, keys: list[str], args: list):
        try:
            return self.client.evalsha(self.sha[name], len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            # First use, or Redis restarted / flushed its script cache.
            self.sha[name] = self.client.script_load(self.text[name])
            return self.client.evalsha(self.sha[name], len(keys), *keys, *args)


class Queue:
    """The five worker-side transitions of docs/protocol.md §2."""

    def lanes(self) -> list[str]:
        """The five keys every script that touches waiting jobs declares first."""
        k = self.keys
        return [k.wait_high, k.wait_normal, k.tenants_high, k.tenants_normal, k.vtime]

    def __init__(self, redis_url: str, namespace: str, queue: str, lua_dir: Path, lease_ms: int):
        self.keys = Keys(namespace, queue)
        self.lease_ms = lease_ms
        self.redis = redis.Redis.from_url(redis_url, decode_responses=True, health_check_interval=30)
        # BLPOP blocks its connection: give it a client (and pool) of its own.
        self.blocking = redis.Redis.from_url(
            redis_url, decode_responses=True, socket_timeout=BLOCK_SECONDS + 10
        )
        self.scripts = Scripts(self.redis, lua_dir)

    def claim(self, consumer: str, max_jobs: int, slots: int) -> list[tuple[str, int, str, str]]:
        """Claims under a fresh fence token: (job_id, attempt, envelope, token) per job.
        `slots` (the worker's concurrency) is advertised for the queue's capacity."""
        k = self.keys
        token = os.urandom(16).hex()  # the claim's fence token (docs/protocol.md, "The fence")
        reply = self.scripts.run(
            "claim_jobs",
            [*self.lanes(), k.jobs, k.meta, k.leases, k.consumers, k.signal, k.slots],
            [consumer, self.lease_ms, max_jobs, SIGNAL_CAP, token, slots],
        )
        return [(reply[i], int(reply[i + 1]), reply[i + 2], token) for i in range(0, len(reply), 3)]

    def wait_for_signal(self, seconds: int = BLOCK_SECONDS) -> None:
        self.blocking.blpop([self.keys.signal], timeout=seconds)

    def heartbeat(self, job_id: str, consumer: str) -> int:
        k = self.keys
        return int(self.scripts.run(
            "extend_lease", [k.meta, k.leases, k.consumers, k.cancelled],
            [job_id, consumer, self.lease_ms]))

    def ack(self, job_id: str, consumer: str) -> int:
        k = self.keys
        return int(self.scripts.run(
            "ack_job",
            [*self.lanes(), k.jobs, k.meta, k.leases, k.delayed, k.dead, k.cancelled, k.errors,
             k.signal],
            [job_id, consumer]))

    def fail(self, job_id: str, consumer: str, retryable: bool, delay_ms: int, message: str):
        k = self.keys
        return self.scripts.run(
            "fail_job",
            [k.jobs, k.meta, k.leases, k.delayed, k.dead, k.errors, k.cancelled,
             k.vtime, k.tenants_high, k.tenants_normal, k.signal],
            [job_id, consumer, "1" if retryable else "0", delay_ms, message[:1000]])

    def release(self, job_id: str, consumer: str) -> int:
        k = self.keys
        return int(self.scripts.run(
            "release_job",
            [*self.lanes(), k.jobs, k.meta, k.leases, k.signal, k.cancelled],
            [job_id, consumer, SIGNAL_CAP]))


def backoff_ms(attempt: int, base_ms: int = 5000, max_ms: int = 300_000) -> int:
    """Retry delay of docs/protocol.md: uniform in [d/2, d], d = min(max, base * 2^(n-1))."""
    d = min(max_ms, base_ms * 2 ** max(attempt - 1, 0))
    return random.randint(d // 2, d)


# --------------------------------------------------------------------------------------
# Callback side


class Rejected(Exception):
    """The callback service answered a final 4xx: sending again cannot help."""

    def __init__(self, status: int, text: str):
        super().__init__(f"{status}: {text}")
        self.status = status
        self.text = text

    def misconfigured(self) -> bool:
        """401/403: the secret is wrong; 404/405/410: the URL is not the callback route (the
        service's own 404 for an unknown job, code job_not_found, is about the job)."""
        if self.status == 404:
            return '"job_not_found"' not in self.text
        return self.status in (401, 403, 405, 410)


class Unreachable(Exception):
    """Network errors or 5xx until the retries ran out."""


class Reporter:
    def __init__(self, url: str, secret: str, max_retries: int = 8):
        self.url = url
        self.secret = secret.encode()
        self.max_retries = max_retries
        self.http = requests.Session()

    def sign(self, timestamp: int, body: bytes) -> str:
        mac = hmac.new(self.secret, f"{timestamp}.".encode() + body, hashlib.sha256)
        return "sha256=" + mac.hexdigest()

    def send(self, payload: dict, retries: int | None = None) -> None:
        body = json.dumps(payload, separators=(",", ":")).encode()  # sign the exact bytes sent
        retries = self.max_retries if retries is None else retries
        delay = 0.25
        for attempt in range(retries + 1):
            ts = int(time.time())  # signed afresh on every attempt: a late retry is not stale
            headers = {
                "Content-Type": "application/json",
                "X-Callback-Timestamp": str(ts),
                "X-Callback-Signature": self.sign(ts, body),
            }
            try:
                res = self.http.post(self.url, data=body, headers=headers, timeout=15)
            except requests.RequestException as e:
                problem = f"network: {e}"
            else:
                if 200 <= res.status_code < 300:
                    return
                if res.status_code < 500 and res.status_code not in (408, 429):
                    raise Rejected(res.status_code, res.text[:500])
                problem = f"{res.status_code}: {res.text[:200]}"
            if attempt < retries:
                log.warning("callback %s failed (%s); retrying in %.2fs", payload.get("status", "probe"), problem, delay)
                time.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, 30)
        raise Unreachable(problem)


# --------------------------------------------------------------------------------------
# The "model": tiny but valid PNG and GIF files


def png(width: int, height: int, color: tuple[int, int, int]) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b""
    for y in range(height):
        row = bytearray([0])  # filter type 0
        for x in range(width):
            shade = (x * 255 // max(width - 1, 1) + y * 255 // max(height - 1, 1)) // 2
            row += bytes(((c + shade) // 2 for c in color))
        rows += bytes(row)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def gif(width: int, height: int, frames: int, seed: int) -> bytes:
    """An animated GIF89a; each frame is one colour of a 4-colour palette.

    LZW with minimum code size 2 and a clear code before every second literal, so the code
    width stays 3 bits (a valid, if uncompressed, stream)."""
    rnd = random.Random(seed)
    palette = b"".join(bytes(rnd.randrange(256) for _ in range(3)) for _ in range(4))
    out = bytearray(b"GIF89a" + struct.pack("<HHBBB", width, height, 0xF1, 0, 0) + palette)
    out += b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"  # loop forever
    clear, end = 4, 5
    for f in range(frames):
        out += b"\x21\xf9\x04\x00" + struct.pack("<H", 8) + b"\x00\x00"  # 80 ms per frame
        out += b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0)
        codes = []
        for i in range(width * height):
            if i % 2 == 0:
                codes.append(clear)
            codes.append(f % 4)
        codes.append(end)
        bits, nbits, data = 0, 0, bytearray()
        for code in codes:
            bits |= code << nbits
            nbits += 3
            while nbits >= 8:
                data.append(bits & 0xFF)
                bits >>= 8
                nbits -= 8
        if nbits:
            data.append(bits & 0xFF)
        out += b"\x02"
        for i in range(0, len(data), 255):
            block = data[i:i + 255]
            out += bytes([len(block)]) + block
        out += b"\x00"
    return bytes(out + b"\x3b")


def is_video(job_type: str) -> bool:
    # The envelope does not carry the kind; the catalog's video types all start with "video".
    return job_type.startswith("video")


# --------------------------------------------------------------------------------------
# The worker


class JobStopped(Exception):
    """The job was cancelled or its lease was lost while it ran."""


class Held:
    """A job this worker holds, as seen by the heartbeat thread."""

    def __init__(self, job_id: str, fence: str):
        self.job_id = job_id
        self.fence = fence  # the claim's token, sent with every report of this delivery
        self.state = 1  # 1 held, 2 cancelled, 0 lost
        self.stop = threading.Event()


class Worker:
    def __init__(self, args: argparse.Namespace):
        env = os.environ
        self.queue_name = require("GPUQ_QUEUE")
        self.storage = Path(require("GPUQ_STORAGE_DIR"))
        self.lease_ms = int(env.get("GPUQ_LEASE_MS", "30000"))
        self.concurrency = max(1, int(env.get("GPUQ_CONCURRENCY", "1")))
        self.deadline = float(env.get("GPUQ_SHUTDOWN_DEADLINE_SECS", "30"))
        self.work_seconds = float(env.get("GPUQ_WORK_SECONDS", "0.2"))
        self.max_jobs = args.max_jobs
        self.queue = Queue(
            env.get("REDIS_URL", "redis://127.0.0.1:6379"),
            env.get("GPUQ_REDIS_NAMESPACE", "gpuq"),
            self.queue_name,
            Path(env.get("GPUQ_LUA_DIR", DEFAULT_LUA_DIR)),
            self.lease_ms,
        )
        self.reporter = Reporter(require("GPUQ_CALLBACK_URL"), require("GPUQ_CALLBACK_SECRET"))
        host = re.sub(r"[^A-Za-z0-9._:-]", "-", socket.gethostname())[:60]
        self.consumer = f"py-{host}-{os.getpid()}-{os.urandom(4).hex()}"  # unique per process
        self.held: dict[str, Held] = {}
        self.lock = threading.Lock()
        self.shutdown = threading.Event()
        self.refused = threading.Event()  # set while the callback service refuses our reports
        self.probe_wait = 2.0
        self.shutdown_at = 0.0
        self.started = 0
        self.finished = 0

    # -- main loop ---------------------------------------------------------------------

    def run(self) -> int:
        log.info("consumer %s on %s (concurrency %d)", self.consumer, self.queue_name, self.concurrency)
        self.queue.redis.ping()
        try:  # a signed probe checks the callback URL and secret before anything is claimed
            self.reporter.send({"probe": True}, retries=3)
        except Rejected as e:
            if e.misconfigured():
                log.error("the callback service refused this worker's probe (%s): check GPUQ_CALLBACK_URL and the secret", e)
                return 2
            log.warning("the callback service does not know probes (%s); starting anyway", e)
        except Unreachable as e:
            log.warning("the callback service did not answer the probe (%s); starting anyway", e)
        threading.Thread(target=self.heartbeats, name="heartbeat", daemon=True).start()
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="job")
        futures = set()
        while not self.shutdown.is_set():
            futures = {f for f in futures if not f.done()}
            if self.max_jobs is not None and self.started >= self.max_jobs:
                break
            if self.refused.is_set():  # reports are refused: claim nothing until a probe passes
                self.reprobe()
                continue
            free = self.concurrency - len(futures)
            if self.max_jobs is not None:
                free = min(free, self.max_jobs - self.started)
            if free <= 0:
                time.sleep(0.05)
                continue
            try:
                claimed = self.queue.claim(self.consumer, free, self.concurrency)
            except redis.exceptions.ConnectionError as e:
                log.warning("redis unreachable (%s); retrying", e)
                time.sleep(1)
                continue
            if not claimed:
                self.queue.wait_for_signal()
                continue
            for job_id, attempt, envelope, token in claimed:
                self.started += 1
                with self.lock:
                    self.held[job_id] = Held(job_id, token)
                futures.add(pool.submit(self.supervise, job_id, attempt, envelope))
        # No more claims. After --max-jobs, the jobs run to their end; after SIGTERM they get
        # until the deadline (counted from the signal) and are then released.
        while any(not f.done() for f in futures):
            if self.shutdown.is_set() and time.monotonic() >= self.shutdown_at + self.deadline:
                break
            time.sleep(0.05)
        with self.lock:
            left = list(self.held.values())
        for h in left:  # past the deadline: hand the rest back at once
            h.stop.set()
            try:
                log.info("job %s released: %s", h.job_id, self.queue.release(h.job_id, self.consumer))
            except redis.RedisError as e:
                log.error("release of %s failed (%s); its lease will expire", h.job_id, e)
        pool.shutdown(wait=False, cancel_futures=True)
        log.info("stopped after %d job(s)", self.finished)
        return 0

    def refuse(self, e: Rejected) -> None:
        if not self.refused.is_set():
            self.refused.set()
            log.error("THE CALLBACK SERVICE REFUSES THIS WORKER (%s): wrong URL or secret? "
                      "Jobs are handed back; nothing is claimed until a probe is accepted", e)

    def reprobe(self) -> None:
        self.shutdown.wait(self.probe_wait)
        try:
            self.reporter.send({"probe": True}, retries=0)
        except (Rejected, Unreachable):
            self.probe_wait = min(self.probe_wait * 2, 60.0)
            return
        log.info("the callback service accepts this worker's reports again; claiming")
        self.probe_wait = 2.0
        self.refused.clear()

    def heartbeats(self) -> None:
        """Renews every held lease every lease_ms/3, whatever the job threads are doing."""
        interval = self.lease_ms / 3000
        while True:
            time.sleep(interval)
            with self.lock:
                held = list(self.held.values())
            for h in held:
                if h.state != 1:
                    continue
                try:
                    state = self.queue.heartbeat(h.job_id, self.consumer)
                except redis.RedisError as e:
                    log.warning("heartbeat for %s failed (%s)", h.job_id, e)
                    continue
                if state != 1:
                    log.warning("job %s %s", h.job_id, "cancelled" if state == 2 else "lease lost")
                    h.state = state
                    h.stop.set()

    # -- one job -------------------------------------------------------------------------

    def supervise(self, job_id: str, attempt: int, envelope: str) -> None:
        held = self.held[job_id]
        try:
            self.run_job(job_id, attempt, json.loads(envelope), held)
        except Exception:  # noqa: BLE001 - a bug in one job must not kill the worker
            log.exception("job %s crashed; its lease will expire and it will be redelivered", job_id)
        finally:
            with self.lock:
                self.held.pop(job_id, None)
                self.finished += 1

    def base(self, job_id: str, attempt: int, status: str) -> dict:
        fence = self.held[job_id].fence
        return {"jobId": job_id, "status": status, "workerId": self.consumer, "attempt": attempt, "fence": fence}

    def run_job(self, job_id: str, attempt: int, job: dict, held: Held) -> None:
        log.info("job %s (%s, attempt %d) started", job_id, job["job_type"], attempt)
        try:
            self.reporter.send(self.base(job_id, attempt, "processing"), retries=3)
        except Rejected as e:
            if e.misconfigured():  # its result could not be reported either
                self.refuse(e)
                return self.release(job_id, held)
            log.warning("processing report not accepted (%s); running anyway", e)
        except Unreachable as e:
            log.warning("processing report not accepted (%s); running anyway", e)
        try:
            outputs, enhanced = self.generate(job_id, attempt, job, held)
        except JobStopped:
            if held.state == 2:  # cancelled: the dispatcher recorded it; remove the job
                log.info("job %s cancelled; ack %s", job_id, self.queue.ack(job_id, self.consumer))
            elif self.shutdown.is_set() and held.state == 1:
                pass  # past the shutdown deadline: the main thread releases it
            else:
                log.warning("job %s lease lost; abandoning it without a report", job_id)
            return
        except Exception as e:  # noqa: BLE001 - the "model" failed: report a retryable failure
            return self.finish_failed(job_id, attempt, held, f"generation failed: {e}", True)

        done = self.base(job_id, attempt, "completed")
        done["outputs"] = outputs
        if enhanced:
            done["enhancedPrompt"] = enhanced
        if held.state == 0:
            return log.warning("job %s lease lost before reporting; abandoning it", job_id)
        try:
            self.reporter.send(done)
        except Rejected as e:
            if e.misconfigured():  # not the job's fault: hand it back, attempt not counted
                self.refuse(e)
                return self.release(job_id, held)
            log.error("callback service refused the result (%s); dead-lettering", e)
            return self.finish_failed(job_id, attempt, held, f"callback service refused the result: {e}", False)
        except Unreachable as e:
            # Undelivered, not failed: another attempt runs it (failing could dead-letter it).
            log.error("result could not be reported (%s); handing the job back", e)
            return self.release(job_id, held)
        held.state = 0  # stop heartbeats for it
        # The callback service acks completed jobs itself; 0 (already gone) is the usual reply.
        log.info("job %s completed; ack -> %s", job_id, self.queue.ack(job_id, self.consumer))

    def finish_failed(self, job_id: str, attempt: int, held: Held, message: str, retryable: bool) -> None:
        payload = self.base(job_id, attempt, "failed")
        payload["error"] = {"message": message, "retryable": retryable}
        try:
            self.reporter.send(payload)
        except Rejected as e:
            if e.misconfigured():  # the failure was not recorded: hand the job back instead
                self.refuse(e)
                return self.release(job_id, held)
            log.error("failure report not accepted (%s)", e)
        except Unreachable as e:
            log.error("failure report not accepted (%s)", e)
        held.state = 0
        # The callback service already ran fail_job for an accepted report (then this returns
        # [0, ...]); never ack here, ack_job would delete the scheduled retry.
        self.fail(job_id, attempt, retryable, message)

    def release(self, job_id: str, held: Held) -> None:
        held.state = 0
        log.info("job %s handed back: %s", job_id, self.queue.release(job_id, self.consumer))

    def fail(self, job_id: str, attempt: int, retryable: bool, message: str) -> None:
        reply = self.queue.fail(job_id, self.consumer, retryable, backoff_ms(attempt), message)
        log.info("job %s failed (retryable=%s); fail_job -> %s", job_id, retryable, reply)

    def generate(self, job_id: str, attempt: int, job: dict, held: Held):
        """Pretends to run the model, reporting progress, and writes the outputs."""
        config = job.get("config") or {}
        seed = int(config.get("seed") or int(hashlib.sha256(job_id.encode()).hexdigest()[:8], 16))
        enhanced = None
        if "7b" in job["job_type"] or config.get("enhance_prompt"):
            enhanced = f"{job['prompt']}, highly detailed, soft cinematic lighting (python worker)"
        steps = 4
        for step in range(1, steps + 1):
            if held.stop.wait(self.work_seconds / steps):
                raise JobStopped()
            progress = self.base(job_id, attempt, "progress")
            progress["progress"] = {"fraction": round(0.9 * step / steps, 3), "message": f"step {step}/{steps}"}
            try:
                self.reporter.send(progress, retries=0)  # best effort
            except (Rejected, Unreachable) as e:
                log.debug("progress dropped: %s", e)
        user, bucket = job["user_id"], job["bucket"]
        rnd = random.Random(seed)
        if is_video(job["job_type"]):
            frames = max(1, min(int(config.get("frames") or 16), 200))
            key = f"{user}/{job_id}/0.gif"
            self.write(bucket, key, gif(32, 18, frames, seed))
            return [{"path": key, "seed": seed, "width": 32, "height": 18,
                     "durationSeconds": round(frames * 0.08, 2),
                     "metadata": {"generator": "gpuq-python-worker", "frames": frames}}], enhanced
        outputs = []
        for i in range(max(1, int(config.get("num_images") or 1))):
            key = f"{user}/{job_id}/{i}.png"
            self.write(bucket, key, png(16, 16, tuple(rnd.randrange(256) for _ in range(3))))
            outputs.append({"path": key, "seed": seed + i, "width": 16, "height": 16,
                            "metadata": {"generator": "gpuq-python-worker"}})
        return outputs, enhanced

    def write(self, bucket: str, key: str, data: bytes) -> None:
        if ".." in key.split("/") or key.startswith("/") or "\\" in key:
            raise ValueError(f"unsafe key {key!r}")
        path = self.storage / bucket / key
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
        tmp.write_bytes(data)
        tmp.replace(path)  # readers never see half a file


def require(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        sys.exit(f"{name} must be set")
    return value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-jobs", type=int, default=None, help="exit after this many jobs")
    args = parser.parse_args()
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(threadName)s %(message)s",
    )
    worker = Worker(args)

    def on_signal(signum, _frame):
        log.info("signal %d: draining (deadline %.0fs)", signum, worker.deadline)
        if not worker.shutdown.is_set():
            worker.shutdown_at = time.monotonic()
        worker.shutdown.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return worker.run()


if __name__ == "__main__":
    sys.exit(main())
