"""RLS's oracle: a float64 loop of single writes, written exactly as DESIGN §2 states the rule
(the chunk form :mod:`.chunk` and pending rows :mod:`.pending` are tested against it).

RLS (preconditioned delta rule) with forgetting factor ``ρ``::

    g = P k / (ρ + kᵀ P k)
    S ← S + (v − S k) gᵀ
    P ← (P − g kᵀ P) / ρ
"""

from __future__ import annotations

import numpy as np

__all__ = ["rls_naive"]


def rls_naive(
    S: np.ndarray,
    P: np.ndarray,
    K: np.ndarray,
    V: np.ndarray,
    rho: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n sequential RLS writes in float64.

    Parameters
    ----------
    S : (d_v, d_k) initial state.
    P : (d_k, d_k) initial inverse covariance (``I/λ`` at creation), symmetric positive definite.
    K : (n, d_k) keys.
    V : (n, d_v) values.
    rho : forgetting factor in (0, 1].

    Returns
    -------
    S_final : (d_v, d_k), P_final : (d_k, d_k), Y : (n, d_v) with ``Y[t] = S_{t-1} k_t``.

    Examples
    --------
    >>> import numpy as np
    >>> S, P, Y = rls_naive(np.zeros((1, 1)), np.eye(1), np.ones((2, 1)), np.ones((2, 1)))
    >>> round(float(S[0, 0]), 6), round(float(P[0, 0]), 6)   # ridge: 2/(1+2), 1/(1+2)
    (0.666667, 0.333333)
    """
    S = np.array(S, dtype=np.float64)
    P = np.array(P, dtype=np.float64)
    K = np.asarray(K, dtype=np.float64)
    V = np.asarray(V, dtype=np.float64)
    n = K.shape[0]
    Y = np.zeros((n, S.shape[0]))
    for t in range(n):
        k, v = K[t], V[t]
        Y[t] = S @ k
        Pk = P @ k  # (d_k,)
        g = Pk / (rho + k @ Pk)  # (d_k,)
        S = S + np.outer(v - S @ k, g)
        P = (P - np.outer(g, k @ P)) / rho
    return S, P, Y
