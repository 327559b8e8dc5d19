#!/usr/bin/env bash
# A local Redis Cluster for tests: three masters on loopback, no replicas, nothing persisted.
#
#   bash deploy/local/redis-cluster.sh start   # idempotent; prints the REDIS_URL to use
#   bash deploy/local/redis-cluster.sh stop
#   bash deploy/local/redis-cluster.sh url     # the REDIS_URL, without starting anything
#
# Ports: GPUQ_CLUSTER_PORTS (default "7000 7001 7002"; each also uses port + 10000 for the
# cluster bus). Each node keeps its nodes.conf and log under target/redis-cluster/<port>/.
# redis-server is installed from Debian packages when absent (as deploy/local/services.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."

read -r -a ports <<<"${GPUQ_CLUSTER_PORTS:-7000 7001 7002}"
root="$PWD/target/redis-cluster"

log() { printf '[redis-cluster] %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

install_missing() {
  if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
    log "installing redis-server from Debian packages"
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server
  fi
}

cli() { # port, command... (no retries, short timeout)
  local port=$1
  shift
  timeout 5 redis-cli -h 127.0.0.1 -p "$port" "$@"
}

up() { cli "$1" ping >/dev/null 2>&1; }

ours() { # true when the Redis on this port is a node this script started (its data dir)
  [ "$(cli "$1" config get dir 2>/dev/null | sed -n 2p)" = "$root/$1" ]
}

cluster_ok() { # true when every node answers and reports a healthy cluster of all nodes
  local port info
  for port in "${ports[@]}"; do
    info=$(cli "$port" cluster info 2>/dev/null) || return 1
    grep -q '^cluster_state:ok' <<<"$info" || return 1
    grep -q "^cluster_known_nodes:${#ports[@]}" <<<"$info" || return 1
  done
}

url() {
  local port seeds=()
  for port in "${ports[@]}"; do seeds+=("127.0.0.1:$port"); done
  local IFS=,
  printf 'redis+cluster://%s\n' "${seeds[*]}"
}

stop() {
  local port
  for port in "${ports[@]}"; do
    if up "$port"; then
      if ! ours "$port"; then
        log "port $port is used by a Redis this script did not start; leaving it alone"
        exit 1
      fi
      log "stopping node $port"
      cli "$port" shutdown nosave >/dev/null 2>&1 || true
    fi
  done
  for port in "${ports[@]}"; do
    for _ in $(seq 50); do
      up "$port" || break
      sleep 0.1
    done
    if up "$port"; then log "node $port did not stop"; exit 1; fi
  done
}

start_node() {
  local port=$1 dir="$root/$1"
  # A fresh node: a nodes.conf left from an earlier cluster would make it rejoin that one.
  rm -rf "$dir"
  mkdir -p "$dir"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$port" \
    --cluster-enabled yes --cluster-config-file "$dir/nodes.conf" --cluster-node-timeout 5000 \
    --save '' --appendonly no --dir "$dir" --logfile "$dir/redis.log" --pidfile "$dir/redis.pid"
  for _ in $(seq 50); do
    up "$port" && return
    sleep 0.1
  done
  log "node $port did not start; see $dir/redis.log"
  exit 1
}

start() {
  install_missing
  if cluster_ok; then
    log "cluster already up on ports ${ports[*]}"
    url
    return
  fi
  # Anything half-built (a node down, a cluster never created) is started over: the
  # cluster holds test data only.
  stop
  local port seeds=()
  for port in "${ports[@]}"; do
    start_node "$port"
    seeds+=("127.0.0.1:$port")
  done
  log "creating the cluster"
  redis-cli --cluster create "${seeds[@]}" --cluster-replicas 0 --cluster-yes >"$root/create.log" 2>&1 ||
    { log "cluster create failed; see $root/create.log"; exit 1; }
  for _ in $(seq 100); do
    if cluster_ok; then
      log "cluster up on ports ${ports[*]}"
      url
      return
    fi
    sleep 0.1
  done
  log "cluster did not reach cluster_state:ok"
  exit 1
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  url) url ;;
  *)
    echo "usage: $0 start|stop|url" >&2
    exit 2
    ;;
esac
