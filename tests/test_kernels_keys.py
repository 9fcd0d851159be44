"""Keys and the array backend: lift φ, key normalisation, array-module switch, DLPack, BLAS."""

from __future__ import annotations

import numpy as np
import pytest

from agent.errors import InputError
from agent.memory.backend import (
    blas_threads,
    from_torch,
    get_xp,
    gpu_available,
    set_blas_threads,
    to_numpy,
    to_torch,
)
from agent.memory.lift import Lift, normalize_keys
from tests.helpers import assert_close


@pytest.mark.parametrize("activation", ["relu", "cos"])
def test_lift_is_deterministic_from_seed(activation):
    X = np.random.default_rng(0).standard_normal((15, 12))
    a = Lift(12, 300, seed=5, activation=activation)(X)
    b = Lift(12, 300, seed=5, activation=activation)(X)
    c = Lift(12, 300, seed=6, activation=activation)(X)
    assert a.shape == (15, 300) and a.dtype == np.float32
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)
    if activation == "relu":
        assert a.min() >= 0 and (a > 0).mean() > 0.2


def test_lift_center_subtracts_the_mean():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((63, 10)) + 5.0
    mu = X.mean(axis=0)
    centred = Lift(10, 64, seed=2, center=mu, dtype=np.float64)(X)
    plain = Lift(10, 64, seed=2, dtype=np.float64)(X - mu)
    assert_close(centred, plain, name="centred lift")


def test_cos_lift_approximates_gaussian_kernel():
    """Random Fourier features: φ(x)·φ(y) ≈ exp(−scale²‖x−y‖²/2); a wrong formula misses by far."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((20, 6))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    F = Lift(6, 40000, seed=4, activation="cos", scale=1.0, dtype=np.float64)(X)
    D2 = ((X[:, None] - X[None]) ** 2).sum(-1)
    assert_close(F @ F.T, np.exp(-D2 / 2), rtol=0.03, name="RFF Gram vs Gaussian kernel")


def test_lift_rejects_bad_arguments():
    with pytest.raises(InputError) as ei:
        Lift(4, 0)
    assert ei.value.field == "lift_dim"
    with pytest.raises(InputError) as ei:
        Lift(4, 8, activation="tanh")
    assert ei.value.field == "activation"
    with pytest.raises(InputError) as ei:
        Lift(4, 8)(np.ones((2, 5)))
    assert ei.value.field == "inputs"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_normalize_keys_unit_rows(dtype):
    X = np.random.default_rng(5).standard_normal((300, 33)).astype(dtype) * 1e3
    K = normalize_keys(X)
    assert K.dtype == dtype
    assert_close(np.linalg.norm(K.astype(np.float64), axis=1), np.ones(300), name="row norms", dtype=dtype)
    tiny = np.full((1, 4), 1e-30, dtype=dtype)  # its squares underflow float32
    norm = np.linalg.norm(normalize_keys(tiny).astype(np.float64))
    assert_close(norm, np.ones(()), name="tiny row", dtype=dtype)


@pytest.mark.parametrize(
    "bad_row,message",
    [(np.zeros(4), "zero norm"), (np.array([1.0, np.nan, 0, 0]), "finite"),
     (np.array([np.inf, 0, 0, 0]), "finite")],
)
def test_normalize_keys_rejects_bad_rows(bad_row, message):
    X = np.ones((5, 4))
    X[3] = bad_row
    with pytest.raises(InputError) as ei:
        normalize_keys(X, field="events")
    assert ei.value.field == "events[3]" and message in ei.value.message


def test_backend_numpy_without_gpu_and_dlpack_shares_memory():
    assert isinstance(gpu_available(), bool)
    assert get_xp(prefer_gpu=False) is np
    if not gpu_available():
        assert get_xp() is np
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    t = to_torch(a)
    t[0, 0] = 42.0  # same memory: no copy
    assert a[0, 0] == 42.0
    b = from_torch(t)
    b[1, 2] = -1.0
    assert float(t[1, 2]) == -1.0 and isinstance(b, np.ndarray)
    assert to_numpy(t).shape == (2, 3)


def test_set_blas_threads():
    set_blas_threads(1)
    assert blas_threads() == 1
