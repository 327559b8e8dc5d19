#!/usr/bin/env bash
# Runs every check and test gpuq has: formatting, clippy, and the whole test suite against
# real Redis and PostgreSQL (started, or installed, when needed). This is the command the
# README gives and CI runs.
set -euo pipefail
cd "$(dirname "$0")/../.."

# shellcheck source=services.sh
source deploy/local/services.sh

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install Rust (https://rustup.rs) first" >&2
  exit 1
fi

echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked

echo "== queue suite and end-to-end test on a Redis Cluster"
bash deploy/tests/cluster.sh

echo "== dropping the test databases the suite created (gpuq_service::testkit names them)"
psql "$DATABASE_URL" -qAtc "SELECT datname FROM pg_database WHERE datname ~ '^gpuq_test_[0-9a-f]{8}_[0-9]+_[0-9a-f]{32}$'" |
  while read -r db; do psql "$DATABASE_URL" -qc "DROP DATABASE IF EXISTS \"$db\"" >/dev/null 2>&1 || true; done || true

echo "== deployment manifests and Redis ACL"
# Python tools for the checks below: a fresh Debian may lack curl, python3, venv or PyYAML.
apt_install() { as_root apt-get update -q && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"; }
command -v curl >/dev/null 2>&1 || apt_install curl
command -v python3 >/dev/null 2>&1 || apt_install python3
python3 -c 'import ensurepip' 2>/dev/null || apt_install python3-venv
python3 -c 'import yaml' 2>/dev/null || python3 -m pip install -q pyyaml 2>/dev/null || apt_install python3-yaml
python3 deploy/tests/check_manifests.py
bash deploy/tests/check_redis_acl.sh
# `--all-targets` resolves features as `cargo test` did (dev-dependencies on), so this only
# links the binaries of that build; `--bins` alone would compile a second set of crates.
cargo build --locked --workspace --all-targets
echo "== schemathesis against the dispatcher's /openapi.json (every check)"
GPUQ_BIN_DIR=target/debug bash deploy/tests/schemathesis/run.sh
echo "== the protocol worker (plain Python, no SDK) against the real services (docs/protocol.md)"
bash deploy/tests/protocol-worker/run_check.sh
echo "== the Python SDK: the gpuq-worker wheel (maturin, reusing the build above), pytest and the example worker against the real services"
bash worker-sdk/python/run_tests.sh
echo "== chaos: 300 jobs while workers, services and Redis are killed (docs/reliability.md)"
bash deploy/tests/chaos.sh --short
echo "== real clients: promtool, the admin dashboard and a supabase-js page in headless Chromium (screenshot: target/ci-artifacts/dashboard.png)"
bash deploy/tests/clients/run.sh
