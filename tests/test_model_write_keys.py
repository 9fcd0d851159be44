"""Keys computed once per micro-batch (MemoryAgent.write_keys, the learner's test-then-train):
predicting and learning with the keys given is predicting and learning without them, bit for
bit, over consecutive batches of awkward sizes, for every rule, with a lift, an input scale
and float32 states; a standardising agent has no shared keys and refuses given ones."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from agent.config import AgentConfig
from agent.model import MemoryAgent

DIM = 12
CONFIGS: list[dict[str, Any]] = [
    {},  # the default rule (softmax, float32, a reservoir)
    {"memory": {"rule": "delta", "beta": 0.5, "decay": 0.9}},
    {"memory": {"rule": "delta", "dtype": "float32", "lift_dim": 30}},
    {"memory": {"rule": "rls"}, "input_scale": [0.5] * DIM},
    {"memory": {"rule": "softmax", "reservoir": None}},
]


def _agent(extra: dict[str, Any]) -> MemoryAgent:
    return MemoryAgent(AgentConfig.from_dict({"kind": "classifier", "encoder": "none",
                                              "dim": DIM, **extra}))


def _same_state(a: MemoryAgent, b: MemoryAgent) -> None:
    (la, ya), (lb, yb) = a.state, b.state
    assert ya == yb and la.keys() == lb.keys()
    for k in la:
        assert la[k].dtype == lb[k].dtype and la[k].tobytes() == lb[k].tobytes(), k


@pytest.mark.parametrize("extra", CONFIGS)
def test_given_keys_change_no_bit(extra):
    rng = np.random.default_rng(len(str(extra)))
    plain, shared = _agent(extra), _agent(extra)
    for n in (1, 15, 63, 300, 2):
        X = rng.normal(size=(n, DIM)) * rng.uniform(0.1, 10)
        y = [f"L{int(k)}" for k in rng.integers(7, size=n)]
        betas = [None if rng.random() < 0.5 else float(rng.uniform(0.1, 1)) for _ in range(n)]
        want_labels = plain.predict_labels(X)
        want = plain.learn_many(X, y, betas=betas, delta_dtype="float32")
        K = shared.write_keys(X)
        assert K is not None and K.shape[0] == n
        assert shared.predict_labels(X, keys=K) == want_labels
        got = shared.learn_many(X, y, betas=betas, delta_dtype="float32", keys=K)
        assert got.labels_added == want.labels_added
        for name, ld in want.layers.items():
            g = got.layers[name]
            for arr_w, arr_g in ((ld.A, g.A), (ld.E, g.E), (ld.dense, g.dense)):
                assert (arr_w is None) == (arr_g is None)
                if arr_w is not None:
                    assert arr_w.tobytes() == arr_g.tobytes(), name
        _same_state(plain, shared)


def test_a_standardising_agent_shares_no_keys():
    agent = _agent({"standardize": True})
    X = np.random.default_rng(0).normal(size=(5, DIM))
    assert agent.write_keys(X) is None
    K = _agent({}).keys(X)
    with pytest.raises(ValueError, match="keys"):
        agent.learn_many(X, ["a"] * 5, keys=K)
    with pytest.raises(ValueError, match="keys"):
        agent.predict_labels(X, keys=K)


def test_keys_of_other_inputs_are_refused():
    agent = _agent({})
    X = np.random.default_rng(1).normal(size=(5, DIM))
    with pytest.raises(ValueError, match="keys"):
        agent.learn_many(X, ["a"] * 5, keys=agent.keys(X[:4]))
