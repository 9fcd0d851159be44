"""RLS (preconditioned delta rule): the Woodbury chunk form against the float64 loop oracle."""

from __future__ import annotations

import numpy as np
import pytest

from agent.errors import InputError
from agent.memory.delta import LayerDelta, apply_layer, state_checksum
from agent.memory.rls.chunk import rls_auto_chunk, rls_chunk, rls_chunk_outputs
from agent.memory.rls.naive import rls_naive
from tests.helpers import assert_close, unit_rows

# (n, d_k, d_v, rho, ridge, chunk). With ρ < 1 the window 1/(1−ρ) is kept ≳ d_k: otherwise the
# problem itself is ill-conditioned (P winds up) and float32 cannot reach 1e-5 by any algorithm.
CASES = [
    (1, 8, 10, 1.0, 1.0, 64),
    (15, 64, 10, 0.95, 0.5, 64),
    (15, 1024, 3, 1.0, 1.0, 64),
    (63, 384, 150, 1.0, 2.0, 16),
    (63, 8, 1024, 0.9, 1.0, 64),
    (300, 64, 150, 0.99, 0.5, 64),
    (300, 8, 10, 0.9, 1.0, 256),
    (300, 128, 10, 1.0, 0.1, 64),
]
SLOW_CASES = [
    (n, dk, dv, rho, 1.0, 64)
    for n in (1, 15, 63, 300)
    for dk in (8, 64, 384, 1024)
    for dv in (10, 150)
    for rho in (1.0, 0.995)
]


def _problem(seed, n, d_k, d_v, ridge):
    rng = np.random.default_rng(seed)
    K = unit_rows(rng, n, d_k)
    V = rng.standard_normal((n, d_v))
    S0 = 0.3 * rng.standard_normal((d_v, d_k))
    P0 = np.eye(d_k) / ridge
    return S0, P0, K, V


def _check(n, d_k, d_v, rho, ridge, chunk, dtype, seed=0):
    S0, P0, K, V = _problem(seed, n, d_k, d_v, ridge)
    S_ref, P_ref, O_ref = rls_naive(S0, P0, K, V, rho)
    dS, dP, Y = rls_chunk_outputs(S0.astype(dtype), P0.astype(dtype), K, V, rho, chunk=chunk)
    S = apply_layer(S0.astype(dtype), dS)
    P = apply_layer(P0.astype(dtype), dP)
    assert S.dtype == P.dtype == Y.dtype == dtype
    tag = f"n={n} d_k={d_k} d_v={d_v} ρ={rho} chunk={chunk} {np.dtype(dtype).name}"
    assert_close(S, S_ref, name=f"S {tag}")
    assert_close(P, P_ref, name=f"P {tag}")
    assert_close(Y, O_ref, name=f"outputs {tag}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n,d_k,d_v,rho,ridge,chunk", CASES)
def test_rls_chunk_matches_naive(n, d_k, d_v, rho, ridge, chunk, dtype):
    _check(n, d_k, d_v, rho, ridge, chunk, dtype)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n,d_k,d_v,rho,ridge,chunk", SLOW_CASES)
def test_rls_chunk_matches_naive_sweep(n, d_k, d_v, rho, ridge, chunk, dtype):
    _check(n, d_k, d_v, rho, ridge, chunk, dtype, seed=n * 7 + d_k)


@pytest.mark.parametrize("chunk", [1, 16, 64, 400])
def test_rls_rho_one_is_closed_form_ridge(chunk):
    """From S = 0, P = I/λ, one pass with ρ = 1 gives S = Vᵀ K (KᵀK + λI)⁻¹, whatever the order."""
    rng = np.random.default_rng(11)
    n, d_k, d_v, lam = 300, 40, 6, 0.7
    K = unit_rows(rng, n, d_k)
    V = rng.standard_normal((n, d_v))
    ridge = np.linalg.solve(K.T @ K + lam * np.eye(d_k), K.T @ V).T  # (d_v, d_k)
    S0, P0 = np.zeros((d_v, d_k)), np.eye(d_k) / lam
    dS, dP = rls_chunk(S0, P0, K, V, 1.0, chunk=chunk)
    assert_close(apply_layer(S0, dS), ridge, name=f"ridge, chunk={chunk}")
    assert_close(apply_layer(P0, dP), np.linalg.inv(K.T @ K + lam * np.eye(d_k)), name="P = (KᵀK+λI)⁻¹")
    perm = rng.permutation(n)  # class-incremental or shuffled: the same answer
    dS2, _ = rls_chunk(S0, P0, K[perm], V[perm], 1.0, chunk=chunk)
    assert_close(apply_layer(S0, dS2), ridge, name="ridge, permuted order")


def test_delta_forms_of_s_and_p():
    S0, P0, K, V = _problem(12, 15, 20, 5, 1.0)
    dS, dP = rls_chunk(S0, P0, K, V, 1.0)
    assert not dS.is_dense and dS.gamma == 1.0 and dS.A.shape == (15, 20) and dS.E.shape == (15, 5)
    assert not dP.is_dense and dP.gamma == 1.0 and dP.A.shape == (15, 20) and dP.E.shape == (15, 20)
    assert_close(dS.E, V - K @ S0.T, name="E_S = V − K S0ᵀ")
    dS, dP = rls_chunk(S0, P0, K, V, 0.97)
    assert dP.is_dense and dP.gamma == 0.0  # with forgetting, P's delta replaces P
    P = apply_layer(P0, dP)
    assert np.array_equal(P, P.T)  # exactly symmetric


@pytest.mark.parametrize("rho", [1.0, 0.98])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rls_rebuild_is_bit_identical(rho, dtype):
    rng = np.random.default_rng(13)
    d_k, d_v = 24, 4
    S, P = np.zeros((d_v, d_k), dtype), (np.eye(d_k) / 0.5).astype(dtype)
    snap = (S.copy(), P.copy())
    log: list[tuple[LayerDelta, LayerDelta]] = []
    for n in (3, 40, 1, 90):
        K, V = unit_rows(rng, n, d_k), rng.standard_normal((n, d_v))
        dS, dP = rls_chunk(S, P, K, V, rho)
        dS, dP = dS.compact(), dP.compact()
        log.append((dS, dP))
        S, P = apply_layer(S, dS), apply_layer(P, dP)
    S2, P2 = snap
    for dS, dP in log:
        S2, P2 = apply_layer(S2, dS), apply_layer(P2, dP)
    assert np.array_equal(S2, S) and np.array_equal(P2, P)
    assert state_checksum({"S": S2, "P": P2}) == state_checksum({"S": S, "P": P})


def test_forgetting_is_stable_over_many_batches():
    """ρ < 1 over 3,000 float32 writes: P stays symmetric positive definite and matches the oracle."""
    rng = np.random.default_rng(14)
    d_k, d_v, rho = 8, 3, 0.9
    K, V = unit_rows(rng, 3000, d_k), rng.standard_normal((3000, d_v))
    S, P = np.zeros((d_v, d_k), np.float32), np.eye(d_k, dtype=np.float32)
    for s in range(0, 3000, 50):
        dS, dP = rls_chunk(S, P, K[s:s + 50], V[s:s + 50], rho)
        S, P = apply_layer(S, dS), apply_layer(P, dP)
    S_ref, P_ref, _ = rls_naive(np.zeros((d_v, d_k)), np.eye(d_k), K, V, rho)
    assert np.array_equal(P, P.T) and np.linalg.eigvalsh(P.astype(np.float64)).min() > 0
    assert_close(S, S_ref, name="S after 3000 writes, ρ=0.9")
    assert_close(P, P_ref, name="P after 3000 writes, ρ=0.9")


@pytest.mark.parametrize(
    "field,kwargs",
    [("rho", {"rho": 0.0}), ("rho", {"rho": 1.2}), ("P", {"P": np.eye(5)}), ("V", {"V": np.ones((2, 4))})],
)
def test_bad_arguments_name_the_field(field, kwargs):
    args = {"S": np.zeros((4, 6)), "P": np.eye(6), "K": unit_rows(np.random.default_rng(0), 3, 6),
            "V": np.ones((3, 4))}
    args.update(kwargs)
    with pytest.raises(InputError) as ei:
        rls_chunk(**args)
    assert ei.value.field == field


@pytest.mark.parametrize("n,d_k", [(1, 8), (300, 8), (300, 384), (63, 1024)])
def test_auto_chunk_matches_naive(n, d_k):
    """``chunk=None`` (one chunk unless d_k is small: ``rls_auto_chunk``) against the oracle."""
    assert rls_auto_chunk(d_k) == max(64, d_k // 2)
    for dtype in (np.float32, np.float64):
        _check(n, d_k, 10, 1.0, 1.0, None, dtype, seed=n * 7 + d_k)  # the sweep's seeds


def test_p_is_read_as_symmetric_from_one_triangle():
    """Rounding asymmetry below the diagonal of P never reaches the writes (one triangle is read)."""
    S0, P0, K, V = _problem(5, 40, 32, 6, 0.5)
    noisy = P0 + np.tril(np.full_like(P0, 1e-3), -1)  # only the lower triangle disturbed
    a, b = rls_chunk(S0, P0, K, V), rls_chunk(S0, noisy, K, V)
    assert np.array_equal(apply_layer(S0, a[0]), apply_layer(S0, b[0]))
    assert np.array_equal(a[1].A, b[1].A)
