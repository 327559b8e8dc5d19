#!/usr/bin/env bash
# Runs the Python worker (worker.py, redis-py + requests only) against the real gpuq stack and
# checks that every job it took was recorded as completed, with its image/video rows and
# files. What it starts, it stops (trap), including its database.
#
#   bash deploy/tests/protocol-worker/run_check.sh
#
# Uses existing binaries (GPUQ_BIN_DIR, default target/debug; build them with
#   cargo build -p gpuq-dispatcher -p gpuq-callback --bins).
# PostgreSQL: PG_BASE_URL (default postgres://postgres:postgres@127.0.0.1:5432/postgres); a
# database gpuq_pycheck_<random> is created and dropped.
# Redis: by default a throwaway redis-server on a free port, loaded with an ACL rendered by
# deploy/redis/render-acl.sh for this run's namespace, so the dispatcher, the callback service
# and each Python worker connect as their own restricted users (the workers can touch only
# their queue's keys). GPUQ_PYCHECK_REDIS_URL=redis://... uses an existing Redis instead, no ACL.
# Python: a virtualenv with requirements.txt, cached in GPUQ_PYCHECK_VENV (default
# ~/.cache/gpuq-pycheck-venv).
# Prints "N passed, M failed"; exits non-zero on any failure.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
BIN=${GPUQ_BIN_DIR:-$ROOT/target/debug}
PG_BASE_URL=${PG_BASE_URL:-postgres://postgres:postgres@127.0.0.1:5432/postgres}
VENV=${GPUQ_PYCHECK_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/gpuq-pycheck-venv}

# shellcheck source=../lib/checks.sh
source "$ROOT/deploy/tests/lib/checks.sh"
# shellcheck source=../lib/stack.sh
source "$ROOT/deploy/tests/lib/stack.sh"
log() { printf '[pycheck] %s\n' "$*"; }

KEEP=${GPUQ_PYCHECK_KEEP:-0}
stack_init pycheck
for tool in psql curl python3; do
  command -v "$tool" >/dev/null || die "$tool is installed"
done

# --- Python environment -------------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  log "creating virtualenv $VENV"
  python3 -m venv "$VENV" || die "python3 -m venv works"
fi
"$VENV/bin/pip" install -q --disable-pip-version-check -r "$HERE/requirements.txt" ||
  die "pip install -r requirements.txt"
PY="$VENV/bin/python"
ok "python worker environment: $("$PY" -c 'import redis, requests; print("redis-py", redis.__version__, "requests", requests.__version__)')"

STACK_REDIS_URL=${GPUQ_PYCHECK_REDIS_URL:-}
stack_up pycheck

for pair in "dispatcher:$DISPATCHER_PORT" "callback:$CALLBACK_PORT"; do
  check "the image health check (deploy/docker/healthcheck.sh) passes against the live ${pair%%:*}" \
    env GPUQ_LISTEN="0.0.0.0:${pair#*:}" bash "$ROOT/deploy/docker/healthcheck.sh" /healthz
done
check "the image health check fails on a path the service does not serve" \
  bash -c "! GPUQ_LISTEN=0.0.0.0:$DISPATCHER_PORT bash '$ROOT/deploy/docker/healthcheck.sh' /nope 2>/dev/null"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$CB/v1/callback" -H 'Content-Type: application/json' \
  -d '{"jobId":"00000000-0000-7000-8000-000000000000","status":"processing"}')
check "an unsigned callback is refused (401, got $code)" test "$code" = 401

# --- Jobs ---------------------------------------------------------------------------------
USER_ID=$(python3 -c 'import uuid; print(uuid.uuid4())')
TOKEN=$("$BIN/gpuq-dispatcher" mint-token "$USER_ID" 3600 2>>"$TMP/logs/mint.log") || die "gpuq-dispatcher mint-token"
declare -A QUEUE_OF=() TYPE_OF=() IMAGES_OF=()
submit() { # job type, num_images
  local answer id
  answer=$(curl -sS -X POST "$API/v1/jobs" -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -d "{\"jobType\":\"$1\",\"metadata\":{\"prompt\":\"a lighthouse at dusk ($1)\",\"num_images\":$2,\"seed\":7}}")
  id=$(printf '%s' "$answer" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["job"]["id"] if d.get("success") else "")' 2>/dev/null)
  if [ -z "$id" ]; then bad "enqueue $1" "$answer"; return; fi
  QUEUE_OF[$id]=$(printf '%s' "$answer" | python3 -c 'import json,sys; print(json.load(sys.stdin)["queue"])')
  TYPE_OF[$id]=$1
  IMAGES_OF[$id]=$2
}
submit sdxl_image_fast 3
submit sdxl_image_high 1
submit sdxl_image_fast 1
submit image_fast 1
submit video_fast 1
submit image7b_fast_enhanced 1
submit video7b_high_enhanced 1
count() { local n=0 id; for id in "${!QUEUE_OF[@]}"; do [ "${QUEUE_OF[$id]}" = "$1" ] && n=$((n + 1)); done; echo $n; }
SDXL_JOBS=$(count sdxl_queue)
WAN_JOBS=$(count wan_queue)
check "submitted 3 sdxl_queue and 4 wan_queue jobs over HTTP (got $SDXL_JOBS and $WAN_JOBS)" test "$SDXL_JOBS/$WAN_JOBS" = 3/4
waiting=$(rcli LLEN "$NS:{sdxl_queue}:wait:normal")
check "the jobs' tokens wait in the LIST $NS:{sdxl_queue}:wait:normal ($waiting)" test "$waiting" = "$SDXL_JOBS"

# --- The Python workers ---------------------------------------------------------------------
declare -A WORKER_PID=()
for q in sdxl_queue wan_queue; do
  n=$SDXL_JOBS; user=worker_sdxl
  [ $q = wan_queue ] && { n=$WAN_JOBS; user=worker_wan; }
  REDIS_URL=$(url_for $user) GPUQ_QUEUE=$q GPUQ_CALLBACK_URL="$CB/v1/callback" GPUQ_STORAGE_DIR="$STORAGE" \
    GPUQ_CONCURRENCY=2 GPUQ_LEASE_MS=3000 GPUQ_WORK_SECONDS=1.5 \
    start "python-$q" "$PY" "$HERE/worker.py" --max-jobs "$n"
  WORKER_PID[$q]=${PIDS[-1]}
done
for q in sdxl_queue wan_queue; do
  pid=${WORKER_PID[$q]}
  for _ in $(seq 1200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    bad "python worker on $q exits after --max-jobs (still running after 120 s)" "$(tail -5 "$TMP/logs/python-$q.log")"
  else
    wait "$pid"; rc=$?
    if [ $rc = 0 ]; then ok "python worker on $q took its jobs and exited 0"; else bad "python worker on $q exited $rc" "$(tail -5 "$TMP/logs/python-$q.log")"; fi
  fi
done
renewals=$(grep -c 'heartbeat for .* failed\|lease lost' "$TMP/logs"/python-*.log | awk -F: '{s+=$2} END {print s+0}')
check "no heartbeat failed and no lease was lost with a 3 s lease and 1.5 s jobs ($renewals)" test "$renewals" = 0

# --- Results --------------------------------------------------------------------------------
for id in "${!QUEUE_OF[@]}"; do
  type=${TYPE_OF[$id]}
  record=""
  for _ in $(seq 50); do
    record=$(curl -sS "$API/v1/jobs/$id" -H "Authorization: Bearer $TOKEN")
    status=$(printf '%s' "$record" | python3 -c 'import json,sys; print(json.load(sys.stdin)["job"]["status"])' 2>/dev/null)
    [ "$status" = completed ] && break
    sleep 0.2
  done
  if [ "$status" = completed ]; then ok "GET /v1/jobs/$id ($type): completed"; else bad "GET /v1/jobs/$id ($type): completed" "$record"; continue; fi
  case $type in
    video*) table=videos; want=1 ;;
    *) table=images; want=${IMAGES_OF[$id]} ;;
  esac
  rows=$(sql "SELECT count(*) FROM $table WHERE job_id = '$id' AND user_id = '$USER_ID'")
  check "psql: $rows/$want $table row(s) for $id" test "$rows" = "$want"
  missing=0
  while IFS='|' read -r bucket path; do
    [ -z "$path" ] && continue
    file "$STORAGE/$bucket/$path" 2>/dev/null | grep -Eq 'PNG image data|GIF image data' || missing=$((missing + 1))
    case $path in "$USER_ID/$id/"*) ;; *) missing=$((missing + 1)) ;; esac
  done < <(sql "SELECT bucket, storage_path FROM $table WHERE job_id = '$id'")
  check "the $table file(s) of $id exist as <bucket>/<user_id>/<job_id>/<i>.<ext> and are real PNG/GIF" test "$missing" = 0
  case $type in
    *7b*) enhanced=$(sql "SELECT coalesce(enhanced_prompt, '') FROM jobs WHERE id = '$id'")
      check "enhanced prompt recorded for $type" test -n "$enhanced" ;;
  esac
  attempts=$(sql "SELECT attempts FROM jobs WHERE id = '$id'")
  check "job $id ran once (attempts = $attempts)" test "$attempts" = 1
done
unfinished=$(sql "SELECT count(*) FROM jobs WHERE status <> 'completed'")
check "no job left queued/processing/failed in PostgreSQL ($unfinished)" test "$unfinished" = 0
for q in sdxl_queue wan_queue; do
  left=$(( $(rcli HLEN "$NS:{$q}:jobs") + $(rcli ZCARD "$NS:{$q}:leases") + $(rcli LLEN "$NS:{$q}:wait:normal") ))
  check "finished jobs left no trace in Redis for $q ($left)" test "$left" = 0
done

# --- Draining: SIGTERM while a job runs hands it back -----------------------------------
answer=$(curl -sS -X POST "$API/v1/jobs" -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
  -d '{"jobType":"sdxl_image_fast","metadata":{"prompt":"drain me","num_images":1}}')
drain_id=$(printf '%s' "$answer" | python3 -c 'import json,sys; print(json.load(sys.stdin)["job"]["id"])' 2>/dev/null)
[ -n "$drain_id" ] || die "enqueue the job to drain" "$answer"
REDIS_URL=$(url_for worker_sdxl) GPUQ_QUEUE=sdxl_queue GPUQ_CALLBACK_URL="$CB/v1/callback" GPUQ_STORAGE_DIR="$STORAGE" \
  GPUQ_LEASE_MS=3000 GPUQ_WORK_SECONDS=30 GPUQ_SHUTDOWN_DEADLINE_SECS=1 \
  start python-drain "$PY" "$HERE/worker.py" --max-jobs 1
drain_pid=${PIDS[-1]}
for _ in $(seq 100); do [ "$(rcli ZCARD "$NS:{sdxl_queue}:leases")" = 1 ] && break; sleep 0.1; done
check "the draining worker holds the job" test "$(rcli ZCARD "$NS:{sdxl_queue}:leases")" = 1
sleep 1.5  # let it report processing and progress and renew its lease once
kill -TERM "$drain_pid"
for _ in $(seq 100); do kill -0 "$drain_pid" 2>/dev/null || break; sleep 0.1; done
check "SIGTERM: the python worker stopped within its deadline" bash -c "! kill -0 $drain_pid 2>/dev/null"
check "SIGTERM: the worker logged the drain and the release" grep -q "signal 15: draining" "$TMP/logs/python-drain.log"
back=$(rcli --scan --pattern "$NS:{sdxl_queue}:tenants:normal:*" | xargs -r -I%KEY% redis-cli -u "$ADMIN_URL" --no-auth-warning LINDEX %KEY% -1)
check "SIGTERM: the running job was released to the front of its tenant's jobs ($back)" test "${back#*|}" = "$drain_id"
meta=$(rcli HGET "$NS:{sdxl_queue}:meta" "$drain_id")
check "SIGTERM: the interrupted attempt is not counted (meta $meta)" test "${meta%%|*}" = 0

finish
