# Shared by the shell test suites (sourced): "ok"/"FAIL" lines, the closing
# "N passed, M failed" line CI reads, and small helpers.
#   check NAME COMMAND...   ok when COMMAND succeeds
#   die NAME [DETAIL]       a failure the rest cannot run without: report and stop
#   stop_started            kill the PIDS array's processes, drop DB_NAME
passed=0
failed=0
ok() { passed=$((passed + 1)); printf 'ok    %s\n' "$1"; }
bad() { failed=$((failed + 1)); printf 'FAIL  %s\n' "$1"; [ -z "${2:-}" ] || printf '      %s\n' "$2"; }
check() { # name, command...
  local name=$1; shift
  if "$@"; then ok "$name"; else bad "$name"; fi
}
finish() { echo "$passed passed, $failed failed"; [ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]; exit $?; }
die() { bad "$1" "${2:-}"; finish; }
rnd() { head -c "${1:-16}" /dev/urandom | od -An -tx1 | tr -d ' \n'; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Teardown shared by the suites that start processes and a database of their own:
# kill and reap every pid in PIDS, then drop DB_NAME (when set) on PG_BASE_URL.
stop_started() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
  if [ -n "${DB_NAME:-}" ]; then
    psql "$PG_BASE_URL" -qAtc "DROP DATABASE IF EXISTS $DB_NAME WITH (FORCE)" >/dev/null 2>&1 ||
      psql "$PG_BASE_URL" -qAtc "DROP DATABASE IF EXISTS $DB_NAME" >/dev/null 2>&1
  fi
}
