"""The delta rule's oracle: a float64 loop of single writes, written exactly as DESIGN §2 states
the rule; the chunk form (:mod:`.chunk`), many small states (:mod:`.many`) and the CuPy kernels
are tested against it. Deliberately simple — one write at a time, no algebra — so that it is
obviously right; slow on purpose.

Gated delta rule, one write with key ``k`` (unit norm), value ``v``, strength ``β``, decay ``α``::

    o  = S k                       # read before write
    S ← α·S + β·(v − α·S k) kᵀ

Examples
--------
>>> import numpy as np
>>> S = np.zeros((2, 2))
>>> K = np.array([[1.0, 0.0], [1.0, 0.0]])
>>> V = np.array([[1.0, 0.0], [0.0, 1.0]])
>>> S1, Y = delta_rule_naive(S, K, V, np.ones(2))
>>> S1[:, 0].tolist(), Y[1].tolist()     # the newer target for the same key wins
([0.0, 1.0], [1.0, 0.0])
"""

from __future__ import annotations

import numpy as np

__all__ = ["delta_rule_naive"]


def _as_beta(beta: np.ndarray | float, n: int) -> np.ndarray:
    b = np.asarray(beta, dtype=np.float64)
    return np.full(n, float(b)) if b.ndim == 0 else b.reshape(n)


def _as_alpha(alpha: np.ndarray | float, n: int) -> np.ndarray:
    a = np.asarray(alpha, dtype=np.float64)
    return np.full(n, float(a)) if a.ndim == 0 else a.reshape(n)


def delta_rule_naive(
    S: np.ndarray,
    K: np.ndarray,
    V: np.ndarray,
    beta: np.ndarray | float,
    alpha: np.ndarray | float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """n sequential gated delta-rule writes in float64.

    Parameters
    ----------
    S : (d_v, d_k) initial state.
    K : (n, d_k) keys (unit rows).
    V : (n, d_v) values.
    beta : (n,) or scalar, strengths in (0, 1].
    alpha : scalar or (n,), decay in (0, 1] (one per write when an array).

    Returns
    -------
    S_final : (d_v, d_k) float64
    Y : (n, d_v) float64, ``Y[t] = S_{t-1} k_t`` (the read before write t).

    Examples
    --------
    >>> import numpy as np
    >>> S, Y = delta_rule_naive(np.zeros((1, 1)), np.ones((3, 1)), np.ones((3, 1)), 0.5)
    >>> float(S[0, 0]), Y[:, 0].tolist()
    (0.875, [0.0, 0.5, 0.75])
    """
    S = np.array(S, dtype=np.float64)  # (d_v, d_k), a copy
    K = np.asarray(K, dtype=np.float64)  # (n, d_k)
    V = np.asarray(V, dtype=np.float64)  # (n, d_v)
    n = K.shape[0]
    b = _as_beta(beta, n)
    a = _as_alpha(alpha, n)
    Y = np.zeros((n, S.shape[0]))
    for t in range(n):
        k, v = K[t], V[t]
        Y[t] = S @ k  # (d_v,)
        S = a[t] * S + b[t] * np.outer(v - a[t] * (S @ k), k)
    return S, Y
