"""Many small states (δ-mem) and the batched read: fast forms against their loop oracles."""

from __future__ import annotations

import numpy as np
import pytest

from agent.errors import InputError
from agent.memory.delta import apply_layer
from agent.memory.delta_rule.chunk import delta_rule_chunk_outputs
from agent.memory.delta_rule.many import (
    batched_read,
    batched_read_naive,
    many_delta_write,
    many_delta_write_naive,
)
from tests.helpers import assert_close

# (B, T, d_v, d_k, decay?, beta per row?, chunk)
CASES = [
    (1, 1, 8, 8, True, False, 8),
    (9, 15, 8, 8, True, True, 8),
    (4, 63, 8, 8, False, False, 16),
    (3, 300, 8, 8, True, True, 8),
    (2, 300, 3, 5, True, False, 64),
    (30, 63, 8, 8, True, True, 7),
    (1, 15, 1, 64, False, True, 4),
]


def _problem(seed, B, T, d_v, d_k, decay, per_row):
    rng = np.random.default_rng(seed)
    S = 0.3 * rng.standard_normal((B, d_v, d_k))
    K = rng.standard_normal((B, T, d_k))
    K /= np.linalg.norm(K, axis=-1, keepdims=True)
    V = rng.standard_normal((B, T, d_v))
    beta = rng.uniform(0.02, 0.95, (B, T, d_v) if per_row else (B, T))
    dec = (1.0 - rng.uniform(0.0, 0.6, (B, T, d_v))) if decay else None
    return S, K, V, beta, dec


@pytest.mark.parametrize("method", ["recurrent", "chunk"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("B,T,d_v,d_k,decay,per_row,chunk", CASES)
def test_many_write_matches_naive(B, T, d_v, d_k, decay, per_row, chunk, dtype, method):
    S, K, V, beta, dec = _problem(B * T, B, T, d_v, d_k, decay, per_row)
    S_ref, O_ref = many_delta_write_naive(S, K, V, beta, dec)
    S_f, O_f = many_delta_write(S.astype(dtype), K, V, beta, dec, chunk=chunk, method=method)
    assert S_f.dtype == dtype and O_f.dtype == dtype
    tag = f"{method} B={B} T={T} {d_v}x{d_k} decay={decay} per_row={per_row} {np.dtype(dtype).name}"
    assert_close(S_f, S_ref, name=f"states {tag}")
    assert_close(O_f, O_ref, name=f"reads {tag}")


def test_delta_mem_decay_is_one_minus_beta():
    """δ-mem's parametrisation (decay 1 − β per row) against the oracle, float32, 512 states."""
    rng = np.random.default_rng(21)
    B, T = 512, 40
    beta = 1.0 / (1.0 + np.exp(-(rng.standard_normal((B, T, 8)) - 2.0)))  # σ(x − 2)
    S, K, V, _, _ = _problem(22, B, T, 8, 8, False, False)
    S_ref, O_ref = many_delta_write_naive(S, K, V, beta, 1.0 - beta)
    for method in ("recurrent", "chunk"):
        S_f, O_f = many_delta_write(S.astype(np.float32), K, V, beta, 1.0 - beta, method=method)
        assert_close(S_f, S_ref, name=f"δ-mem states ({method})")
        assert_close(O_f, O_ref, name=f"δ-mem reads ({method})")


def test_uniform_decay_agrees_with_single_state_chunk_form():
    """With one decay for all rows, each state follows the single-state gated rule of chunk.py."""
    S, K, V, beta, _ = _problem(23, 3, 63, 6, 10, False, False)
    alpha = 0.9
    dec = np.full((3, 63, 6), alpha)
    S_f, O_f = many_delta_write(S, K, V, beta, dec, method="chunk")
    for b in range(3):
        ld, Y = delta_rule_chunk_outputs(S[b], K[b], V[b], beta[b], alpha)
        assert_close(S_f[b], apply_layer(S[b], ld), name=f"state {b} vs chunk.py")
        assert_close(O_f[:, :][b], Y, name=f"reads {b} vs chunk.py")


def test_many_write_bad_shapes_name_the_field():
    S, K, V, beta, dec = _problem(24, 2, 5, 8, 8, True, False)
    with pytest.raises(InputError) as ei:
        many_delta_write(S, K, V[:, :4], beta, dec)
    assert ei.value.field == "V"
    with pytest.raises(InputError) as ei:
        many_delta_write(S, K, V, beta, dec[:, :, :3])
    assert ei.value.field == "decay"
    with pytest.raises(InputError) as ei:
        many_delta_write(S, K, V, beta[:, :2], dec)
    assert ei.value.field == "beta"
    with pytest.raises(InputError) as ei:
        many_delta_write(S, K, V, beta, dec, method="scan")
    assert ei.value.field == "method"


@pytest.mark.parametrize("m,q,d_v,d_k", [(1, 1, 8, 8), (15, 63, 8, 8), (300, 1000, 10, 64), (4, 300, 150, 384)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batched_read_matches_naive(m, q, d_v, d_k, dtype):
    rng = np.random.default_rng(m + q)
    states = rng.standard_normal((m, d_v, d_k)).astype(dtype)
    idx = rng.integers(0, m, q)
    Q = rng.standard_normal((q, d_k))
    out = batched_read(states, idx, Q)
    assert out.dtype == dtype and out.shape == (q, d_v)
    assert_close(out, batched_read_naive(states, idx, Q), name=f"read m={m} q={q}")


def test_batched_read_rejects_bad_index():
    states = np.zeros((3, 2, 4))
    with pytest.raises(InputError) as ei:
        batched_read(states, np.array([0, 3]), np.ones((2, 4)))
    assert ei.value.field == "idx"
    with pytest.raises(InputError) as ei:
        batched_read(states, np.array([0, 1]), np.ones((2, 5)))
    assert ei.value.field == "Q"
