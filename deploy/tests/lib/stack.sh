# The real gpuq stack for a test suite (sourced after checks.sh): a database of its own, a
# throwaway redis-server loaded with the per-user ACL deploy/redis/render-acl.sh renders for a
# namespace of its own, and the dispatcher and the callback service from $BIN. What it starts
# is in PIDS and DB_NAME, for stop_started.
#
#   stack_init NAME   a scratch directory TMP, PIDS=(), and a trap that stops what was
#                     started (KEEP=1 keeps TMP); checks the service binaries are built
#   stack_up NAME     (NAME: a short word naming the suite, in the database and the namespace)
#
# Needs ROOT, BIN and PG_BASE_URL. STACK_REDIS_URL=redis://... uses an existing Redis
# instead, without the ACL.
# Sets: DATABASE_URL, NS, ACL (1 with the ACL), API and CB (base URLs), STORAGE (a directory);
# functions sql, url_for USER (the Redis URL of an ACL user: dispatcher, callback, worker_sdxl,
# worker_wan, keda, admin), rcli (redis-cli as admin) and start NAME CMD... (a background
# process logging to $TMP/logs/NAME.log). Exports the services' secrets
# (GPUQ_JWT_SECRET, GPUQ_ADMIN_TOKEN, GPUQ_CALLBACK_SECRET) and GPUQ_REDIS_NAMESPACE.
stack_init() {
  TMP=$(mktemp -d "/tmp/gpuq-$1.XXXXXX")
  PIDS=()
  DB_NAME=
  trap 'stop_started; if [ "${KEEP:-0}" = 1 ]; then echo "kept $TMP"; else rm -rf "$TMP"; fi' EXIT
  trap 'exit 130' INT TERM
  local b
  for b in gpuq-dispatcher gpuq-callback; do
    [ -x "$BIN/$b" ] || die "binary $BIN/$b exists" "build it: cargo build -p gpuq-dispatcher -p gpuq-callback --bins"
  done
}

stack_up() {
  # --- PostgreSQL ---------------------------------------------------------------------------
  DB_NAME="gpuq_${1}_$(rnd 6)"
  psql "$PG_BASE_URL" -qAtc "CREATE DATABASE $DB_NAME" >/dev/null || { DB_NAME=; die "create database on $PG_BASE_URL"; }
  export DATABASE_URL="${PG_BASE_URL%/*}/$DB_NAME"
  sql() { psql "$DATABASE_URL" -qAtc "$1"; }

  # --- Redis --------------------------------------------------------------------------------
  NS="$1-$(rnd 4)"
  if [ -n "${STACK_REDIS_URL:-}" ]; then
    ACL=0
    url_for() { echo "$STACK_REDIS_URL"; }
    ADMIN_URL=$STACK_REDIS_URL
  else
    command -v redis-server >/dev/null || die "redis-server is installed (or set STACK_REDIS_URL)"
    ACL=1
    export GPUQ_REDIS_NAMESPACE=$NS
    export GPUQ_REDIS_PASSWORD_ADMIN=$(rnd) GPUQ_REDIS_PASSWORD_DISPATCHER=$(rnd) GPUQ_REDIS_PASSWORD_CALLBACK=$(rnd) \
      GPUQ_REDIS_PASSWORD_KEDA=$(rnd) GPUQ_REDIS_PASSWORD_WORKER_SDXL_QUEUE=$(rnd) GPUQ_REDIS_PASSWORD_WORKER_WAN_QUEUE=$(rnd)
    bash "$ROOT/deploy/redis/render-acl.sh" > "$TMP/users.acl" || die "render the Redis ACL"
    REDIS_PORT=$(free_port)
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --aclfile "$TMP/users.acl" --save '' \
      --appendonly no --dir "$TMP" --logfile "$TMP/redis.log" &
    PIDS+=($!)
    url_for() { # user -> redis URL
      local var="GPUQ_REDIS_PASSWORD_$(printf '%s' "$1" | tr 'a-z' 'A-Z')"
      [ "$1" = worker_sdxl ] && var=GPUQ_REDIS_PASSWORD_WORKER_SDXL_QUEUE
      [ "$1" = worker_wan ] && var=GPUQ_REDIS_PASSWORD_WORKER_WAN_QUEUE
      echo "redis://$1:${!var}@127.0.0.1:$REDIS_PORT"
    }
    ADMIN_URL=$(url_for admin)
    for _ in $(seq 50); do redis-cli -u "$ADMIN_URL" --no-auth-warning ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
    redis-cli -u "$ADMIN_URL" --no-auth-warning ping 2>/dev/null | grep -q PONG || die "redis-server starts with the rendered ACL" "$(tail -3 "$TMP/redis.log")"
    ok "throwaway redis-server on :$REDIS_PORT with a per-user ACL (namespace $NS)"
  fi
  rcli() { redis-cli -u "$ADMIN_URL" --no-auth-warning "$@"; }

  # --- Services -----------------------------------------------------------------------------
  export GPUQ_REDIS_NAMESPACE=$NS
  export GPUQ_JWT_SECRET=$(rnd 32) GPUQ_ADMIN_TOKEN=$(rnd 24) GPUQ_CALLBACK_SECRET=$(rnd 32)
  DISPATCHER_PORT=$(free_port)
  CALLBACK_PORT=$(free_port)
  STORAGE="$TMP/storage"
  mkdir -p "$STORAGE" "$TMP/logs"

  REDIS_URL=$(url_for dispatcher) "$BIN/gpuq-dispatcher" migrate >"$TMP/logs/migrate.log" 2>&1 ||
    die "gpuq-dispatcher migrate" "$(tail -5 "$TMP/logs/migrate.log")"
  start() { # name, command... (environment already set by the caller)
    local name=$1; shift
    "$@" >"$TMP/logs/$name.log" 2>&1 &
    PIDS+=($!)
  }
  REDIS_URL=$(url_for dispatcher) GPUQ_LISTEN=127.0.0.1:$DISPATCHER_PORT GPUQ_MIGRATE=false start dispatcher "$BIN/gpuq-dispatcher" serve
  REDIS_URL=$(url_for callback) GPUQ_LISTEN=127.0.0.1:$CALLBACK_PORT GPUQ_MIGRATE=false start callback "$BIN/gpuq-callback"
  API="http://127.0.0.1:$DISPATCHER_PORT"
  CB="http://127.0.0.1:$CALLBACK_PORT"
  ready() { for _ in $(seq 150); do curl -fsS "$1" >/dev/null 2>&1 && return 0; sleep 0.2; done; return 1; }
  ready "$API/readyz" || die "dispatcher ready on $API/readyz" "$(tail -5 "$TMP/logs/dispatcher.log")"
  ok "dispatcher /readyz"
  ready "$CB/readyz" || die "callback ready on $CB/readyz" "$(tail -5 "$TMP/logs/callback.log")"
  ok "callback /readyz"
}
