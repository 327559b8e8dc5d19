#!/usr/bin/env bash
# Runs the queue test suite and the worker end-to-end test against a local three-master
# Redis Cluster (deploy/local/redis-cluster.sh), with PostgreSQL as usual, then stops the
# cluster. The test files are the same as on a single node: only REDIS_URL changes.
set -euo pipefail
cd "$(dirname "$0")/../.."

# PostgreSQL and DATABASE_URL (this also starts the single-node Redis, unused here).
# shellcheck source=../local/services.sh
source deploy/local/services.sh

trap 'bash deploy/local/redis-cluster.sh stop' EXIT
REDIS_URL=$(bash deploy/local/redis-cluster.sh start)
export REDIS_URL

echo "== cargo test -p gpuq-queue against $REDIS_URL"
cargo test --locked -p gpuq-queue
echo "== worker end-to-end test against $REDIS_URL"
cargo test --locked -p gpuq-worker-sdk --test end_to_end
