#!/usr/bin/env bash
# CPU time per request (`http-enqueue`, 64 clients) or per job (`e2e`), by process, for
# builds A/B, alternating, each run on a fresh redis-server. On these 2-core machines
# requests/s drifts by tens of percent from one run to the next; CPU time per unit of work
# drifts far less (bench+services and redis within about 5 %; postgres, which holds
# background work, more), so a change of 10 % shows in every round (benches/README.md,
# "Session 12").
#
#   bash benches/cpu_ab.sh ROUNDS http-enqueue|e2e LABEL:DIR...
#   e.g. bash benches/cpu_ab.sh 4 http-enqueue base:/tmp/base head:target/release
#
# DIR holds release builds of gpuq-bench, gpuq-dispatcher and gpuq-callback. Columns:
#   bench+services  user + system time of the bench and the service processes it starts
#                   (its children, waited for): the load generator is in it, the same
#                   on both sides
#   redis           redis-server's own (INFO cpu)
#   postgres        every process named postgres on this machine, with what the postmaster
#                   reaped from backends that ended: autovacuum and checkpoints are in it,
#                   and so is anything else using PostgreSQL meanwhile (run nothing else);
#                   0 when PostgreSQL runs elsewhere
# Needs redis-server, PostgreSQL as the other benches use it (PG_BASE_URL), python3.
# GPUQ_CPU_PORT: the Redis port (6396). E2E_ARGS: more `gpuq-bench e2e` arguments.
set -euo pipefail
[ $# -ge 3 ] || { sed -n '2,22p' "$0" >&2; exit 2; }
rounds=$1 scenario=$2
shift 2
port=${GPUQ_CPU_PORT:-6396}
url="redis://127.0.0.1:$port"
case $scenario in
  http-enqueue) units=20000 ;;
  e2e) units=5000 ;;
  *) echo "cpu_ab: scenario is http-enqueue or e2e" >&2; exit 2 ;;
esac
stop() { redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true; }
trap stop EXIT
fresh_redis() {
  stop
  sleep 0.3
  redis-server --port "$port" --save '' --appendonly no --daemonize yes \
    --logfile "/tmp/gpuq-cpu-$port.log"
  until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.1; done
}
redis_cpu() { redis-cli -p "$port" info cpu | awk -F: '/^used_cpu_(sys|user):/ {s += $2} END {print s}'; }
postgres_cpu() {
  python3 - <<'PY'
import os
ticks = 0
for pid in filter(str.isdigit, os.listdir('/proc')):
    try:
        if open(f'/proc/{pid}/comm').read().strip() != 'postgres':
            continue
        f = open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()
        ticks += sum(int(x) for x in f[11:15])  # utime stime cutime cstime
    except OSError:
        pass
print(ticks / os.sysconf('SC_CLK_TCK'))
PY
}
# The bench's command line for scenario and build DIR.
bench() {
  local dir=$1
  case $scenario in
    http-enqueue)
      "$dir/gpuq-bench" --redis-url "$url" http-enqueue --concurrency 64 --requests "$units" \
        --dispatcher "$dir/gpuq-dispatcher" ;;
    e2e)
      # shellcheck disable=SC2086 # E2E_ARGS holds several arguments
      "$dir/gpuq-bench" --redis-url "$url" e2e --jobs "$units" \
        --dispatcher "$dir/gpuq-dispatcher" --callback "$dir/gpuq-callback" ${E2E_ARGS:-} ;;
  esac
}
out=$(mktemp)
log=/tmp/gpuq-cpu-bench.log
for round in $(seq 1 "$rounds"); do
  for spec in "$@"; do
    label=${spec%%:*} dir=${spec#*:}
    fresh_redis
    r0=$(redis_cpu) p0=$(postgres_cpu)
    # `times` in the subshell: its children's user and system time, the bench's included.
    # Its last line is the bench's exit status.
    ran=$( (status=0; bench "$dir" >"$out" 2>"$log" || status=$?; times; echo "$status") |
      tail -2)
    if [ "${ran##*$'\n'}" != 0 ]; then
      echo "cpu_ab: $label's bench failed; its output is in $log:" >&2
      tail -n 20 "$log" >&2
      exit 1
    fi
    children=${ran%$'\n'*}
    r1=$(redis_cpu) p1=$(postgres_cpu)
    python3 - "$label" "$round" "$units" "$children" "$r0" "$r1" "$p0" "$p1" "$out" <<'PY'
import json, re, sys
label, rnd, units, children, r0, r1, p0, p1, out = sys.argv[1:]
secs = sum(int(m) * 60 + float(s) for m, s in re.findall(r'(\d+)m([\d.]+)s', children))
per = lambda s: s / int(units) * 1e6
app, red, pg = per(secs), per(float(r1) - float(r0)), per(float(p1) - float(p0))
rate = next((json.loads(l)['value'] for l in open(out) if l.startswith('{')
             and '/s' in json.loads(l)['unit']), float('nan'))
print(f"{label} round {rnd}: {rate:,.0f}/s | CPU µs per unit: bench+services {app:.0f}, "
      f"redis {red:.0f}, postgres {pg:.0f}, total {app + red + pg:.0f}")
PY
  done
done
rm -f "$out"
