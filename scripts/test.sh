#!/usr/bin/env bash
# The test suite as CI runs it: a throwaway PostgreSQL on loopback (for the `postgres` tests),
# then pytest (unit, integration, end-to-end, doctests) without the `slow` and `gpu` tests.
# Usage: bash scripts/test.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

pg_dir=""
cleanup() { [ -n "$pg_dir" ] && bash scripts/pg_test_server.sh stop "$pg_dir" >/dev/null 2>&1 || true; }
trap cleanup EXIT
if [ -z "${DELTAMEM_TEST_POSTGRES_URL:-}" ]; then
  if out=$(bash scripts/pg_test_server.sh start 2>/tmp/deltamem-pg.log); then
    pg_dir=$(echo "$out" | sed -n 's/^DIR=//p')
    export DELTAMEM_TEST_POSTGRES_URL=$(echo "$out" | sed -n 's/^URL=//p')
    echo "PostgreSQL for tests: $DELTAMEM_TEST_POSTGRES_URL"
  else
    echo "warning: could not start PostgreSQL; postgres tests will skip" >&2
    cat /tmp/deltamem-pg.log >&2 || true
  fi
fi

.venv/bin/ruff check .
.venv/bin/python -m pytest -q -m "not slow and not gpu" --doctest-modules agent storage workers tests "$@"
