"""RLS with pending rows: ``P = P_base − QᵀQ``, the newest rows of ``B`` kept aside.

A micro-batch of an ``rls`` write (ρ = 1) ends with ``P ← P − BᵀB``, ``B`` (n, d_k): a rank-n
update of a d_k × d_k matrix. At small n that update streams P from memory several times and
costs far more than its ``2n·d_k²`` flops (``agent/memory/README.md``, "Where the time goes").
Here the state keeps the update pending instead: two layers,

    P (d_k, d_k)     the base, changed only when rows are folded in
    Q (r, d_k)       the pending rows, 0 ≤ r ≤ ``max_rows``;  the preconditioner is P − QᵀQ

A batch reads ``K (P − QᵀQ) = K P − (K Qᵀ) Q`` (one read of P plus two thin products) and then

- appends its ``B`` to Q while ``r + n ≤ max_rows``: the Q delta has factors ``A = B`` and
  ``E = [0 | I]`` (n, r + n), so ``apply_layer`` writes B into the new rows exactly
  (every product is 0·x or 1·b), and P has no delta;
- otherwise folds everything into P: the P delta is the factor delta ``A = [Q; B]``,
  ``E = −[Q; B]`` (``P − QᵀQ − BᵀB`` in one rank-(r + n) GEMM, compute-bound), and Q is
  emptied by a replacement with no rows (``gamma = 0``).

The read is a plain GEMM ``K @ P``: ``?symm`` (which reads one triangle, so that rounding
asymmetry of P cannot feed back) packs the mirrored matrix first and is several times slower than a GEMM for one event
(`benchmarks/EVAL.md`, "RLS write cost"). With ρ = 1 nothing amplifies an asymmetry —
every P delta subtracts a product ``ZᵀZ`` (γ = 1), symmetric up to the order of its sums —
so it stays at the rounding level (tested over many folds).

Both are ordinary :class:`LayerDelta`\\ s applied with :func:`apply_layer`, so the exactness
contract (live state = snapshot + deltas, bit for bit) holds as for every other rule, and the
state after a batch equals :func:`agent.memory.rls.chunk.rls_chunk` on ``P − QᵀQ`` up to rounding
(tested against the float64 loop of :mod:`agent.memory.rls.naive`). Batches longer than one RLS
chunk fold Q first and take the chunked path. Only ρ = 1: with forgetting the P delta is a
dense replacement anyway.

Examples
--------
>>> import numpy as np
>>> from agent.memory.deltas import apply_layer
>>> rng = np.random.default_rng(0)
>>> K = rng.standard_normal((3, 4)); K /= np.linalg.norm(K, axis=1, keepdims=True)
>>> V = np.eye(3)
>>> S, P, Q = np.zeros((3, 4)), np.eye(4), np.zeros((0, 4))
>>> dS, dP, dQ, _ = rls_pending(S, P, Q, K[:2], V[:2], max_rows=2)
>>> dP is None, apply_layer(Q, dQ).shape
(True, (2, 4))
>>> S, Q = apply_layer(S, dS), apply_layer(Q, dQ)
>>> dS, dP, dQ, _ = rls_pending(S, P, Q, K[2:], V[2:], max_rows=2)
>>> P, Q = apply_layer(P, dP), apply_layer(Q, dQ)
>>> Q.shape, bool(np.allclose(P, np.linalg.inv(np.eye(4) + K.T @ K)))
((0, 4), True)
"""

from __future__ import annotations

import numpy as np

from agent.errors import InputError
from agent.memory.chunking import _merge, _operands
from agent.memory.deltas import LayerDelta, apply_layer
from agent.memory.rls.chunk import _rls, rls_auto_chunk, rls_from_read

__all__ = ["PENDING_MIN_DK", "pending_rows", "rls_pending"]

PENDING_MIN_DK = 1024  # below this P is small and the plain update is as fast


def pending_rows(d_k: int) -> int:
    """Rows kept pending for keys of ``d_k`` (0: the state has no ``Q``).

    256 rows: a batch pays ``4·r·d_k`` flops per event for the two thin products (at most an
    eighth of the ``2·d_k²`` read of P at d_k ≥ 4096, a quarter at 2048), and a fold is a GEMM
    of rank ≥ 256, which runs near the peak of the core (``benchmarks/rls_agent.py``).

    Stored states hold at most this many rows (``MemoryAgent.load_state`` checks it), so
    lowering it later needs their Q folded first; raising it is free. The store keeps the Q
    and P deltas as A alone (forms ``shift`` and ``neg``, :mod:`storage.deltaform`).

    >>> pending_rows(384), pending_rows(3072)
    (0, 256)
    """
    return 0 if int(d_k) < PENDING_MIN_DK else 256


def _shift_in(r: int, B: np.ndarray) -> LayerDelta:
    """The Q delta appending ``B`` (n, d_k) below r pending rows: ``E = [0 | I]`` (n, r + n)."""
    n = B.shape[0]
    E = np.zeros((n, r + n), dtype=B.dtype)  # (n, r + n)
    E[:, r:] = np.eye(n, dtype=B.dtype)
    return LayerDelta.factors(B, E, 1.0)


def _empty(d_k: int, dt: np.dtype) -> LayerDelta:
    return LayerDelta.of_dense(np.zeros((0, d_k), dtype=dt), 0.0)


def rls_pending(
    S: np.ndarray,
    P: np.ndarray,
    Q: np.ndarray,
    K: np.ndarray,
    V: np.ndarray,
    max_rows: int,
    outputs: bool = False,
) -> tuple[LayerDelta, LayerDelta | None, LayerDelta | None, np.ndarray | None]:
    """The deltas of ``S``, ``P`` and ``Q`` for n RLS writes (ρ = 1) on the preconditioner
    ``P − QᵀQ``, in ``S``'s dtype; ``None`` for a layer that does not change. With ``outputs``
    also the reads before each write ``Y`` (n, d_v), as :func:`rls_chunk_outputs` gives them."""
    S, K, V, dt = _operands(S, K, V)
    d_k = S.shape[1]
    P = np.asarray(P, dtype=dt)
    Q = np.asarray(Q, dtype=dt)
    if P.shape != (d_k, d_k):
        raise InputError("P", f"expected ({d_k}, {d_k}), got shape {P.shape}")
    if Q.ndim != 2 or Q.shape[1] != d_k or Q.shape[0] > max_rows:
        raise InputError("Q", f"expected (r, {d_k}) with r ≤ {max_rows}, got shape {Q.shape}")
    n, r = K.shape[0], Q.shape[0]
    if n > rls_auto_chunk(d_k):  # a long batch: fold Q, then the chunked form on P − QᵀQ
        fold = LayerDelta.factors(Q, -Q, 1.0) if r else None
        P_eff = apply_layer(P, fold) if fold is not None else P
        dS, dP, Y = _rls(S, P_eff, K, V, 1.0, None, outputs)
        dP = _merge([fold, dP]) if fold is not None else dP
        return dS, dP, (_empty(d_k, dt) if r else None), Y
    KP = K @ P  # (n, d_k)  a plain GEMM, not ?symm (see the module docstring)
    if r:
        KP = KP - (K @ Q.T) @ Q  # (n, d_k)  K (P − QᵀQ)
    dS, B, Y = rls_from_read(S, KP, K, V, 1.0, outputs)  # B (n, d_k): P_new = P − QᵀQ − BᵀB
    if r + n <= max_rows:
        return dS, None, _shift_in(r, B), Y
    Z = np.concatenate([Q, B], axis=0) if r else B  # (r + n, d_k)
    return dS, LayerDelta.factors(Z, -Z, 1.0), (_empty(d_k, dt) if r else None), Y
