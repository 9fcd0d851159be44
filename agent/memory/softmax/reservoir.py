"""Bounded rehearsal memory for the ``softmax`` rule: a per-class reservoir chosen by a hash.

The unbounded rule (:mod:`agent.memory.softmax.replay`) keeps every key it learnt. Here the agent keeps,
per label, at most ``cap`` events: those with the smallest priority ``p(t) = splitmix64(seed', t)``
of the event's position ``t`` in the agent's stream. That is a uniform sample of each label's
events, and a function of the event sequence alone: a learner that never saw an event (forget
replays the rest of the stream) holds exactly the reservoir such a learner would hold.

The reservoir is a list of slots (layers ``X`` keys, ``Y`` label positions, ``T`` stream positions,
float64) in the order they were filled; ``N`` (1, 1) float64 counts the events learnt. Write
``t`` (label ``y``, ``M`` slots before it)::

    if label y holds fewer than cap slots:   slot M ← (k_t, y, t);  M ← M + 1
    elif p(t) < max p over y's slots:        that slot ← (k_t, y, t)            # in place
    B_t = (t, s_1 … s_R),  s_i = draw(h(seed, t, i), M)                          # h as replay.py
    the softmax write of replay.py over the rows B_t (the reservoir after the insertion)

With ``cap`` at least the number of events of every label the slots are the stream in order and
``M = t + 1``: the write is the unbounded rule's, bit for bit (tested). A micro-batch is the same
writes in order; its deltas are ``S``'s (:func:`agent.memory.softmax.replay.softmax_writes`), the slots it
filled or replaced as rows put in place (``LayerDelta.put``: exact copies) and ``N`` replaced.

The oracle is :func:`agent.memory.softmax.naive.reservoir_naive` (float64, one write at a time).

>>> import numpy as np
>>> S = np.zeros((2, 2)); K = np.eye(2)[[0, 1, 0, 1]]
>>> out = reservoir_chunk(S, np.zeros((0, 2)), np.zeros((0, 1)), np.zeros((0, 1)), 0, K,
...                       np.array([0, 1, 0, 1]), np.full(4, 0.5), replay=1, cap=1, labels0=0)
>>> out["X"].shape[0], out["T"].at.tolist(), out["N"].dense.tolist()   # one slot per label
(2, [0, 1], [[4.0]])
"""

from __future__ import annotations

import numpy as np

from agent.errors import InputError
from agent.memory.deltas import LayerDelta
from agent.memory.softmax.replay import draw, mix64, replay_hashes, softmax_writes

__all__ = ["priority", "reservoir_chunk", "RESERVOIR_SALT"]

RESERVOIR_SALT = 0x5EED_0F_5A_4D_1E  # seed' = seed XOR this: priorities differ from the draws
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def priority(seed: int, t: np.ndarray) -> np.ndarray:
    """``p(t) = splitmix64((seed ⊕ salt)·φ + t)`` uint64 for positions ``t`` (any shape)."""
    base = np.array([(seed ^ RESERVOIR_SALT) & (2**64 - 1)], dtype=np.uint64) * _GOLDEN
    return mix64(base + np.asarray(t, dtype=np.uint64))


def reservoir_chunk(
    S: np.ndarray,
    X: np.ndarray,
    Y: np.ndarray,
    T: np.ndarray,
    N0: int,
    K: np.ndarray,
    y: np.ndarray,
    beta: np.ndarray,
    *,
    replay: int,
    cap: int,
    labels0: int,
    alpha: float = 1.0,
    seed: int = 0,
) -> dict[str, LayerDelta]:
    """The deltas of ``S``, ``X``, ``Y``, ``T`` and ``N`` for n writes in order (module docstring).

    Parameters
    ----------
    S : (d_v, d_k) the state, already padded to every label of the batch.
    X, Y, T : (M, d_k), (M, 1), (M, 1) the slots before the batch (X, Y in S's dtype, T float64).
    N0 : events learnt before the batch.
    K, y, beta : (n, d_k) keys in S's dtype, (n,) integer labels, (n,) steps.
    replay, cap, labels0, alpha, seed : as in :func:`agent.memory.softmax.replay.softmax_replay_chunk`;
        ``cap`` ≥ 1 slots per label.
    """
    d_v, d_k = S.shape
    n, M = K.shape[0], X.shape[0]
    if (K.shape != (n, d_k) or X.shape != (M, d_k) or Y.shape != (M, 1) or T.shape != (M, 1)
            or y.shape != (n,) or cap < 1):
        raise InputError("inputs", f"shapes S{S.shape} X{X.shape} Y{Y.shape} T{T.shape} K{K.shape} "
                         f"y{y.shape} or cap {cap} disagree")
    dt = S.dtype
    XB, YB, owner, M = _reads(X, Y, T, N0, K, y, replay=replay, cap=cap, seed=seed, dtype=dt)
    c = np.maximum(labels0, np.maximum.accumulate(y) + 1)  # (n,) labels known at each write
    out = {"S": softmax_writes(S, XB, YB, c, beta, alpha),
           "N": LayerDelta.of_dense(np.array([[float(N0 + n)]]), 0.0)}
    if owner:
        at = np.array(sorted(owner), dtype=np.int64)  # (u,) slots filled or replaced
        ev = np.array([owner[s] for s in at.tolist()], dtype=np.int64)  # (u,) their events
        out["X"] = LayerDelta.put(np.ascontiguousarray(K[ev]), at, M)
        out["Y"] = LayerDelta.put(y[ev].astype(dt)[:, None], at, M)
        out["T"] = LayerDelta.put((N0 + ev).astype(np.float64)[:, None], at, M)
    return out


def _reads(X: np.ndarray, Y: np.ndarray, T: np.ndarray, N0: int, K: np.ndarray, y: np.ndarray, *,
           replay: int, cap: int, seed: int,
           dtype: np.dtype) -> tuple[np.ndarray, np.ndarray, dict[int, int], int]:
    """The slots through the batch, in order: event i takes a free slot of its label or the
    slot of highest priority above its own; it reads itself, then ``replay`` draws over the
    slots as they are at that moment. ``(XB (n, m, d_k), YB (n, m), owner, M)``: the rows each
    write reads and their labels, ``owner`` slot → the batch event now in it, ``M`` slots after."""
    n, d_k = K.shape
    M = X.shape[0]
    hashes = replay_hashes(seed, N0, n, replay)  # (n, R) the draws' hashes
    p_new = priority(seed, np.arange(N0, N0 + n))  # (n,)
    # per label of the batch: its slots and their priorities (one scan of Y)
    members: dict[int, tuple[list[int], list[int]]] = {}
    for c in np.unique(y).tolist():
        sl = np.flatnonzero(Y[:, 0] == c)  # (≤ cap,)
        members[c] = (sl.tolist(), priority(seed, T[sl, 0].astype(np.uint64)).tolist())
    owner: dict[int, int] = {}  # slot -> the batch event now in it
    m = replay + 1
    XB = np.empty((n, m, d_k), dtype=dtype)  # (n, m, d_k) the rows each write reads
    YB = np.empty((n, m), dtype=np.int64)  # (n, m) their labels
    for i in range(n):
        slots, prios = members[int(y[i])]
        p = int(p_new[i])
        if len(slots) < cap:
            slots.append(M)
            prios.append(p)
            owner[M] = i
            M += 1
        else:
            j = max(range(len(prios)), key=prios.__getitem__)
            if p < prios[j]:
                prios[j] = p
                owner[slots[j]] = i
        XB[i, 0], YB[i, 0] = K[i], y[i]
        for r, s in enumerate(draw(hashes[i], M).tolist(), start=1):
            e = owner.get(s)
            if e is None:
                XB[i, r], YB[i, r] = X[s], int(Y[s, 0])
            else:
                XB[i, r], YB[i, r] = K[e], y[e]
    return XB, YB, owner, M
