"""The ``softmax`` rule with rehearsal (``agent/memory/softmax/replay.py``) against its float64 oracle.

The oracle (:func:`agent.memory.softmax.naive.softmax_replay_naive`) writes one row and one label at a
time with Python-integer hashing; the kernel gathers every write's rows at once and keeps the
sequential state in the state's dtype. Sizes sweep 1, 15, 63, 300 events, with earlier events
to rehearse, new labels arriving inside the batch, per-event steps and decay.
"""

from __future__ import annotations

import numpy as np
import pytest

from agent.errors import InputError
from agent.memory.delta import LayerDelta, apply_layer, pad_rows
from agent.memory.softmax.naive import replay_index_naive, softmax_replay_naive
from agent.memory.softmax.replay import replay_indices, softmax_replay_chunk
from tests.helpers import assert_close, unit_rows

D_K = 24


def _labels(rng: np.random.Generator, n: int, known: int, new: int) -> np.ndarray:
    """n label positions: any of the ``known`` ones, plus ``new`` ones by first appearance."""
    y = rng.integers(0, known + new, n) if known else rng.integers(0, new, n)
    # positions ≥ known must first appear in order: relabel them by first appearance
    order: dict[int, int] = {}
    out = np.empty(n, dtype=np.int64)
    for t, v in enumerate(y):
        out[t] = v if v < known else order.setdefault(int(v), known + len(order))
    return out


@pytest.mark.parametrize("seed,t0,R", [(0, 0, 1), (7, 12, 15), (2**40 + 3, 2**31 - 5, 4), (2**64 - 1, 5, 0)])
def test_replay_indices_equal_the_python_integer_oracle(seed, t0, R):
    J = replay_indices(seed, t0, 9, R)
    assert J.shape == (9, R) and J.dtype == np.int64
    want = [[replay_index_naive(seed, t0 + t, i, R) for i in range(R)] for t in range(9)]
    assert J.tolist() == want
    assert np.all(J >= 0) and np.all(J <= t0 + np.arange(9)[:, None])


def test_replayed_positions_are_uniform_over_the_earlier_events():
    J = replay_indices(3, 9, 1, 20000)  # event 9 draws 20000 positions from {0..9}
    counts = np.bincount(J[0], minlength=10)
    assert counts.size == 10
    chi2 = float(np.sum((counts - 2000.0) ** 2 / 2000.0))
    print(f"counts {counts.tolist()}, chi² {chi2:.1f} (9 degrees of freedom)")
    assert chi2 < 40.0  # p < 1e-5 for a fair draw


@pytest.mark.parametrize("n", [1, 15, 63, 300])
@pytest.mark.parametrize("R,alpha", [(0, 1.0), (3, 1.0), (15, 0.97)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_chunk_equals_the_oracle(n, R, alpha, dtype):
    rng = np.random.default_rng(n * 31 + R)
    N0, known, new = 40, 5, 4
    X0 = unit_rows(rng, N0, D_K)
    y0 = _labels(rng, N0, 0, known)
    K = unit_rows(rng, n, D_K)
    y = _labels(rng, n, known, new)
    d_v = int(max(known, y.max() + 1))
    S0 = rng.standard_normal((known, D_K)) * 0.3
    beta = rng.uniform(0.05, 1.0, n)
    S_ref, X_ref, y_ref = softmax_replay_naive(pad_rows(S0, d_v), K, list(y), beta, R, alpha, seed=11,
                                               X0=X0.astype(dtype), y0=list(y0), labels0=known)
    S = pad_rows(S0.astype(dtype), d_v)
    ld = softmax_replay_chunk(S, X0.astype(dtype), y0.astype(dtype)[:, None], K.astype(dtype), y,
                              beta, replay=R, labels0=known, alpha=alpha, seed=11)
    got = apply_layer(S, ld)
    assert got.dtype == dtype and ld.gamma == pytest.approx(alpha ** n)
    tol = 1e-11 if dtype == np.float64 else 2e-5
    assert_close(got, S_ref, rtol=tol, name=f"S after {n} writes, R={R}, α={alpha}")
    assert y_ref == list(y0) + list(y)


def test_factor_and_dense_deltas_both_equal_the_oracle():
    rng = np.random.default_rng(5)
    d_k, d_v = 64, 20  # 1 event, 4 rows: 4·84 numbers < 64·20 (factors); 10 events: dense
    X0, y0 = unit_rows(rng, 30, d_k), rng.integers(0, d_v, 30)
    S = rng.standard_normal((d_v, d_k)) * 0.1
    for n, dense in ((1, False), (10, True)):
        K, y = unit_rows(rng, n, d_k), rng.integers(0, d_v, n)
        ld = softmax_replay_chunk(S, X0, y0[:, None].astype(float), K, y, np.full(n, 0.4),
                                  replay=3, labels0=d_v, seed=1)
        assert ld.is_dense == dense and (dense or ld.rank == 4)
        S_ref, _, _ = softmax_replay_naive(S, K, list(y), 0.4, 3, seed=1, X0=X0, y0=list(y0),
                                           labels0=d_v)
        assert_close(apply_layer(S, ld), S_ref, name=f"{n} writes, {'dense' if dense else 'factors'}")


@pytest.mark.parametrize("split", [[1] * 12, [5, 7], [12], [2, 1, 9]])
def test_micro_batch_boundaries_change_the_state_only_by_rounding(split):
    rng = np.random.default_rng(9)
    K, y = unit_rows(rng, 12, D_K), _labels(rng, 12, 0, 6)
    S_ref, _, _ = softmax_replay_naive(np.zeros((6, D_K)), K, list(y), 0.5, 5, seed=4)
    S, X, Y, s = np.zeros((0, D_K)), np.zeros((0, D_K)), np.zeros((0, 1)), 0
    for n in split:
        S = pad_rows(S, int(max(S.shape[0], y[s:s + n].max() + 1)))
        ld = softmax_replay_chunk(S, X, Y, K[s:s + n], y[s:s + n], np.full(n, 0.5), replay=5,
                                  labels0=int(max(y[:s], default=-1)) + 1, seed=4)
        S = apply_layer(S, ld)
        X = apply_layer(X, LayerDelta.append(K[s:s + n], s + n))
        Y = apply_layer(Y, LayerDelta.append(y[s:s + n, None].astype(float), s + n))
        s += n
    assert_close(S, S_ref, rtol=1e-12, name=f"batches {split}")


def test_appended_rows_are_copied_bit_for_bit_and_must_fit():
    X = np.array([[-0.0, 1.0]])
    ld = LayerDelta.append(np.array([[2.0, -0.0], [3.0, 4.0]]), 3)
    out = apply_layer(X, ld)
    assert out.tobytes() == np.array([[-0.0, 1.0], [2.0, -0.0], [3.0, 4.0]]).tobytes()
    assert ld.rank == 2 and not ld.dense_is_smaller and ld.compact() is ld
    assert ld.astype(np.float32).A.dtype == np.float32 and ld.norm() == pytest.approx(np.sqrt(29.0))
    with pytest.raises(ValueError, match="cannot take"):
        apply_layer(np.zeros((2, 2)), ld)
    with pytest.raises(ValueError):
        LayerDelta(shape=(3, 2), gamma=0.5, A=np.ones((1, 2)), appends=True)
    with pytest.raises(ValueError):
        ld.to_dense()


def test_mismatched_shapes_are_refused_naming_the_inputs():
    S, K = np.zeros((2, 4)), unit_rows(np.random.default_rng(0), 3, 4)
    with pytest.raises(InputError, match="inputs"):
        softmax_replay_chunk(S, np.zeros((1, 4)), np.zeros((2, 1)), K, np.zeros(3, int),
                             np.ones(3), replay=1, labels0=0)
    with pytest.raises(InputError, match="inputs"):
        softmax_replay_chunk(S, np.zeros((0, 5)), np.zeros((0, 1)), K, np.zeros(3, int),
                             np.ones(3), replay=1, labels0=0)
