"""Gated delta rule: the chunk (WY/UT) form against the float64 loop oracle, and the deltas.

Run: ``pytest tests/test_kernels_*.py --doctest-modules agent/memory``.
"""

from __future__ import annotations

import numpy as np
import pytest

from agent.errors import InputError
from agent.memory.chunking import split_chunks
from agent.memory.delta import LayerDelta, apply_layer, pad_rows, state_checksum
from agent.memory.delta_rule.chunk import delta_rule_chunk, delta_rule_chunk_outputs
from agent.memory.delta_rule.naive import delta_rule_naive
from tests.helpers import assert_close, unit_rows

# (n, d_k, d_v, alpha, chunk): sizes 1, 15, 63, 300; d from 8 to 1024; α = 1 and α < 1
CASES = [
    (1, 8, 10, 1.0, 64),
    (1, 1024, 1, 0.9, 64),
    (15, 8, 8, 0.5, 4),
    (15, 384, 150, 1.0, 64),
    (63, 64, 10, 0.99, 16),
    (63, 1024, 150, 0.9, 64),
    (300, 64, 150, 1.0, 64),
    (300, 8, 1024, 0.97, 256),
    (300, 384, 384, 0.999, 64),
]
SLOW_CASES = [
    (n, dk, dv, a, c)
    for n in (1, 15, 63, 300)
    for dk in (8, 64, 384, 1024)
    for dv in (1, 10, 150, 1024)
    for a, c in ((1.0, 64), (0.9, 16))
]


def _problem(seed, n, d_k, d_v, beta_const=None):
    rng = np.random.default_rng(seed)
    K = unit_rows(rng, n, d_k)  # (n, d_k)
    V = rng.standard_normal((n, d_v))  # (n, d_v)
    S0 = 0.3 * rng.standard_normal((d_v, d_k))  # (d_v, d_k)
    beta = np.full(n, beta_const) if beta_const is not None else rng.uniform(0.05, 1.0, n)
    return S0, K, V, beta


def _check(n, d_k, d_v, alpha, chunk, dtype, seed=0, beta_const=None):
    S0, K, V, beta = _problem(seed, n, d_k, d_v, beta_const)
    S_ref, O_ref = delta_rule_naive(S0, K, V, beta, alpha)
    ld, Y = delta_rule_chunk_outputs(S0.astype(dtype), K, V, beta, alpha, chunk=chunk)
    S = apply_layer(S0.astype(dtype), ld)
    assert S.dtype == dtype and Y.dtype == dtype and ld.E.dtype == dtype
    tag = f"n={n} d_k={d_k} d_v={d_v} α={alpha} chunk={chunk} {np.dtype(dtype).name}"
    assert_close(S, S_ref, name=f"state {tag}")
    assert_close(Y, O_ref, name=f"outputs {tag}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n,d_k,d_v,alpha,chunk", CASES)
def test_chunk_matches_naive(n, d_k, d_v, alpha, chunk, dtype):
    _check(n, d_k, d_v, alpha, chunk, dtype)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n,d_k,d_v,alpha,chunk", SLOW_CASES)
def test_chunk_matches_naive_sweep(n, d_k, d_v, alpha, chunk, dtype):
    _check(n, d_k, d_v, alpha, chunk, dtype, seed=n + d_k + d_v)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_beta_one_and_repeated_keys(dtype):
    """β = 1 with a key written twice: the second target replaces the first exactly."""
    rng = np.random.default_rng(3)
    K = unit_rows(rng, 15, 16)
    K[7] = K[2]  # the same key again
    V = rng.standard_normal((15, 5))
    S0 = np.zeros((5, 16))
    ref, _ = delta_rule_naive(S0, K, V, 1.0)
    ld = delta_rule_chunk(S0.astype(dtype), K, V, 1.0, chunk=8)
    assert_close(apply_layer(S0.astype(dtype), ld), ref, name="β=1, repeated key")


def test_per_write_decay_and_chunk_size_do_not_matter():
    S0, K, V, beta = _problem(4, 63, 32, 7)
    alpha = np.random.default_rng(5).uniform(0.6, 1.0, 63)  # one decay per write
    ref, O_ref = delta_rule_naive(S0, K, V, beta, alpha)
    for chunk in (1, 7, 16, 63, 500):
        ld, Y = delta_rule_chunk_outputs(S0, K, V, beta, alpha, chunk=chunk)
        assert_close(apply_layer(S0, ld), ref, name=f"per-write α, chunk={chunk}")
        assert_close(Y, O_ref, name=f"per-write α outputs, chunk={chunk}")
        assert ld.A.shape == (63, 32) and ld.E.shape == (63, 7)
        assert ld.gamma == pytest.approx(float(np.prod(alpha)), rel=1e-12)


def test_delta_factors_are_keys_and_gamma_is_decay_product():
    S0, K, V, beta = _problem(6, 15, 12, 4)
    ld = delta_rule_chunk(S0, K, V, beta, alpha=0.8, chunk=4)
    assert np.array_equal(ld.A, K)
    assert ld.gamma == pytest.approx(0.8**15, rel=1e-12)
    # S_n = γ S0 + Eᵀ K, with E[t] = α^{n-1-t} β_t (v_t − α S_{t-1} k_t)
    _, Y = delta_rule_naive(S0, K, V, beta, 0.8)
    E_ref = (0.8 ** np.arange(14, -1, -1))[:, None] * beta[:, None] * (V - 0.8 * Y)
    assert_close(ld.E, E_ref, name="E rows")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rebuild_from_deltas_is_bit_identical(dtype):
    """Live learner: compute a delta, store it (raw bytes), apply it; a rebuild applies the
    stored deltas to the snapshot and must give the same bytes, with labels appearing online."""
    rng = np.random.default_rng(7)
    d_k = 48
    snapshot = np.zeros((0, d_k), dtype=dtype)  # no labels yet
    live = snapshot
    stored = []
    for batch, (n, new_labels, alpha) in enumerate([(5, 3, 1.0), (17, 2, 0.95), (1, 0, 1.0), (70, 4, 0.9)]):
        d_v = live.shape[0] + new_labels
        K = unit_rows(rng, n, d_k)
        V = np.eye(d_v)[rng.integers(0, d_v, n)]  # one-hot targets, (n, d_v)
        S_in = pad_rows(live, d_v)  # new rows start at zero
        ld = delta_rule_chunk(S_in, K, V, rng.uniform(0.2, 1.0, n), alpha).compact()
        if batch == 1:
            ld = ld.astype(np.float16)  # a float16-stored delta: apply the cast one, live too
        blob = [(a.dtype.str, a.shape, a.tobytes()) for a in (ld.A, ld.E, ld.dense) if a is not None]
        stored.append((ld.is_dense, ld.gamma, blob))
        live = apply_layer(live, ld)
    rebuilt = snapshot
    for is_dense, gamma, blob in stored:
        arrs = [np.frombuffer(b, dtype=np.dtype(s)).reshape(sh) for s, sh, b in blob]
        ld = LayerDelta.of_dense(arrs[0], gamma) if is_dense else LayerDelta.factors(*arrs, gamma)
        rebuilt = apply_layer(rebuilt, ld)
    assert rebuilt.dtype == dtype and rebuilt.shape == live.shape == (9, d_k)
    assert np.array_equal(rebuilt, live)
    assert state_checksum({"S": rebuilt}) == state_checksum({"S": live})


def test_factor_or_dense_by_size():
    S0, K, V, beta = _problem(8, 4, 64, 10)  # 4·(64+10) < 640: factors are smaller
    ld = delta_rule_chunk(S0, K, V, beta)
    assert not ld.dense_is_smaller and ld.compact() is ld
    S0, K, V, beta = _problem(9, 63, 64, 10)  # 63·74 > 640: dense is smaller
    ld = delta_rule_chunk(S0, K, V, beta)
    c = ld.compact()
    assert ld.dense_is_smaller and c.is_dense and c.nbytes() < ld.nbytes()
    assert_close(apply_layer(S0, c), apply_layer(S0, ld), name="dense vs factor delta")


def test_split_chunks_covers_in_order():
    for n in (1, 15, 63, 300):
        for c in (1, 16, 64, 256):
            sl = split_chunks(n, c)
            assert np.array_equal(np.concatenate([np.arange(n)[s] for s in sl]), np.arange(n))
            assert all(s.stop - s.start <= c for s in sl)


@pytest.mark.parametrize(
    "field,kwargs",
    [
        ("beta", {"beta": np.full(3, 1.5)}),
        ("beta", {"beta": np.zeros(3)}),
        ("beta", {"beta": np.ones(4)}),
        ("alpha", {"alpha": 0.0}),
        ("alpha", {"alpha": np.nan}),
        ("V", {"V": np.ones((3, 5))}),
        ("K", {"K": np.ones((3, 7))}),
        ("chunk", {"chunk": 0}),
    ],
)
def test_bad_arguments_name_the_field(field, kwargs):
    args = {"S": np.zeros((4, 6)), "K": unit_rows(np.random.default_rng(0), 3, 6),
            "V": np.ones((3, 4)), "beta": np.full(3, 0.5)}
    args.update(kwargs)
    with pytest.raises(InputError) as ei:
        delta_rule_chunk(**args)
    assert ei.value.field == field
