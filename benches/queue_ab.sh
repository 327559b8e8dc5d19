#!/usr/bin/env bash
# A/B of `gpuq-bench queue` builds, alternating, each run on a fresh redis-server (a previous
# run's namespace, freed in the background, skews the next one otherwise).
#
#   bash benches/queue_ab.sh ROUNDS JOBS LABEL:BINARY[:EXTRA ARGS[:REDIS-SERVER ARGS]]...
#   e.g. bash benches/queue_ab.sh 3 30000 a:/tmp/a/gpuq-bench "b:target/release/gpuq-bench:--tenants 100"
#   or, to compare a server setting (EXTRA ARGS may not contain ':', which starts the
#   server's arguments):
#   bash benches/queue_ab.sh 3 30000 default:target/release/gpuq-bench \
#        "tuned:target/release/gpuq-bench::--zset-max-listpack-entries 32"
#
# Build each side from its own tree (`cargo build --release -p gpuq-benches`) and copy the
# binary out: trees sharing one target directory overwrite each other's crates.
set -euo pipefail
rounds=$1 jobs=$2
shift 2
port=${GPUQ_AB_PORT:-6391}
stop() { redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true; }
trap stop EXIT
for round in $(seq 1 "$rounds"); do
  for spec in "$@"; do
    IFS=: read -r label bin extra server <<<"$spec"
    stop
    sleep 0.3
    # shellcheck disable=SC2086 # SERVER holds several arguments
    redis-server --port "$port" --save '' --appendonly no --daemonize yes \
      --logfile "/tmp/gpuq-ab-$port.log" $server
    until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.1; done
    # shellcheck disable=SC2086 # EXTRA holds several arguments
    "$bin" --redis-url "redis://127.0.0.1:$port" queue --jobs "$jobs" $extra 2>/dev/null |
      awk -F'|' -v l="$label" -v r="$round" \
        '/^\| queue \| (claim\+ack|enqueue, single)/ {gsub(/^ +| +$/, "", $3); gsub(/ /, "", $4); printf "%s round %s: %s = %s jobs/s\n", l, r, $3, $4}'
  done
done
