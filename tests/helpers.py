"""Shared test helpers: ONE comparison for every kernel test, printing the error it measured."""

from __future__ import annotations

import numpy as np

TOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-10}


def rel_err(actual, expected) -> float:
    """``‖actual − expected‖_F / ‖expected‖_F`` in float64 (absolute when expected is zero)."""
    a = np.asarray(getattr(actual, "get", lambda: actual)(), dtype=np.float64)
    e = np.asarray(getattr(expected, "get", lambda: expected)(), dtype=np.float64)
    assert a.shape == e.shape, f"shape {a.shape} != expected {e.shape}"
    assert np.all(np.isfinite(a)), "actual has NaN or Inf"
    den = float(np.linalg.norm(e))
    num = float(np.linalg.norm(a - e))
    return num / den if den > 0 else num


def assert_close(actual, expected, rtol=None, name: str = "", dtype=None) -> float:
    """Assert the relative Frobenius error is at most ``rtol``; print it either way.

    ``rtol`` defaults to the tolerance of ``dtype`` (or of ``actual``'s dtype): 1e-5 for
    float32, 1e-10 for float64. Returns the measured error.
    """
    if rtol is None:
        dt = np.dtype(dtype) if dtype is not None else np.asarray(
            getattr(actual, "get", lambda: actual)()).dtype
        rtol = TOL.get(np.dtype(dt), 1e-10)
    err = rel_err(actual, expected)
    print(f"[assert_close] {name or 'value'}: rel err {err:.3e} (tol {rtol:.0e})")
    assert err <= rtol, f"{name or 'value'}: relative error {err:.3e} > {rtol:.0e}"
    return err


def unit_rows(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    """(n, d) float64 rows of unit L2 norm."""
    K = rng.standard_normal((n, d))
    return K / np.linalg.norm(K, axis=1, keepdims=True)
