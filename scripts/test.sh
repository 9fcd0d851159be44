#!/usr/bin/env bash
# The test suite as CI runs it: a throwaway PostgreSQL on loopback (for the `postgres` tests),
# then ruff, mypy and pytest (unit, integration, end-to-end, doctests) without `slow` and `gpu`.
# Usage: bash scripts/test.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

if [ -z "${DELTAMEM_TEST_POSTGRES_URL:-}" ]; then
  if pg_env=$(bash scripts/pg_test_server.sh 2>/tmp/deltamem-pg.log); then
    eval "$pg_env"
    trap 'bash scripts/pg_test_server.sh stop "$PG_TEST_DIR" >/dev/null 2>&1 || true' EXIT
    echo "PostgreSQL for tests: $DELTAMEM_TEST_POSTGRES_URL"
  else
    echo "warning: could not start PostgreSQL; the postgres tests will skip" >&2
    cat /tmp/deltamem-pg.log >&2 || true
  fi
fi

.venv/bin/ruff check .
.venv/bin/mypy agent storage workers migrations benchmarks client
.venv/bin/python -m pytest -q -m "not slow and not gpu" --doctest-modules agent storage workers client benchmarks/lm_eval.py tests "$@"
# the two-node scale-out test shuts down the session's Ray, so it runs in its own process
.venv/bin/python -m pytest -q -m slow tests/test_workers_cluster.py
