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
