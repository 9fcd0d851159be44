"""The ``softmax`` rule: the delta rule with a softmax read, rehearsing earlier events.

One write, event ``t`` (its position in the agent's stream, from 0), key ``k_t``, label index
``y_t``, step ``β_t``, decay ``α``; ``c_t`` is the number of labels known once ``y_t`` is::

    X ← [X; k_t],  Y ← [Y; y_t]                       # every key and label learnt (append-only)
    B_t = (t, j_{t,1}, …, j_{t,R}),  j_{t,i} = replay_index(seed, t, i, R) ∈ {0, …, t}
    G   = onehot(Y_B) − softmax(X_B S[:c_t]ᵀ)           # (R+1, c_t): the rows' prediction errors
    S   ← α·S;  S[:c_t] ← S[:c_t] + β_t·Gᵀ X_B          # all R+1 rows read the same S

With R = 0 this is the delta rule with the read passed through a softmax (the cross-entropy
gradient of a linear softmax classifier; the "generalized delta rule"). Rehearsal (R > 0) is
what keeps old classes when they stop arriving: in class-incremental CLINC150 the rule keeps
0.944 of the first domain with R = 7, 0.17 without rehearsal (``benchmarks/EVAL.md``).

The write depends on the event sequence alone: the replayed positions are a counter-based hash of
``(seed, t, i)``, and ``c_t`` counts labels by first appearance, so micro-batch boundaries change
the result only by float rounding, and forgetting an event (replaying the rest without it) gives
the state of a stream that never had it. A micro-batch of n events is n such writes in order
(they are sequential by nature); its delta of ``S`` is ``γ = αⁿ`` and the factors
``A = [X_B of every write]``, ``E = [α^{n−1−t} β_t G_t]``, or the dense difference when that is
smaller. ``X`` and ``Y`` grow by appended rows (``LayerDelta.append``), exact copies.

The oracle is :func:`agent.memory.softmax.naive.softmax_replay_naive` (float64, one row at a time).

Examples
--------
>>> replay_indices(seed=7, t0=0, n=3, replay=2).tolist()   # position t draws from {0..t}
[[0, 0], [1, 0], [2, 2]]
>>> import numpy as np
>>> S = np.zeros((2, 2)); K = np.eye(2)
>>> ld = softmax_replay_chunk(S, np.zeros((0, 2)), np.zeros((0, 1)), K, np.array([0, 1]),
...                           np.full(2, 0.5), replay=0, labels0=0)
>>> np.round(ld.to_dense(), 3).tolist()    # event 0 sees one label: softmax 1, no error
[[0.0, -0.25], [0.0, 0.25]]
"""

from __future__ import annotations

import numpy as np

from agent.errors import InputError
from agent.memory.deltas import LayerDelta

__all__ = ["replay_indices", "softmax_replay_chunk", "softmax_writes", "MAX_EVENTS", "mix64",
           "replay_hashes", "draw"]

MAX_EVENTS = 2**32 - 1  # positions t + 1 < 2³² keep the index arithmetic exact in uint64
_GOLDEN, _M1, _M2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def mix64(z: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser on uint64 arrays (multiplication wraps modulo 2⁶⁴)."""
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def replay_indices(seed: int, t0: int, n: int, replay: int) -> np.ndarray:
    """Replayed positions ``(n, replay)`` int64 for events ``t0 … t0+n−1``.

    ``j = ((h >> 32) · (t + 1)) >> 32`` with ``h = splitmix64(seed·φ + t·R + i)`` (φ the golden
    ratio constant): uniform on ``{0 … t}`` to within 2⁻³², a function of ``(seed, t, i, R)``
    alone.
    """
    t = np.arange(t0, t0 + n, dtype=np.uint64)[:, None]  # (n, 1)
    return draw(replay_hashes(seed, t0, n, replay), t + np.uint64(1))


def replay_hashes(seed: int, t0: int, n: int, replay: int) -> np.ndarray:
    """``h = splitmix64(seed·φ + t·R + i)`` (n, R) uint64 for events ``t0 … t0+n−1``."""
    if t0 + n > MAX_EVENTS:
        raise InputError("inputs", f"an agent of rule softmax learns at most {MAX_EVENTS} events")
    t = np.arange(t0, t0 + n, dtype=np.uint64)[:, None]  # (n, 1)
    i = np.arange(replay, dtype=np.uint64)[None, :]  # (1, R)
    base = np.array([seed & (2**64 - 1)], dtype=np.uint64) * _GOLDEN  # (1,), wraps
    return mix64(base + t * np.uint64(replay) + i)  # (n, R)


def draw(h: np.ndarray, size: np.ndarray) -> np.ndarray:
    """``((h >> 32) · size) >> 32`` int64: uniform on ``{0 … size−1}`` to within 2⁻³² (size < 2³²)."""
    return (((h >> np.uint64(32)) * np.asarray(size, dtype=np.uint64)) >> np.uint64(32)).astype(np.int64)


def _scaled_error(Z: np.ndarray, rows: np.ndarray, y: np.ndarray, beta: np.floating) -> np.ndarray:
    """``β (onehot(y) − softmax(Z))`` row-wise, in place on the logits ``Z`` (m, c)."""
    Z -= Z.max(axis=1, keepdims=True)
    np.exp(Z, out=Z)
    Z *= -beta / Z.sum(axis=1, keepdims=True)  # −β·softmax
    Z[rows, y] += beta
    return Z


def softmax_replay_chunk(
    S: np.ndarray,
    X: np.ndarray,
    Y: np.ndarray,
    K: np.ndarray,
    y: np.ndarray,
    beta: np.ndarray,
    *,
    replay: int,
    labels0: int,
    alpha: float = 1.0,
    seed: int = 0,
) -> LayerDelta:
    """The delta of ``S`` for n writes in order (module docstring), in ``S``'s dtype.

    Parameters
    ----------
    S : (d_v, d_k) the state, already padded to every label of the batch.
    X, Y : (N0, d_k) keys and (N0, 1) label positions (whole numbers, as the state stores
        them) learnt before the batch, in S's dtype.
    K, y : (n, d_k) the batch's keys (S's dtype) and (n,) integer labels (< d_v).
    beta : (n,) steps in (0, 1]; alpha: decay in (0, 1].
    replay : R, earlier events rehearsed per write; labels0: labels known before the batch.
    seed : the replay hash seed.
    """
    d_v, d_k = S.shape
    n, N0, m = K.shape[0], X.shape[0], replay + 1
    if K.shape != (n, d_k) or X.shape != (N0, d_k) or Y.shape != (N0, 1) or y.shape != (n,):
        raise InputError("inputs", f"shapes S{S.shape} X{X.shape} Y{Y.shape} K{K.shape} y{y.shape} disagree")
    dt = S.dtype
    # positions of every row written: (n, m), column 0 the event itself
    idx = np.empty((n, m), dtype=np.int64)
    idx[:, 0] = np.arange(N0, N0 + n)
    idx[:, 1:] = replay_indices(seed, N0, n, replay)
    old = idx < N0
    XB = np.empty((n, m, d_k), dtype=dt)  # (n, m, d_k) the rows each write reads
    XB[old] = X[idx[old]]
    XB[~old] = K[idx[~old] - N0]
    YB = np.empty((n, m), dtype=np.int64)  # (n, m) their labels
    YB[old] = Y[idx[old], 0]
    YB[~old] = y[idx[~old] - N0]
    c = np.maximum(labels0, np.maximum.accumulate(y) + 1)  # (n,) labels known at each write
    return softmax_writes(S, XB, YB, c, beta, alpha)


def softmax_writes(S: np.ndarray, XB: np.ndarray, YB: np.ndarray, c: np.ndarray, beta: np.ndarray,
                   alpha: float = 1.0) -> LayerDelta:
    """The delta of ``S`` for n writes in order, write ``t`` reading rows ``XB[t]`` (m, d_k) with
    labels ``YB[t]`` (m,) over its first ``c[t]`` labels (the write of the module docstring,
    whichever rows are rehearsed; :mod:`agent.memory.softmax.reservoir` uses it too)."""
    d_v, d_k = S.shape
    n, m = XB.shape[0], XB.shape[1]
    dt = S.dtype
    W = np.array(S, dtype=dt, copy=True)  # (d_v, d_k) the state as the writes go
    factors = n * m * (d_k + d_v) <= d_k * d_v  # the factors are smaller than the dense delta
    coef = np.zeros((n, m, d_v) if factors else (0, 0, 0), dtype=dt)  # β_t G_t (× α^{n−1−t} later)
    a, rows, b = dt.type(alpha), np.arange(m), beta.astype(dt)
    # the read X_B Wᵀ: above 8 rows as W X_Bᵀ on a contiguous X_Bᵀ, then transposed (measured
    # faster there when it was written); with fewer rows as it is
    XBt = np.ascontiguousarray(XB.transpose(0, 2, 1)) if m > 8 else None  # (n, d_k, m)
    for t in range(n):
        ct = int(c[t])
        R_ = XB[t]  # (m, d_k)
        Z = (W[:ct] @ XBt[t]).T.copy() if XBt is not None else R_ @ W[:ct].T  # (m, ct) logits
        G = _scaled_error(Z, rows, YB[t], b[t])  # (m, ct): β·error of each row written
        if alpha != 1.0:
            W *= a
        # W += Gᵀ X_B; one row is an outer product (matmul with an inner size of 1 is slow)
        W[:ct] += G.T @ R_ if m > 1 else G.T * R_
        if factors:
            coef[t, :, :ct] = G
    gamma = float(alpha) ** n
    if factors:
        if alpha != 1.0:
            coef *= (a ** np.arange(n - 1, -1, -1, dtype=dt)).astype(dt)[:, None, None]
        return LayerDelta.factors(XB.reshape(n * m, d_k), coef.reshape(n * m, d_v), gamma)
    return LayerDelta.of_dense(W - dt.type(gamma) * S if gamma != 1.0 else W - S, gamma)
