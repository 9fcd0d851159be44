"""Numeric (vector) inputs: online standardisation of raw feature vectors.

Vector agents (``encoder: "none"``) take raw vectors. Features on very different scales make a
fixed lift's bandwidth wrong for some of them; :class:`OnlineStandardizer` keeps running means
and variances (Welford's update, exact in float64) and maps ``x → (x − mean)/std`` with the
statistics of the events seen *before* (prequential: a value never standardises itself).

Examples
--------
>>> import numpy as np
>>> s = OnlineStandardizer(2)
>>> X = np.array([[1.0, 10.0], [3.0, 30.0], [5.0, 50.0]])
>>> s.learn_many(X)
>>> s.mean_.tolist(), np.round(s.std_, 6).tolist()
([3.0, 30.0], [1.632993, 16.329932])
>>> s.transform_many(np.array([[3.0, 30.0]])).tolist()
[[0.0, 0.0]]
"""

from __future__ import annotations

import numpy as np

from agent.errors import InputError


def _safe_std(var: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    std = np.sqrt(var)
    return np.where(std > eps, std, 1.0)


class OnlineStandardizer:
    """Running mean/variance per feature; ``transform_many`` standardises with the current ones.

    Parameters
    ----------
    dim : number of features.
    eps : a standard deviation at or below it counts as 1 (a constant feature is centred only).
    """

    def __init__(self, dim: int, eps: float = 1e-8):
        self.dim = int(dim)
        self.eps = float(eps)
        self.n_ = 0
        self.mean_ = np.zeros(self.dim)
        self._m2 = np.zeros(self.dim)  # sum of squared deviations

    @property
    def std_(self) -> np.ndarray:
        """Running standard deviations; 1 where they are still ≤ ``eps`` (a single input, or a
        constant feature), so such a feature is only centred, never blown up."""
        var = self._m2 / self.n_ if self.n_ > 0 else np.ones(self.dim)
        return _safe_std(var, self.eps)

    def _check(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.dim:
            raise InputError("inputs", f"expected shape (n, {self.dim}), got {X.shape}")
        bad = ~np.isfinite(X).all(axis=1)
        if bad.any():
            raise InputError(f"inputs[{int(np.argmax(bad))}]", "expected finite numbers")
        return X

    def learn_many(self, X: np.ndarray) -> None:
        """Fold a batch into the statistics (Chan et al.'s parallel form of Welford's update)."""
        X = self._check(X)
        n_b = X.shape[0]
        if n_b == 0:
            return
        mean_b = X.mean(axis=0)
        m2_b = ((X - mean_b) ** 2).sum(axis=0)
        n = self.n_ + n_b
        d = mean_b - self.mean_
        self.mean_ = self.mean_ + d * (n_b / n)
        self._m2 = self._m2 + m2_b + d * d * (self.n_ * n_b / n)
        self.n_ = n

    def transform_many(self, X: np.ndarray) -> np.ndarray:
        """``X`` standardised with the current statistics (the agents' :func:`standardize_with`)."""
        Z = np.stack([np.full(self.dim, float(self.n_)), self.mean_, self._m2])  # (3, dim)
        return standardize_with(Z, self._check(X))


# ---------------------------------------------------------------- the versioned form (agents)
#
# A vector agent with ``standardize`` keeps its statistics as one more state layer, ``"Z"``
# (3, dim) float64: row 0 the count n (in every column), row 1 the means, row 2 the sums of
# squared deviations. Each learnt micro-batch stores the new Z as a dense replacement delta
# (γ = 0), so rollback, forget-by-replay, fork and rebuild restore it like any other layer.

STATS_LAYER = "Z"


def empty_stats(dim: int) -> np.ndarray:
    """The statistics of no input: ``(3, dim)`` zeros."""
    return np.zeros((3, int(dim)), dtype=np.float64)


def standardize_with(Z: np.ndarray, X: np.ndarray, scale: np.ndarray | None = None) -> np.ndarray:
    """``X`` standardised with the statistics ``Z`` (no input yet: unchanged), times ``scale``.

    The same arithmetic as :meth:`OnlineStandardizer.transform_many`.

    >>> Z = running_stats(empty_stats(1), np.array([[1.0], [3.0]]))[1]
    >>> standardize_with(Z, np.array([[4.0]]), np.array([2.0])).tolist()
    [[4.0]]
    """
    n = Z[0, 0]
    Xs = np.array(X, dtype=np.float64) if n == 0 else \
        (X - Z[1]) / _safe_std(Z[2] / n)
    return Xs if scale is None else Xs * scale


def running_stats(Z: np.ndarray, X: np.ndarray,
                  scale: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Row ``i`` standardised with the statistics of every input before it (earlier micro-batches
    and rows ``< i`` of this one), then folded in: ``(X_std (n, dim), Z_new (3, dim))``.

    Row by row, so micro-batch boundaries change nothing: a batch of n equals n batches of one,
    and equals :class:`OnlineStandardizer` fed one row at a time (same operations, same bits).

    >>> Xs, Z = running_stats(empty_stats(1), np.array([[1.0], [3.0], [5.0]]))
    >>> Xs[:, 0].tolist(), Z[:, 0].tolist()
    ([1.0, 2.0, 3.0], [3.0, 3.0, 8.0])
    """
    Z = np.array(Z, dtype=np.float64)
    n, mean, m2 = float(Z[0, 0]), Z[1].copy(), Z[2].copy()
    out = np.empty((X.shape[0], X.shape[1]), dtype=np.float64)
    for i, x in enumerate(np.asarray(X, dtype=np.float64)):
        out[i] = x if n == 0 else (x - mean) / _safe_std(m2 / n)
        n_new = n + 1.0
        d = x - mean  # Chan et al. with a batch of one (OnlineStandardizer.learn_many)
        mean = mean + d * (1.0 / n_new)
        m2 = m2 + 0.0 + d * d * (n * 1.0 / n_new)
        n = n_new
    Z[0], Z[1], Z[2] = n, mean, m2
    return (out if scale is None else out * scale), Z
