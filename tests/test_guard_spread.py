"""The guard's noise gate (workers/actors/guard_spread.py): window accuracies read from the
per-version running totals match those of the raw hits (random micro-batch sizes, awkward
windows), σ is the sample standard deviation or the binomial floor, and through the learner's
own path on a real SQLite store (benchmarks/guard.py's harness) a stream whose difficulty
wanders is alerted on instead of rolled back, while the same policy without the gate rolls it
back and attacks on a steady stream are still rolled back."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmarks import eval_elec2
from benchmarks.eval_common import have_data
from benchmarks.guard import _clusters, run
from storage.models import Version
from storage.repository import unit_of_work
from tests.db_fixtures import *  # noqa: F401,F403
from tests.storage_helpers import checksum, empty_state
from tests.test_guard_check import CONFIG, GUARD
from workers.actors.guard_spread import MIN_WINDOWS, spread, window_accuracies


def _versions(repo, agent_id: str, sizes: list[int], hits: np.ndarray) -> None:
    """Tested versions 1..n holding ``sizes[i]`` events each, with the running totals."""
    t = h = 0
    for v, n in enumerate(sizes, start=1):
        t, h = t + n, h + int(hits[t:t + n].sum())
        repo.session.add(Version(agent_id=agent_id, version=v, parent=v - 1, kind="delta", checksum="0" * 64,
                                 event_count=n, hits=0, tested_total=t, hits_total=h))
    repo.session.flush()


def _reference(sizes: list[int], hits: np.ndarray, end: int, window: int, floor: int, count: int) -> list[float]:
    """By hand: the version boundaries (events tested after each version), the last at or
    before ``end``, then back a window at a time to the last boundary at or before it."""
    bounds = np.cumsum([0, *sizes]).tolist()
    start = max(floor, window)
    hi = max(b for b in bounds if b <= end)
    out = []
    while len(out) < count and hi - window >= start:
        lo = max(b for b in bounds if b <= hi - window)
        if lo < start or lo >= hi:
            break
        out.append(float(hits[lo:hi].mean()))
        hi = lo
    return out


@pytest.mark.parametrize("window,max_batch", [(1, 1), (15, 1), (63, 15), (300, 63)])
def test_window_accuracies_match_the_raw_hits(db, window, max_batch):
    rng = np.random.default_rng(window)
    sizes = rng.integers(1, max_batch + 1, 4000 // max_batch + 50).tolist()
    hits = rng.random(sum(sizes)) < rng.uniform(0.5, 0.99)
    with unit_of_work(db) as repo:
        tenant, _ = repo.create_tenant(f"spread{window}")
        aid = repo.create_agent(tenant.id, "s", {"kind": "classifier", "encoder": "none", "dim": 2},
                                *empty_state(), checksum(empty_state())).id
        _versions(repo, aid, sizes, hits)
        for end in rng.integers(0, sum(sizes) + 1, 12).tolist() + [sum(sizes)]:
            floor = int(rng.integers(0, max(end, 1)))
            got = window_accuracies(repo, aid, end, window, floor)
            assert got == pytest.approx(_reference(sizes, hits, end, window, floor, 8), abs=1e-12)
            assert len(got) <= 8


def test_spread_is_the_robust_sd_or_the_binomial_floor():
    acc = [0.9, 0.8, 0.85, 0.7]
    sp = spread(acc, 0.9, 500, 3.0)
    mad = float(np.median(np.abs(np.asarray(acc) - np.median(acc))))
    assert sp.sigma == pytest.approx(1.4826 * mad) and sp.windows == 4
    normal = np.random.default_rng(0).normal(0.8, 0.05, 4001).tolist()  # σ of a normal sample
    assert spread(normal, 0.5, 10**9, 1.0).sigma == pytest.approx(0.05, rel=0.05)
    assert sp.need == pytest.approx(3 * sp.sigma * math.sqrt(2))
    steady = spread([1.0, 1.0, 1.0], 0.99, 100, 2.0)  # no spread: binomial noise at the reference
    assert steady.sigma == pytest.approx(math.sqrt(0.99 * 0.01 / 100))
    few = spread(acc[:MIN_WINDOWS - 1], 0.5, 100, 3.0)  # too few windows: binomial alone
    assert few.windows == 0 and few.sigma == pytest.approx(0.05)
    # one anomalous window among steady ones (an earlier burst) does not widen the gate
    windows = [0.99, 1.0, 0.99, 0.7, 1.0, 0.99, 1.0, 0.99]
    once = spread(windows, 0.99, 500, 3.0)
    assert once.sigma == pytest.approx(1.4826 * 0.005) and once.need < 0.05 < float(np.std(windows, ddof=1))


def wandering_stream(n: int, seed: int = 0, block: int = 100) -> tuple[np.ndarray, list[str]]:
    """Honest but wandering: clean clusters whose label noise changes every ``block`` events
    (0, 15 % or 30 % of labels drawn at random), so windows' accuracies move by ±0.1 on
    their own."""
    rng = np.random.default_rng(seed)
    X, y = _clusters(rng, n)
    for s in range(0, n, block):
        rate = rng.choice([0.0, 0.15, 0.3])
        for i in range(s, min(s + block, n)):
            if rng.random() < rate:
                y[i] = f"c{int(rng.integers(0, 8))}"
    return X, y


def test_a_wandering_stream_alerts_and_without_the_gate_is_rolled_back():
    """Once the stream has shown its variation (the first window, a cold learner's, and then
    MIN_WINDOWS more), its falls only alert; without the gate they are rolled back."""
    X, y = wandering_stream(3000)
    shown = (MIN_WINDOWS + 2) * GUARD["window"]
    gated = run(X, y, CONFIG, GUARD, dry=True)
    late = [(a, why) for (a, at), why in zip(gated["actions"], gated["reasons"], strict=True) if at >= shown]
    assert late and {a for a, _ in late} == {"alert"}
    assert any("within the stream's own variation" in why for _, why in late)
    bare = run(X, y, CONFIG, {**GUARD, "z": 0}, dry=True)
    assert "rollback" in {a for a, at in bare["actions"] if at >= shown}  # what the gate keeps from happening


@pytest.mark.skipif(not have_data(*eval_elec2.FILES), reason="../shared/data (elec2.csv) not present")
def test_elec2s_noisy_stretch_alerts_and_without_the_gate_is_rolled_back():
    """Real honest drift: Elec2's first 5,600 events (benchmarks/guard.py's configuration).
    The fall at event 5,320, which fresh learners cannot tell from an attack, is within the
    stream's own variation; without the gate the dry run rolls it back."""
    X, y = eval_elec2.load(False)
    X, y = X[:5600], y[:5600]
    cfg = {"kind": "classifier", "encoder": "none", "dim": X.shape[1], "standardize": True,
           "memory": {"lift_dim": 1024}}
    guard = {"window": 500, "drop": 0.1, "action": "rollback"}
    gated = run(X, y, cfg, guard, dry=True)
    assert gated["actions"] and {a for a, _ in gated["actions"]} == {"alert"}
    assert any(at == 5320 and "within the stream's own variation" in why
               for (_, at), why in zip(gated["actions"], gated["reasons"], strict=True))
    bare = run(X, y, cfg, {**guard, "z": 0}, dry=True)
    assert ("rollback", 5320) in bare["actions"]
