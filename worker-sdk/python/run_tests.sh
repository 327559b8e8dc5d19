#!/usr/bin/env bash
# Builds the gpuq-worker wheel with maturin, installs it into a fresh virtual environment and
# runs the package's pytest suite (tests/) and the example worker (examples/python-worker/)
# against the real stack: PostgreSQL, a throwaway redis-server with the per-user ACL, the
# dispatcher and the callback service. What it starts, it stops (trap), its database included.
#
#   bash worker-sdk/python/run_tests.sh [pytest args...]
#
# Uses existing service binaries (GPUQ_BIN_DIR, default target/debug; build them with
#   cargo build -p gpuq-dispatcher -p gpuq-callback --bins).
# The wheel is built with the dev profile (GPUQ_WHEEL_PROFILE; `release` for a wheel to
# ship), reusing the workspace's build; it is left in target/wheels/.
# PostgreSQL: PG_BASE_URL (default postgres://postgres:postgres@127.0.0.1:5432/postgres).
# Prints pytest's summary and "N passed, M failed"; exits non-zero on any failure.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BIN=${GPUQ_BIN_DIR:-$ROOT/target/debug}
PG_BASE_URL=${PG_BASE_URL:-postgres://postgres:postgres@127.0.0.1:5432/postgres}
PROFILE=${GPUQ_WHEEL_PROFILE:-dev}

# shellcheck source=../../deploy/tests/lib/checks.sh
source "$ROOT/deploy/tests/lib/checks.sh"
# shellcheck source=../../deploy/tests/lib/stack.sh
source "$ROOT/deploy/tests/lib/stack.sh"

KEEP=${GPUQ_PYSDK_KEEP:-0}
stack_init pysdk
command -v python3 >/dev/null || die "python3 is installed"

# --- The wheel, in a fresh virtual environment ------------------------------------------------
VENV="$TMP/venv"
python3 -m venv "$VENV" || die "python3 -m venv works (Debian: apt-get install python3-venv)"
PIP=("$VENV/bin/pip" install -q --disable-pip-version-check)
"${PIP[@]}" 'maturin>=1.9,<2' 'pytest>=8,<9' 'requests>=2.31,<3' 'mypy>=1.18,<2' 'twine>=6,<7' 'standardwebhooks>=1.0,<2' -r "$ROOT/examples/python-worker/requirements.txt" ||
  die "pip install maturin, pytest, requests, mypy, twine and the example's requirements"
rm -f "$ROOT"/target/wheels/gpuq_worker-*.whl
(cd "$HERE" && "$VENV/bin/maturin" build --quiet --profile "$PROFILE" --out "$ROOT/target/wheels") >"$TMP/maturin.log" 2>&1 ||
  die "maturin builds the wheel" "$(tail -15 "$TMP/maturin.log")"
WHEEL=$(ls "$ROOT"/target/wheels/gpuq_worker-*.whl)
ok "built $(basename "$WHEEL")"
check "twine check: the wheel's metadata is what PyPI accepts" "$VENV/bin/twine" check --strict "$WHEEL"
"${PIP[@]}" "$WHEEL" || die "pip install the wheel"
ok "pip install $(basename "$WHEEL") into a fresh virtual environment"
# The stubs are what editors and mypy see: stubtest compares them with the module itself.
check "mypy stubtest: the type stubs match the native module" \
  bash -c "cd '$TMP' && '$VENV/bin/python' -m mypy.stubtest gpuq_worker >'$TMP/stubtest.log' 2>&1 || { tail -20 '$TMP/stubtest.log'; false; }"
check "mypy --strict: the example worker type-checks against the stubs" \
  "$VENV/bin/python" -m mypy --strict --cache-dir "$TMP/mypy-cache" "$ROOT/examples/python-worker/worker.py"

# The README's Node snippet verifies deliveries with npm's standardwebhooks; the webhook
# test runs it on real deliveries (node and npm are needed by the clients suite anyway).
command -v node >/dev/null && command -v npm >/dev/null || die "node and npm are installed"
npm install --prefix "$TMP/node" --no-audit --no-fund --loglevel=error standardwebhooks@1.1.1 >"$TMP/npm.log" 2>&1 ||
  die "npm install standardwebhooks" "$(tail -5 "$TMP/npm.log")"
export GPUQ_TEST_NODE_PATH="$TMP/node/node_modules"

# --- The stack ----------------------------------------------------------------------------------
# Retries come back after about a second instead of five, so the retry test stays short.
export GPUQ__QUEUE__BACKOFF_BASE_MS=1000
stack_up pysdk
USER_ID=$(python3 -c 'import uuid; print(uuid.uuid4())')
TOKEN=$("$BIN/gpuq-dispatcher" mint-token "$USER_ID" 3600 2>>"$TMP/logs/mint.log") || die "gpuq-dispatcher mint-token"

# --- pytest ---------------------------------------------------------------------------------------
export GPUQ_TEST_API=$API GPUQ_TEST_CALLBACK=$CB GPUQ_TEST_TOKEN=$TOKEN GPUQ_TEST_USER=$USER_ID \
  GPUQ_TEST_STORAGE=$STORAGE GPUQ_TEST_REDIS_SDXL=$(url_for worker_sdxl) GPUQ_TEST_REDIS_WAN=$(url_for worker_wan) \
  GPUQ_TEST_REDIS_ADMIN=$ADMIN_URL GPUQ_TEST_EXAMPLE="$ROOT/examples/python-worker/worker.py"
if (cd "$HERE" && "$VENV/bin/python" -m pytest -p no:cacheprovider -q tests "$@"); then
  ok "pytest: the Python SDK against the real stack"
else
  bad "pytest: the Python SDK against the real stack" "worker logs: GPUQ_PYSDK_KEEP=1 keeps $TMP"
fi
finish
