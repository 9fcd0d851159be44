"""Array-module selection (NumPy or CuPy), DLPack hand-over to torch, BLAS thread control.

CuPy is used only when a GPU is really usable: ``cupy`` imports, ``cupy.cuda.is_available()``
is true, and a first small allocation and kernel succeed. The probe never raises; its answer is
cached for the life of the process (``refresh=True`` probes again).

BLAS threads: the memory kernels work on small matrices (an n×n triangular solve, products with
n ≤ 256 rows). On the 2-core development machine OpenBLAS with 2 threads ran the chunk form
10–50× slower than with 1 thread (thread start-up and spinning dominate such small products,
and several processes — learner shards, serving replicas — compete for the same cores). Every
process that runs a learner or a server therefore calls ``set_blas_threads(1)`` once; the
``benchmarks/kernels.py`` table re-measures this (column ``blas=2`` vs ``blas=1``).

Examples
--------
>>> import numpy as np
>>> xp = get_xp(prefer_gpu=False)
>>> xp is np
True
>>> to_numpy(np.arange(3)).tolist()
[0, 1, 2]
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import numpy as np

__all__ = [
    "gpu_available",
    "get_xp",
    "array_module",
    "to_numpy",
    "to_torch",
    "from_torch",
    "set_blas_threads",
    "one_blas_thread",
    "blas_threads",
]

_GPU: bool | None = None
_BLAS_LIMITER: Any = None


def _cupy() -> ModuleType | None:
    try:
        return importlib.import_module("cupy")
    except Exception:  # ImportError, or a CUDA library that fails to load
        return None


def gpu_available(refresh: bool = False) -> bool:
    """True when CuPy imports, a CUDA device is visible, and a first allocation works."""
    global _GPU
    if _GPU is not None and not refresh:
        return _GPU
    ok = False
    cp = _cupy()
    if cp is not None:
        try:
            if cp.cuda.is_available():
                x = cp.arange(8, dtype=cp.float32)
                ok = float((x * 2).sum().get()) == 56.0
        except Exception:
            ok = False
    _GPU = ok
    return ok


def get_xp(prefer_gpu: bool = True) -> ModuleType:
    """``cupy`` when ``prefer_gpu`` and a GPU is usable, else ``numpy``."""
    if prefer_gpu and gpu_available():
        cp = _cupy()
        assert cp is not None
        return cp
    return np


def array_module(x: Any) -> ModuleType:
    """The module (numpy or cupy) that owns array ``x``."""
    if type(x).__module__.startswith("cupy"):
        cp = _cupy()
        if cp is not None:
            return cp
    return np


def to_numpy(x: Any) -> np.ndarray:
    """A NumPy array for a NumPy or CuPy array (a device-to-host copy for CuPy) or a CPU tensor."""
    if isinstance(x, np.ndarray):
        return x
    if type(x).__module__.startswith("cupy"):
        return x.get()
    if type(x).__module__.startswith("torch"):
        return from_torch(x.detach().cpu())  # type: ignore[no-any-return]
    return np.asarray(x)


def to_torch(x: Any) -> Any:
    """A torch tensor sharing memory with ``x`` (NumPy or CuPy) through DLPack — no copy.

    NumPy arrays must be writeable (DLPack has no read-only flag); a read-only array is
    refused by NumPy with ``BufferError``.
    """
    import torch

    return torch.from_dlpack(x)


def from_torch(t: Any, xp: ModuleType | None = None) -> Any:
    """A NumPy (CPU tensor) or CuPy (CUDA tensor) array sharing memory with ``t`` — no copy.

    ``t`` must not require grad (call ``.detach()`` first).
    """
    if xp is None:
        if getattr(t, "is_cuda", False):
            xp = _cupy()
            if xp is None:
                raise RuntimeError("a CUDA tensor needs CuPy to be handed over without a copy")
        else:
            xp = np
    return xp.from_dlpack(t)


def set_blas_threads(n: int) -> None:
    """Limit every BLAS/OpenMP pool of this process to ``n`` threads (threadpoolctl)."""
    global _BLAS_LIMITER
    from threadpoolctl import ThreadpoolController

    _BLAS_LIMITER = ThreadpoolController().limit(limits=int(n))


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """BLAS limited to one thread inside the block.

    The bits of a large GEMM can depend on OpenBLAS's thread count (it tiles the product
    differently: measured here, ``apply_layer`` of a rank-10 delta on a 1100 × 1100 float64
    layer differs between 1 and 2 threads). The exactness contract fixes one thread, as every
    learner and serving actor runs; a rebuild in any other process (the API process forking an
    agent, a script) runs its arithmetic inside this block.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


def blas_threads() -> int:
    """The largest thread count among this process's BLAS pools (1 when none is found)."""
    from threadpoolctl import threadpool_info

    counts = [int(p.get("num_threads", 1)) for p in threadpool_info() if p.get("user_api") == "blas"]
    return max(counts) if counts else 1
