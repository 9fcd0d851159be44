"""workers/actors/poison.py against the obvious reference: learning the events one at a time, keeping
each that learns cleanly, on random batches with poison (zero lifted keys) at random places."""

from __future__ import annotations

import numpy as np
import pytest

from agent.config import AgentConfig
from agent.memory.lift import Lift
from agent.model import LIFT_ACTIVATION, MemoryAgent, lift_seed
from workers.actors.poison import NonFinite, copy_learner, find_poison, learn_checked

CONFIG = {"kind": "classifier", "encoder": "none", "dim": 4,
          "memory": {"rule": "rls", "lift_dim": 3}}


def _inputs(rng: np.random.Generator) -> tuple[list[float], list[list[float]]]:
    cfg = AgentConfig.from_dict(CONFIG)
    lift = Lift(cfg.dim, cfg.memory.lift_dim, seed=lift_seed(cfg),
                activation=LIFT_ACTIVATION[cfg.memory.rule])
    W, b = lift.W.astype(np.float64), lift.b.astype(np.float64)
    poison = np.linalg.lstsq(W.T, -(np.abs(b) + 1.0) * 4.0, rcond=None)[0]
    good = [g.tolist() for g in rng.normal(size=(200, cfg.dim)) if lift(g[None, :]).any()]
    return poison.tolist(), good


def _attempt(learner, events):
    return learn_checked(learner, events, None)


def _reference(events):
    """One event at a time: an event is poison when learning it alone fails."""
    learner = MemoryAgent(AgentConfig.from_dict(CONFIG))
    bad = []
    for i, e in enumerate(events):
        trial = copy_learner(CONFIG, learner)
        try:
            _attempt(trial, [e])
        except Exception:  # noqa: BLE001
            bad.append(i)
            continue
        learner = trial
    return bad, learner


@pytest.mark.parametrize("seed", range(8))
def test_bisect_finds_what_one_at_a_time_finds(seed: int) -> None:
    rng = np.random.default_rng(seed)
    poison, good = _inputs(rng)
    n = int(rng.integers(1, 40))
    where = set(rng.choice(n, size=int(rng.integers(0, min(n, 5) + 1)), replace=False).tolist())
    events = [{"input": poison if i in where else good[i], "target": f"L{i % 3}"}
              for i in range(n)]
    head = MemoryAgent(AgentConfig.from_dict(CONFIG))
    before = head.checksum()
    got, clean = find_poison(head, events, _attempt, lambda lr: copy_learner(CONFIG, lr))
    assert head.checksum() == before  # the head itself is untouched
    want, ref = _reference(events)
    assert [i for i, _ in got] == want == sorted(where)
    assert all("zero key" in why for _, why in got)
    if not where:
        assert clean == n
    # the rest, learnt in one batch on the head as the learner does, is the state of a learner
    # that never saw the poison: bit for bit in one batch, up to rounding one at a time
    rest = [e for i, e in enumerate(events) if i not in where]
    if rest:
        _attempt(head, rest)
        fresh = MemoryAgent(AgentConfig.from_dict(CONFIG))
        _attempt(fresh, rest)
        assert head.checksum() == fresh.checksum()
        for name, arr in ref.state[0].items():
            np.testing.assert_allclose(head.state[0][name], arr, rtol=1e-6, atol=1e-9)
        assert head.state[1] == ref.state[1]


def test_non_finite_delta_is_poison() -> None:
    learner = MemoryAgent(AgentConfig.from_dict(CONFIG))
    learner._layers["P"] = np.full_like(learner._layers["P"], np.inf)  # already overflowed
    with pytest.raises(NonFinite):
        _attempt(learner, [{"input": [1.0, 2.0, 3.0, 4.0], "target": "A"}])


def test_transient_failures_are_raised_not_bisected() -> None:
    """A failure that says nothing about the events (here the database, as a learner whose
    read fails would see it) stops the bisection: the batch is retried, nothing rejected."""
    import sqlite3

    from sqlalchemy.exc import OperationalError

    from workers.actors.poison import is_transient

    def flaky(learner, events):
        raise OperationalError("SELECT 1", {}, sqlite3.OperationalError("database is locked"))

    head = MemoryAgent(AgentConfig.from_dict(CONFIG))
    events = [{"input": [1.0, 0.0, 0.0, 0.0], "target": "A"}] * 3
    with pytest.raises(OperationalError):
        find_poison(head, events, flaky, lambda lr: copy_learner(CONFIG, lr))
    assert is_transient(MemoryError()) and is_transient(ConnectionError())
    assert not is_transient(ValueError("zero key")) and not is_transient(NonFinite("x"))
    from ray.exceptions import RayActorError, RayTaskError

    from agent.errors import InputError

    assert is_transient(RayActorError())  # an actor restarting: retry
    remote = RayTaskError("encode", "tb", InputError("x", "bad")).as_instanceof_cause()
    assert not is_transient(remote)  # a remote task's own error about the input: poison
