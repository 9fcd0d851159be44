"""The apply-lag record (workers/actors/apply_lag.py) against a plain recomputation: every
notify's lag is the time of the first commit that reached its last seq, on random streams of
notifies and commits over a few agents."""

from __future__ import annotations

import numpy as np
import pytest

from workers.actors import apply_lag
from workers.actors.apply_lag import LAG_BUCKETS, ApplyLag, render_lag


def _reference(ops):
    """Every notify's lag, by scanning all the commits after it (quadratic, obviously right)."""
    lags = []
    for i, (kind, agent, seq, t) in enumerate(ops):
        if kind != "arrived":
            continue
        done = next((t2 for k2, a2, s2, t2 in ops[i + 1:]
                     if k2 == "applied" and a2 == agent and s2 >= seq), None)
        if done is not None:
            lags.append(done - t)
    return lags


@pytest.mark.parametrize("n", [1, 15, 63, 300])
def test_lags_equal_a_plain_recomputation(n):
    rng = np.random.default_rng(n)
    ops, seq, t = [], {a: 0 for a in "abc"}, 0.0
    applied = {a: 0 for a in "abc"}
    for _ in range(n):
        a = "abc"[rng.integers(3)]
        t += float(rng.exponential(0.02))
        if rng.random() < 0.6:
            seq[a] += int(rng.integers(1, 4))
            ops.append(("arrived", a, seq[a], t))
        elif seq[a] > applied[a]:  # a commit reaches some of what arrived (seqs in order)
            applied[a] = int(rng.integers(applied[a] + 1, seq[a] + 1))
            ops.append(("applied", a, applied[a], t))
    lag = ApplyLag()
    for kind, a, s, when in ops:
        getattr(lag, kind)(a, s, when)
    want = _reference(ops)
    snap = lag.snapshot()
    assert snap["count"] == len(want) and snap["recent"] == len(want)
    assert snap["sum"] == pytest.approx(sum(want), abs=1e-9)
    assert snap["counts"] == [sum(x <= b for x in want) for b in LAG_BUCKETS] + [len(want)]
    if want:
        assert snap["p50_s"] == pytest.approx(float(np.quantile(want, 0.5)))
        assert snap["p99_s"] == pytest.approx(float(np.quantile(want, 0.99)))
    waiting = {a for kind, a, s, _ in ops if kind == "arrived" and s > applied[a]}
    assert lag.waiting_agents() == len(waiting)


def test_bounded_in_agents_and_notifies(monkeypatch):
    monkeypatch.setattr(apply_lag, "MAX_AGENTS", 5)
    monkeypatch.setattr(apply_lag, "MAX_WAITING", 3)
    lag = ApplyLag()
    for i in range(20):  # agents whose events are never applied (e.g. deleted)
        lag.arrived(f"a{i}", 1, 0.0)
    assert lag.waiting_agents() == 5
    for s in range(1, 11):
        lag.arrived("b", s, float(s))
    lag.applied("b", 10, 20.0)  # the last 3 notifies only are remembered
    assert lag.snapshot()["count"] == 3


def test_render_merges_shards():
    one, two = ApplyLag(), ApplyLag()
    one.arrived("a", 1, 0.0)
    one.applied("a", 1, 0.004)
    two.arrived("b", 1, 0.0)
    two.applied("b", 1, 2.0)
    out: list[str] = []
    render_lag(out, [one.snapshot(), two.snapshot(), {}])
    lines = dict(ln.rsplit(" ", 1) for ln in out if not ln.startswith("#"))
    assert lines['deltamem_apply_lag_seconds_bucket{le="0.005"}'] == "1"
    assert lines['deltamem_apply_lag_seconds_bucket{le="2.5"}'] == "2"
    assert lines['deltamem_apply_lag_seconds_bucket{le="+Inf"}'] == "2"
    assert lines["deltamem_apply_lag_seconds_count"] == "2"
