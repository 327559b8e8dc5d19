#!/bin/bash
# gpuq-healthcheck [path]: exits 0 when GET <path> (default /healthz) on this container's
# own listener answers 200. The port comes from GPUQ_LISTEN (host:port), as the services read
# it. Pure bash (/dev/tcp): the runtime image carries no curl.
path=${1:-/healthz}
listen=${GPUQ_LISTEN:-0.0.0.0:8080}
port=${listen##*:}
exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
printf 'GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' "$path" >&3
IFS= read -r -t 3 status <&3 || exit 1
case $status in
  "HTTP/1.1 200"* | "HTTP/1.0 200"*) exit 0 ;;
  *) echo "unhealthy: $status" >&2; exit 1 ;;
esac
