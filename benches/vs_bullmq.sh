#!/usr/bin/env bash
# gpuq beside BullMQ on this machine, in one run (issue #21): BullMQ's single enqueue (50 in
# flight) and no-op drain (one Worker, concurrency 50), pinned in benches/bullmq/package.json,
# alternating with `gpuq-bench queue`, `http-enqueue` at 64 clients and `e2e`. Every
# measurement gets a fresh redis-server (a previous run's keys, freed in the background,
# skew the next one otherwise). Prints each round's figures, the means and the ratios.
#
#   bash benches/vs_bullmq.sh [ROUNDS (2)] [QUEUE JOBS (30000)]
#
# Needs node and npm (the npm registry), redis-server, PostgreSQL as the other benches use
# it (PG_BASE_URL), and builds the release binaries it runs. GPUQ_VS_PORT: the Redis port
# (6394).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
rounds=${1:-2} jobs=${2:-30000}
port=${GPUQ_VS_PORT:-6394}
url="redis://127.0.0.1:$port"
for tool in node npm redis-server redis-cli python3; do
  command -v "$tool" >/dev/null || { echo "vs_bullmq: $tool is needed" >&2; exit 1; }
done
TMP=$(mktemp -d)
stop() { redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true; }
# On failure the logs stay, and their tail is shown.
finish() {
  local status=$?
  stop
  if [ "$status" -eq 0 ]; then
    rm -rf "$TMP"
  else
    echo "vs_bullmq: failed (exit $status); logs in $TMP:" >&2
    tail -n 20 "$TMP"/*.log >&2 2>/dev/null || true
  fi
}
trap finish EXIT

echo "building the release binaries (cargo build --release)" >&2
(cd "$ROOT" && cargo build --release --quiet -p gpuq-benches -p gpuq-dispatcher -p gpuq-callback -p gpuq-demo-worker)
echo "installing BullMQ from benches/bullmq/package-lock.json (npm ci)" >&2
(cd "$ROOT/benches/bullmq" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
BENCH="$ROOT/target/release/gpuq-bench"

fresh_redis() {
  stop
  sleep 0.3
  redis-server --port "$port" --save '' --appendonly no --daemonize yes \
    --logfile "$TMP/redis.log" --pidfile "$TMP/redis.pid"
  for _ in $(seq 50); do
    redis-cli -p "$port" ping >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "vs_bullmq: redis-server did not answer on port $port (GPUQ_VS_PORT)" >&2
  return 1
}
figures="$TMP/figures.jsonl"
run() { # round, variant, command... -> its JSON figures, tagged with round and variant
  local round=$1 variant=$2
  shift 2
  fresh_redis
  "$@" >"$TMP/out.log" 2>>"$TMP/stderr.log"
  grep -q '^{' "$TMP/out.log" || { echo "vs_bullmq: no figures from: $*" >&2; return 1; }
  grep '^{' "$TMP/out.log" | sed "s/^{/{\"round\":$round,\"variant\":\"$variant\",/" \
    | tee -a "$figures" >&2
}
gpuq() { # round, variant, bin dir: the three gpuq measurements with that build
  local round=$1 variant=$2 bin=$3
  local services=(--dispatcher "$bin/gpuq-dispatcher")
  run "$round" "$variant" "$bin/gpuq-bench" --redis-url "$url" queue --jobs "$jobs"
  (cd "$ROOT" && run "$round" "$variant" "$bin/gpuq-bench" --redis-url "$url" \
    http-enqueue --concurrency 64 "${services[@]}")
  (cd "$ROOT" && run "$round" "$variant" "$bin/gpuq-bench" --redis-url "$url" \
    e2e "${services[@]}" --callback "$bin/gpuq-callback")
  # Workers that report `processing` only for jobs still running after 250 ms (the SDK's
  # `report_processing_after`; the base build may predate it).
  if [ "$variant" = head ]; then
    (cd "$ROOT" && run "$round" "$variant" "$bin/gpuq-bench" --redis-url "$url" \
      e2e "${services[@]}" --callback "$bin/gpuq-callback" --processing-after-ms 250)
  fi
}
base=${GPUQ_VS_BASE:-}
if [ -n "$base" ]; then
  for b in gpuq-bench gpuq-dispatcher gpuq-callback; do
    [ -x "$base/$b" ] || { echo "vs_bullmq: GPUQ_VS_BASE has no $base/$b" >&2; exit 1; }
  done
fi
for round in $(seq 1 "$rounds"); do
  echo "--- round $round of $rounds" >&2
  run "$round" bullmq node "$ROOT/benches/bullmq/bench.mjs" enqueue "$jobs" "$url"
  run "$round" bullmq node "$ROOT/benches/bullmq/bench.mjs" drain "$jobs" "$url"
  if [ -n "$base" ]; then gpuq "$round" base "$base"; fi
  gpuq "$round" head "$ROOT/target/release"
done

python3 - "$figures" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def values(scenario, metric, variant=None):
    return [r["value"] for r in rows if r["scenario"] == scenario and r["metric"] == metric
            and (variant is None or r["variant"] == variant)]
def mean(scenario, metric, variant=None):
    v = values(scenario, metric, variant)
    return statistics.mean(v) if v else float("nan")
has_base = any(r["variant"] == "base" for r in rows)
bull_enq = mean("bullmq", "enqueue, single, 50 in flight")
bull_drain = mean("bullmq", "no-op drain, one worker, concurrency 50")
lines = [
    ("queue: enqueue, single, 50 in flight", "queue", "enqueue, single, 50 in flight", bull_enq, "BullMQ enqueue", "≥ 4× (stretch)"),
    ("queue: claim+ack, one worker with 50 slots", "queue", "claim+ack, one worker with 50 slots", bull_drain, "BullMQ drain", "≥ 2.0×"),
    ("http-enqueue: 64 clients", "http-enqueue", "requests/s at concurrency 64", bull_enq, "BullMQ enqueue", "≥ 0.35×"),
    ("e2e: HTTP enqueue to completed row", "e2e", "jobs/s, HTTP enqueue to completed row", bull_drain, "BullMQ drain", "≥ 0.15×"),
    ("e2e, `processing` after 250 ms", "e2e", "jobs/s, HTTP enqueue to completed row, processing after 250 ms", bull_drain, "BullMQ drain", "≥ 0.15×"),
]
# The base build's figure a line is compared with (the base may not have the variant).
base_metric = {"jobs/s, HTTP enqueue to completed row, processing after 250 ms": "jobs/s, HTTP enqueue to completed row"}
print(f"\nBullMQ 6.7.0: enqueue {bull_enq:,.0f} jobs/s {values('bullmq', 'enqueue, single, 50 in flight')}, "
      f"no-op drain {bull_drain:,.0f} jobs/s {values('bullmq', 'no-op drain, one worker, concurrency 50')}\n")
def fmt(v, digits=0):
    return ", ".join(f"{x:,.{digits}f}" for x in v)
if has_base:
    print("| gpuq figure | base, per round | base mean | per round | mean | change | against | ratio | target |")
    print("|---|---|---:|---|---:|---:|---|---:|---|")
else:
    print("| gpuq figure | per round | mean | against | ratio | target |")
    print("|---|---|---:|---|---:|---|")
for label, scenario, metric, bull, against, target in lines:
    v, m = values(scenario, metric, "head"), mean(scenario, metric, "head")
    cells = f"{fmt(v)} | {m:,.0f}"
    if has_base:
        bm = base_metric.get(metric, metric)
        b = mean(scenario, bm, "base")
        cells = f"{fmt(values(scenario, bm, 'base'))} | {b:,.0f} | {cells} | {m / b - 1:+.0%}"
    print(f"| {label} | {cells} | {against} | {m / bull:.2f}× | {target} |")
metric = "p99 latency at concurrency 64"
v, m = values("http-enqueue", metric, "head"), mean("http-enqueue", metric, "head")
cells = f"{fmt(v, 1)} | {m:.1f}"
if has_base:
    b = mean("http-enqueue", metric, "base")
    cells = f"{fmt(values('http-enqueue', metric, 'base'), 1)} | {b:.1f} | {cells} | {m / b - 1:+.0%}"
print(f"| http-enqueue p99 at 64 clients (ms) | {cells} | | | ≤ 25 ms |")
PY
