#!/usr/bin/env bash
# Real clients against the real services: promtool reads both services' /metrics; the
# dispatcher's admin dashboard (/admin/) in a browser; then an app's page on another origin
# that enqueues with @supabase/supabase-js and follows its job with the browser's
# EventSource (supabase.test.mjs) until a real demo worker completed it.
#
#   bash deploy/tests/clients/run.sh
#
# Starts the real dispatcher and callback service (target/debug binaries; built when missing
# or older than their sources; the dispatcher allows the test page's origin with
# GPUQ_CORS_ORIGINS) on free ports against a fresh PostgreSQL database and a
# throwaway redis-server under a random namespace, with a random admin token, JWT secret
# and callback secret. Then it makes real queue state over the real interfaces:
#   - two jobs dead-lettered: enqueued over HTTP, claimed with claim_jobs.lua (redis-cli
#     EVAL, as a worker in any language does) and failed permanently by a signed callback;
#   - one job held by a live "worker" (claimed, lease renewed with extend_lease.lua);
#   - one job left waiting.
# and runs dashboard.test.mjs: headless Debian chromium (/usr/bin/chromium) driven by
# playwright-core from npm (no browser download), which logs in, watches the queued job
# appear, looks it up, requeues one dead job and deletes the other, and saves screenshots
# to target/ci-artifacts/: dashboard-dead-letters.png (before the requeue) and
# dashboard.png (the end state). Then a demo worker starts and supabase.test.mjs runs.
#
# Needs: psql, curl, openssl, python3, redis-server + redis-cli, node >= 20 + npm, and
# chromium and promtool (Debian's chromium and prometheus packages, installed with apt-get
# when missing and running as root).
# Environment:
#   GPUQ_BIN_DIR        binaries to use as they are (default target/debug, built as needed)
#   PG_BASE_URL         default postgres://postgres:postgres@127.0.0.1:5432/postgres; a
#                       database gpuq_dash_<random> is created and dropped
#   GPUQ_DASHBOARD_REDIS_URL  use this Redis instead of a throwaway one (the run's random
#                       namespace is deleted at the end)
#   CHROMIUM            browser binary (default /usr/bin/chromium)
#   GPUQ_DASHBOARD_ARTIFACTS  screenshot folder (default target/ci-artifacts)
#   GPUQ_DASHBOARD_KEEP=1     keep the temporary folder (logs) for inspection
#   GPUQ_DASHBOARD_HEADED=1   show the browser (needs a display)
# Prints "N passed, M failed"; exits non-zero on any failure.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
BIN=${GPUQ_BIN_DIR:-$ROOT/target/debug}
PG_BASE_URL=${PG_BASE_URL:-postgres://postgres:postgres@127.0.0.1:5432/postgres}
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
ARTIFACTS=${GPUQ_DASHBOARD_ARTIFACTS:-$ROOT/target/ci-artifacts}

# shellcheck source=../lib/checks.sh
source "$HERE/../lib/checks.sh"
log() { printf '[clients] %s\n' "$*"; }
node_result() { # log file: adds its RESULT line to the totals; fails on a non-zero exit without one
  local p f
  p=$(sed -n 's/^RESULT passed=\([0-9]*\) failed=\([0-9]*\)$/\1/p' "$1")
  f=$(sed -n 's/^RESULT passed=\([0-9]*\) failed=\([0-9]*\)$/\2/p' "$1")
  passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0}))
  if [ -z "$p" ]; then bad "$(basename "$1" .log) printed no RESULT line (exit $2)"
  elif [ "$2" != 0 ] && [ "${f:-0}" = 0 ]; then bad "$(basename "$1" .log) exited $2"; fi
}

json_get() { # python expression over `d` (the JSON on stdin)
  python3 -c "import json,sys; d=json.load(sys.stdin); print($1)" 2>/dev/null
}

TMP=$(mktemp -d /tmp/gpuq-clients.XXXXXX)
PIDS=()
DB_NAME=
NS=
REDIS_URL_USED=
cleanup() {
  stop_started
  if [ -n "${GPUQ_DASHBOARD_REDIS_URL:-}" ] && [ -n "$NS" ]; then
    redis-cli -u "$GPUQ_DASHBOARD_REDIS_URL" --no-auth-warning --scan --pattern "$NS:*" 2>/dev/null |
      xargs -r redis-cli -u "$GPUQ_DASHBOARD_REDIS_URL" --no-auth-warning DEL >/dev/null 2>&1
  fi
  if [ "${GPUQ_DASHBOARD_KEEP:-0}" = 1 ]; then echo "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- Tools ----------------------------------------------------------------------------------
for tool in psql curl openssl python3 redis-cli node npm; do
  command -v "$tool" >/dev/null || die "$tool is installed"
done
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' ||
  die "node >= 20 (playwright-core needs it); found $(node --version)"
if [ ! -x "$CHROMIUM" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing Debian's chromium"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
      >"$TMP/apt.log" 2>&1 || die "apt-get install chromium" "$(tail -3 "$TMP/apt.log")"
  fi
  [ -x "$CHROMIUM" ] || die "chromium at $CHROMIUM (apt-get install chromium)"
fi
ok "browser: $("$CHROMIUM" --version 2>/dev/null | head -1)"
if ! command -v promtool >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  log "installing Debian's prometheus (for promtool)"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; } \
    >"$TMP/apt-prometheus.log" 2>&1 || die "apt-get install prometheus" "$(tail -3 "$TMP/apt-prometheus.log")"
fi
command -v promtool >/dev/null || die "promtool is installed (apt-get install prometheus)"
ok "promtool: $(promtool --version 2>&1 | head -1)"

# playwright-core and @supabase/supabase-js, pinned in package.json / package-lock.json, into
# ./node_modules (gitignored).
installed() { json_get 'd["version"]' < "$HERE/node_modules/$1/package.json" 2>/dev/null || true; }
pinned() { json_get "d[\"dependencies\"][\"$1\"]" < "$HERE/package.json"; }
for pkg in playwright-core @supabase/supabase-js; do
  if [ "$(installed "$pkg")" != "$(pinned "$pkg")" ]; then
    log "npm ci ($pkg $(pinned "$pkg"))"
    (cd "$HERE" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error) \
      >"$TMP/npm.log" 2>&1 || die "npm ci in deploy/tests/clients" "$(tail -5 "$TMP/npm.log")"
  fi
  check "$pkg $(installed "$pkg") installed (pinned $(pinned "$pkg"))" test "$(installed "$pkg")" = "$(pinned "$pkg")"
done

# --- Binaries -------------------------------------------------------------------------------
if [ -z "${GPUQ_BIN_DIR:-}" ]; then
  stale=
  newer() { # binary, crate folders...: a source of one of them changed after the binary was linked
    local bin=$1; shift
    [ -n "$(find "$@" -newer "$bin" -type f \( -path '*/src/*' -o -path '*/lua/*' -o -path '*/migrations/*' \
      -o -path '*/admin-ui/*' -o -name Cargo.toml \) -print -quit 2>/dev/null)" ]
  }
  for b in gpuq-dispatcher gpuq-callback gpuq-demo-worker; do [ -x "$BIN/$b" ] || stale=1; done
  if [ -z "$stale" ]; then
    newer "$BIN/gpuq-dispatcher" "$ROOT/dispatcher" "$ROOT/service" "$ROOT/queue" "$ROOT/schemas" && stale=1
    newer "$BIN/gpuq-callback" "$ROOT/callback" "$ROOT/service" "$ROOT/queue" "$ROOT/schemas" && stale=1
    newer "$BIN/gpuq-demo-worker" "$ROOT/worker-sdk" "$ROOT/service" "$ROOT/queue" "$ROOT/schemas" && stale=1
  fi
  if [ -n "$stale" ]; then
    # The feature set of `cargo test` (as deploy/local/test.sh builds): reuses that build.
    log "cargo build --workspace --all-targets"
    (cd "$ROOT" && cargo build --locked --workspace --all-targets) >"$TMP/build.log" 2>&1 ||
      die "cargo build --workspace --all-targets" "$(tail -15 "$TMP/build.log")"
  fi
fi
for b in gpuq-dispatcher gpuq-callback gpuq-demo-worker; do
  [ -x "$BIN/$b" ] || die "binary $BIN/$b exists"
done

# --- PostgreSQL -----------------------------------------------------------------------------
DB_NAME="gpuq_dash_$(rnd 6)"
psql "$PG_BASE_URL" -qAtc "CREATE DATABASE $DB_NAME" >/dev/null 2>"$TMP/psql.log" ||
  { DB_NAME=; die "create a database on $PG_BASE_URL" "$(cat "$TMP/psql.log")"; }
export DATABASE_URL="${PG_BASE_URL%/*}/$DB_NAME"
sql() { psql "$DATABASE_URL" -qAtc "$1"; }

# --- Redis ----------------------------------------------------------------------------------
NS="dash-$(rnd 4)"
if [ -n "${GPUQ_DASHBOARD_REDIS_URL:-}" ]; then
  REDIS_URL_USED=$GPUQ_DASHBOARD_REDIS_URL
else
  command -v redis-server >/dev/null || die "redis-server is installed (or set GPUQ_DASHBOARD_REDIS_URL)"
  REDIS_PORT=$(free_port)
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$TMP" \
    --logfile "$TMP/redis.log" &
  PIDS+=($!)
  REDIS_URL_USED="redis://127.0.0.1:$REDIS_PORT"
  for _ in $(seq 50); do redis-cli -u "$REDIS_URL_USED" ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
fi
rcli() { redis-cli -u "$REDIS_URL_USED" --no-auth-warning "$@"; }
rcli ping 2>/dev/null | grep -q PONG || die "Redis answers at $REDIS_URL_USED" "$(tail -3 "$TMP/redis.log" 2>/dev/null)"
ok "Redis at $REDIS_URL_USED, namespace $NS"

# --- Services -------------------------------------------------------------------------------
export REDIS_URL=$REDIS_URL_USED GPUQ_REDIS_NAMESPACE=$NS
export GPUQ_JWT_SECRET=$(rnd 32) GPUQ_ADMIN_TOKEN=$(rnd 24) GPUQ_CALLBACK_SECRET=$(rnd 32)
# Reconcile every second during the run: dead-lettered jobs must stay in the dead set for
# the admin (a regression here once emptied it within one interval).
export GPUQ__QUEUE__RECONCILE_INTERVAL_MS=${GPUQ__QUEUE__RECONCILE_INTERVAL_MS:-1000}
DISPATCHER_PORT=$(free_port)
CALLBACK_PORT=$(free_port)
# The app page of supabase.test.mjs: another origin (another port), allowed by the dispatcher.
PAGE_PORT=$(free_port)
export GPUQ_CORS_ORIGINS="http://127.0.0.1:$PAGE_PORT"
mkdir -p "$TMP/logs"
"$BIN/gpuq-dispatcher" migrate >"$TMP/logs/migrate.log" 2>&1 ||
  die "gpuq-dispatcher migrate" "$(tail -5 "$TMP/logs/migrate.log")"
start() { # name, command... (environment set by the caller)
  local name=$1; shift
  "$@" >"$TMP/logs/$name.log" 2>&1 &
  PIDS+=($!)
}
GPUQ_LISTEN=127.0.0.1:$DISPATCHER_PORT GPUQ_MIGRATE=false start dispatcher "$BIN/gpuq-dispatcher" serve
GPUQ_LISTEN=127.0.0.1:$CALLBACK_PORT GPUQ_MIGRATE=false start callback "$BIN/gpuq-callback"
API="http://127.0.0.1:$DISPATCHER_PORT"
CB="http://127.0.0.1:$CALLBACK_PORT"
ready() { for _ in $(seq 150); do curl -fsS "$1" >/dev/null 2>&1 && return 0; sleep 0.2; done; return 1; }
ready "$API/readyz" || die "dispatcher ready on $API/readyz" "$(tail -5 "$TMP/logs/dispatcher.log")"
ready "$CB/readyz" || die "callback ready on $CB/readyz" "$(tail -5 "$TMP/logs/callback.log")"
ok "dispatcher on $API and callback on $CB are ready"

# --- Prometheus -----------------------------------------------------------------------------
# promtool reads the classic text format (what a scrape asking for text/plain gets); its
# lint (help text, counter names, units) must find nothing on either service.
for svc in "dispatcher $API" "callback $CB"; do
  set -- $svc
  ctype=$(curl -sS -o "$TMP/metrics-$1.txt" -w '%{content_type}' -H 'Accept: text/plain;version=0.0.4' "$2/metrics")
  check "$1 answers text/plain;version=0.0.4 when asked ($ctype)" test "$ctype" = "text/plain; version=0.0.4; charset=utf-8"
  lint=$(promtool check metrics <"$TMP/metrics-$1.txt" 2>&1); rc=$?
  if [ "$rc" = 0 ] && [ -z "$lint" ]; then ok "promtool check metrics passes on the $1's /metrics ($(grep -c '^# TYPE' "$TMP/metrics-$1.txt") families)"
  else bad "promtool check metrics on the $1's /metrics (rc $rc)" "$lint"; fi
  ctype=$(curl -sS -o /dev/null -w '%{content_type}' -H 'Accept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5' "$2/metrics")
  check "$1 answers OpenMetrics to Prometheus' Accept ($ctype)" test "$ctype" = "application/openmetrics-text; version=1.0.0; charset=utf-8"
done

code=$(curl -s -o "$TMP/page.html" -w '%{http_code} %{content_type}' "$API/admin/")
check "GET /admin/ serves the page without credentials ($code)" test "$code" = "200 text/html; charset=utf-8"
code=$(curl -s -o /dev/null -w '%{http_code}' "$API/admin/queues")
check "the data behind it needs a token (GET /admin/queues without one: $code)" test "$code" = 401

# --- Queue state ----------------------------------------------------------------------------
USER_ID=$(python3 -c 'import uuid; print(uuid.uuid4())')
USER_TOKEN=$("$BIN/gpuq-dispatcher" mint-token "$USER_ID" 3600 2>>"$TMP/logs/mint.log") ||
  die "gpuq-dispatcher mint-token" "$(tail -3 "$TMP/logs/mint.log")"
enqueue() { # prompt -> job id (sdxl_image_fast on sdxl_queue)
  local answer
  answer=$(curl -sS -X POST "$API/v1/jobs" -H "Authorization: Bearer $USER_TOKEN" \
    -H 'Content-Type: application/json' \
    -d "{\"jobType\":\"sdxl_image_fast\",\"metadata\":{\"prompt\":\"$1\",\"num_images\":1}}")
  printf '%s' "$answer" | json_get 'd["job"]["id"] if d.get("success") else ""' ||
    printf '%s\n' "$answer" >&2
}
K="$NS:{sdxl_queue}:"
CONSUMER="dashboard-e2e-$(rnd 3)"
lua() { cat "$ROOT/queue/lua/prelude.lua" "$ROOT/queue/lua/$1.lua"; }
claim() { # max jobs, lease ms -> job ids, one a line; routed as docs/protocol.md says: no
  # fence token, no slots, lustify_sdxl loaded, any model runnable, 60 s bound, 48 GiB
  rcli --raw EVAL "$(lua claim_jobs)" 11 "${K}wait:high" "${K}wait:normal" "${K}tenants:high" \
    "${K}tenants:normal" "${K}vtime" "${K}jobs" "${K}meta" "${K}leases" "${K}consumers" \
    "${K}signal" "${K}slots" "$CONSUMER" "$2" "$1" 256 "" "" lustify_sdxl '*' 60000 48 |
    awk 'NR % 3 == 1'
}
callback() { # JSON body -> HTTP status; signed as docs/protocol.md says
  local ts sig
  ts=$(date +%s)
  sig=$(printf '%s.%s' "$ts" "$1" | openssl dgst -sha256 -hmac "$GPUQ_CALLBACK_SECRET" -r | cut -d' ' -f1)
  curl -sS -o "$TMP/callback-answer.json" -w '%{http_code}' -X POST "$CB/v1/callback" \
    -H 'Content-Type: application/json' -H "X-Callback-Timestamp: $ts" \
    -H "X-Callback-Signature: sha256=$sig" --data-binary "$1"
}

# Two jobs die: a worker claims them and reports a permanent failure. The first error holds
# markup, which the dashboard must show as text.
DEAD_REQUEUE=$(enqueue "a lighthouse at dusk (dies, then requeued)")
DEAD_DISCARD=$(enqueue "a lighthouse at dawn (dies, then deleted)")
[ -n "$DEAD_REQUEUE" ] && [ -n "$DEAD_DISCARD" ] || die "enqueue two jobs over HTTP"
claimed=$(claim 2 60000 | tr '\n' ' ')
check "claim_jobs.lua hands both to $CONSUMER, oldest first ($claimed)" test "$claimed" = "$DEAD_REQUEUE $DEAD_DISCARD "
ERROR_REQUEUE='CUDA out of memory <img src=x id=xss-probe> while denoising (step 12/30)'
ERROR_DISCARD='model weights checksum mismatch'
for pair in "$DEAD_REQUEUE|$ERROR_REQUEUE" "$DEAD_DISCARD|$ERROR_DISCARD"; do
  id=${pair%%|*}
  body=$(python3 -c 'import json,sys; print(json.dumps({"jobId": sys.argv[1], "status": "failed", "workerId": sys.argv[2], "attempt": 1, "error": {"message": sys.argv[3], "retryable": False}}))' \
    "$id" "$CONSUMER" "${pair#*|}")
  code=$(callback "$body")
  check "signed 'failed' callback (retryable: false) for $id accepted ($code)" test "${code:0:1}" = 2
done
dead=$(rcli ZCARD "${K}dead")
check "both are in the dead-letter set $K""dead ($dead)" test "$dead" = 2
rows=$(sql "SELECT count(*) FROM jobs WHERE id IN ('$DEAD_REQUEUE', '$DEAD_DISCARD') AND status = 'failed'")
check "and their rows are failed in PostgreSQL ($rows)" test "$rows" = 2

# One job is held by a live worker (lease renewed every 3 s, as the SDK would).
HELD=$(enqueue "a lighthouse at noon (held by a worker)")
got=$(claim 1 30000)
check "$CONSUMER holds $HELD" test -n "$HELD" -a "$got" = "$HELD"
code=$(callback "{\"jobId\":\"$HELD\",\"status\":\"processing\",\"workerId\":\"$CONSUMER\",\"attempt\":1}")
check "signed 'processing' callback accepted ($code)" test "${code:0:1}" = 2
EXTEND=$(lua extend_lease)
( while sleep 3; do
    rcli EVAL "$EXTEND" 4 "${K}meta" "${K}leases" "${K}consumers" "${K}cancelled" "$HELD" "$CONSUMER" 30000 >/dev/null 2>&1
  done ) &
PIDS+=($!)

# The worker advertises its GPU and what it has loaded (ADR 0020), as any worker may.
PROFILE='{"gpu":"NVIDIA L40S","vramGb":48,"slots":1,"loaded":["lustify_sdxl"],"loads":1}'
check "Redis: $CONSUMER advertises its profile" rcli SET "${K}profile:$CONSUMER" "$PROFILE" PX 600000

# One job waits.
QUEUED=$(enqueue "a lighthouse at midnight (waits)")
[ -n "$QUEUED" ] || die "enqueue the waiting job over HTTP"
waiting=$(rcli LLEN "${K}wait:normal")
check "one job waits in ${K}wait:normal ($waiting)" test "$waiting" = 1

# The live worker is quarantined, as the callback service records it after its attempts
# failed across different jobs: a worker_quarantine row (what the dashboard lists), and the
# field of the queue's share-state hash that refuses its claims (the reconciler would write
# it within a second anyway). Its lease renewals go on. The dashboard releases it.
QUARANTINE_REASON='its last 2 attempts failed, on 2 different jobs'
QUARANTINE_ERROR='CUDA error: an illegal memory access <img src=x id=quarantine-probe> was encountered'
evidence=$(python3 -c 'import json,sys,datetime; now=datetime.datetime.now(datetime.timezone.utc).isoformat(); print(json.dumps([{"jobId": j, "attempt": 1, "jobType": "sdxl_image_fast", "finishedAt": now, "error": e} for j, e in ((sys.argv[1], sys.argv[3]), (sys.argv[2], "CUDA error: unspecified launch failure"))]))' \
  "$DEAD_REQUEUE" "$DEAD_DISCARD" "$QUARANTINE_ERROR")
check "psql: $CONSUMER quarantined in worker_quarantine" \
  sql "INSERT INTO worker_quarantine (queue, consumer, reason, evidence) VALUES ('sdxl_queue', '$CONSUMER', \$q\$$QUARANTINE_REASON\$q\$, \$q\$$evidence\$q\$::jsonb)"
rcli HSET "${K}vtime" "quarantine:$CONSUMER" "$QUARANTINE_REASON" >/dev/null
check "Redis: and its claims are refused (${K}vtime quarantine:$CONSUMER)" \
  test "$(rcli HEXISTS "${K}vtime" "quarantine:$CONSUMER")" = 1

# --- The browser ----------------------------------------------------------------------------
mkdir -p "$ARTIFACTS"
rm -f "$ARTIFACTS/dashboard.png" "$ARTIFACTS/dashboard-dead-letters.png"
# A tenant with settings of its own, for the dashboard's tenants table.
TENANT=dash-tenant-$(rnd 4)
code=$(curl -sS -o /dev/null -w '%{http_code}' -X PUT "$API/admin/tenants/$TENANT" \
  -H "Authorization: Bearer $GPUQ_ADMIN_TOKEN" -H 'Content-Type: application/json' \
  -d '{"weight": 3, "maxInFlight": 2}')
check "PUT /admin/tenants/$TENANT sets a weight and a cap ($code)" test "$code" = 200
export DASH_TENANT=$TENANT
export DASH_API=$API DASH_ADMIN_TOKEN=$GPUQ_ADMIN_TOKEN DASH_USER_TOKEN=$USER_TOKEN \
  DASH_QUEUED_JOB=$QUEUED DASH_HELD_JOB=$HELD DASH_CONSUMER=$CONSUMER \
  DASH_DEAD_REQUEUE=$DEAD_REQUEUE DASH_DEAD_DISCARD=$DEAD_DISCARD \
  DASH_ERROR_REQUEUE=$ERROR_REQUEUE DASH_ERROR_DISCARD=$ERROR_DISCARD \
  DASH_QUARANTINE_REASON=$QUARANTINE_REASON DASH_QUARANTINE_ERROR=$QUARANTINE_ERROR \
  DASH_CHROMIUM=$CHROMIUM DASH_SCREENSHOT="$ARTIFACTS/dashboard.png" DASH_TMP=$TMP
log "running dashboard.test.mjs in headless chromium"
node "$HERE/dashboard.test.mjs" 2>&1 | tee "$TMP/node.log"
node_result "$TMP/node.log" "${PIPESTATUS[0]}"

# --- After the browser: the state it changed, seen from the other side ----------------------
row=$(sql "SELECT status || '|' || attempts FROM jobs WHERE id = '$DEAD_REQUEUE'")
check "psql: the requeued job is queued again with its attempts reset ($row)" test "$row" = "queued|0"
check "Redis: the requeued job waits again and the deleted one is gone from the dead set" \
  test "$(rcli ZSCORE "${K}dead" "$DEAD_REQUEUE")$(rcli ZSCORE "${K}dead" "$DEAD_DISCARD")$(rcli HEXISTS "${K}jobs" "$DEAD_DISCARD")" = 0
check "Redis: the requeued job waits again in its tenant's list ${K}tenants:normal:<user>" \
  bash -c "redis-cli -u '$REDIS_URL_USED' --no-auth-warning --scan --pattern '${K}tenants:normal:*' |
    xargs -r -I%KEY% redis-cli -u '$REDIS_URL_USED' --no-auth-warning LRANGE %KEY% 0 -1 | grep -q '|$DEAD_REQUEUE\$'"
row=$(sql "SELECT count(*) FILTER (WHERE released_at IS NULL) || '|' || count(released_by) FROM worker_quarantine WHERE consumer = '$CONSUMER'")
check "psql: the released worker has no active quarantine, its release recorded ($row)" test "$row" = "0|1"
check "Redis: and may claim again (no ${K}vtime quarantine:$CONSUMER)" \
  test "$(rcli HEXISTS "${K}vtime" "quarantine:$CONSUMER")" = 0
if [ -f "$ARTIFACTS/dashboard.png" ] && file "$ARTIFACTS/dashboard.png" | grep -q 'PNG image data'; then
  ok "screenshot saved: $ARTIFACTS/dashboard.png ($(file -b "$ARTIFACTS/dashboard.png" | cut -d, -f2 | tr -d ' '))"
else
  bad "screenshot saved at $ARTIFACTS/dashboard.png"
fi
# --- Clients generated from /openapi.json -----------------------------------------------------
# Each enqueues, reads and cancels a job with the code its generator wrote.
GEN=$HERE/.generated
rm -rf "$GEN"; mkdir -p "$GEN/py"
curl -fsS "$API/openapi.json" -o "$GEN/openapi.json" || die "GET /openapi.json"
CLIENT_TOKEN=$("$BIN/gpuq-dispatcher" mint-token "$(python3 -c 'import uuid; print(uuid.uuid4())')" 3600 2>>"$TMP/logs/mint.log")
VENV=$ROOT/target/clients-venv
[ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c '' 2>/dev/null || { rm -rf "$VENV"; python3 -m venv "$VENV"; }
"$VENV/bin/pip" install -q --disable-pip-version-check -r "$HERE/requirements.txt" >"$TMP/pip.log" 2>&1 ||
  die "pip install -r deploy/tests/clients/requirements.txt" "$(tail -3 "$TMP/pip.log")"
if PATH="$VENV/bin:$PATH" openapi-python-client generate --path "$GEN/openapi.json" \
    --output-path "$GEN/py/gpuq_client" --meta none >"$TMP/opc.log" 2>&1 &&
    ! grep -qE 'Unable to|removal of' "$TMP/opc.log"; then
  ok "openapi-python-client generated a client from /openapi.json without dropping a schema"
else
  bad "openapi-python-client generates a client from /openapi.json" "$(grep -E 'Unable|removal|Error' "$TMP/opc.log" | head -5)"
fi
PYTHONPATH=$GEN/py "$VENV/bin/python" "$HERE/generated_python.py" "$API" "$CLIENT_TOKEN" 2>&1 | tee "$TMP/generated_python.log"
node_result "$TMP/generated_python.log" "${PIPESTATUS[0]}"
cp "$HERE/generated.ts" "$GEN/generated.ts"
if "$HERE/node_modules/.bin/openapi-typescript" "$GEN/openapi.json" -o "$GEN/schema.d.ts" >"$TMP/ots.log" 2>&1 &&
    "$HERE/node_modules/.bin/tsc" --strict --module nodenext --target es2022 --skipLibCheck \
      --outDir "$GEN" "$GEN/generated.ts" >"$TMP/tsc.log" 2>&1; then
  ok "openapi-typescript's types of /openapi.json accept generated.ts (tsc --strict)"
  node "$GEN/generated.js" "$API" "$CLIENT_TOKEN" 2>&1 | tee "$TMP/generated_ts.log"
  node_result "$TMP/generated_ts.log" "${PIPESTATUS[0]}"
else
  bad "openapi-typescript + tsc --strict on generated.ts" "$(tail -8 "$TMP/ots.log" "$TMP/tsc.log")"
fi

# --- An app's page on another origin: supabase-js and EventSource -----------------------------
mkdir -p "$TMP/storage"
REDIS_URL=$REDIS_URL_USED GPUQ_QUEUE=sdxl_queue GPUQ_CALLBACK_URL="$CB/v1/callback" \
  GPUQ_STORAGE_DIR="$TMP/storage" GPUQ_DEMO_TIME_SCALE=0.05 GPUQ_CONCURRENCY=4 \
  start worker "$BIN/gpuq-demo-worker"
BROWSER_USER=$(python3 -c 'import uuid; print(uuid.uuid4())')
BROWSER_USER_TOKEN=$("$BIN/gpuq-dispatcher" mint-token "$BROWSER_USER" 3600 2>>"$TMP/logs/mint.log") ||
  die "gpuq-dispatcher mint-token" "$(tail -3 "$TMP/logs/mint.log")"
log "running supabase.test.mjs in headless chromium (page on http://127.0.0.1:$PAGE_PORT)"
BROWSER_API=$API BROWSER_USER_TOKEN=$BROWSER_USER_TOKEN BROWSER_PAGE_PORT=$PAGE_PORT \
  BROWSER_CHROMIUM=$CHROMIUM node "$HERE/supabase.test.mjs" 2>&1 | tee "$TMP/node-supabase.log"
node_result "$TMP/node-supabase.log" "${PIPESTATUS[0]}"
BROWSER_JOB=$(sed -n 's/^JOB //p' "$TMP/node-supabase.log")
row=$(sql "SELECT j.status || '|' || j.user_id || '|' || (SELECT count(*) FROM images i WHERE i.job_id = j.id) FROM jobs j WHERE j.id = '${BROWSER_JOB:-00000000-0000-0000-0000-000000000000}'")
check "psql: the page's job is completed, owned by the page's user, with its image ($row)" \
  test "$row" = "completed|$BROWSER_USER|1"

if [ "$failed" -gt 0 ]; then
  log "dispatcher log tail:"; tail -20 "$TMP/logs/dispatcher.log" | sed 's/\x1b\[[0-9;]*m//g; s/^/    /'
fi
finish
