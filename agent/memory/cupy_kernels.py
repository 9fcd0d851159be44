"""The write rules on the GPU with CuPy: cuBLAS products plus three fused ``RawKernel``s.

- ``unit_lower_solve``: ``(I + L) X = B`` for the n×n strictly-lower L of the chunk form (the
  WY/UT solve), one thread per right-hand-side column, rows swept in order.
- ``many_write``: δ-mem's many small states, one thread block per state, one thread per state
  entry; the state lives in shared memory for the whole sequence (read, decay, write per token).
- ``batched_read``: q queries each against its own state ``states[idx[i]]``, one thread per
  output entry, in one launch.

Everything else (the products, the Cholesky of the RLS form) is cupy / cuBLAS / cuSOLVER.
The maths is that of :mod:`agent.memory.delta_rule.chunk`, :mod:`agent.memory.rls.chunk` and :mod:`agent.memory.delta_rule.many`; the ``gpu`` tests
compare every function here with the NumPy path.

This module imports without CuPy; calling a function without it raises ``RuntimeError``.

Examples
--------
>>> import agent.memory.cupy_kernels as ck
>>> isinstance(ck.HAVE_CUPY, bool)
True
"""

from __future__ import annotations

from typing import Any

import numpy as np

from agent.errors import InputError
from agent.memory.chunking import DEFAULT_CHUNK, split_chunks
from agent.memory.deltas import LayerDelta
from agent.memory.rls.chunk import RHO_SPAN

try:  # never fail at import: CuPy is optional
    import cupy as cp

    HAVE_CUPY = True
except Exception:  # pragma: no cover - depends on the machine
    cp = None
    HAVE_CUPY = False

__all__ = [
    "HAVE_CUPY",
    "apply_layer_gpu",
    "delta_to_host",
    "unit_lower_solve",
    "delta_rule_chunk_gpu",
    "rls_chunk_gpu",
    "many_delta_write_gpu",
    "batched_read_gpu",
]

_SRC = r"""
extern "C" __global__ void unit_lower_solve(const T* __restrict__ L, T* X, const int n, const int m) {
    // (I + L) X = B in place, X (n, m) row-major; L (n, n), only its strict lower part is read.
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= m) return;
    for (int t = 1; t < n; ++t) {
        T acc = X[t * m + j];
        for (int i = 0; i < t; ++i) acc -= L[t * n + i] * X[i * m + j];
        X[t * m + j] = acc;
    }
}

extern "C" __global__ void many_write(T* S, const T* __restrict__ K, const T* __restrict__ V,
                                      const T* __restrict__ beta, const T* __restrict__ decay,
                                      T* Y, const int Tn, const int dv, const int dk,
                                      const int beta_rows, const int has_decay) {
    // One block per state b; thread (j, c) = threadIdx.x / dk, threadIdx.x % dk owns S[b, j, c].
    extern __shared__ unsigned char smem_raw[];
    T* sS = reinterpret_cast<T*>(smem_raw);  // (dv, dk)
    T* sk = sS + dv * dk;                     // (dk,)
    T* sv = sk + dk;                          // (dv,)
    T* sa = sv + dv;                          // (dv,)
    T* sb = sa + dv;                          // (dv,)
    T* so = sb + dv;                          // (dv,)
    const int b = blockIdx.x;
    const int tid = threadIdx.x;
    const int j = tid / dk, c = tid % dk;
    const long sbase = (long)b * dv * dk;
    sS[tid] = S[sbase + tid];
    for (int t = 0; t < Tn; ++t) {
        const long tok = (long)b * Tn + t;
        if (tid < dk) sk[tid] = K[tok * dk + tid];
        if (tid < dv) {
            sv[tid] = V[tok * dv + tid];
            sa[tid] = has_decay ? decay[tok * dv + tid] : (T)1;
            sb[tid] = beta_rows ? beta[tok * dv + tid] : beta[tok];
        }
        __syncthreads();
        if (c == 0) {  // read before write: o_j = S[j, :] · k
            T acc = 0;
            for (int i = 0; i < dk; ++i) acc += sS[j * dk + i] * sk[i];
            so[j] = acc;
            Y[tok * dv + j] = acc;
        }
        __syncthreads();
        const T a = sa[j];
        sS[tid] = a * sS[tid] + sb[j] * (sv[j] - a * so[j]) * sk[c];
        __syncthreads();
    }
    S[sbase + tid] = sS[tid];
}

extern "C" __global__ void batched_read(const T* __restrict__ states, const long long* __restrict__ idx,
                                        const T* __restrict__ Q, T* out, const int q, const int dv,
                                        const int dk) {
    // out[i, j] = states[idx[i], j, :] · Q[i, :]; one thread per (i, j).
    const long e = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= (long)q * dv) return;
    const long i = e / dv;
    const int j = (int)(e % dv);
    const T* row = states + ((long)idx[i] * dv + j) * dk;
    const T* x = Q + i * dk;
    T acc = 0;
    for (int c = 0; c < dk; ++c) acc += row[c] * x[c];
    out[e] = acc;
}
"""

_KERNELS: dict[tuple[str, str], Any] = {}


def _need() -> Any:
    if not HAVE_CUPY:
        raise RuntimeError("CuPy is not installed; use the NumPy kernels (agent.memory.<rule>.chunk)")
    return cp


def _kernel(name: str, dtype: Any) -> Any:
    dt = np.dtype(dtype)
    if dt not in (np.float32, np.float64):
        raise InputError("dtype", f"expected float32 or float64, got {dt}")
    key = (name, dt.name)
    if key not in _KERNELS:
        ctype = "float" if dt == np.float32 else "double"
        module = _need().RawModule(code="#define T " + ctype + "\n" + _SRC, options=("--std=c++14",))
        for n in ("unit_lower_solve", "many_write", "batched_read"):
            _KERNELS[(n, dt.name)] = module.get_function(n)
    return _KERNELS[key]


def apply_layer_gpu(S: Any, ld: LayerDelta) -> Any:
    """``γ·pad_rows(S) + Eᵀ A`` on the device (the GPU twin of ``delta.apply_layer``)."""
    xp = _need()
    if S.shape[0] < ld.shape[0]:
        S = xp.concatenate([S, xp.zeros((ld.shape[0] - S.shape[0], S.shape[1]), S.dtype)])
    add = ld.dense if ld.dense is not None else ld.E.T @ ld.A  # type: ignore[union-attr]
    return S.dtype.type(ld.gamma) * S + xp.asarray(add, dtype=S.dtype)


def delta_to_host(ld: LayerDelta) -> LayerDelta:
    """The same delta with NumPy arrays (to store it; rebuilds then use ``apply_layer``)."""
    get = (lambda a: a.get() if hasattr(a, "get") else np.asarray(a))  # noqa: E731
    if ld.dense is not None:
        return LayerDelta.of_dense(get(ld.dense), ld.gamma)
    return LayerDelta.factors(get(ld.A), get(ld.E), ld.gamma)


def unit_lower_solve(L: Any, B: Any) -> Any:
    """Solve ``(I + strict_lower(L)) X = B`` for X (n, m) with the RawKernel."""
    xp = _need()
    X = xp.array(B, dtype=L.dtype, order="C")  # (n, m), a copy solved in place
    L = xp.ascontiguousarray(L)
    n, m = X.shape
    threads = 128
    _kernel("unit_lower_solve", L.dtype)(((m + threads - 1) // threads,), (threads,),
                                         (L, X, np.int32(n), np.int32(m)))
    return X


def _merge_gpu(parts: list[LayerDelta]) -> LayerDelta:
    xp = _need()
    if len(parts) == 1:
        return parts[0]
    if parts[-1].is_dense and parts[-1].gamma == 0.0:
        return parts[-1]
    gammas = [p.gamma for p in parts]
    if any(p.is_dense for p in parts):
        D = parts[0].to_dense()
        for p in parts[1:]:
            D = D * D.dtype.type(p.gamma) + p.to_dense()
        return LayerDelta.of_dense(D, float(np.prod(gammas)))
    Es = [p.E * p.E.dtype.type(float(np.prod(gammas[j + 1:]))) for j, p in enumerate(parts)]  # type: ignore[union-attr]
    return LayerDelta.factors(xp.concatenate([p.A for p in parts]), xp.concatenate(Es), float(np.prod(gammas)))


def delta_rule_chunk_gpu(S: Any, K: Any, V: Any, beta: Any, alpha: float = 1.0,
                         chunk: int = DEFAULT_CHUNK) -> LayerDelta:
    """GPU :func:`agent.memory.delta_rule.chunk.delta_rule_chunk` (scalar α); the delta holds CuPy arrays."""
    xp = _need()
    S = xp.asarray(S)
    dt = S.dtype
    K, V = xp.asarray(K, dtype=dt), xp.asarray(V, dtype=dt)
    n = K.shape[0]
    b = xp.broadcast_to(xp.asarray(beta, dtype=dt), (n,))
    if not 0.0 < float(alpha) <= 1.0:
        raise InputError("alpha", "expected a value in (0, 1]")
    la = float(np.log(alpha))
    parts, Sc = [], S
    for s in split_chunks(n, chunk):
        Kc, Vc, bc = K[s], V[s], b[s]
        m = Kc.shape[0]
        t = xp.arange(m, dtype=np.float64)
        KS = Kc @ Sc.T  # (m, d_v)
        L = Kc @ Kc.T  # (m, m); the kernel reads only its strict lower part
        if la != 0.0:
            gap = xp.maximum(t[:, None] - t[None, :], 0.0)  # upper part unused: keep it finite
            dec = xp.exp(la * gap).astype(dt)  # c_{t+1}/c_{i+1} below the diagonal
            L = L * dec
            rhs = Vc - xp.exp(la * (t + 1)).astype(dt)[:, None] * KS
        else:
            rhs = Vc - KS
        R = unit_lower_solve(L * bc[:, None], rhs * bc[:, None])  # (m, d_v)
        E = xp.exp(la * (m - 1 - t)).astype(dt)[:, None] * R if la != 0.0 else R
        ld = LayerDelta.factors(Kc, E, float(alpha) ** m if la != 0.0 else 1.0)
        parts.append(ld)
        Sc = apply_layer_gpu(Sc, ld)
    return _merge_gpu(parts)


def rls_chunk_gpu(S: Any, P: Any, K: Any, V: Any, rho: float = 1.0,
                  chunk: int = DEFAULT_CHUNK) -> tuple[LayerDelta, LayerDelta]:
    """GPU :func:`agent.memory.rls.chunk.rls_chunk` (cuSOLVER Cholesky, cuBLAS triangular solves)."""
    xp = _need()
    from cupyx.scipy.linalg import solve_triangular

    S = xp.asarray(S)
    dt = S.dtype
    P, K, V = xp.asarray(P, dtype=dt), xp.asarray(K, dtype=dt), xp.asarray(V, dtype=dt)
    if not 0.0 < float(rho) <= 1.0:
        raise InputError("rho", "expected a value in (0, 1]")
    if rho < 1.0:
        chunk = max(1, min(chunk, int(np.log(RHO_SPAN) / np.log(rho))))
    pS, pP, Sc, Pc = [], [], S, P
    for s in split_chunks(K.shape[0], chunk):
        Kc, Vc = K[s], V[s]
        n = Kc.shape[0]
        P0 = 0.5 * (Pc + Pc.T)
        KP = Kc @ P0  # (n, d_k)
        M = KP @ Kc.T
        M = 0.5 * (M + M.T) + xp.diag(xp.asarray(rho ** np.arange(1, n + 1), dtype=dt))
        C = xp.linalg.cholesky(M)
        B = solve_triangular(C, KP, lower=True)
        Gt = solve_triangular(C.T, B, lower=False)
        dS = LayerDelta.factors(Gt, Vc - Kc @ Sc.T, 1.0)
        if rho == 1.0:
            dP = LayerDelta.factors(B, -B, 1.0)
        else:
            D = B.T @ B
            dP = LayerDelta.of_dense((P0 - dt.type(0.5) * (D + D.T)) * dt.type(rho ** (-n)), 0.0)
        pS.append(dS)
        pP.append(dP)
        Sc, Pc = apply_layer_gpu(Sc, dS), apply_layer_gpu(Pc, dP)
    return _merge_gpu(pS), _merge_gpu(pP)


def many_delta_write_gpu(S: Any, K: Any, V: Any, beta: Any, decay: Any | None = None) -> tuple[Any, Any]:
    """GPU :func:`agent.memory.delta_rule.many.many_delta_write`: one block per state, d_v·d_k ≤ 1024."""
    xp = _need()
    S = xp.array(S, order="C")  # a copy, updated in place
    dt = S.dtype
    B, d_v, d_k = S.shape
    if d_v * d_k > 1024:
        raise InputError("S", f"a state of {d_v}x{d_k} exceeds one thread block (1024 entries)")
    K = xp.ascontiguousarray(xp.asarray(K, dtype=dt))
    V = xp.ascontiguousarray(xp.asarray(V, dtype=dt))
    beta = xp.ascontiguousarray(xp.asarray(beta, dtype=dt))
    T = K.shape[1]
    if K.shape != (B, T, d_k) or V.shape != (B, T, d_v) or beta.shape not in ((B, T), (B, T, d_v)):
        raise InputError("K", "shapes must be S (B,d_v,d_k), K (B,T,d_k), V (B,T,d_v), beta (B,T[,d_v])")
    dec = xp.ascontiguousarray(xp.asarray(decay, dtype=dt)) if decay is not None else xp.ones(1, dt)
    Y = xp.empty((B, T, d_v), dtype=dt)
    shared = (d_v * d_k + d_k + 4 * d_v) * dt.itemsize
    _kernel("many_write", dt)((B,), (d_v * d_k,),
                              (S, K, V, beta, dec, Y, np.int32(T), np.int32(d_v), np.int32(d_k),
                               np.int32(beta.ndim == 3), np.int32(decay is not None)),
                              shared_mem=shared)
    return S, Y


def batched_read_gpu(states: Any, idx: Any, Q: Any) -> Any:
    """GPU :func:`agent.memory.delta_rule.many.batched_read`: every query with its own state, one launch."""
    xp = _need()
    states = xp.ascontiguousarray(states)
    dt = states.dtype
    m, d_v, d_k = states.shape
    Q = xp.ascontiguousarray(xp.asarray(Q, dtype=dt))
    idx = xp.ascontiguousarray(xp.asarray(idx, dtype=xp.int64))
    q = Q.shape[0]
    if Q.shape != (q, d_k) or idx.shape != (q,):
        raise InputError("Q", f"expected Q (q, {d_k}) and idx (q,)")
    if q and (int(idx.min()) < 0 or int(idx.max()) >= m):
        raise InputError("idx", f"state indices must lie in [0, {m})")
    out = xp.empty((q, d_v), dtype=dt)
    threads = 256
    total = q * d_v
    _kernel("batched_read", dt)(((total + threads - 1) // threads,), (threads,),
                                (states, idx, Q, out, np.int32(q), np.int32(d_v), np.int32(d_k)))
    return out
