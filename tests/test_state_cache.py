"""workers/actors/state_cache.py: a serving replica's states, read by many predict threads while
published deltas move them on. A predict never sees a state half changed: every answer equals
the answer of a learner rebuilt at the version it was taken for (CI saw a 500 on predict when
a delta adding a label was applied under a running predict)."""

from __future__ import annotations

import random
import sys
import threading
import time

import numpy as np
import pytest

from agent.config import AgentConfig
from agent.model import MemoryAgent
from workers.actors.factory import state_nbytes
from workers.actors.state_cache import StateCache


def _chain(n: int, dim: int, seed: int) -> tuple[AgentConfig, list, list]:
    """``n`` versions of one classifier, each adding a label: (config, states, deltas)."""
    cfg = AgentConfig.from_dict({"kind": "classifier", "encoder": "none", "dim": dim})
    rng = np.random.default_rng(seed)
    agent = MemoryAgent(cfg)
    states, deltas = [agent.state], [None]
    for i in range(n):
        deltas.append(agent.learn_many(rng.normal(size=(1, dim)), [f"label-{i}"]))
        states.append(agent.state)
    return cfg, states, deltas


def _reads_only(cfg: AgentConfig, state: tuple) -> MemoryAgent:
    learner = MemoryAgent(cfg)
    learner.load_state(*state)
    learner.keep_reads_only()
    return learner


def _answer(learner: MemoryAgent, X: np.ndarray) -> list[tuple]:
    return [(p["label"], p["score"]) for p in learner.predict_many(X)]


@pytest.mark.parametrize("n", [1, 15, 63])
def test_predicts_see_whole_versions_while_deltas_move_the_states(n):
    cfg, states, deltas = _chain(n, dim=6, seed=n)
    X = np.random.default_rng(0).normal(size=(16, 6))
    truth = [_answer(_reads_only(cfg, s), X) for s in states]  # the slow, obvious reference
    cache = StateCache(max_bytes=1 << 30, nbytes=state_nbytes)
    published = [0]
    done = threading.Event()
    wrong: list[str] = []

    def reader(seed: int) -> None:
        rng = random.Random(seed)
        while not done.is_set():
            v = max(0, published[0] - rng.randint(0, 1))
            try:
                with cache.reading(("a", v), lambda v=v: _reads_only(cfg, states[v])) as learner:
                    got = _answer(learner, X)
            except Exception as e:  # noqa: BLE001 - a half-changed state raises
                wrong.append(f"v{v}: {e!r}")
                return
            if got != truth[v]:
                wrong.append(f"v{v}: {got[:2]} != {truth[v][:2]}")
                return

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often: the race shows in a few versions
    threads = [threading.Thread(target=reader, args=(i,)) for i in range(4)]
    try:
        with cache.reading(("a", 0), lambda: _reads_only(cfg, states[0])):
            pass
        for t in threads:
            t.start()
        for v in range(1, n + 1):
            time.sleep(0.001)
            assert cache.apply("a", v - 1, v, lambda x, d=deltas[v]: x.apply(d))
            published[0] = v
        time.sleep(0.05)
    finally:
        done.set()
        for t in threads:
            t.join()
        sys.setswitchinterval(old)
    assert not wrong, wrong[:3]
    assert cache.stats["applied"] == n
    with cache.reading(("a", n), lambda: pytest.fail("the head should be held")) as learner:
        assert _answer(learner, X) == truth[n]


def test_apply_waits_for_the_reader_and_misses_what_it_does_not_hold():
    cfg, states, deltas = _chain(2, dim=3, seed=1)
    cache = StateCache(max_bytes=1 << 30, nbytes=state_nbytes)
    assert not cache.apply("a", 0, 1, lambda x: x.apply(deltas[1]))  # nothing held
    moved = threading.Event()
    with cache.reading(("a", 0), lambda: _reads_only(cfg, states[0])) as learner:
        t = threading.Thread(target=lambda: (cache.apply("a", 0, 1, lambda x: x.apply(deltas[1])),
                                             moved.set()))
        t.start()
        assert not moved.wait(0.3)  # held by this reader: not changed under it
        assert learner.labels == []
    t.join(10)
    assert moved.is_set() and learner.labels == ["label-0"]
    assert len(cache) == 1 and not cache.apply("a", 0, 1, lambda x: None)
    cache.drop_agent("a")
    assert len(cache) == 0 and cache.nbytes == 0


def test_bytes_bound_evicts_the_least_recently_read():
    cfg, states, _ = _chain(3, dim=4, seed=2)
    size = [state_nbytes(_reads_only(cfg, s)) for s in states]
    cache = StateCache(max_bytes=size[2] + size[3], nbytes=state_nbytes)
    for v in (1, 2, 3):
        with cache.reading(("a", v), lambda v=v: _reads_only(cfg, states[v])):
            pass
    assert len(cache) == 2 and cache.nbytes == size[2] + size[3]
    with cache.reading(("a", 1), lambda: _reads_only(cfg, states[1])):
        pass
    assert cache.stats["misses"] == 4  # version 1 was evicted first
