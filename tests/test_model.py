"""MemoryAgent against a per-event reference written here with plain loops (DESIGN §7)."""

from __future__ import annotations

import numpy as np
import pytest

from agent.config import AgentConfig
from agent.errors import InputError
from agent.memory.delta import apply_delta, state_checksum
from agent.model import MAX_RLS_KEY_DIM, MemoryAgent

DIM = 6


def make(rule="delta", lift=None, decay=1.0, beta=0.5, kind="classifier", dim=DIM, dtype=np.float64,
         ridge=1.0, forget=1.0):
    mem = {"rule": rule, "beta": beta, "decay": decay, "ridge": ridge, "forget": forget}
    if lift:
        mem["lift_dim"] = lift
    cfg = AgentConfig.from_dict({"kind": kind, "encoder": "none", "dim": dim, "memory": mem})
    return MemoryAgent(cfg, dtype=dtype)


def reference(agent, X, targets, betas, sizes):
    """One event at a time, exactly as DESIGN §7 states it (float64). The lift φ is applied
    to the same micro-batches (``sizes``) as the agent's: its float32 product rounds a row
    differently in a batch of 1 and of 40 on some BLAS kernels (OpenBLAS's Haswell kernel: up
    to 1.4e-7), which is the lift's rounding, not the rule's."""
    m = agent.config.memory
    phi = agent._lift if agent._lift is not None else (lambda x: x)
    edges = np.cumsum([0, *sizes])
    Phi = np.vstack([np.asarray(phi(np.asarray(X[a:b], dtype=np.float64)), dtype=np.float64)
                     for a, b in zip(edges[:-1], edges[1:], strict=True)])  # (n, d_k)
    d_k = agent.config.key_dim
    S = np.zeros((0, d_k))
    P = np.eye(d_k) / m.ridge
    labels: list[str] = []
    for k, t, b in zip(Phi, targets, betas, strict=True):
        k = k / np.linalg.norm(k)
        if t not in labels:
            labels.append(t)
            S = np.vstack([S, np.zeros((1, d_k))])
        v = np.zeros(len(labels))
        v[labels.index(t)] = 1.0
        if m.rule == "delta":
            beta = m.beta if b is None else b
            S = m.decay * S + beta * np.outer(v - m.decay * (S @ k), k)
        else:
            g = P @ k / (m.forget + k @ P @ k)
            S = S + np.outer(v - S @ k, g)
            P = (P - np.outer(g, k @ P)) / m.forget
    return S, P, labels


def stream(n=40, seed=0, n_labels=5):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, DIM))
    # labels appear one after another, several of them in the middle of a batch
    targets = [f"c{min(int(rng.integers(0, 1 + i // 6)), n_labels - 1)}" for i in range(n)]
    betas = [None if i % 3 == 0 else float(rng.uniform(0.1, 1.0)) for i in range(n)]
    return X, targets, betas


def learn_in(agent, X, targets, betas, sizes, **kw):
    deltas, s = [], 0
    for size in sizes:
        e = min(s + size, len(targets))
        deltas.append(agent.learn_many([list(map(float, x)) for x in X[s:e]], targets[s:e],
                                       betas[s:e], **kw))
        s = e
    assert s == len(targets)
    return deltas


CASES = [
    dict(rule="delta"),
    dict(rule="delta", decay=0.9),
    dict(rule="delta", lift=24),
    dict(rule="delta", lift=24, decay=0.95),
    dict(rule="rls"),
    dict(rule="rls", forget=0.97, ridge=0.5),
    dict(rule="rls", lift=24),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_matches_per_event_reference(case):
    agent = make(**case)
    X, targets, betas = stream()
    learn_in(agent, X, targets, betas, [7, 1, 15, 17])
    S, P, labels = reference(agent, X, targets, betas, [7, 1, 15, 17])
    layers, got_labels = agent.state
    assert got_labels == labels
    np.testing.assert_allclose(layers["S"], S, rtol=1e-9, atol=1e-9)
    if case["rule"] == "rls":
        np.testing.assert_allclose(layers["P"], P, rtol=1e-9, atol=1e-9)
    # predictions are argmax of S k, score that entry
    preds = agent.predict_many([list(x) for x in X[:10]], top_k=3)
    K = agent.keys([list(x) for x in X[:10]])  # the same batch: the lift's rounding as predict's
    for k, p in zip(K, preds, strict=True):
        y = S @ k
        assert p["label"] == labels[int(np.argmax(y))]
        assert p["score"] == pytest.approx(float(y.max()), abs=1e-9)
        assert [t[0] for t in p["top"]] == [labels[i] for i in np.argsort(-y, kind="stable")[:3]]


@pytest.mark.parametrize("rule", ["delta", "rls"])
def test_batch_boundaries_do_not_matter(rule):
    X, targets, betas = stream(n=60, seed=3)
    one, many = make(rule=rule, decay=0.98), make(rule=rule, decay=0.98)
    learn_in(one, X, targets, betas, [60])
    learn_in(many, X, targets, betas, [1, 2, 3, 5, 8, 13, 21, 7])
    np.testing.assert_allclose(one.state[0]["S"], many.state[0]["S"], rtol=1e-10, atol=1e-12)
    assert one.labels == many.labels
    q = [list(x) for x in X]
    assert [p["label"] for p in one.predict_many(q)] == [p["label"] for p in many.predict_many(q)]


def test_rls_equals_batch_ridge():
    rng = np.random.default_rng(1)
    agent = make(rule="rls", ridge=0.3)
    X = rng.standard_normal((50, DIM))
    targets = [f"c{i % 4}" for i in range(50)]
    agent.learn_many(X, targets)
    K = agent.keys(X)
    Y = np.eye(4)[[int(t[1]) for t in targets]]  # (n, 4) one-hot
    W = np.linalg.solve(K.T @ K + 0.3 * np.eye(DIM), K.T @ Y).T  # (4, d_k) ridge
    np.testing.assert_allclose(agent.state[0]["S"], W, atol=1e-10)


@pytest.mark.parametrize("kind", ["classifier", "recall"])
def test_newer_target_overwrites(kind):
    agent = make(beta=1.0, kind=kind)
    rng = np.random.default_rng(2)
    X = rng.standard_normal((20, DIM))
    agent.learn_many(X, [f"old{i}" for i in range(20)])
    agent.learn_many(X[:5], [f"new{i}" for i in range(5)])
    got = [p["label"] for p in agent.predict_many(X[:5])]
    assert got == [f"new{i}" for i in range(5)]


@pytest.mark.parametrize("rule", ["delta", "rls"])
@pytest.mark.parametrize("delta_dtype", [None, np.float32, np.float16])
@pytest.mark.parametrize("state_dtype", [np.float64, np.float32])
def test_rebuild_from_stored_deltas_is_bit_identical(rule, delta_dtype, state_dtype):
    agent = make(rule=rule, decay=0.99, dtype=state_dtype)
    X, targets, betas = stream(n=50, seed=5)
    deltas = learn_in(agent, X, targets, betas, [4, 30, 1, 15], delta_dtype=delta_dtype)
    want = np.dtype(delta_dtype or state_dtype)
    assert all(a.dtype == want for d in deltas for ld in d.layers.values()
               for a in (ld.A, ld.E, ld.dense) if a is not None)
    layers, labels = MemoryAgent.initial_state(agent.config, state_dtype)
    for d in deltas:
        layers = apply_delta(layers, d)
        labels = labels + d.labels_added
    live, live_labels = agent.state
    assert labels == live_labels
    for name in live:
        assert layers[name].dtype == np.dtype(state_dtype)
        assert np.array_equal(layers[name], live[name])
    assert state_checksum(layers, labels) == agent.checksum()
    other = make(rule=rule, decay=0.99, dtype=state_dtype)
    other.load_state(layers, labels)
    assert other.checksum() == agent.checksum()


def test_no_labels_predict():
    agent = make()
    assert agent.predict_many([[1.0] * DIM]) == [{"label": None, "score": 0.0}]
    assert agent.predict_many([[1.0] * DIM], top_k=3) == [{"label": None, "score": 0.0, "top": []}]


@pytest.mark.parametrize(
    "inputs,field",
    [
        ([[1.0] * DIM, [float("nan")] + [1.0] * (DIM - 1)], "inputs[1]"),
        ([[1.0] * DIM, [1.0] * DIM, [float("inf")] * DIM], "inputs[2]"),
        ([[1.0] * (DIM + 1)], "inputs[0]"),
        ([[1.0] * DIM, "a text"], "inputs[1]"),
        ([[0.0] * DIM], "inputs[0]"),
        ([[1.0] * DIM, [True] * DIM], "inputs[1]"),
        ([[1.0] * DIM, {"x": 1}], "inputs[1]"),
        ([], "inputs"),
    ],
)
def test_bad_inputs_name_the_field_and_change_nothing(inputs, field):
    agent = make()
    agent.learn_many([[1.0] * DIM], ["a"])
    before = agent.checksum()
    with pytest.raises(InputError) as e:
        agent.learn_many(inputs, ["a"] * len(inputs))
    assert e.value.field == field
    if inputs:
        with pytest.raises(InputError) as e:
            agent.predict_many(inputs)
        assert e.value.field == field
    assert agent.checksum() == before


@pytest.mark.parametrize(
    "targets,betas,field",
    [
        (["a", ""], None, "targets[1]"),
        (["a", 3], None, "targets[1]"),
        (["a"], None, "targets"),
        (["a", "b"], [0.5, 1.5], "betas[1]"),
        (["a", "b"], [0.0, None], "betas[0]"),
        (["a", "b"], [float("nan"), 0.2], "betas[0]"),
        (["a", "b"], [0.5], "betas"),
    ],
)
def test_bad_targets_and_betas(targets, betas, field):
    agent = make()
    before = agent.checksum()
    with pytest.raises(InputError) as e:
        agent.learn_many([[1.0] * DIM, [2.0] * DIM], targets, betas)
    assert e.value.field == field
    assert agent.checksum() == before and agent.labels == []


def test_top_k_validated():
    agent = make()
    for bad in (0, -1, 1.5, True):
        with pytest.raises(InputError) as e:
            agent.predict_many([[1.0] * DIM], top_k=bad)
        assert e.value.field == "top_k"


def test_rls_size_guard():
    with pytest.raises(InputError) as e:
        make(rule="rls", dim=MAX_RLS_KEY_DIM + 1)
    assert e.value.field == "dim"
    with pytest.raises(InputError) as e:
        make(rule="rls", lift=MAX_RLS_KEY_DIM * 2)
    assert e.value.field == "memory.lift_dim"
    make(rule="delta", lift=MAX_RLS_KEY_DIM * 2)  # the delta rule keeps no P


def test_compute_delta_is_pure():
    agent = make(rule="rls")
    agent.learn_many([[1.0] * DIM], ["a"])
    before = agent.checksum()
    d = agent.compute_delta([[0.5] * DIM, [1.0, 2, 3, 4, 5, 6]], ["b", "a"])
    assert d.labels_added == ["b"] and agent.checksum() == before
    assert d.layers["S"].shape == (2, DIM)


@pytest.mark.parametrize("rule", ["delta", "rls"])
def test_lift_is_deterministic_per_config(rule):
    a, b = make(rule=rule, lift=32), make(rule=rule, lift=32)
    x = [[0.3, -1.0, 2.0, 0.1, 0.0, 5.0]]
    assert np.array_equal(a.keys(x), b.keys(x))
    assert a.keys(x).shape == (1, 32)
    assert np.linalg.norm(a.keys(x)) == pytest.approx(1.0)
    # the key is the normalised lift of the raw input, nothing else
    phi = np.asarray(a._lift(np.asarray(x)), dtype=np.float64)
    np.testing.assert_allclose(a.keys(x), phi / np.linalg.norm(phi), rtol=1e-12)
    assert a._lift.activation == {"delta": "cos", "rls": "relu"}[rule]


def test_online_standardizer_matches_numpy():
    from agent.backbones.vector import OnlineStandardizer

    rng = np.random.default_rng(4)
    X = rng.standard_normal((101, 3)) * [1.0, 10.0, 0.01] + [5.0, -2.0, 0.0]
    s = OnlineStandardizer(3)
    for a, b in [(0, 1), (1, 7), (7, 60), (60, 101)]:
        s.learn_many(X[a:b])
        np.testing.assert_allclose(s.mean_, X[:b].mean(axis=0), rtol=1e-12, atol=1e-12)
        if b > 1:
            np.testing.assert_allclose(s.std_, X[:b].std(axis=0), rtol=1e-10)
    np.testing.assert_allclose(s.transform_many(X).std(axis=0), 1.0, rtol=1e-10)
    with pytest.raises(InputError) as e:
        s.learn_many(np.array([[1.0, np.nan, 0.0]]))
    assert e.value.field == "inputs[0]"


@pytest.mark.parametrize("rule", ["delta", "rls", "softmax"])
@pytest.mark.parametrize("n", [1, 15, 63, 300])
def test_predict_labels_are_predict_manys_labels(rule, n):
    rng = np.random.default_rng(n)
    agent = make(rule=rule)
    X = rng.normal(size=(n, DIM))
    assert agent.predict_labels(X) == [None] * n  # nothing learned yet
    for _ in range(3):
        agent.learn_many(rng.normal(size=(20, DIM)), [f"L{int(k)}" for k in rng.integers(7, size=20)])
        want = [p["label"] for p in agent.predict_many(X)]
        assert agent.predict_labels(X) == want
        assert agent.predict_labels([list(x) for x in X]) == want
