"""RLS with pending rows (``P − QᵀQ``, :mod:`agent.memory.rls.pending`) against the float64 loop
oracle, the plain chunk form's reads, and the exactness contract (rebuilds bit-identical)."""

from __future__ import annotations

import numpy as np
import pytest

from agent.errors import InputError
from agent.memory.delta import LayerDelta, apply_layer, state_checksum
from agent.memory.rls.chunk import rls_auto_chunk, rls_chunk_outputs
from agent.memory.rls.naive import rls_naive
from agent.memory.rls.pending import pending_rows, rls_pending
from tests.helpers import assert_close, unit_rows

# (batch sizes, d_k, d_v, max_rows): appends only, folds at every batch, folds now and then,
# batches longer than one RLS chunk (rls_auto_chunk(8) = 64 < 300), awkward sizes 1/15/63/300
CASES = [
    ((1, 1, 1), 8, 10, 16),
    ((15, 15, 15, 15), 64, 10, 40),
    ((63, 1, 15, 63, 300), 8, 150, 64),
    ((300,), 384, 10, 256),
    ((15,) * 20, 384, 150, 100),
    ((63, 63, 63), 64, 3, 1),
    ((1,) * 40, 15, 4, 7),
]


def _stream(sizes, d_k, d_v, seed):
    rng = np.random.default_rng(seed)
    n = sum(sizes)
    K, V = unit_rows(rng, n, d_k), rng.standard_normal((n, d_v))
    cuts = np.cumsum((0,) + tuple(sizes))
    return K, V, [slice(int(a), int(b)) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]


def _learn(S, P, Q, K, V, batches, max_rows, cast=None, outputs=False):
    """Run the batches; returns the final (S, P, Q), the applied deltas and the reads."""
    log, reads = [], []
    for s in batches:
        dS, dP, dQ, Y = rls_pending(S, P, Q, K[s], V[s], max_rows, outputs=outputs)
        deltas = {"S": dS, "P": dP, "Q": dQ}
        deltas = {k: (v.compact().astype(cast) if cast else v.compact())
                  for k, v in deltas.items() if v is not None}
        log.append(deltas)
        reads.append(Y)
        S = apply_layer(S, deltas["S"])
        P = apply_layer(P, deltas["P"]) if "P" in deltas else P
        Q = apply_layer(Q, deltas["Q"]) if "Q" in deltas else Q
        assert Q.shape[0] <= max_rows
    return (S, P, Q), log, reads


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("sizes,d_k,d_v,max_rows", CASES)
def test_pending_matches_the_loop(sizes, d_k, d_v, max_rows, dtype):
    K, V, batches = _stream(sizes, d_k, d_v, seed=d_k + len(sizes))
    rng = np.random.default_rng(1)
    S0, P0 = 0.3 * rng.standard_normal((d_v, d_k)), np.eye(d_k) / 0.5
    S_ref, P_ref, _ = rls_naive(S0, P0, K, V, 1.0)
    (S, P, Q), log, _ = _learn(S0.astype(dtype), P0.astype(dtype), np.zeros((0, d_k), dtype),
                               K, V, batches, max_rows)
    tag = f"sizes={sizes[:4]}… d_k={d_k} max_rows={max_rows} {np.dtype(dtype).name}"
    assert S.dtype == P.dtype == Q.dtype == dtype
    assert_close(S, S_ref, name=f"S {tag}")
    assert_close(P - Q.T @ Q, P_ref, name=f"P − QᵀQ {tag}")
    folds = sum("P" in d for d in log)
    assert folds >= 1 or sum(sizes) <= max_rows  # the cases exercise folding


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_reads_equal_the_chunk_form_on_the_same_preconditioner(dtype):
    rng = np.random.default_rng(5)
    d_k, d_v = 48, 6
    S = rng.standard_normal((d_v, d_k)).astype(dtype)
    P = (np.eye(d_k) * 2.0).astype(dtype)
    Q = (0.1 * unit_rows(rng, 9, d_k)).astype(dtype)  # P − QᵀQ stays positive definite
    for n in (1, 15, 40, rls_auto_chunk(d_k) + 5):
        K, V = unit_rows(rng, n, d_k), rng.standard_normal((n, d_v))
        dS, dP, dQ, Y = rls_pending(S, P, Q, K, V, max_rows=32, outputs=True)
        rS, rP, rY = rls_chunk_outputs(S, P - Q.T @ Q, K, V, 1.0)
        assert_close(Y, rY, name=f"reads n={n}")
        assert_close(apply_layer(S, dS), apply_layer(S, rS), name=f"S n={n}")
        P_new = apply_layer(P, dP) if dP is not None else P
        Q_new = apply_layer(Q, dQ) if dQ is not None else Q
        assert_close(P_new - Q_new.T @ Q_new, apply_layer(P - Q.T @ Q, rP), name=f"P n={n}")


@pytest.mark.parametrize("cast", [None, "float16"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rebuild_from_the_deltas_is_bit_identical(dtype, cast):
    d_k, d_v, max_rows = 37, 5, 20
    K, V, batches = _stream((3, 15, 1, 9, 15, 63, 2, 15), d_k, d_v, seed=9)
    init = (np.zeros((d_v, d_k), dtype), (np.eye(d_k) / 0.3).astype(dtype), np.zeros((0, d_k), dtype))
    (S, P, Q), log, _ = _learn(*init, K, V, batches, max_rows, cast=cast)
    layers = dict(zip("SPQ", init, strict=True))
    for deltas in log:  # a rebuild: the stored deltas, applied in order with the same op
        layers = {k: apply_layer(v, deltas[k]) if k in deltas else v for k, v in layers.items()}
    assert state_checksum(layers) == state_checksum({"S": S, "P": P, "Q": Q})
    assert any(d["Q"].shape[0] == 0 for d in log if "Q" in d)  # Q emptied at least once


def test_q_appends_exactly_and_p_stays_symmetric_to_rounding():
    d_k, d_v, max_rows = 301, 7, 40
    K, V, batches = _stream((15,) * 30, d_k, d_v, seed=3)
    S, P, Q = np.zeros((d_v, d_k)), np.eye(d_k) / 0.1, np.zeros((0, d_k))
    for s in batches:
        dS, dP, dQ, _ = rls_pending(S, P, Q, K[s], V[s], max_rows)
        if dP is None:  # an append keeps the old rows bit for bit and adds B below them
            Q_new = apply_layer(Q, dQ)
            assert np.array_equal(Q_new[: Q.shape[0]], Q)
            assert np.array_equal(Q_new[Q.shape[0]:], dQ.A)
        S = apply_layer(S, dS)
        P = apply_layer(P, dP) if dP is not None else P
        Q = apply_layer(Q, dQ) if dQ is not None else Q
    asym = np.linalg.norm(P - P.T) / np.linalg.norm(P)
    print(f"relative asymmetry of P after {len(batches)} batches: {asym:.1e}")
    assert asym <= 1e-14


def test_gamma_zero_may_shrink_a_layer_other_deltas_may_not():
    Q = np.ones((4, 3))
    assert apply_layer(Q, LayerDelta.of_dense(np.zeros((0, 3)), 0.0)).shape == (0, 3)
    with pytest.raises(ValueError, match="shrink"):
        apply_layer(Q, LayerDelta.of_dense(np.zeros((2, 3)), 1.0))


def test_bad_pending_rows_name_the_field():
    S, P = np.zeros((2, 4)), np.eye(4)
    K, V = unit_rows(np.random.default_rng(0), 2, 4), np.ones((2, 2))
    for Q in (np.zeros((0, 5)), np.zeros((9, 4)), np.zeros(4)):
        with pytest.raises(InputError) as err:
            rls_pending(S, P, Q, K, V, max_rows=8)
        assert err.value.field == "Q"
    with pytest.raises(InputError) as err:
        rls_pending(S, np.eye(3), np.zeros((0, 4)), K, V, max_rows=8)
    assert err.value.field == "P"


def test_pending_rows_only_for_wide_keys():
    assert pending_rows(384) == 0 and pending_rows(1023) == 0
    assert pending_rows(1024) == pending_rows(4096) == 256


@pytest.mark.parametrize("n,d_v,d_k", [(1, 1, 1), (15, 150, 384), (63, 3, 300), (300, 1024, 1024)])
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_delta_norm_equals_the_norm_of_the_product(n, d_v, d_k, dtype):
    rng = np.random.default_rng(n + d_v)
    A, E = rng.standard_normal((n, d_k)).astype(dtype), rng.standard_normal((n, d_v)).astype(dtype)
    ld = LayerDelta.factors(A, E)
    ref = np.linalg.norm(E.astype(np.float64).T @ A.astype(np.float64))
    assert_close(np.array([ld.norm()]), np.array([ref]), rtol=1e-12, name=f"‖EᵀA‖ n={n}")
    B = A.astype(np.float64)
    assert LayerDelta.factors(B, -B).norm() == pytest.approx(np.linalg.norm(B.T @ B), rel=1e-12)
