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

# `--workspace` with named test targets reuses the build `cargo test --workspace` made (a
# `-p` build resolves dependency features differently and recompiles them).
echo "== queue suite (queue/tests/queue) and worker end-to-end test against $REDIS_URL"
cargo test --locked --workspace --test queue --test end_to_end
