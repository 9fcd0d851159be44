"""RLS (the preconditioned delta rule) with forgetting ρ: the Woodbury chunk form on NumPy/BLAS,
returning deltas of ``S`` and ``P`` (derivation: ``agent/memory/README.md`` §2;
``P`` symmetric positive definite)::

    M  = diag(ρ^1 … ρ^n) + K P0 Kᵀ                       # (n, n) SPD
    G  = P0 Kᵀ M⁻¹                                        # (d_k, n) the batch gains
    S_n = S0 + (Vᵀ − S0 Kᵀ) Gᵀ                            # E_S = V − K S0ᵀ, A_S = Gᵀ, γ = 1
    B   = C⁻¹ K P0  with M = C Cᵀ                         # so that G K P0 = Bᵀ B
    P_n = ρ⁻ⁿ (P0 − Bᵀ B)         # ρ = 1: factors A_P = B, E_P = −B, γ_P = 1
                                  # ρ < 1: dense replacement, D = P_n (symmetrised), γ_P = 0

With ρ < 1 a chunk is cut short so that ρ^rows ≥ 0.1 (``RHO_SPAN``): the bracket above is
about ρⁿ times P0, and a longer chunk would lose digits to the cancellation.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import get_blas_funcs, get_lapack_funcs

from agent.errors import InputError
from agent.memory.chunking import DEFAULT_CHUNK, _merge, _operands, _per_write, split_chunks
from agent.memory.deltas import LayerDelta, apply_layer

__all__ = ["rls_chunk", "rls_chunk_outputs", "rls_auto_chunk", "rls_from_read", "RHO_SPAN"]

RHO_SPAN = 0.1


def rls_auto_chunk(d_k: int) -> int:
    """RLS chunk rows for keys of ``d_k``: one chunk per batch unless ``d_k`` is small.

    Per write, a chunk costs ``2·d_k²`` (``K P0``) plus ``4·c·d_k`` (the two n×n products with
    ``C⁻¹``); splitting adds ``2·d_k²`` (applying the intermediate ``P``) to save ``4·(n−c)·d_k``,
    which only pays when ``d_k < 2(n − c)``. So chunks are ``max(DEFAULT_CHUNK, d_k // 2)`` rows.

    >>> rls_auto_chunk(384), rls_auto_chunk(4096)
    (192, 2048)
    """
    return max(DEFAULT_CHUNK, int(d_k) // 2)


def _sym_read(K: np.ndarray, P: np.ndarray) -> np.ndarray:
    """``K P`` reading only one triangle of ``P`` (BLAS ``?symm``), as if ``P`` were symmetric.

    Rounding may leave ``P`` a few ulps from symmetric; reading one triangle (instead of
    averaging ``P`` with its transpose, a strided pass over d_k² numbers) keeps that asymmetry
    from ever feeding back, at the cost of one GEMM. Row-major ``P`` is column-major ``Pᵀ``, and
    ``Kᵀ`` is column-major: no copies. Returns ``(n, d_k)`` row-major.
    """
    (symm,) = get_blas_funcs(("symm",), (P, K))
    # lower=1 on the column-major view Pᵀ reads the upper triangle of row-major P
    X = symm(1.0, P.T, K.T, side=0, lower=1)  # (d_k, n) column-major = P_sym Kᵀ
    return X.T


# --------------------------------------------------------------------------- RLS


def _rls_one_chunk(
    S0: np.ndarray, P0: np.ndarray, K: np.ndarray, V: np.ndarray, rho: float, outputs: bool
) -> tuple[LayerDelta, LayerDelta, np.ndarray | None]:
    KP = _sym_read(K, P0)  # (n, d_k)  = (P0 Kᵀ)ᵀ, P0 read as symmetric
    dS, B, Y = rls_from_read(S0, KP, K, V, rho, outputs)
    dt = S0.dtype
    n = K.shape[0]
    inv = rho ** (-n) if rho != 1.0 else 1.0
    # P_n = ρ⁻ⁿ (P0 − Bᵀ B): G K P0 = K P0ᵀ M⁻¹ K P0 = Bᵀ B, a positive semi-definite subtraction
    if rho == 1.0:
        dP = LayerDelta.factors(B, -B, 1.0)  # P_n = P0 − Bᵀ B
    else:
        # With forgetting, γ_P = ρ⁻ⁿ > 1: a factor delta would cancel ρ⁻ⁿ·P0 against ρ⁻ⁿ·BᵀB
        # (digits lost grow with n) and amplify any asymmetry of P (the classic RLS instability
        # with forgetting). So the P delta replaces P: dense, γ = 0, exactly symmetric.
        D = B.T @ B  # (d_k, d_k)
        P0 = np.triu(P0) + np.triu(P0, 1).T  # the triangle _sym_read reads, mirrored
        Pn = (P0 - dt.type(0.5) * (D + D.T)) * dt.type(inv)
        dP = LayerDelta.of_dense(Pn, 0.0)
    return dS, dP, Y


def rls_from_read(
    S0: np.ndarray, KP: np.ndarray, K: np.ndarray, V: np.ndarray, rho: float, outputs: bool
) -> tuple[LayerDelta, np.ndarray, np.ndarray | None]:
    """One RLS chunk given the read ``KP = K P0`` (n, d_k): the S delta, ``B = C⁻¹ K P0``
    (so that the P after the chunk is ``ρ⁻ⁿ(P0 − BᵀB)``) and, with ``outputs``, the reads."""
    dt = S0.dtype
    n = K.shape[0]
    M = KP @ K.T  # (n, n)
    M = 0.5 * (M + M.T)  # exact symmetry for the Cholesky
    rho_i = rho ** np.arange(1, n + 1, dtype=np.float64)  # (n,) ρ^1 … ρ^n
    M[np.diag_indices(n)] += rho_i.astype(dt)
    C = np.linalg.cholesky(M)  # (n, n) lower, M = C Cᵀ
    (trtri,) = get_lapack_funcs(("trtri",), (C,))
    Ci, info = trtri(C, lower=1)  # (n, n) C⁻¹: explicit inverse + GEMM beat ?trsm (see above)
    if info != 0:
        raise np.linalg.LinAlgError(f"trtri failed with info={info}")
    Ci = np.tril(Ci)
    B = Ci @ KP  # (n, d_k)  C⁻¹ K P0
    Gt = Ci.T @ B  # (n, d_k)  M⁻¹ K P0
    Es = V - K @ S0.T  # (n, d_v)  residuals against S0
    dS = LayerDelta.factors(Gt, Es, 1.0)
    Y = None
    if outputs:
        # innovations e = diag(C) C⁻¹ (V − K S0ᵀ) (unit-lower LDLᵀ of M); Y = V − e
        e = (Ci @ Es) * np.diag(C)[:, None]
        Y = (V - e).astype(dt, copy=False)
    return dS, B, Y


def _rls(S, P, K, V, rho, chunk, outputs):  # type: ignore[no-untyped-def]
    S, K, V, dt = _operands(S, K, V)
    P = np.asarray(P, dtype=dt)
    if P.shape != (S.shape[1], S.shape[1]):
        raise InputError("P", f"expected ({S.shape[1]}, {S.shape[1]}), got shape {P.shape}")
    rho = float(_per_write(rho, 1, "rho")[0])
    n = K.shape[0]
    chunk = rls_auto_chunk(S.shape[1]) if chunk is None else chunk
    if rho < 1.0:  # keep ρ^rows ≥ RHO_SPAN inside one chunk (see the module docstring)
        chunk = max(1, min(chunk, int(np.log(RHO_SPAN) / np.log(rho))))
    pS, pP, outs = [], [], []
    Sc, Pc = S, P
    sl = split_chunks(n, chunk)
    for j, s in enumerate(sl):
        dS, dP, Y = _rls_one_chunk(Sc, Pc, K[s], V[s], rho, outputs)
        pS.append(dS)
        pP.append(dP)
        if Y is not None:
            outs.append(Y)
        if j + 1 < len(sl):
            Sc, Pc = apply_layer(Sc, dS), apply_layer(Pc, dP)
    O_all = np.concatenate(outs, axis=0) if outputs else None
    return _merge(pS), _merge(pP), O_all


def rls_chunk(
    S: np.ndarray,
    P: np.ndarray,
    K: np.ndarray,
    V: np.ndarray,
    rho: float = 1.0,
    chunk: int | None = None,
) -> tuple[LayerDelta, LayerDelta]:
    """The deltas of S and of P for n RLS writes (Woodbury form), in ``S``'s dtype.

    ``apply_layer(S, dS)`` and ``apply_layer(P, dP)`` equal the n sequential writes of
    :func:`agent.memory.rls.naive.rls_naive` up to rounding. ``chunk=None``: :func:`rls_auto_chunk`.

    Examples
    --------
    >>> import numpy as np
    >>> from agent.memory.deltas import apply_layer
    >>> dS, dP = rls_chunk(np.zeros((1, 1)), np.eye(1), np.ones((2, 1)), np.ones((2, 1)))
    >>> round(float(apply_layer(np.zeros((1, 1)), dS)[0, 0]), 6)
    0.666667
    >>> round(float(apply_layer(np.eye(1), dP)[0, 0]), 6)
    0.333333
    """
    dS, dP, _ = _rls(S, P, K, V, rho, chunk, False)
    return dS, dP


def rls_chunk_outputs(
    S: np.ndarray,
    P: np.ndarray,
    K: np.ndarray,
    V: np.ndarray,
    rho: float = 1.0,
    chunk: int | None = None,
) -> tuple[LayerDelta, LayerDelta, np.ndarray]:
    """:func:`rls_chunk` plus the reads before each write ``Y`` (n, d_v).

    >>> import numpy as np
    >>> _, _, Y = rls_chunk_outputs(np.zeros((1, 1)), np.eye(1), np.ones((2, 1)), np.ones((2, 1)))
    >>> [round(float(x), 6) for x in Y[:, 0]]
    [0.0, 0.5]
    """
    dS, dP, Y = _rls(S, P, K, V, rho, chunk, True)
    assert Y is not None
    return dS, dP, Y
