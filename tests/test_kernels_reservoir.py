"""The bounded rehearsal memory (``agent/memory/softmax/reservoir.py``) against its float64 oracle.

The oracle (:func:`agent.memory.softmax.naive.reservoir_naive`) keeps the slots as a Python list and
recomputes every priority with Python integers; the kernel keeps the slots as layers updated by
put deltas. Sizes sweep 1, 15, 63, 300 events in micro-batches, with caps that fill, overflow
and never fill; the reservoir's contents are checked against its definition (per label, the
``cap`` events of smallest priority) and a cap that never fills against the unbounded rule.
"""

from __future__ import annotations

import numpy as np
import pytest

from agent.memory.delta import Delta, LayerDelta, apply_delta, apply_layer, pad_rows
from agent.memory.softmax.naive import reservoir_naive, reservoir_priority_naive
from agent.memory.softmax.replay import softmax_replay_chunk
from agent.memory.softmax.reservoir import priority, reservoir_chunk
from storage import deltaform
from tests.helpers import assert_close, unit_rows
from tests.test_kernels_softmax import _labels

D_K = 12


def _run(K, y, beta, *, replay, cap, batch, dtype, alpha=1.0, seed=5):
    """Stream (K, y) through reservoir_chunk in micro-batches of ``batch``: the final layers."""
    labels = int(y.max()) + 1
    layers = {"S": np.zeros((0, D_K), dtype=dtype), "X": np.zeros((0, D_K), dtype=dtype),
              "Y": np.zeros((0, 1), dtype=dtype), "T": np.zeros((0, 1)), "N": np.zeros((1, 1))}
    known = 0
    for a in range(0, len(y), batch):
        yb = y[a:a + batch]
        c = max(known, int(yb.max()) + 1)
        S = pad_rows(layers["S"], c)
        out = reservoir_chunk(S, layers["X"], layers["Y"], layers["T"], int(layers["N"][0, 0]),
                              K[a:a + batch].astype(dtype), yb, beta[a:a + batch], replay=replay,
                              cap=cap, labels0=known, alpha=alpha, seed=seed)
        layers = apply_delta({**layers, "S": S}, Delta(out))
        known = c
    layers["S"] = pad_rows(layers["S"], labels)
    return layers


@pytest.mark.parametrize("n", [1, 15, 63, 300])
@pytest.mark.parametrize("cap,R,batch", [(1, 3, 7), (4, 7, 1), (6, 2, 64), (1000, 4, 10)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_chunk_equals_the_oracle(n, cap, R, batch, dtype):
    rng = np.random.default_rng(n * 7 + cap)
    K = unit_rows(rng, n, D_K)
    y = _labels(rng, n, 0, 5)
    beta = rng.uniform(0.2, 1.0, n)
    alpha = 0.98 if cap == 4 else 1.0
    got = _run(K, y, beta, replay=R, cap=cap, batch=batch, dtype=dtype, alpha=alpha)
    S, slots = reservoir_naive(np.zeros((int(y.max()) + 1, D_K)), K.astype(dtype), y.tolist(), beta,
                               R, cap, alpha=alpha, seed=5)
    assert got["X"].shape[0] == len(slots) and int(got["N"][0, 0]) == n
    assert got["T"][:, 0].astype(int).tolist() == [t for _, _, t in slots]
    assert got["Y"][:, 0].astype(int).tolist() == [c for _, c, _ in slots]
    assert np.array_equal(got["X"], np.array([k for k, _, _ in slots]).astype(dtype))  # exact copies
    assert_close(got["S"], S, rtol=2e-4 if dtype == np.float32 else 1e-10, name=f"S after {n} writes, cap {cap}")


@pytest.mark.parametrize("n,cap", [(300, 3), (63, 1), (15, 20)])
def test_reservoir_holds_the_smallest_priorities_of_each_label(n, cap):
    rng = np.random.default_rng(n)
    K, y = unit_rows(rng, n, D_K), _labels(rng, n, 0, 4)
    got = _run(K, y, np.full(n, 0.5), replay=2, cap=cap, batch=16, dtype=np.float64)
    for c in range(4):
        pos = np.flatnonzero(y == c)
        want = sorted(pos.tolist(), key=lambda t: reservoir_priority_naive(5, t))[:cap]
        held = got["T"][got["Y"][:, 0] == c, 0].astype(int).tolist()
        assert sorted(held) == sorted(want)
        assert np.array_equal(got["X"][got["T"][:, 0].astype(int) == want[0]], K[[want[0]]])
    assert got["X"].shape[0] == sum(min(cap, int((y == c).sum())) for c in range(4))  # bounded


def test_priority_equals_the_python_integer_oracle():
    t = np.array([0, 1, 2**31, 2**40 + 7])
    assert priority(2**63 + 9, t).tolist() == [reservoir_priority_naive(2**63 + 9, int(v)) for v in t]


@pytest.mark.parametrize("batch", [1, 9, 300])
def test_a_cap_that_never_fills_is_the_unbounded_rule_bit_for_bit(batch):
    rng = np.random.default_rng(batch)
    n = 300
    K, y, beta = unit_rows(rng, n, D_K), _labels(rng, n, 0, 6), rng.uniform(0.2, 1.0, n)
    got = _run(K, y, beta, replay=5, cap=n, batch=batch, dtype=np.float64)
    S = np.zeros((0, D_K))
    X, Y = np.zeros((0, D_K)), np.zeros((0, 1))
    known = 0
    for a in range(0, n, batch):
        yb = y[a:a + batch]
        c = max(known, int(yb.max()) + 1)
        S = pad_rows(S, c)
        S = apply_layer(S, softmax_replay_chunk(S, X, Y, K[a:a + batch], yb, beta[a:a + batch],
                                                replay=5, labels0=known, seed=5))
        X, Y = np.concatenate([X, K[a:a + batch]]), np.concatenate([Y, yb[:, None].astype(float)])
        known = c
    assert np.array_equal(pad_rows(S, 6), got["S"]) and np.array_equal(X, got["X"])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_put_deltas_store_exactly(dtype):
    rng = np.random.default_rng(1)
    A = rng.standard_normal((3, 5)).astype(dtype)
    ld = LayerDelta.put(A, np.array([4, 0, 3]), 5)
    form, arrays = deltaform.pack(ld)
    assert form == "put" and [a.shape for a in arrays] == deltaform.shapes("put", 5, 5, 3)
    back = deltaform.unpack(form, arrays, 1.0, (5, 5))
    S = rng.standard_normal((4, 5)).astype(dtype)
    assert np.array_equal(apply_layer(S, back), apply_layer(S, ld))
    out = apply_layer(S, ld)
    assert np.array_equal(out[[4, 0, 3]], A) and np.array_equal(out[1:3], S[1:3])
    with pytest.raises(ValueError):  # a new row at the end left unwritten
        apply_layer(S, LayerDelta.put(A[:1], np.array([0]), 5))
    with pytest.raises(ValueError):
        LayerDelta.put(A[:2], np.array([1, 1]), 5)
    if dtype == np.float32:
        with pytest.raises(ValueError):  # positions float32 cannot hold exactly
            deltaform.pack(LayerDelta.put(A[:1], np.array([2**24 + 1]), 2**24 + 2))
