"""Rebuilds do not depend on the BLAS thread count of the process that runs them.

OpenBLAS tiles a large GEMM differently with 2 threads than with 1, so the same delta applied
to the same float64 layer can give other bits. Learners commit with one thread; a rebuild in a
process with more (the API process forking an agent) must still reproduce the checksum. The
suite runs with ``OPENBLAS_NUM_THREADS=1`` (scripts/test.sh), so the check runs in a child
process that starts with two BLAS threads, against a real SQLite store built by Alembic.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, sys
import numpy as np
from threadpoolctl import threadpool_limits
from agent.memory.backend import blas_threads
from agent.memory.delta import Delta, LayerDelta, apply_delta, state_checksum
from storage.engine import Database
from storage.migrate import upgrade
from storage.repository import unit_of_work

url = sys.argv[1]
upgrade(url)
db = Database(url)
rng = np.random.default_rng(0)
d = 1100  # not a multiple of OpenBLAS's tiles: the edge tiles differ between thread counts
layers = {"S": rng.standard_normal((d, d))}
deltas = [Delta({"S": LayerDelta.factors(rng.standard_normal((10, d)), rng.standard_normal((10, d)))}, [])
          for _ in range(3)]
with threadpool_limits(limits=1, user_api="blas"):  # what a learner actor computes and records
    states = [layers]
    for dl in deltas:
        states.append(apply_delta(states[-1], dl))
with unit_of_work(db) as repo:
    tenant, _ = repo.create_tenant("t")
    agent = repo.create_agent(tenant.id, "a", {"kind": "classifier"}, layers, [],
                              state_checksum(layers, []))
    for v, dl in enumerate(deltas, start=1):
        repo.commit_version(agent.id, v - 1, "delta", delta=dl,
                            checksum=state_checksum(states[v], []))
plain = states[0]
for dl in deltas:  # the same arithmetic with this process's default threads
    plain = apply_delta(plain, dl)
with unit_of_work(db) as repo:
    got, _ = repo.load_state(agent.id, 3)  # raises ChecksumMismatch if the bits differ
print(json.dumps({"threads": blas_threads(),
                  "default_threads_differ": not np.array_equal(plain["S"], states[3]["S"]),
                  "rebuilt_equal": bool(np.array_equal(got["S"], states[3]["S"]))}))
"""


def test_rebuild_in_a_two_thread_process_matches_the_one_thread_learner(tmp_path: Path):
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "2", "OMP_NUM_THREADS": "2"}
    url = f"sqlite:///{tmp_path / 'store.db'}"
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", CHILD, url], env=env, cwd=root,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["rebuilt_equal"], res
    print(res)  # on a machine with 2 BLAS threads the default arithmetic differs (the hazard)
