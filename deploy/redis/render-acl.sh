#!/usr/bin/env bash
# Prints a Redis ACL file like deploy/redis/users.acl, with your passwords stored as SHA-256
# hashes (the file never holds a plaintext password). One variable per user:
#   GPUQ_REDIS_PASSWORD_ADMIN  GPUQ_REDIS_PASSWORD_DISPATCHER  GPUQ_REDIS_PASSWORD_CALLBACK
#   GPUQ_REDIS_PASSWORD_KEDA   GPUQ_REDIS_PASSWORD_WORKER_<QUEUE> (e.g. ..._WORKER_SDXL_QUEUE)
# Optional: GPUQ_REDIS_NAMESPACE (default gpuq), GPUQ_QUEUES (default "sdxl_queue wan_queue").
# Worker users are named worker_<queue without the _queue suffix> (worker_sdxl, worker_wan).
#
#   bash deploy/redis/render-acl.sh > /secure/place/users.acl
#   redis-cli --user admin --pass ... ACL LOAD      # after replacing the mounted file
set -euo pipefail

ns=${GPUQ_REDIS_NAMESPACE:-gpuq}
queues=${GPUQ_QUEUES:-sdxl_queue wan_queue}

hash() { # variable name -> "#<sha256>" of its value; fails when unset or empty
  local value=${!1:-}
  [ -n "$value" ] || { echo "render-acl: $1 must be set" >&2; exit 1; }
  printf '#%s' "$(printf '%s' "$value" | sha256sum | cut -d' ' -f1)"
}

service_rules="resetchannels &$ns:events ~$ns:* -@all +@read +@write +@list +@hash +@sortedset +@set +@string +@stream +@keyspace +@connection +@scripting -@dangerous +ping +time +publish +subscribe +unsubscribe -script|flush -script|kill -function|flush -function|delete -function|restore"
worker_cmds="+fcall +evalsha +eval +script|load +blpop +ping +time +rpop +rpush +lpush +llen +lrem +lindex +lrange +hget +hmget +hset +hdel +hexists +hincrby +zadd +zrem +zscore +zmscore +zrange +zcount +exists +sismember +srem"

echo "user default off resetkeys resetchannels -@all"
echo "user admin on $(hash GPUQ_REDIS_PASSWORD_ADMIN) ~* &* +@all"
echo "user dispatcher on $(hash GPUQ_REDIS_PASSWORD_DISPATCHER) $service_rules"
echo "user callback on $(hash GPUQ_REDIS_PASSWORD_CALLBACK) $service_rules"
for q in $queues; do
  var="GPUQ_REDIS_PASSWORD_WORKER_$(printf '%s' "$q" | tr 'a-z-' 'A-Z_')"
  # SET only on the worker's profile keys (a selector): a worker cannot overwrite job data.
  echo "user worker_${q%_queue} on $(hash "$var") resetchannels ~$ns:{$q}:* -@all $worker_cmds (~$ns:{$q}:profile:* +set +del)"
done
echo "user keda on $(hash GPUQ_REDIS_PASSWORD_KEDA) resetchannels ~$ns:{*}:wait:* -@all +ping +eval +type +llen"
