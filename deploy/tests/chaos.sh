#!/usr/bin/env bash
# The chaos test (docs/reliability.md): jobs of all ten types through real dispatcher,
# callback and demo-worker processes while workers are SIGKILLed, the callback service and
# the dispatcher are restarted, the callback service stays away longer than a report's
# retries, a private PostgreSQL crashes and restarts, Redis restarts once with persistence
# off, misconfigured workers start and forged reports arrive. Fails unless every accepted
# job finished with exactly its rows, none lost, none run too often, and PostgreSQL and
# Redis agree with no job stuck.
#   bash deploy/tests/chaos.sh            # 2,000 jobs, release build (about 2 minutes)
#   bash deploy/tests/chaos.sh --short    # 300 jobs on the debug build (CI)
# Extra arguments go to `gpuq-bench chaos` (see --help). Logs: target/chaos/<run>/.
set -euo pipefail
cd "$(dirname "$0")/../.."

# shellcheck source=../local/services.sh
source deploy/local/services.sh
command -v redis-server >/dev/null 2>&1 || { echo "redis-server is required" >&2; exit 1; }

if [[ "${1:-}" == "--short" ]]; then
  shift
  # The feature set of `cargo test` (and of deploy/local/test.sh): reuses that build.
  cargo build --locked --workspace --all-targets
  exec ./target/debug/gpuq-bench chaos --bin-dir target/debug --jobs 300 --rate 30 --fault-every-ms 1500 "$@"
fi
cargo build --release --locked --workspace --bins
exec ./target/release/gpuq-bench chaos --bin-dir target/release "$@"
