"""The torch δ-mem write kernels: chunk form vs the naive loop vs the float64 NumPy oracles."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agent.lm.state import masked_mean, read, write_chunk, write_naive
from agent.memory.delta_rule.naive import delta_rule_naive

torch.set_num_threads(1)


def _inputs(T: int, seed: int, N: int = 3, d_v: int = 4, d_k: int = 5, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    S = torch.randn(N, d_v, d_k, generator=g, dtype=dtype)
    K = torch.nn.functional.normalize(torch.randn(N, T, d_k, generator=g, dtype=dtype), dim=-1)
    V = torch.randn(N, T, d_v, generator=g, dtype=dtype)
    beta = torch.rand(N, T, d_v, generator=g, dtype=dtype)
    decay = 1.0 - 0.5 * torch.rand(N, T, d_v, generator=g, dtype=dtype)
    Q = torch.randn(N, T, d_k, generator=g, dtype=dtype)
    return S, K, V, beta, decay, Q


@pytest.mark.parametrize("T", [1, 15, 63])
@pytest.mark.parametrize("gated", [False, True])
@pytest.mark.parametrize("chunk", [1, 16, 64])
def test_chunk_matches_naive(T, gated, chunk):
    S, K, V, beta, decay, Q = _inputs(T, seed=T + chunk)
    d = decay if gated else None
    S1, O1 = write_naive(S, K, V, beta, d, Q)
    S2, O2 = write_chunk(S, K, V, beta, d, Q, chunk=chunk)
    torch.testing.assert_close(S2, S1, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(O2, O1, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("T", [1, 15, 63])
def test_naive_matches_numpy_oracle_row_by_row(T):
    S, K, V, beta, decay, _ = _inputs(T, seed=100 + T)
    S1, O1 = write_naive(S, K, V, beta, decay)
    for n in range(S.shape[0]):
        for i in range(S.shape[1]):  # every row is its own one-row delta rule
            Sr, Or = delta_rule_naive(S[n, i: i + 1].numpy(), K[n].numpy(), V[n, :, i: i + 1].numpy(),
                                      beta[n, :, i].numpy(), decay[n, :, i].numpy())
            np.testing.assert_allclose(S1[n, i: i + 1].numpy(), Sr, rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(O1[n, :, i: i + 1].numpy(), Or, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("T", [1, 15, 63])
def test_chunk_matches_many_naive(T):
    many = pytest.importorskip("agent.memory.delta_rule.many")
    S, K, V, beta, decay, _ = _inputs(T, seed=200 + T)
    Sr, Or = many.many_delta_write_naive(S.numpy(), K.numpy(), V.numpy(), beta.numpy(), decay.numpy())
    S2, O2 = write_chunk(S, K, V, beta, decay, chunk=16)
    np.testing.assert_allclose(S2.numpy(), Sr, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(O2.numpy(), Or, rtol=1e-10, atol=1e-10)


def test_read_before_write():
    S, K, V, beta, decay, Q = _inputs(7, seed=3)
    _, reads = write_naive(S, K, V, beta, decay, Q)
    assert torch.equal(reads[:, 0], read(S, Q[:, :1])[:, 0])  # the first read sees S0 untouched
    for t in range(1, 7):  # read t sees exactly the state after writes 0..t-1
        St, _ = write_naive(S, K[:, :t], V[:, :t], beta[:, :t], decay[:, :t], Q[:, :t])
        torch.testing.assert_close(reads[:, t], read(St, Q[:, t: t + 1])[:, 0], rtol=0, atol=1e-14)


def test_masked_writes_are_exact_noops():
    S, K, V, beta, decay, _ = _inputs(9, seed=4)
    keep = torch.tensor([1, 0, 1, 1, 0, 0, 1, 0, 1], dtype=torch.bool)
    b0, a0 = beta * keep[None, :, None], torch.where(keep[None, :, None], decay, 1.0)
    ref, _ = write_naive(S, K[:, keep], V[:, keep], beta[:, keep], decay[:, keep])
    masked, _ = write_naive(S, K, V, b0, a0)
    assert torch.equal(masked, ref)
    torch.testing.assert_close(write_chunk(S, K, V, b0, a0, chunk=4)[0], ref, rtol=1e-12, atol=1e-12)


def test_chunk_gradients_match_naive():
    S, K, V, beta, decay, Q = _inputs(20, seed=5)
    grads = []
    for fn in (write_naive, lambda *a: write_chunk(*a, chunk=8)):
        ts = [t.clone().requires_grad_(True) for t in (S, K, V, beta, decay, Q)]
        Sf, reads = fn(*ts)
        (Sf.square().sum() + reads.sin().sum()).backward()
        grads.append([t.grad for t in ts])
    for g1, g2 in zip(*grads, strict=True):
        torch.testing.assert_close(g2, g1, rtol=1e-9, atol=1e-9)


def test_bad_shapes_rejected():
    S, K, V, beta, _, _ = _inputs(5, seed=6)
    with pytest.raises(ValueError):
        write_chunk(S, K, V, beta[:, :, :2])
    with pytest.raises(ValueError):
        write_naive(S, K[:, :, :3], V, beta)


def test_masked_mean_leaves_out_negative_segments():
    x = torch.arange(24, dtype=torch.float64).reshape(1, 6, 4)
    seg = torch.tensor([[-1, 0, 0, -1, 1, -1]])
    means, present = masked_mean(x, seg, 3)
    torch.testing.assert_close(means[0, 0], x[0, 1:3].mean(0))
    torch.testing.assert_close(means[0, 1], x[0, 4])
    assert present.tolist() == [[True, True, False]] and torch.equal(means[0, 2], torch.zeros(4, dtype=x.dtype))
