"""Many small δ-mem states in torch (autograd-friendly): the write kernels and the read.

δ-mem keeps one state ``S`` (d_v × d_k, 8 × 8) per attention layer and conversation. Every row
``i`` of a state is written with its own strength ``β_i`` (the per-row gate of the δ-mem paper)
and, when gating is on, decays by ``α_i = 1 − β_i``; one write with key ``k``, value ``v``::

    o   = S q                                   # read before write (q defaults to k)
    S_i ← α_i·S_i + β_i·(v_i − α_i·S_i·k) kᵀ     # row i; without gating α = 1

Without gating a row forgets only along ``k`` (by ``1 − β_i``), so old facts under other keys
survive; with gating the whole row decays. Rows never interact, so a state of d_v rows is
d_v independent one-row memories: that is how the kernels here are tested against the float64
oracle :func:`agent.memory.delta_rule.naive.delta_rule_naive` (one row at a time).

Kernels (same arguments, same results up to float rounding):

- :func:`write_naive` — a loop of single writes: the reference.
- :func:`write_chunk` — the chunkwise WY form (DeltaNet), gated: within a chunk of C writes,
  with ``c_t = Σ_{r≤t} log α_r`` and ``D_ts = exp(c_t − c_s)``::

      (I + L) U = β ⊙ (V − exp(c) ⊙ S0 K)       L_ts = β_t D_ts (k_t·k_s), s < t
      S_C = exp(c_C) ⊙ S0 + Σ_s D_Cs u_s k_sᵀ
      o_t = exp(c_{t−1}) ⊙ S0 q_t + Σ_{s<t} D_{t−1,s} u_s (k_s·q_t)

  one unit lower-triangular solve per row and chunk; exact algebra, no approximation.

Items that must not be written (template tokens, padding) get ``β = 0`` and ``α = 1``: an
exact no-op in both kernels.

Examples
--------
>>> S = torch.zeros(1, 1, 1)
>>> K = torch.ones(1, 3, 1); V = torch.ones(1, 3, 1); b = torch.full((1, 3, 1), 0.5)
>>> S1, out = write_naive(S, K, V, b)
>>> float(S1), out[0, :, 0].tolist()
(0.875, [0.0, 0.5, 0.75])
"""

from __future__ import annotations

import torch

__all__ = ["write_naive", "write_chunk", "read", "masked_mean", "DEFAULT_CHUNK"]

DEFAULT_CHUNK = 64


def read(S: torch.Tensor, Q: torch.Tensor) -> torch.Tensor:
    """``r_t = S q_t`` for every state. S (N, d_v, d_k), Q (N, T, d_k) → (N, T, d_v)."""
    return torch.einsum("nvk,ntk->ntv", S, Q)


def _check(S: torch.Tensor, K: torch.Tensor, V: torch.Tensor, beta: torch.Tensor,
           decay: torch.Tensor | None, Q: torch.Tensor | None) -> None:
    N, d_v, d_k = S.shape
    T = K.shape[1]
    if K.shape != (N, T, d_k) or V.shape != (N, T, d_v) or beta.shape != (N, T, d_v):
        raise ValueError(f"shapes S{tuple(S.shape)} K{tuple(K.shape)} V{tuple(V.shape)} "
                         f"beta{tuple(beta.shape)} do not fit (N,d_v,d_k),(N,T,d_k),(N,T,d_v)")
    if decay is not None and decay.shape != beta.shape:
        raise ValueError(f"decay shape {tuple(decay.shape)} != beta shape {tuple(beta.shape)}")
    if Q is not None and Q.shape != K.shape:
        raise ValueError(f"Q shape {tuple(Q.shape)} != K shape {tuple(K.shape)}")


def write_naive(S: torch.Tensor, K: torch.Tensor, V: torch.Tensor, beta: torch.Tensor,
                decay: torch.Tensor | None = None,
                Q: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """T sequential writes into N states, one at a time (the reference).

    Parameters
    ----------
    S : (N, d_v, d_k) states before the writes.
    K : (N, T, d_k) keys (unit rows, or zero rows for no-ops).
    V : (N, T, d_v) values.
    beta : (N, T, d_v) per-row strengths in [0, 1].
    decay : (N, T, d_v) per-row decays α in (0, 1], or None (α = 1).
    Q : (N, T, d_k) read queries, or None (read at the key).

    Returns
    -------
    S_final : (N, d_v, d_k)
    O : (N, T, d_v), ``O[:, t] = S_{t−1} q_t`` (read before write t).
    """
    _check(S, K, V, beta, decay, Q)
    Q = K if Q is None else Q
    outs = []
    for t in range(K.shape[1]):
        k, v, b = K[:, t], V[:, t], beta[:, t]  # (N, d_k), (N, d_v), (N, d_v)
        outs.append(torch.einsum("nvk,nk->nv", S, Q[:, t]))
        if decay is not None:
            S = decay[:, t, :, None] * S  # (N, d_v, d_k), row-wise decay
        err = v - torch.einsum("nvk,nk->nv", S, k)  # (N, d_v)
        S = S + (b * err)[:, :, None] * k[:, None, :]
    out = torch.stack(outs, dim=1) if outs else V.new_zeros(V.shape)
    return S, out


def _chunk(S0: torch.Tensor, K: torch.Tensor, V: torch.Tensor, beta: torch.Tensor,
           logdecay: torch.Tensor | None, Q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One chunk of C writes in the WY form (see the module docstring)."""
    N, C, d_k = K.shape
    # rows become a batch dimension: everything below is (N, d_v, ...)
    b = beta.transpose(1, 2)  # (N, d_v, C)
    v = V.transpose(1, 2)  # (N, d_v, C)
    if logdecay is None:
        c = torch.zeros_like(b)  # (N, d_v, C) cumulative log decay
    else:
        c = torch.cumsum(logdecay.transpose(1, 2), dim=-1)
    c_prev = torch.nn.functional.pad(c, (1, 0))[..., :-1]  # c_{t−1}, c_0 = 0
    tri = torch.ones(C, C, dtype=torch.bool, device=K.device)
    strict = torch.tril(tri, diagonal=-1)  # s < t
    lower = torch.tril(tri)  # s ≤ t
    diff = c[..., :, None] - c[..., None, :]  # (N, d_v, C, C): c_t − c_s
    D = torch.exp(diff.masked_fill(~lower, float("-inf")))  # D_ts, zero above the diagonal
    KK = torch.einsum("ntk,nsk->nts", K, K)[:, None]  # (N, 1, C, C)
    L = (b[..., :, None] * D * KK).masked_fill(~strict, 0.0)  # (N, d_v, C, C)
    S0K = torch.einsum("nvk,ntk->nvt", S0, K)  # (N, d_v, C)
    rhs = b * (v - torch.exp(c) * S0K)  # (N, d_v, C)
    eye = torch.eye(C, dtype=K.dtype, device=K.device)
    U = torch.linalg.solve_triangular(eye + L, rhs[..., None], upper=False,
                                      unitriangular=True)[..., 0]  # (N, d_v, C)
    # read before write: o_t = exp(c_{t−1}) S0 q_t + Σ_{s<t} D_{t−1,s} u_s (k_s·q_t)
    Dprev = torch.exp((c_prev[..., :, None] - c[..., None, :]).masked_fill(~strict, float("-inf")))
    QK = torch.einsum("ntk,nsk->nts", Q, K)[:, None]  # (N, 1, C, C)
    S0Q = torch.einsum("nvk,ntk->nvt", S0, Q)  # (N, d_v, C)
    out = torch.exp(c_prev) * S0Q + torch.einsum("nvts,nvs->nvt", Dprev * QK, U)
    # final state: S_C = exp(c_C) S0 + Σ_s D_Cs u_s k_sᵀ
    DC = torch.exp(c[..., -1:] - c)  # (N, d_v, C)
    S = torch.exp(c[..., -1])[..., None] * S0 + torch.einsum("nvs,nsk->nvk", DC * U, K)
    return S, out.transpose(1, 2)


def write_chunk(S: torch.Tensor, K: torch.Tensor, V: torch.Tensor, beta: torch.Tensor,
                decay: torch.Tensor | None = None, Q: torch.Tensor | None = None,
                chunk: int = DEFAULT_CHUNK) -> tuple[torch.Tensor, torch.Tensor]:
    """The same T writes as :func:`write_naive`, chunkwise (matrix products + one triangular
    solve per chunk and row). Same arguments and returns; differentiable."""
    _check(S, K, V, beta, decay, Q)
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    Q = K if Q is None else Q
    logdecay = None if decay is None else torch.log(decay.clamp_min(1e-30))
    outs = []
    for t0 in range(0, K.shape[1], chunk):
        sl = slice(t0, t0 + chunk)
        S, out = _chunk(S, K[:, sl], V[:, sl], beta[:, sl],
                        None if logdecay is None else logdecay[:, sl], Q[:, sl])
        outs.append(out)
    out = torch.cat(outs, dim=1) if outs else V.new_zeros(V.shape)
    return S, out


def masked_mean(x: torch.Tensor, seg: torch.Tensor, n_segments: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of ``x`` over the tokens of each segment; tokens with ``seg < 0`` are left out.

    Parameters
    ----------
    x : (B, T, d) hidden states.
    seg : (B, T) long, segment (message) index per token, −1 for template/system/padding.
    n_segments : M, the number of segments to return.

    Returns
    -------
    means : (B, M, d), zero for an empty segment.
    present : (B, M) bool, whether the segment has any token.
    """
    onehot = (seg[..., None] == torch.arange(n_segments, device=seg.device)).to(x.dtype)  # (B,T,M)
    counts = onehot.sum(dim=1)  # (B, M)
    sums = torch.einsum("btm,btd->bmd", onehot, x)
    return sums / counts.clamp_min(1.0)[..., None], counts > 0
