#!/usr/bin/env bash
# Stops every process deploy/local/up.sh started (Redis and PostgreSQL are left running).
set -uo pipefail
cd "$(dirname "$0")/../.."
for pidfile in .gpuq/pids/*.pid; do
  [ -e "$pidfile" ] || continue
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
    echo "[down] stopped $(basename "$pidfile" .pid) ($pid)"
  fi
  rm -f "$pidfile"
done
