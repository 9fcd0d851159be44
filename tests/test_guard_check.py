"""The guard's check before a rollback (workers/actors/guard_check.py), through the learner's
own path on a real SQLite store (benchmarks/guard.py's harness: test-then-train, committed
versions with their events, quality totals, the guard): honest drift to a new consistent
concept only alerts, a label-flip burst and a backdoor trigger are rolled back, and without
the check (``sample`` 0) the same honest drift is rolled back. The events the check reads back
are the agent's last applied ones, in order, pending ones left out."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest

from benchmarks.guard import DIM, _clusters, attack_stream, run
from workers.actors.guard_check import consistency, recent_events

CONFIG = {"kind": "classifier", "encoder": "none", "dim": DIM}
GUARD = {"window": 100, "drop": 0.1, "action": "rollback"}


def drift_stream(n: int, seed: int = 0) -> tuple[np.ndarray, list[str], int]:
    """Honest drift: from the middle on every label is renamed (c_k → c_{k+3}): a new concept,
    as consistent as the old one, that the head gets wrong until it has learnt it."""
    X, y = _clusters(np.random.default_rng(seed), n)
    start = n // 2
    return X, y[:start] + [f"c{(int(v[1:]) + 3) % 8}" for v in y[start:]], start


@pytest.mark.parametrize("seed", [0, 1])
def test_honest_drift_alerts_without_a_rollback(seed):
    X, y, start = drift_stream(1200, seed)
    r = run(X, y, CONFIG, GUARD, start)
    assert r["actions"] and {a for a, _ in r["actions"]} == {"alert"} and r["held"] == 0
    assert all(a >= start for _, a in r["actions"])  # nothing before the change
    assert "learnable drift" in r["reasons"][0]


def test_without_the_check_honest_drift_is_rolled_back():
    X, y, start = drift_stream(1200)
    r = run(X, y, CONFIG, {**GUARD, "sample": 0}, start)
    assert [a for a, _ in r["actions"]] == ["rollback"] and r["held"] > 0


@pytest.mark.parametrize("kind", ["label flip", "backdoor"])
def test_attacks_are_rolled_back_as_attacks(kind):
    X, y, start = attack_stream(kind, 1200)
    r = run(X, y, CONFIG, GUARD, start)
    assert [a for a, _ in r["actions"]] == ["rollback"] and 0 < r["delay"] <= 300
    assert "an attack, not learnable drift" in r["reasons"][0]


def test_consistency_is_held_out_accuracy_of_fresh_learners():
    """Clean clusters are learnt from half of them; labels shuffled among the inputs are not."""
    from agent.config import AgentConfig

    cfg = AgentConfig.from_dict(CONFIG)
    X, y = _clusters(np.random.default_rng(3), 200)
    shuffled = list(np.random.default_rng(4).permutation(y))
    assert consistency(cfg, X, y) > 0.9 > 0.4 > consistency(cfg, X, shuffled)


def test_recent_events_are_the_last_applied_in_order():
    from agent.config import AgentConfig
    from agent.model import MemoryAgent
    from storage.engine import Database
    from storage.migrate import upgrade
    from storage.repository import unit_of_work

    cfg = AgentConfig.from_dict(CONFIG)
    agent = MemoryAgent(cfg)
    X, y = _clusters(np.random.default_rng(5), 60)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'r.db'}"
        upgrade(url)
        db = Database(url)
        with unit_of_work(db) as repo:
            tenant, _ = repo.create_tenant("t")
            aid = repo.create_agent(tenant.id, "g", cfg.to_dict(), *agent.state, agent.checksum()).id
            head = 0
            for s in range(0, 50, 10):  # 50 applied in 5 versions
                got, _ = repo.append_events(aid, [{"input": X[i], "target": y[i]} for i in range(s, s + 10)])
                delta = agent.learn_many(X[s:s + 10], y[s:s + 10])
                head = repo.commit_version(aid, head, "delta", delta=delta, event_seqs=[e.seq for e in got],
                                           checksum=agent.checksum()).version
            repo.append_events(aid, [{"input": X[i], "target": y[i]} for i in range(50, 60)])  # pending
            Xr, yr = recent_events(repo, aid, 25)
            assert yr == y[25:50] and np.array_equal(Xr, X[25:50])
            Xs, ys = recent_events(repo, aid, 20, skip=15)  # ending 15 before the last
            assert ys == y[15:35] and np.array_equal(Xs, X[15:35])
            Xa, ya = recent_events(repo, aid, 1000)  # fewer there: all of them
            assert ya == y[:50] and Xa.shape == (50, DIM)
            fresh = MemoryAgent(cfg)
            tid = repo.create_agent(tenant.id, "t", cfg.to_dict(), *fresh.state, fresh.checksum()).id
            assert recent_events(repo, tid, 10) is None  # nothing applied
        db.dispose()
