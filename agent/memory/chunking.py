"""What the chunk forms of every rule share: cutting a batch into chunks, checking operands,
per-write parameters, and merging the chunk deltas into one delta over the batch.

Long batches are split into chunks of at most ``chunk`` rows; each chunk starts from the state
the previous chunk's delta gives through :func:`~agent.memory.deltas.apply_layer`, and the chunk
deltas are merged into one delta over the whole batch (later chunks' decays folded into earlier
rows of E).
"""

from __future__ import annotations

import numpy as np

from agent.errors import InputError
from agent.memory.deltas import LayerDelta

__all__ = ["DEFAULT_CHUNK", "split_chunks"]

DEFAULT_CHUNK = 64


def split_chunks(n: int, chunk: int = DEFAULT_CHUNK) -> list[slice]:
    """Row slices of at most ``chunk`` rows covering ``range(n)`` in order.

    >>> split_chunks(5, 2)
    [slice(0, 2, None), slice(2, 4, None), slice(4, 5, None)]
    """
    if chunk < 1:
        raise InputError("chunk", f"expected a positive integer, got {chunk}")
    return [slice(s, min(s + chunk, n)) for s in range(0, n, chunk)]


def _check(S: np.ndarray, K: np.ndarray, V: np.ndarray) -> None:
    if S.ndim != 2:
        raise InputError("S", f"expected a (d_v, d_k) matrix, got shape {S.shape}")
    if K.ndim != 2 or K.shape[1] != S.shape[1] or K.shape[0] < 1:
        raise InputError("K", f"expected (n >= 1, {S.shape[1]}), got shape {K.shape}")
    if V.shape != (K.shape[0], S.shape[0]):
        raise InputError("V", f"expected ({K.shape[0]}, {S.shape[0]}), got shape {V.shape}")


def _per_write(x: np.ndarray | float, n: int, name: str) -> np.ndarray:
    """A scalar or (n,) parameter as an (n,) float64 array in (0, 1]."""
    a = np.asarray(x, dtype=np.float64)
    a = np.full(n, float(a)) if a.ndim == 0 else a
    if a.shape != (n,):
        raise InputError(name, f"expected a scalar or shape ({n},), got {a.shape}")
    if not (np.all(np.isfinite(a)) and np.all(a > 0) and np.all(a <= 1)):
        raise InputError(name, "expected values in (0, 1]")
    return a


def _merge(parts: list[LayerDelta]) -> LayerDelta:
    """One factor delta equal to applying ``parts`` in order: later gammas scale earlier E."""
    if len(parts) == 1:
        return parts[0]
    gammas = [p.gamma for p in parts]
    if parts[-1].is_dense and parts[-1].gamma == 0.0:  # a replacement wins over all before it
        return parts[-1]
    if any(p.is_dense for p in parts):  # D = Σ_j (Π_{l>j} γ_l) D_j, accumulated in order
        D = parts[0].to_dense()
        for p in parts[1:]:
            D = D * D.dtype.type(p.gamma) + p.to_dense()
        return LayerDelta.of_dense(D, float(np.prod(gammas)))
    Es = []
    for j, p in enumerate(parts):
        later = float(np.prod(gammas[j + 1 :])) if j + 1 < len(parts) else 1.0
        assert p.E is not None
        Es.append(p.E if later == 1.0 else p.E * p.E.dtype.type(later))
    A = np.concatenate([p.A for p in parts], axis=0)  # type: ignore[misc]
    return LayerDelta.factors(A, np.concatenate(Es, axis=0), float(np.prod(gammas)))


def _operands(S, K, V):  # type: ignore[no-untyped-def]
    """S as float32/float64 (else float64), K and V in S's dtype, shapes checked."""
    S = np.asarray(S)
    if S.dtype not in (np.float32, np.float64):
        S = S.astype(np.float64)
    dt = S.dtype
    K = np.asarray(K, dtype=dt)
    V = np.asarray(V, dtype=dt)
    _check(S, K, V)
    return S, K, V, dt
