#!/usr/bin/env bash
# Runs every gpuq benchmark from a clean clone: starts (or installs) Redis and PostgreSQL,
# builds the release binaries, runs every `gpuq-bench` scenario with its default knobs, then
# the Criterion micro-benchmarks. Figures: JSON lines + a Markdown table on stdout, also
# saved to target/bench/all.md; Criterion's reports land in target/criterion/.
#   bash benches/run.sh            # everything (about 10 minutes on 2 cores)
#   bash benches/run.sh --no-micro # gpuq-bench scenarios only
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=../deploy/local/services.sh
source deploy/local/services.sh

cargo build --release --locked -p gpuq-benches -p gpuq-dispatcher -p gpuq-callback -p gpuq-demo-worker --bins
mkdir -p target/bench
./target/release/gpuq-bench all | tee target/bench/all.md
if [[ "${1:-}" != "--no-micro" ]]; then
  cargo bench --locked -p gpuq-benches --bench micro
fi
