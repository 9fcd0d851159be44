"""The learner's commit of a round of delta versions, in process (issue 16): CPU per round of
``--agents`` agents, one version each of ``--events`` events, through
``commit_version`` + ``record_quality`` per agent (the reference; what the learner did before)
beside ``commit_delta_group`` (storage/repository/version_groups.py, what it does now), each
round one transaction, on SQLite (a new file for each).

    .venv/bin/python -m benchmarks.version_commit [--agents 8] [--events 1,64] [--rounds 200]

Both paths store the same rows: tests/test_version_groups.py.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from typing import Any

import numpy as np


def _setup(url: str, agents: int, events: int, rounds: int) -> tuple[Any, list[str]]:
    from agent.memory.delta import state_checksum
    from storage.engine import Database
    from storage.migrate import upgrade
    from storage.repository import unit_of_work

    upgrade(url)
    db = Database(url)
    layers: dict[str, np.ndarray] = {"S": np.zeros((0, 4)), "P": np.zeros((4, 4))}
    with unit_of_work(db) as repo:
        tenant, _ = repo.create_tenant("t")
        ids = [repo.create_agent(tenant.id, f"a{i}", {}, layers, [],
                                 state_checksum(layers, [])).id for i in range(agents)]
    for a in ids:
        with unit_of_work(db) as repo:
            repo.append_events(a, [{"id": f"e{j}", "input": [1.0, 0.0, 0.0, 0.0], "target": "x"}
                                   for j in range(events * rounds)])
    return db, ids


def run(url: str, agents: int, events: int, rounds: int, grouped: bool) -> float:
    """CPU ms per round (process time; the first round, warm-up, not counted)."""
    from agent.memory.delta import Delta, LayerDelta
    from storage.repository import unit_of_work
    from storage.repository.version_groups import commit_delta_group, prepare_delta

    db, ids = _setup(url, agents, events, rounds)
    rng = np.random.default_rng(0)
    delta = Delta({"S": LayerDelta.factors(rng.standard_normal((2, 4)),
                                           rng.standard_normal((2, 1)), 1.0),
                   "P": LayerDelta.factors(rng.standard_normal((2, 4)),
                                           rng.standard_normal((2, 4)), 1.0)},
                  [])
    heads = {a: 0 for a in ids}
    sha = "ab" * 32
    t0 = 0.0
    for r in range(rounds):
        if r == 1:
            t0 = time.process_time()
        seqs = list(range(r * events + 1, (r + 1) * events + 1))
        hits = [True] * events
        with unit_of_work(db) as repo:
            if grouped:
                done = commit_delta_group(repo, [prepare_delta(a, heads[a], delta, seqs, sha,
                                                               None, hits) for a in ids])
                heads.update((c.agent_id, c.version) for c in done)
            else:
                for a in ids:
                    row = repo.commit_version(a, heads[a], "delta", delta=delta,
                                              event_seqs=seqs, checksum=sha)
                    repo.record_quality(a, row.version, hits, row)
                    heads[a] = row.version
    db.dispose()
    return 1e3 * (time.process_time() - t0) / (rounds - 1)


def main(argv: list[str] | None = None) -> int:
    from benchmarks.eval_common import md_table

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agents", type=int, default=8)
    ap.add_argument("--events", default="1,64", help="events per version, comma-separated")
    ap.add_argument("--rounds", type=int, default=200)
    args = ap.parse_args(argv)
    rows = []
    for n in (int(x) for x in args.events.split(",")):
        got = [run(f"sqlite:///{tempfile.mkdtemp(prefix='vcommit-')}/v.db", args.agents, n,
                   args.rounds, grouped) for grouped in (False, True)]
        rows.append(["SQLite", str(n), f"{got[0]:.2f}", f"{got[1]:.2f}",
                     f"{got[0] / got[1]:.1f}x"])
    print(f"learner commit of a round: {args.agents} agents, one version each, {args.rounds} "
          f"rounds, CPU ms per round (1-min load {os.getloadavg()[0]:.1f})\n")
    print(md_table(["database", "events/version", "commit_version + record_quality",
                    "commit_delta_group", "less CPU"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
