"""Micro-batch (chunk) forms of both write rules on NumPy/BLAS, returning deltas.

A batch of n writes becomes one low-rank delta ``S_n = γ·S_0 + Eᵀ A`` (see
:mod:`agent.memory.deltas`), computed with matrix products plus one n×n triangular (delta rule)
or SPD (RLS) solve per chunk. The derivations are in ``agent/memory/README.md``.

Gated delta rule (decay ``α_t``, strength ``β_t``; ``c_t = Π_{j<t} α_j``; rows 0-based)::

    Γ[t, i]  = c_{t+1} / c_{i+1}             (i < t)    # decay between write i and read t
    L        = strict_lower(diag(β) (K Kᵀ ⊙ Γ))           # (n, n)
    (I + L) R = diag(β) (V − diag(c_{t+1}) K S0ᵀ)         # R[t] = β_t (v_t − α_t S_t k_t)
    E[i]     = (c_n / c_{i+1}) R[i],   A = K,   γ = c_n

RLS with forgetting ρ (``P`` symmetric positive definite)::

    M  = diag(ρ^1 … ρ^n) + K P0 Kᵀ                       # (n, n) SPD
    G  = P0 Kᵀ M⁻¹                                        # (d_k, n) the batch gains
    S_n = S0 + (Vᵀ − S0 Kᵀ) Gᵀ                            # E_S = V − K S0ᵀ, A_S = Gᵀ, γ = 1
    B   = C⁻¹ K P0  with M = C Cᵀ                         # so that G K P0 = Bᵀ B
    P_n = ρ⁻ⁿ (P0 − Bᵀ B)         # ρ = 1: factors A_P = B, E_P = −B, γ_P = 1
                                  # ρ < 1: dense replacement, D = P_n (symmetrised), γ_P = 0

With ρ < 1 a chunk is cut short so that ρ^rows ≥ 0.1 (``RHO_SPAN``): the bracket above is
about ρⁿ times P0, and a longer chunk would lose digits to the cancellation.

Long batches are split into chunks of at most ``chunk`` rows; each chunk starts from the state
the previous chunk's delta gives through :func:`apply_layer`, and the chunk deltas are merged into
one delta over the whole batch (later chunks' decays folded into earlier rows of E).

Examples
--------
>>> import numpy as np
>>> from agent.memory.deltas import apply_layer
>>> from agent.memory.naive import delta_rule_naive
>>> rng = np.random.default_rng(0)
>>> K = rng.standard_normal((5, 4)); K /= np.linalg.norm(K, axis=1, keepdims=True)
>>> V = rng.standard_normal((5, 3)); S0 = rng.standard_normal((3, 4))
>>> ld = delta_rule_chunk(S0, K, V, np.full(5, 0.7), alpha=0.9, chunk=2)
>>> ref, _ = delta_rule_naive(S0, K, V, np.full(5, 0.7), alpha=0.9)
>>> bool(np.allclose(apply_layer(S0, ld), ref, atol=1e-12)), abs(ld.gamma - 0.9 ** 5) < 1e-15
(True, True)
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import get_blas_funcs, get_lapack_funcs

from agent.errors import InputError
from agent.memory.deltas import LayerDelta, apply_layer

__all__ = [
    "DEFAULT_CHUNK",
    "split_chunks",
    "delta_rule_chunk",
    "delta_rule_chunk_outputs",
    "rls_chunk",
    "rls_chunk_outputs",
    "rls_auto_chunk",
]

DEFAULT_CHUNK = 64
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


def split_chunks(n: int, chunk: int = DEFAULT_CHUNK) -> list[slice]:
    """Row slices of at most ``chunk`` rows covering ``range(n)`` in order.

    >>> split_chunks(5, 2)
    [slice(0, 2, None), slice(2, 4, None), slice(4, 5, None)]
    """
    if chunk < 1:
        raise InputError("chunk", f"expected a positive integer, got {chunk}")
    return [slice(s, min(s + chunk, n)) for s in range(0, n, chunk)]


def _check(S: np.ndarray, K: np.ndarray, V: np.ndarray) -> None:
    if S.ndim != 2:
        raise InputError("S", f"expected a (d_v, d_k) matrix, got shape {S.shape}")
    if K.ndim != 2 or K.shape[1] != S.shape[1] or K.shape[0] < 1:
        raise InputError("K", f"expected (n >= 1, {S.shape[1]}), got shape {K.shape}")
    if V.shape != (K.shape[0], S.shape[0]):
        raise InputError("V", f"expected ({K.shape[0]}, {S.shape[0]}), got shape {V.shape}")


def _per_write(x: np.ndarray | float, n: int, name: str) -> np.ndarray:
    """A scalar or (n,) parameter as an (n,) float64 array in (0, 1]."""
    a = np.asarray(x, dtype=np.float64)
    a = np.full(n, float(a)) if a.ndim == 0 else a
    if a.shape != (n,):
        raise InputError(name, f"expected a scalar or shape ({n},), got {a.shape}")
    if not (np.all(np.isfinite(a)) and np.all(a > 0) and np.all(a <= 1)):
        raise InputError(name, "expected values in (0, 1]")
    return a


def _merge(parts: list[LayerDelta]) -> LayerDelta:
    """One factor delta equal to applying ``parts`` in order: later gammas scale earlier E."""
    if len(parts) == 1:
        return parts[0]
    gammas = [p.gamma for p in parts]
    if parts[-1].is_dense and parts[-1].gamma == 0.0:  # a replacement wins over all before it
        return parts[-1]
    if any(p.is_dense for p in parts):  # D = Σ_j (Π_{l>j} γ_l) D_j, accumulated in order
        D = parts[0].to_dense()
        for p in parts[1:]:
            D = D * D.dtype.type(p.gamma) + p.to_dense()
        return LayerDelta.of_dense(D, float(np.prod(gammas)))
    Es = []
    for j, p in enumerate(parts):
        later = float(np.prod(gammas[j + 1 :])) if j + 1 < len(parts) else 1.0
        assert p.E is not None
        Es.append(p.E if later == 1.0 else p.E * p.E.dtype.type(later))
    A = np.concatenate([p.A for p in parts], axis=0)  # type: ignore[misc]
    return LayerDelta.factors(A, np.concatenate(Es, axis=0), float(np.prod(gammas)))


# --------------------------------------------------------------------------- delta rule


def _unit_lower_inv(Lm: np.ndarray) -> np.ndarray:
    """``(I + Lm)⁻¹`` for strictly lower-triangular ``Lm`` (overwritten), by LAPACK ``?trtri``.

    The explicit inverse and one GEMM beat ``?trsm`` with n ≤ 256 rows and many right-hand
    sides by about 5× with OpenBLAS here (the T of the WY form is an explicit inverse too).
    """
    Lm[np.diag_indices(Lm.shape[0])] = 1.0
    (trtri,) = get_lapack_funcs(("trtri",), (Lm,))
    Ti, info = trtri(Lm, lower=1, unitdiag=1, overwrite_c=1)
    if info != 0:  # cannot happen for a unit diagonal; kept as a guard
        raise np.linalg.LinAlgError(f"trtri failed with info={info}")
    return Ti


def _delta_one_chunk(
    S0: np.ndarray, K: np.ndarray, V: np.ndarray, b: np.ndarray, la: np.ndarray, outputs: bool
) -> tuple[LayerDelta, np.ndarray | None]:
    """One chunk of the gated delta rule. ``la`` = log α per write (float64)."""
    dt = S0.dtype
    n = K.shape[0]
    lc = np.concatenate([[0.0], np.cumsum(la)])  # (n+1,) log c_t, c_0 = 1
    KS = K @ S0.T  # (n, d_v)  S0 read at every key
    KK = K @ K.T  # (n, n)
    gated = bool(np.any(la != 0.0))
    if gated:
        dec = np.exp(lc[1:, None] - lc[None, 1:])  # (n, n) c_{t+1}/c_{i+1}; ≤ 1 below diagonal
        Lm = np.tril(KK * dec.astype(dt), -1)
        rhs = V - np.exp(lc[1:]).astype(dt)[:, None] * KS  # (n, d_v)
    else:
        Lm = np.tril(KK, -1)
        rhs = V - KS
    bd = b.astype(dt)
    Lm *= bd[:, None]  # diag(β) L
    rhs *= bd[:, None]
    R = _unit_lower_inv(Lm) @ rhs  # (n, n) @ (n, d_v)
    if gated:
        E = np.exp(lc[n] - lc[1:]).astype(dt)[:, None] * R  # (n, d_v)
    else:
        E = R
    ld = LayerDelta.factors(K, E, float(np.prod(np.exp(la))) if gated else 1.0)
    Y = None
    if outputs:
        # Y[t] = S_t k_t = c_t S0 k_t + Σ_{i<t} (c_t/c_{i+1}) (k_i·k_t) R[i]
        if gated:
            dec_o = np.exp(lc[:-1, None] - lc[None, 1:])  # (n, n) c_t / c_{i+1}
            Lo = np.tril(KK * dec_o.astype(dt), -1)
            Y = np.exp(lc[:-1]).astype(dt)[:, None] * KS + Lo @ R
        else:
            Y = KS + np.tril(KK, -1) @ R
    return ld, Y


def _operands(S, K, V):  # type: ignore[no-untyped-def]
    """S as float32/float64 (else float64), K and V in S's dtype, shapes checked."""
    S = np.asarray(S)
    if S.dtype not in (np.float32, np.float64):
        S = S.astype(np.float64)
    dt = S.dtype
    K = np.asarray(K, dtype=dt)
    V = np.asarray(V, dtype=dt)
    _check(S, K, V)
    return S, K, V, dt


def _delta(S, K, V, beta, alpha, chunk, outputs):  # type: ignore[no-untyped-def]
    S, K, V, dt = _operands(S, K, V)
    n = K.shape[0]
    b = _per_write(beta, n, "beta")
    la = np.log(_per_write(alpha, n, "alpha"))
    parts, outs = [], []
    Sc = S
    sl = split_chunks(n, chunk)
    for j, s in enumerate(sl):
        ld, Y = _delta_one_chunk(Sc, K[s], V[s], b[s], la[s], outputs)
        parts.append(ld)
        if Y is not None:
            outs.append(Y)
        if j + 1 < len(sl):
            Sc = apply_layer(Sc, ld)
    merged = _merge(parts)
    return merged, (np.concatenate(outs, axis=0) if outputs else None)


def delta_rule_chunk(
    S: np.ndarray,
    K: np.ndarray,
    V: np.ndarray,
    beta: np.ndarray | float,
    alpha: np.ndarray | float = 1.0,
    chunk: int = DEFAULT_CHUNK,
) -> LayerDelta:
    """The delta of n gated delta-rule writes, in ``S``'s dtype (float32 or float64).

    Parameters
    ----------
    S : (d_v, d_k) state before the batch (rows for new labels already padded).
    K : (n, d_k) unit keys; V : (n, d_v) values; beta : scalar or (n,) in (0, 1];
    alpha : scalar or (n,) decay in (0, 1]; chunk : rows per internal chunk.

    Returns
    -------
    LayerDelta with ``A = K``, ``E`` (n, d_v) and ``gamma = Π α``, such that
    ``apply_layer(S, ld)`` equals the n sequential writes up to rounding.

    Examples
    --------
    >>> import numpy as np
    >>> ld = delta_rule_chunk(np.zeros((1, 1)), np.ones((3, 1)), np.ones((3, 1)), 0.5)
    >>> ld.E[:, 0].tolist(), ld.gamma
    ([0.5, 0.25, 0.125], 1.0)
    """
    return _delta(S, K, V, beta, alpha, chunk, False)[0]


def delta_rule_chunk_outputs(
    S: np.ndarray,
    K: np.ndarray,
    V: np.ndarray,
    beta: np.ndarray | float,
    alpha: np.ndarray | float = 1.0,
    chunk: int = DEFAULT_CHUNK,
) -> tuple[LayerDelta, np.ndarray]:
    """:func:`delta_rule_chunk` plus the reads before each write ``Y`` (n, d_v).

    >>> import numpy as np
    >>> _, Y = delta_rule_chunk_outputs(np.zeros((1, 1)), np.ones((3, 1)), np.ones((3, 1)), 0.5)
    >>> Y[:, 0].tolist()
    [0.0, 0.5, 0.75]
    """
    ld, Y = _delta(S, K, V, beta, alpha, chunk, True)
    assert Y is not None
    return ld, Y


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
    :func:`agent.memory.naive.rls_naive` up to rounding. ``chunk=None``: :func:`rls_auto_chunk`.

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
