"""The softmax rule's oracles: float64 loops of single writes and plain-integer hashes (the
rehearsal kernel :mod:`.replay` and the bounded reservoir :mod:`.reservoir` are tested against
them).

Softmax with rehearsal, write ``t`` rehearsing positions ``j``::

    for each row r in (t, j_1 … j_R):  e_r = onehot(y_r) − softmax(S[:c] x_r)   # same S for all
    S ← α·S;  S[:c] += β Σ_r e_r x_rᵀ
"""

from __future__ import annotations

import numpy as np

from agent.memory.delta_rule.naive import _as_beta

__all__ = ["softmax_replay_naive", "replay_index_naive", "reservoir_naive", "reservoir_priority_naive"]


def replay_index_naive(seed: int, t: int, i: int, replay: int) -> int:
    """Position ``j_{t,i}`` in Python integers: splitmix64, then ``((h >> 32)·(t+1)) >> 32``."""
    mask = 2**64 - 1
    z = (seed * 0x9E3779B97F4A7C15 + t * replay + i) & mask
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    z ^= z >> 31
    return ((z >> 32) * (t + 1)) >> 32


def softmax_replay_naive(
    S: np.ndarray,
    K: np.ndarray,
    y: list[int],
    beta: np.ndarray | float,
    replay: int,
    alpha: float = 1.0,
    seed: int = 0,
    X0: np.ndarray | None = None,
    y0: list[int] | None = None,
    labels0: int = 0,
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """n sequential ``softmax`` writes in float64, one row and one label at a time.

    ``S`` (d_v, d_k) has a row for every label the writes use; ``X0``/``y0`` are the keys and
    labels learnt before (positions 0 … N0−1), ``labels0`` the labels known before.
    Returns ``(S_final, X, y)``: the state and every key and label learnt.

    >>> import numpy as np
    >>> S, X, y = softmax_replay_naive(np.zeros((2, 1)), np.ones((2, 1)), [0, 1], 1.0, replay=0)
    >>> S[:, 0].tolist()                     # the first write sees one label: no error
    [-0.5, 0.5]
    """
    S = np.array(S, dtype=np.float64)
    X = [np.asarray(x, dtype=np.float64) for x in (X0 if X0 is not None else [])]
    labels = list(y0 or [])
    b = _as_beta(beta, len(K))
    known = labels0
    for k, label, bt in zip(np.asarray(K, dtype=np.float64), y, b, strict=True):
        t = len(X)
        X.append(k)
        labels.append(int(label))
        known = max(known, int(label) + 1)
        rows = [t] + [replay_index_naive(seed, t, i, replay) for i in range(replay)]
        add = np.zeros_like(S)
        for r in rows:
            z = S[:known] @ X[r]  # (known,) logits, all rows read the same S
            p = np.exp(z - z.max()) / np.sum(np.exp(z - z.max()))
            e = -p
            e[labels[r]] += 1.0
            add[:known] += bt * np.outer(e, X[r])
        S = alpha * S + add
    return S, np.array(X).reshape(len(X), S.shape[1]), labels


def reservoir_priority_naive(seed: int, t: int) -> int:
    """``p(t)`` of :mod:`agent.memory.softmax.reservoir` in Python integers."""
    from agent.memory.softmax.reservoir import RESERVOIR_SALT

    mask = 2**64 - 1
    return _splitmix_naive((((seed ^ RESERVOIR_SALT) & mask) * 0x9E3779B97F4A7C15 + t) & mask)


def _splitmix_naive(z: int) -> int:
    mask = 2**64 - 1
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return z ^ (z >> 31)


def reservoir_naive(
    S: np.ndarray,
    K: np.ndarray,
    y: list[int],
    beta: np.ndarray | float,
    replay: int,
    cap: int,
    alpha: float = 1.0,
    seed: int = 0,
    slots0: list[tuple[np.ndarray, int, int]] | None = None,
    n0: int = 0,
    labels0: int = 0,
) -> tuple[np.ndarray, list[tuple[np.ndarray, int, int]]]:
    """n ``softmax`` writes with the bounded reservoir (:mod:`agent.memory.softmax.reservoir`) in float64:
    slots are ``(key, label, position)`` in the order filled; ``n0`` events were learnt before.
    Returns ``(S_final, slots)``.

    >>> import numpy as np
    >>> S, slots = reservoir_naive(np.zeros((1, 1)), np.ones((3, 1)), [0, 0, 0], 1.0, 0, cap=2)
    >>> len(slots)
    2
    """
    S = np.array(S, dtype=np.float64)
    slots = [(np.asarray(k, dtype=np.float64), int(c), int(t)) for k, c, t in (slots0 or [])]
    b = _as_beta(beta, len(K))
    known = labels0
    mask = 2**64 - 1
    for i, (k, label, bt) in enumerate(zip(np.asarray(K, dtype=np.float64), y, b, strict=True)):
        t, label = n0 + i, int(label)
        known = max(known, label + 1)
        mine = [s for s, (_, c, _) in enumerate(slots) if c == label]
        p = reservoir_priority_naive(seed, t)
        if len(mine) < cap:
            slots.append((k, label, t))
        else:
            worst = max(mine, key=lambda s: reservoir_priority_naive(seed, slots[s][2]))
            if p < reservoir_priority_naive(seed, slots[worst][2]):
                slots[worst] = (k, label, t)
        rows = [(k, label)]
        for r in range(replay):
            h = _splitmix_naive((seed * 0x9E3779B97F4A7C15 + t * replay + r) & mask)
            s = ((h >> 32) * len(slots)) >> 32
            rows.append((slots[s][0], slots[s][1]))
        add = np.zeros_like(S)
        for x, c in rows:
            z = S[:known] @ x  # (known,) logits, all rows read the same S
            e = -np.exp(z - z.max()) / np.sum(np.exp(z - z.max()))
            e[c] += 1.0
            add[:known] += bt * np.outer(e, x)
        S = alpha * S + add
    return S, slots
