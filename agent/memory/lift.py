"""Keys: the fixed random-feature lift φ and key normalisation (DESIGN §7: k = φ(x)/‖φ(x)‖).

A :class:`Lift` is a frozen random map, fully determined by ``(in_dim, out_dim, seed,
activation, scale, center)``; the weights are drawn from NumPy's PCG64 generator, so the same
arguments give bit-identical features on every machine with the same NumPy.

- ``relu``: ``φ(x) = max(0, W (x − c) + b)``, ``W ~ N(0, scale²)``, ``b ~ N(0, scale²)``.
- ``cos``: random Fourier features of the Gaussian kernel,
  ``φ(x) = sqrt(2/out_dim) · cos(W (x − c) + b)``, ``W ~ N(0, scale²)``, ``b ~ U[0, 2π)``.

``scale`` defaults to ``1/sqrt(in_dim)`` (inputs with O(1) entries); for unit-norm inputs such as
sentence embeddings ``scale=1.0`` gives a kernel bandwidth of 1.

Examples
--------
>>> import numpy as np
>>> lift = Lift(3, 5, seed=7)
>>> X = np.array([[1.0, 2.0, 3.0]])
>>> bool(np.array_equal(lift(X), Lift(3, 5, seed=7)(X))), lift(X).shape
(True, (1, 5))
>>> normalize_keys(np.array([[3.0, 4.0]])).tolist()
[[0.6, 0.8]]
>>> normalize_keys(np.array([[1.0, 0.0], [0.0, 0.0]]))
Traceback (most recent call last):
...
agent.errors.InputError: inputs[1]: the key has zero norm (an all-zero input or lifted features)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from agent.errors import InputError

__all__ = ["Lift", "normalize_keys", "unit_rows"]

# row norms inside this range are computed directly (their squares neither under- nor overflow
# float64); rows outside it are scaled by their largest |entry| first
NORM_LO, NORM_HI = 1e-150, 1e150

ACTIVATIONS = ("relu", "cos")


class Lift:
    """A seeded, fixed random-feature map ``(n, in_dim) -> (n, out_dim)``.

    Parameters
    ----------
    in_dim, out_dim : input and feature dimensions (positive).
    seed : generator seed (PCG64).
    activation : ``"relu"`` or ``"cos"``.
    center : optional (in_dim,) vector subtracted from inputs first (mean-centring).
    scale : standard deviation of the weights; ``None`` means ``1/sqrt(in_dim)``.
    dtype : dtype of the weights and of the output.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        seed: int = 0,
        activation: str = "relu",
        center: np.ndarray | None = None,
        scale: float | None = None,
        dtype: Any = np.float32,
    ) -> None:
        if int(in_dim) < 1:
            raise InputError("in_dim", f"expected a positive integer, got {in_dim}")
        if int(out_dim) < 1:
            raise InputError("lift_dim", f"expected a positive integer, got {out_dim}")
        if activation not in ACTIVATIONS:
            raise InputError("activation", f"expected one of {ACTIVATIONS}, got {activation!r}")
        self.in_dim, self.out_dim, self.seed = int(in_dim), int(out_dim), int(seed)
        self.activation = activation
        self.dtype = np.dtype(dtype)
        self.scale = float(scale) if scale is not None else 1.0 / np.sqrt(self.in_dim)
        rng = np.random.Generator(np.random.PCG64(self.seed))
        W = rng.standard_normal((self.in_dim, self.out_dim)) * self.scale  # (in, out)
        if activation == "relu":
            b = rng.standard_normal(self.out_dim) * self.scale
        else:
            b = rng.uniform(0.0, 2.0 * np.pi, self.out_dim)
        self.W = W.astype(self.dtype)  # stored transposed: features = X @ W
        self.b = b.astype(self.dtype)
        if center is not None:
            c = np.asarray(center, dtype=np.float64).reshape(-1)
            if c.shape != (self.in_dim,) or not np.all(np.isfinite(c)):
                raise InputError("center", f"expected {self.in_dim} finite numbers")
            self.center: np.ndarray | None = c.astype(self.dtype)
        else:
            self.center = None

    def __call__(self, X: np.ndarray) -> np.ndarray:
        """Features of the rows of ``X`` (n, in_dim) -> (n, out_dim)."""
        X = np.asarray(X, dtype=self.dtype)
        if X.ndim != 2 or X.shape[1] != self.in_dim:
            raise InputError("inputs", f"expected shape (n, {self.in_dim}), got {X.shape}")
        if self.center is not None:
            X = X - self.center
        Z = X @ self.W + self.b  # (n, out)
        if self.activation == "relu":
            return np.maximum(Z, 0, out=Z)
        return (np.cos(Z) * self.dtype.type(np.sqrt(2.0 / self.out_dim))).astype(self.dtype)

    def __repr__(self) -> str:
        return (f"Lift(in_dim={self.in_dim}, out_dim={self.out_dim}, seed={self.seed}, "
                f"activation={self.activation!r}, centered={self.center is not None})")


def normalize_keys(X: np.ndarray, field: str = "inputs") -> np.ndarray:
    """Rows of ``X`` (n, d) scaled to unit L2 norm, in X's float dtype (float64 otherwise).

    Raises :class:`InputError` naming ``f"{field}[{i}]"`` for the first row that is not finite
    or has zero norm; nothing is returned in that case.
    """
    X = np.asarray(X)
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)
    if X.ndim != 2:
        raise InputError(field, f"expected a 2-D array of keys (n, d), got shape {X.shape}")
    finite = np.all(np.isfinite(X), axis=1)  # (n,)
    if not np.all(finite):
        i = int(np.argmin(finite))
        raise InputError(f"{field}[{i}]", "expected finite numbers (found NaN or Inf)")
    # norms in float64 so that tiny float32 rows neither underflow nor overflow when squared
    norms = np.linalg.norm(X.astype(np.float64), axis=1)  # (n,)
    bad = ~(norms > 0) | ~np.isfinite(norms)
    if np.any(bad):
        i = int(np.argmax(bad))
        raise InputError(f"{field}[{i}]", "the key has zero norm (an all-zero input or lifted features)")
    return (X / norms[:, None]).astype(X.dtype, copy=False)


def unit_rows(X: np.ndarray, field: str = "inputs", allow_zero: bool = False) -> np.ndarray:
    """Rows of ``X`` (n, d) over their L2 norms, float64: ``k = x/‖x‖`` for every finite
    nonzero row, however large or small its entries (a row whose norm would overflow or
    underflow is divided by its largest ``|x_j|`` first; other rows are divided directly, so
    their bits are those of ``X / ‖X‖``).

    A zero row is refused (:class:`InputError` naming ``field[i]``: it has no direction),
    or kept as a zero key with ``allow_zero`` (a standardised input equal to the running mean:
    its write changes no association, its read scores 0). A non-finite row is refused.

    >>> unit_rows(np.array([[3e200, 4e200], [3e-200, 4e-200]])).tolist()
    [[0.6, 0.8], [0.6, 0.8]]
    """
    X = np.asarray(X, dtype=np.float64)
    nrm = np.linalg.norm(X, axis=1)  # (n,)
    odd = ~((nrm > NORM_LO) & (nrm < NORM_HI))  # also NaN and inf
    if not odd.any():
        return X / nrm[:, None]
    out = np.empty_like(X)
    out[~odd] = X[~odd] / nrm[~odd, None]
    for i in np.flatnonzero(odd):
        m = float(np.max(np.abs(X[i]))) if X.shape[1] else 0.0
        if not np.isfinite(m):
            raise InputError(f"{field}[{i}]", "the key is not finite (NaN or Inf)")
        if m == 0.0:
            if not allow_zero:
                raise InputError(f"{field}[{i}]", "the input gives a zero key (all zeros, or "
                                 "zero after the lift); it cannot be normalised")
            out[i] = 0.0
            continue
        r = X[i] / m
        out[i] = r / np.linalg.norm(r)
    return out
