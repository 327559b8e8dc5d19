# Shared by the shell test suites (sourced): "ok"/"FAIL" lines, the closing
# "N passed, M failed" line CI reads, and small helpers.
#   check NAME COMMAND...   ok when COMMAND succeeds
#   die NAME [DETAIL]       a failure the rest cannot run without: report and stop
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
