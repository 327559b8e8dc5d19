#!/usr/bin/env bash
# Starts the whole gpuq stack on this machine and runs one job of each of the ten types
# through it: Redis and PostgreSQL (installed/started when needed), the dispatcher, the
# callback service and one demo worker per queue. Prints each job's final record and its
# output files. Everything it starts keeps running; stop it with deploy/local/down.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
STATE="$ROOT/.gpuq"
mkdir -p "$STATE/logs" "$STATE/pids" "$STATE/storage"

# shellcheck source=services.sh
source deploy/local/services.sh
command -v curl >/dev/null 2>&1 || { apt-get update -q && apt-get install -y -q curl; }

log() { printf '[up] %s\n' "$*"; }

# A database of its own, so the local stack never touches anything else.
DB_NAME=gpuq_local
PG_BASE="${DATABASE_URL%/*}"
if ! psql "$DATABASE_URL" -qAtc "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'" | grep -q 1; then
  psql "$DATABASE_URL" -qc "CREATE DATABASE $DB_NAME"
fi
export DATABASE_URL="$PG_BASE/$DB_NAME"

# Development secrets, generated once and kept in .gpuq/ (never committed).
if [ ! -f "$STATE/secrets.env" ]; then
  umask 077
  {
    echo "GPUQ_JWT_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    echo "GPUQ_CALLBACK_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    echo "GPUQ_ADMIN_TOKEN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  } > "$STATE/secrets.env"
fi
set -a
# shellcheck disable=SC1091
source "$STATE/secrets.env"
set +a
export GPUQ_REDIS_NAMESPACE=gpuq-local
export GPUQ_STORAGE_HOST=http://127.0.0.1:8081
DISPATCHER_PORT=${GPUQ_DISPATCHER_PORT:-8080}
CALLBACK_PORT=${GPUQ_CALLBACK_PORT:-8081}

log "building release binaries (first build takes a few minutes)"
cargo build --release --locked -p gpuq-dispatcher -p gpuq-callback -p gpuq-demo-worker --bins
BIN="$ROOT/target/release"

bash deploy/local/down.sh >/dev/null 2>&1 || true
"$BIN/gpuq-dispatcher" migrate

start() { # name, command...
  local name=$1; shift
  nohup "$@" >"$STATE/logs/$name.log" 2>&1 &
  echo $! >"$STATE/pids/$name.pid"
  log "started $name (pid $!, log .gpuq/logs/$name.log)"
}

# Credits on (ADR 0014): each job's price is held at enqueue and charged when it completes.
GPUQ_CREDITS=true GPUQ_LISTEN=127.0.0.1:$DISPATCHER_PORT GPUQ_MIGRATE=false \
  start dispatcher "$BIN/gpuq-dispatcher"
GPUQ_LISTEN=127.0.0.1:$CALLBACK_PORT GPUQ_MIGRATE=false start callback "$BIN/gpuq-callback"
for queue in sdxl_queue wan_queue; do
  GPUQ_QUEUE=$queue GPUQ_CONCURRENCY=2 GPUQ_STORAGE_DIR="$STATE/storage" \
    GPUQ_CALLBACK_URL="http://127.0.0.1:$CALLBACK_PORT/v1/callback" \
    start "worker-$queue" "$BIN/gpuq-demo-worker"
done

wait_ready() { # url
  for _ in $(seq 100); do
    curl -fsS "$1" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  log "not ready: $1"; exit 1
}
wait_ready "http://127.0.0.1:$DISPATCHER_PORT/readyz"
wait_ready "http://127.0.0.1:$CALLBACK_PORT/readyz"

USER_ID=$(cat /proc/sys/kernel/random/uuid)
TOKEN=$("$BIN/gpuq-dispatcher" mint-token "$USER_ID" 3600)
API="http://127.0.0.1:$DISPATCHER_PORT"
balance() { # the user's balance, held and available credits
  curl -fsS "$API/v1/credits" -H "Authorization: Bearer $TOKEN" | grep -o '"account":{[^}]*}'
}
log "granting the user 100 credits (admin API, once per Idempotency-Key)"
curl -fsS -X POST "$API/admin/tenants/$USER_ID/credits" -H "Authorization: Bearer $GPUQ_ADMIN_TOKEN" \
  -H "Idempotency-Key: up-$USER_ID" -H 'Content-Type: application/json' \
  -d '{"kind":"grant","amount":100,"reason":"up.sh"}' >/dev/null
log "credits before: $(balance)"
log "submitting one job of each type as user $USER_ID"
ids=()
for type in sdxl_image_fast sdxl_image_high image_fast image_high video_fast video_high \
  image7b_fast_enhanced image7b_high_enhanced video7b_fast_enhanced video7b_high_enhanced; do
  images=1
  case $type in sdxl_*) images=3 ;; esac
  answer=$(curl -fsS -X POST "$API/v1/jobs" -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -d "{\"jobType\":\"$type\",\"metadata\":{\"prompt\":\"a lighthouse at dusk ($type)\",\"num_images\":$images,\"seed\":42}}")
  id=$(printf '%s' "$answer" | grep -o '"id":"[0-9a-f-]*"' | head -1 | cut -d'"' -f4)
  ids+=("$id")
  printf '  %-24s %s  position %s\n' "$type" "$id" "$(printf '%s' "$answer" | grep -o '"position":[0-9]*' | cut -d: -f2)"
done

log "following the jobs to the end"
deadline=$((SECONDS + 300))
for id in "${ids[@]}"; do
  while :; do
    record=$(curl -fsS "$API/v1/jobs/$id" -H "Authorization: Bearer $TOKEN")
    status=$(printf '%s' "$record" | grep -o '"status":"[a-z]*"' | head -1 | cut -d'"' -f4)
    case $status in completed | failed | cancelled) break ;; esac
    [ $SECONDS -lt $deadline ] || { log "timed out waiting for $id"; exit 1; }
    sleep 0.5
  done
  echo
  echo "== job $id: $status"
  printf '%s\n' "$record"
  [ "$status" = completed ] || { log "job $id did not complete"; exit 1; }
done

echo
log "credits after:  $(balance)   (the ten jobs cost 35: the catalog's credits per image or video)"
log "output files under .gpuq/storage:"
find "$STATE/storage" -type f -path "*$USER_ID*" -printf '  %P  (%s bytes)\n' | sort
echo
log "all ten jobs completed. The stack is still running:"
log "  dispatcher $API   callback http://127.0.0.1:$CALLBACK_PORT   admin token in .gpuq/secrets.env"
log "  stop it with: bash deploy/local/down.sh"
