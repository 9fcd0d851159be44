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


class OnlineStandardizer:
    """Running mean/variance per feature; ``transform_many`` standardises with the current ones.

    Parameters
    ----------
    dim : number of features.
    eps : floor of the standard deviation (constant features map to 0, not to NaN).
    """

    def __init__(self, dim: int, eps: float = 1e-8):
        self.dim = int(dim)
        self.eps = float(eps)
        self.n_ = 0
        self.mean_ = np.zeros(self.dim)
        self._m2 = np.zeros(self.dim)  # sum of squared deviations

    @property
    def std_(self) -> np.ndarray:
        var = self._m2 / self.n_ if self.n_ > 0 else np.ones(self.dim)
        return np.maximum(np.sqrt(var), self.eps)

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
        X = self._check(X)
        if self.n_ == 0:
            return X.copy()
        return (X - self.mean_) / self.std_
