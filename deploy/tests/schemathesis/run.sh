#!/usr/bin/env bash
# Property-based API test of the dispatcher: schemathesis (PyPI, pinned in requirements.txt)
# reads the live GET /openapi.json and sends generated requests to every documented
# operation, with every check schemathesis has (`--checks all`): no 5xx, every status,
# content type, header and body as documented, schema-valid input accepted, invalid input
# refused, auth not ignored, unsupported methods answered 405 with `Allow`, ...
#
#   bash deploy/tests/schemathesis/run.sh
#
# What it does:
#   - sources deploy/local/services.sh (Redis and PostgreSQL installed and running);
#   - builds target/debug/gpuq-dispatcher (a no-op when up to date) unless GPUQ_BIN_DIR is
#     set;
#   - a virtualenv in target/schemathesis-venv with requirements.txt;
#   - a fresh database gpuq_schema_<random> (migrated, dropped at the end) and a random
#     Redis namespace (its keys deleted at the end);
#   - the dispatcher on a free port with random secrets and limits high enough that the
#     generated requests reach the handlers (rate limits are tested in cargo test);
#   - a user token for the user routes and a `service_role` token for /admin/*
#     (schemathesis.toml next to this file sets which goes where);
#   - schemathesis with a fixed seed and a bounded number of examples per operation.
# Exits non-zero on any failure. Reports (JUnit, NDJSON) land in target/schemathesis/.
#
# Environment:
#   GPUQ_BIN_DIR                   binaries to use as they are (default: build target/debug)
#   GPUQ_SCHEMATHESIS_SEED         default 7
#   GPUQ_SCHEMATHESIS_EXAMPLES     max examples per operation and phase (default 200: about 70 s)
#   GPUQ_SCHEMATHESIS_KEEP=1       keep the temporary folder (dispatcher log)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
cd "$ROOT"

# shellcheck source=../../local/services.sh
source deploy/local/services.sh
PG_BASE_URL=$DATABASE_URL
SEED=${GPUQ_SCHEMATHESIS_SEED:-7}
EXAMPLES=${GPUQ_SCHEMATHESIS_EXAMPLES:-200}
VENV=$ROOT/target/schemathesis-venv
REPORTS=$ROOT/target/schemathesis

log() { printf '[schemathesis] %s\n' "$*" >&2; }
rnd() { head -c "${1:-16}" /dev/urandom | od -An -tx1 | tr -d ' \n'; }

# --- Tools ----------------------------------------------------------------------------------
apt_install() { as_root apt-get update -q && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"; }
command -v curl >/dev/null 2>&1 || apt_install curl
command -v python3 >/dev/null 2>&1 || apt_install python3
python3 -m venv --help >/dev/null 2>&1 || apt_install python3-venv

if [ -z "${GPUQ_BIN_DIR:-}" ]; then
  log "cargo build -p gpuq-dispatcher --bin gpuq-dispatcher"
  cargo build --locked -q -p gpuq-dispatcher --bin gpuq-dispatcher
fi
BIN=${GPUQ_BIN_DIR:-$ROOT/target/debug}
[ -x "$BIN/gpuq-dispatcher" ] || { log "no $BIN/gpuq-dispatcher"; exit 1; }

# A venv made by another Python (or a broken one) is made again.
if ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
  rm -rf "$VENV"
  log "creating virtualenv $VENV"
  python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install -q --disable-pip-version-check -r "$HERE/requirements.txt"
log "$("$VENV/bin/schemathesis" --version)"

# --- Stack ----------------------------------------------------------------------------------
TMP=$(mktemp -d /tmp/gpuq-schemathesis.XXXXXX)
DB_NAME="gpuq_schema_$(rnd 6)"
NS="schema-$(rnd 4)"
DISPATCHER_PID=
cleanup() {
  if [ -n "$DISPATCHER_PID" ]; then
    kill "$DISPATCHER_PID" 2>/dev/null || true
    wait "$DISPATCHER_PID" 2>/dev/null || true
  fi
  psql "$PG_BASE_URL" -qAtc "DROP DATABASE IF EXISTS $DB_NAME WITH (FORCE)" >/dev/null 2>&1 ||
    psql "$PG_BASE_URL" -qAtc "DROP DATABASE IF EXISTS $DB_NAME" >/dev/null 2>&1 || true
  redis-cli -u "$REDIS_URL" --no-auth-warning --scan --pattern "$NS:*" 2>/dev/null |
    xargs -r redis-cli -u "$REDIS_URL" --no-auth-warning DEL >/dev/null 2>&1 || true
  if [ "${GPUQ_SCHEMATHESIS_KEEP:-0}" = 1 ]; then log "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

psql "$PG_BASE_URL" -qAtc "CREATE DATABASE $DB_NAME" >/dev/null
export DATABASE_URL="${PG_BASE_URL%/*}/$DB_NAME"
export GPUQ_REDIS_NAMESPACE=$NS GPUQ_JWT_SECRET=$(rnd 32) GPUQ_MIGRATE=false
# Generated enqueues must reach the handler, not the per-user limits.
export GPUQ__LIMITS__REQUESTS_PER_SECOND=100000 GPUQ__LIMITS__BURST=100000 \
  GPUQ__LIMITS__MAX_ACTIVE_JOBS_PER_USER=1000000
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export GPUQ_LISTEN=127.0.0.1:$PORT
API="http://127.0.0.1:$PORT"

"$BIN/gpuq-dispatcher" migrate >"$TMP/migrate.log" 2>&1 || { tail -5 "$TMP/migrate.log" >&2; exit 1; }
"$BIN/gpuq-dispatcher" serve >"$TMP/dispatcher.log" 2>&1 &
DISPATCHER_PID=$!
for _ in $(seq 150); do curl -fsS "$API/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
curl -fsS "$API/readyz" >/dev/null || { log "dispatcher not ready"; tail -20 "$TMP/dispatcher.log" >&2; exit 1; }
log "dispatcher on $API (database $DB_NAME, namespace $NS)"

USER_ID=$(python3 -c 'import uuid; print(uuid.uuid4())')
ADMIN_ID=$(python3 -c 'import uuid; print(uuid.uuid4())')
GPUQ_ST_USER_TOKEN=$("$BIN/gpuq-dispatcher" mint-token "$USER_ID" 3600 2>/dev/null)
GPUQ_ST_ADMIN_TOKEN=$("$BIN/gpuq-dispatcher" mint-token "$ADMIN_ID" 3600 service_role 2>/dev/null)
export GPUQ_ST_USER_TOKEN GPUQ_ST_ADMIN_TOKEN

# --- schemathesis ---------------------------------------------------------------------------
mkdir -p "$REPORTS"
status=0
(cd "$TMP" && "$VENV/bin/schemathesis" --config-file "$HERE/schemathesis.toml" run "$API/openapi.json" \
  --checks all --seed "$SEED" --max-examples "$EXAMPLES" --no-color \
  --report junit,ndjson --report-dir "$REPORTS") || status=$?
if [ "$status" -ne 0 ]; then
  log "schemathesis failed ($status); dispatcher log tail:"
  tail -8 "$TMP/dispatcher.log" | sed 's/\x1b\[[0-9;]*m//g' | cut -c1-300 | sed 's/^/    /' >&2
fi
exit "$status"
