"""CuPy kernels against the NumPy path (``gpu`` tests skip without CuPy and a usable GPU)."""

from __future__ import annotations

import numpy as np
import pytest

import agent.memory.cupy_kernels as ck
from agent.memory.backend import gpu_available
from agent.memory.delta import apply_layer
from agent.memory.delta_rule.chunk import delta_rule_chunk
from agent.memory.delta_rule.many import batched_read, many_delta_write_naive
from agent.memory.rls.chunk import rls_chunk
from tests.helpers import assert_close, unit_rows


def test_module_imports_and_refuses_cleanly_without_cupy():
    assert isinstance(ck.HAVE_CUPY, bool)
    if not ck.HAVE_CUPY:
        assert not gpu_available()
        with pytest.raises(RuntimeError, match="CuPy is not installed"):
            ck.unit_lower_solve(np.zeros((2, 2)), np.zeros((2, 1)))


gpu = pytest.mark.gpu


@gpu
@pytest.mark.parametrize("n,m", [(1, 1), (15, 10), (63, 150), (256, 384)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_unit_lower_solve(n, m, dtype):
    import cupy as cp

    rng = np.random.default_rng(n)
    L = np.tril(rng.uniform(-0.5, 0.5, (n, n)) / np.sqrt(n), -1)
    B = rng.standard_normal((n, m))
    X = ck.unit_lower_solve(cp.asarray(L, dtype=dtype), cp.asarray(B, dtype=dtype))
    assert_close(X, np.linalg.solve(np.eye(n) + L, B), name=f"trsm n={n} m={m}", dtype=dtype)


@gpu
@pytest.mark.parametrize("n,d_k,d_v,alpha", [(1, 8, 10, 1.0), (15, 384, 150, 0.9), (300, 1024, 10, 1.0), (63, 64, 64, 0.5)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_delta_rule_gpu_matches_numpy(n, d_k, d_v, alpha, dtype):
    import cupy as cp

    rng = np.random.default_rng(n + d_k)
    K, V = unit_rows(rng, n, d_k), rng.standard_normal((n, d_v))
    S0, beta = (0.3 * rng.standard_normal((d_v, d_k))).astype(dtype), rng.uniform(0.05, 1, n)
    want = apply_layer(S0, delta_rule_chunk(S0, K, V, beta, alpha))
    ld = ck.delta_rule_chunk_gpu(cp.asarray(S0), cp.asarray(K), cp.asarray(V), cp.asarray(beta), alpha)
    assert_close(ck.apply_layer_gpu(cp.asarray(S0), ld), want, name="delta rule gpu", dtype=dtype)
    host = ck.delta_to_host(ld)  # stored on the host, rebuilt by the CPU op
    assert_close(apply_layer(S0, host), want, name="delta rule gpu → host", dtype=dtype)


@gpu
@pytest.mark.parametrize("n,d_k,d_v,rho", [(1, 8, 10, 1.0), (63, 384, 150, 1.0), (300, 64, 10, 0.99)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rls_gpu_matches_numpy(n, d_k, d_v, rho, dtype):
    import cupy as cp

    rng = np.random.default_rng(n * 3 + d_k)
    K, V = unit_rows(rng, n, d_k), rng.standard_normal((n, d_v))
    S0, P0 = np.zeros((d_v, d_k), dtype), np.eye(d_k, dtype=dtype)
    dS, dP = rls_chunk(S0, P0, K, V, rho)
    gS, gP = ck.rls_chunk_gpu(cp.asarray(S0), cp.asarray(P0), cp.asarray(K), cp.asarray(V), rho)
    assert_close(ck.apply_layer_gpu(cp.asarray(S0), gS), apply_layer(S0, dS), name="rls S gpu", dtype=dtype)
    assert_close(ck.apply_layer_gpu(cp.asarray(P0), gP), apply_layer(P0, dP), name="rls P gpu", dtype=dtype)


@gpu
@pytest.mark.parametrize("B,T,per_row,decay", [(1, 1, False, True), (2048, 16, True, True), (50, 300, False, False)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_many_write_gpu_matches_oracle(B, T, per_row, decay, dtype):
    import cupy as cp

    rng = np.random.default_rng(B + T)
    S = 0.3 * rng.standard_normal((B, 8, 8))
    K = rng.standard_normal((B, T, 8))
    K /= np.linalg.norm(K, axis=-1, keepdims=True)
    V = rng.standard_normal((B, T, 8))
    beta = rng.uniform(0.02, 0.9, (B, T, 8) if per_row else (B, T))
    dec = 1.0 - rng.uniform(0, 0.5, (B, T, 8)) if decay else None
    S_ref, O_ref = many_delta_write_naive(S, K, V, beta, dec)
    S_g, O_g = ck.many_delta_write_gpu(cp.asarray(S, dtype=dtype), cp.asarray(K), cp.asarray(V),
                                       cp.asarray(beta), None if dec is None else cp.asarray(dec))
    assert_close(S_g, S_ref, name="many states gpu", dtype=dtype)
    assert_close(O_g, O_ref, name="many reads gpu", dtype=dtype)


@gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batched_read_gpu_matches_numpy(dtype):
    import cupy as cp

    rng = np.random.default_rng(9)
    states = rng.standard_normal((300, 10, 64)).astype(dtype)
    idx, Q = rng.integers(0, 300, 5000), rng.standard_normal((5000, 64))
    out = ck.batched_read_gpu(cp.asarray(states), cp.asarray(idx), cp.asarray(Q))
    assert_close(out, batched_read(states, idx, Q), name="batched read gpu", dtype=dtype)
