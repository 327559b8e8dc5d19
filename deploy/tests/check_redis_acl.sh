#!/usr/bin/env bash
# Proves deploy/redis/users.acl (and the output of deploy/redis/render-acl.sh) on a real,
# throwaway redis-server: each worker user can run every worker script of the protocol
# (claim, heartbeat, fail, release, ack, BLPOP wake-up) on its own queue's keys and is
# refused the other queue's keys, the event streams and everything else; the KEDA user runs
# the exact script KEDA's Redis scaler sends (deploy/tests/keda/list_length.lua, copied from
# kedacore/keda pkg/scalers/redis_scaler.go) and can write nothing; the services can do their work; anonymous clients
# get nothing. Needs redis-server and redis-cli (7.0+). Prints "N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
LUA="$ROOT/queue/lua"

passed=0
failed=0
ok() { passed=$((passed + 1)); printf 'ok    %s\n' "$1"; }
bad() { failed=$((failed + 1)); printf 'FAIL  %s\n' "$1"; [ -n "${2:-}" ] && printf '      got: %s\n' "$2"; }

command -v redis-server >/dev/null && command -v redis-cli >/dev/null || {
  echo "redis-server and redis-cli are required"; echo "0 passed, 1 failed"; exit 1; }

TMP=$(mktemp -d)
PID=
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
  rm -rf "$TMP"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_redis() { # acl file
  cp "$1" "$TMP/users.acl"
  PORT=$(free_port)
  redis-server --port "$PORT" --bind 127.0.0.1 --aclfile "$TMP/users.acl" --save '' \
    --appendonly no --dir "$TMP" --logfile "$TMP/redis.log" &
  PID=$!
  for _ in $(seq 50); do
    redis-cli -p "$PORT" --no-auth-warning --user admin --pass "$ADMIN_PASS" ping 2>/dev/null | grep -q PONG && return 0
    sleep 0.1
  done
  echo "redis-server did not start with $1:"; tail -5 "$TMP/redis.log"
  return 1
}
stop_redis() { kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; PID=; }

as() { # user password command...
  local user=$1 pass=$2; shift 2
  redis-cli -p "$PORT" --no-auth-warning --user "$user" --pass "$pass" "$@" 2>&1
}
script() { cat "$LUA/prelude.lua" "$LUA/$1.lua"; }

expect() { # name, expected regex, output
  if printf '%s' "$3" | grep -Eq "$2"; then ok "$1"; else bad "$1" "$3"; fi
}
refused() { # name, output: an ACL refusal (a script's inner call is refused with "ERR ... can't
  # ..." before Redis 7.2, "ERR ACL failure in script: ..." since)
  expect "$1" "NOPERM|NOAUTH|user executing the script can't|ACL failure in script" "$2"
}

K() { printf 'gpuq:{%s}:%s' "$1" "$2"; }

dryrun_args() { # command, key -> a well-formed invocation for ACL DRYRUN
  local k=$2
  case $1 in
    TIME | PING) echo "$1" ;;
    GET | MGET | LLEN | ZCARD | HLEN | HKEYS | TYPE | RPOP) echo "$1 $k" ;;
    HINCRBY) echo "HINCRBY $k 1 1" ;;
    HSCAN | SSCAN | ZSCAN) echo "$1 $k 0" ;;
    SET | LPUSH | RPUSH | SADD | SREM | SISMEMBER | ZSCORE | ZMSCORE | ZREM | HGET | HDEL | HEXISTS | HMGET | EXPIRE | PEXPIRE | INCRBY) echo "$1 $k 1" ;;
    INCR | DECR | DEL | EXISTS | UNLINK) echo "$1 $k" ;;
    SETEX | PSETEX) echo "$1 $k 1 v" ;;
    HSET | HSETNX | ZADD | LREM | LINDEX | ZCOUNT | ZRANGEBYSCORE | ZREMRANGEBYSCORE | ZRANGE | XRANGE | LRANGE) echo "$1 $k 0 1" | sed 's/^LINDEX \(.*\) 0 1$/LINDEX \1 0/' ;;
    XADD) echo "XADD $k * e 1" ;;
    PUBLISH | SUBSCRIBE) echo "$1 gpuq:events 1" | sed 's/^SUBSCRIBE gpuq:events 1$/SUBSCRIBE gpuq:events/' ;;
    XREAD) echo "XREAD STREAMS $k 0" ;;
    BLPOP) echo "BLPOP $k 1" ;;
    EVAL) echo "EVAL return(1) 1 $k" ;;
    EVALSHA) echo "EVALSHA 0000000000000000000000000000000000000000 1 $k" ;;
    FCALL) echo "FCALL claim_jobs_0 1 $k" ;;
    FUNCTION) echo "FUNCTION LOAD lib" ;;
    *) echo "UNKNOWN-COMMAND-$1-ADD-IT-TO-check_redis_acl.sh" ;;
  esac
}

enqueue() { # user pass queue job_id -> prints the enqueue reply
  local q=$3 id=$4
  local env="{\"job_id\":\"$id\",\"queue\":\"$q\",\"max_attempts\":3,\"attempt\":0}"
  as "$1" "$2" EVAL "$(script enqueue_job)" 10 $(lane_keys "$q") "$(K "$q" finish:high)" \
    "$(K "$q" finish:normal)" "$(K "$q" jobs)" "$(K "$q" signal)" "$(K "$q" meta)" \
    "$id" "$env" 0 86400 256 0 normal acl-tenant 1000
}
# The five keys every script that touches waiting jobs declares first (docs/protocol.md).
lane_keys() { local q=$1; echo "$(K "$q" wait:high) $(K "$q" wait:normal) $(K "$q" tenants:high) $(K "$q" tenants:normal) $(K "$q" vtime)"; }
claim_keys() { local q=$1; echo "$(lane_keys "$q") $(K "$q" jobs) $(K "$q" meta) $(K "$q" leases) $(K "$q" consumers) $(K "$q" signal) $(K "$q" slots)"; }

run_suite() { # label; users: admin dispatcher callback worker_sdxl worker_wan keda with *_PASS set
  local label=$1 q=sdxl_queue other=wan_queue c=acl-test-consumer out sha
  echo "== $label"

  # Services.
  out=$(enqueue dispatcher "$DISPATCHER_PASS" $q job-1); expect "[$label] dispatcher enqueues on sdxl_queue" '^1' "$out"
  out=$(enqueue dispatcher "$DISPATCHER_PASS" $other job-w); expect "[$label] dispatcher enqueues on wan_queue" '^1' "$out"
  out=$(as dispatcher "$DISPATCHER_PASS" XADD 'gpuq:events:{job-1}' '*' e '{}'); expect "[$label] dispatcher writes event streams" '^[0-9]+-[0-9]+' "$out"
  out=$(as callback "$CALLBACK_PASS" XRANGE 'gpuq:events:{job-1}' - +); expect "[$label] callback reads event streams" 'e' "$out"
  refused "[$label] dispatcher may not FLUSHALL" "$(as dispatcher "$DISPATCHER_PASS" FLUSHALL)"
  refused "[$label] dispatcher may not KEYS" "$(as dispatcher "$DISPATCHER_PASS" KEYS '*')"
  refused "[$label] callback may not touch keys outside the namespace" "$(as callback "$CALLBACK_PASS" GET other:key)"
  refused "[$label] callback may not CONFIG SET" "$(as callback "$CALLBACK_PASS" CONFIG SET save '')"

  # Worker on its own queue: the whole protocol.
  out=$(as worker_sdxl "$SDXL_PASS" PING); expect "[$label] worker_sdxl PING" 'PONG' "$out"
  out=$(as worker_sdxl "$SDXL_PASS" EVAL "$(script claim_jobs)" 11 $(claim_keys $q) $c 30000 1 256)
  expect "[$label] worker_sdxl claims on sdxl_queue (EVAL claim_jobs.lua)" 'job-1' "$out"
  sha=$(as worker_sdxl "$SDXL_PASS" SCRIPT LOAD "$(script extend_lease)")
  expect "[$label] worker_sdxl SCRIPT LOAD" '^[0-9a-f]{40}$' "$sha"
  out=$(as worker_sdxl "$SDXL_PASS" EVALSHA "$sha" 4 "$(K $q meta)" "$(K $q leases)" "$(K $q consumers)" "$(K $q cancelled)" job-1 $c 30000)
  expect "[$label] worker_sdxl heartbeats (EVALSHA extend_lease.lua) -> 1 held" '^1$' "$out"
  out=$(as worker_sdxl "$SDXL_PASS" EVAL "$(script fail_job)" 11 "$(K $q jobs)" "$(K $q meta)" "$(K $q leases)" "$(K $q delayed)" "$(K $q dead)" "$(K $q errors)" "$(K $q cancelled)" "$(K $q vtime)" "$(K $q tenants:high)" "$(K $q tenants:normal)" "$(K $q signal)" job-1 $c 1 1000 'boom')
  expect "[$label] worker_sdxl fails an attempt (fail_job.lua) -> retry" '^1' "$out"
  enqueue dispatcher "$DISPATCHER_PASS" $q job-2 >/dev/null
  as worker_sdxl "$SDXL_PASS" EVAL "$(script claim_jobs)" 11 $(claim_keys $q) $c 30000 1 256 >/dev/null
  out=$(as worker_sdxl "$SDXL_PASS" EVAL "$(script release_job)" 10 $(lane_keys $q) "$(K $q jobs)" "$(K $q meta)" "$(K $q leases)" "$(K $q signal)" "$(K $q cancelled)" job-2 $c 256)
  expect "[$label] worker_sdxl releases a job (release_job.lua) -> 1" '^1$' "$out"
  out=$(as worker_sdxl "$SDXL_PASS" BLPOP "$(K $q signal)" 1); expect "[$label] worker_sdxl BLPOPs its signal list" 'signal' "$out"
  as worker_sdxl "$SDXL_PASS" EVAL "$(script claim_jobs)" 11 $(claim_keys $q) $c 30000 1 256 >/dev/null
  out=$(as worker_sdxl "$SDXL_PASS" EVAL "$(script ack_job)" 13 $(lane_keys $q) "$(K $q jobs)" "$(K $q meta)" "$(K $q leases)" "$(K $q delayed)" "$(K $q dead)" "$(K $q cancelled)" "$(K $q errors)" "$(K $q signal)" job-2 $c)
  expect "[$label] worker_sdxl acks (ack_job.lua) -> 1" '^1$' "$out"

  # Worker on anything else.
  refused "[$label] worker_sdxl refused claim on wan_queue keys" "$(as worker_sdxl "$SDXL_PASS" EVAL "$(script claim_jobs)" 11 $(claim_keys $other) $c 30000 1 256)"
  refused "[$label] worker_sdxl refused EVALSHA on wan_queue keys" "$(as worker_sdxl "$SDXL_PASS" EVALSHA "$sha" 4 "$(K $other meta)" "$(K $other leases)" "$(K $other consumers)" "$(K $other cancelled)" job-w $c 30000)"
  refused "[$label] worker_sdxl refused BLPOP on wan_queue signal" "$(as worker_sdxl "$SDXL_PASS" BLPOP "$(K $other signal)" 1)"
  refused "[$label] worker_sdxl refused LLEN on wan_queue" "$(as worker_sdxl "$SDXL_PASS" LLEN "$(K $other wait:normal)")"
  refused "[$label] worker_sdxl refused event streams" "$(as worker_sdxl "$SDXL_PASS" XADD 'gpuq:events:{job-1}' '*' e x)"
  refused "[$label] worker_sdxl refused direct DEL of its own keys" "$(as worker_sdxl "$SDXL_PASS" DEL "$(K $q jobs)")"
  refused "[$label] worker_sdxl refused KEYS" "$(as worker_sdxl "$SDXL_PASS" KEYS '*')"
  refused "[$label] worker_sdxl refused FLUSHALL" "$(as worker_sdxl "$SDXL_PASS" FLUSHALL)"
  refused "[$label] worker_sdxl refused a script that calls DEL on its own keys" "$(as worker_sdxl "$SDXL_PASS" EVAL "return redis.call('DEL', KEYS[1])" 1 "$(K $q jobs)")"
  refused "[$label] worker_sdxl refused a script reaching undeclared keys" "$(as worker_sdxl "$SDXL_PASS" EVAL "return redis.call('HGET', 'gpuq:{wan_queue}:jobs', 'job-w')" 1 "$(K $q jobs)")"
  # The profile a worker advertises (ADR 0020): SET and DEL on its own profile keys only.
  out=$(as worker_sdxl "$SDXL_PASS" SET "$(K $q profile:$c)" '{"slots":1}' PX 30000)
  expect "[$label] worker_sdxl advertises its profile (SET profile:<consumer>)" '^OK$' "$out"
  out=$(as worker_sdxl "$SDXL_PASS" DEL "$(K $q profile:$c)")
  expect "[$label] worker_sdxl withdraws its profile (DEL profile:<consumer>)" '^1$' "$out"
  refused "[$label] worker_sdxl refused SET on its queue's other keys" "$(as worker_sdxl "$SDXL_PASS" SET "$(K $q idem:k)" job-x)"
  refused "[$label] worker_sdxl refused SET on wan_queue profiles" "$(as worker_sdxl "$SDXL_PASS" SET "$(K $other profile:$c)" x)"
  out=$(as worker_wan "$WAN_PASS" EVAL "$(script claim_jobs)" 11 $(claim_keys $other) c2 30000 1 256)
  expect "[$label] worker_wan claims on wan_queue" 'job-w' "$out"
  refused "[$label] worker_wan refused claim on sdxl_queue keys" "$(as worker_wan "$WAN_PASS" EVAL "$(script claim_jobs)" 11 $(claim_keys $q) c2 30000 1 256)"

  # KEDA.
  enqueue dispatcher "$DISPATCHER_PASS" $q job-3 >/dev/null
  out=$(as keda "$KEDA_PASS" LLEN "$(K $q wait:normal)"); expect "[$label] keda reads LLEN of gpuq:{sdxl_queue}:wait:normal" '^1$' "$out"
  local keda_script; keda_script=$(cat "$ROOT/deploy/tests/keda/list_length.lua")
  out=$(as keda "$KEDA_PASS" EVAL "$keda_script" 1 "$(K $q wait:normal)"); expect "[$label] KEDA's own scaler script reads the backlog of gpuq:{sdxl_queue}:wait:normal" '^1$' "$out"
  out=$(as keda "$KEDA_PASS" EVAL "$keda_script" 1 "$(K $other wait:high)"); expect "[$label] KEDA's script reads an empty lane as 0" '^0$' "$out"
  refused "[$label] keda's EVAL may not write" "$(as keda "$KEDA_PASS" EVAL "return redis.call('lpush', KEYS[1], 'x')" 1 "$(K $q wait:normal)")"
  refused "[$label] keda's EVAL may not pop" "$(as keda "$KEDA_PASS" EVAL "return redis.call('rpop', KEYS[1])" 1 "$(K $q wait:normal)")"
  refused "[$label] keda's EVAL may not read the jobs hash" "$(as keda "$KEDA_PASS" EVAL "return redis.call('hlen', KEYS[1])" 1 "$(K $q jobs)")"
  out=$(as keda "$KEDA_PASS" TYPE "$(K $q wait:normal)"); expect "[$label] keda reads TYPE of the waiting list" '^list$' "$out"
  out=$(as keda "$KEDA_PASS" LLEN "$(K $other wait:high)"); expect "[$label] keda reads LLEN of gpuq:{wan_queue}:wait:high" '^0$' "$out"
  refused "[$label] keda refused LPUSH" "$(as keda "$KEDA_PASS" LPUSH "$(K $q wait:normal)" x)"
  refused "[$label] keda refused the jobs hash" "$(as keda "$KEDA_PASS" HLEN "$(K $q jobs)")"

  # Every command any script runs (grepped from queue/lua, so a new command in a script fails
  # here until the ACL grants it), and every command the Rust services send directly.
  local cmd user k
  for cmd in $(cat "$LUA"/*.lua "$ROOT"/*/lua/*.lua 2>/dev/null | grep -o "redis.call('[A-Z]*'" | cut -d"'" -f2 | sort -u) \
    $(grep -rhoE 'cmd\("[A-Z]+"\)' "$ROOT"/queue/src "$ROOT"/dispatcher/src "$ROOT"/callback/src | cut -d'"' -f2 | sort -u) XRANGE XREAD SUBSCRIBE; do
    for user in dispatcher callback; do
      out=$(as admin "$ADMIN_PASS" ACL DRYRUN $user $(dryrun_args "$cmd" "$(K $q jobs)"))
      expect "[$label] $user may run $cmd on gpuq keys" '^OK$' "$out"
    done
  done
  for cmd in $(cat "$LUA"/prelude.lua "$LUA"/{claim_jobs,extend_lease,ack_job,ack_jobs,fail_job,release_job}.lua | grep -o "redis.call('[A-Z]*'" | cut -d"'" -f2 | sort -u) FCALL EVALSHA EVAL BLPOP PING; do
    out=$(as admin "$ADMIN_PASS" ACL DRYRUN worker_sdxl $(dryrun_args "$cmd" "$(K $q jobs)"))
    expect "[$label] worker_sdxl may run $cmd on its queue" '^OK$' "$out"
    if [ "$cmd" != TIME ] && [ "$cmd" != PING ]; then
      out=$(as admin "$ADMIN_PASS" ACL DRYRUN worker_sdxl $(dryrun_args "$cmd" "$(K $other jobs)"))
      expect "[$label] worker_sdxl may not run $cmd on wan_queue" "no permissions|can't" "$out"
    fi
  done

  # Code in Redis: the services load the library (ADR 0013); a worker may only call it.
  refused "[$label] worker_sdxl may not load code into Redis (FUNCTION LOAD)" "$(as worker_sdxl "$SDXL_PASS" FUNCTION LOAD "$(printf '#!lua name=planted\nredis.register_function(\"planted\", function() return 1 end)')")"
  out=$(as dispatcher "$DISPATCHER_PASS" FUNCTION LOAD REPLACE "$(printf '#!lua name=acl_probe\nredis.register_function(\"acl_probe\", function() return 1 end)')"); expect "[$label] dispatcher loads a library" 'acl_probe' "$out"
  refused "[$label] dispatcher may not FUNCTION FLUSH" "$(as dispatcher "$DISPATCHER_PASS" FUNCTION FLUSH)"
  refused "[$label] callback may not FUNCTION DELETE" "$(as callback "$CALLBACK_PASS" FUNCTION DELETE acl_probe)"

  # Anonymous.
  refused "[$label] anonymous client refused" "$(redis-cli -p "$PORT" GET "$(K $q jobs)" 2>&1)"
}

# 1. The committed development file.
ADMIN_PASS=dev-admin-password DISPATCHER_PASS=dev-dispatcher-password CALLBACK_PASS=dev-callback-password
SDXL_PASS=dev-worker-sdxl-password WAN_PASS=dev-worker-wan-password KEDA_PASS=dev-keda-password
if start_redis deploy/redis/users.acl; then
  ok "redis-server $(redis-server --version | grep -o 'v=[0-9.]*') loads deploy/redis/users.acl"
  run_suite users.acl
  stop_redis
else
  bad "redis-server loads deploy/redis/users.acl"
fi

# 2. A file rendered with fresh passwords.
rnd() { head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
export GPUQ_REDIS_PASSWORD_ADMIN=$(rnd) GPUQ_REDIS_PASSWORD_DISPATCHER=$(rnd) GPUQ_REDIS_PASSWORD_CALLBACK=$(rnd) \
  GPUQ_REDIS_PASSWORD_KEDA=$(rnd) GPUQ_REDIS_PASSWORD_WORKER_SDXL_QUEUE=$(rnd) GPUQ_REDIS_PASSWORD_WORKER_WAN_QUEUE=$(rnd)
if bash deploy/redis/render-acl.sh > "$TMP/rendered.acl" && ! grep -q "$GPUQ_REDIS_PASSWORD_DISPATCHER" "$TMP/rendered.acl"; then
  ok "render-acl.sh writes hashes, never plaintext passwords"
else
  bad "render-acl.sh writes hashes, never plaintext passwords"
fi
if cmp -s <(sed 's/ [>#][^ ]*//' deploy/redis/users.acl) <(sed 's/ [>#][^ ]*//' "$TMP/rendered.acl"); then
  ok "render-acl.sh and users.acl grant the same rules"
else
  bad "render-acl.sh and users.acl grant the same rules" "$(diff <(sed 's/ [>#][^ ]*//' deploy/redis/users.acl) <(sed 's/ [>#][^ ]*//' "$TMP/rendered.acl"))"
fi
ADMIN_PASS=$GPUQ_REDIS_PASSWORD_ADMIN DISPATCHER_PASS=$GPUQ_REDIS_PASSWORD_DISPATCHER CALLBACK_PASS=$GPUQ_REDIS_PASSWORD_CALLBACK
SDXL_PASS=$GPUQ_REDIS_PASSWORD_WORKER_SDXL_QUEUE WAN_PASS=$GPUQ_REDIS_PASSWORD_WORKER_WAN_QUEUE KEDA_PASS=$GPUQ_REDIS_PASSWORD_KEDA
if start_redis "$TMP/rendered.acl"; then
  ok "redis-server loads the rendered ACL"
  run_suite rendered
  refused "[rendered] development password refused" "$(as dispatcher dev-dispatcher-password PING)"
  stop_redis
else
  bad "redis-server loads the rendered ACL"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
