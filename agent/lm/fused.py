"""The fused δ-mem read for inference: per-layer matrices precomputed once per fixed state.

States do not change while a prompt is read and decoded, so per layer ``M_q = s·W_Δq·S``
(d_q × d_k) and ``M_o = s·W_Δo·S`` (d × d_k) are computed once (:func:`fuse`); a token's
corrections are then ``q̃ M_qᵀ`` and ``q̃ M_oᵀ`` (:func:`add_read`), with no ``r = S q̃`` and no
product by ``W_Δ`` per token. Equal to the unfused read up to float rounding (associativity).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["Fused", "fuse", "add_read"]


@dataclass(frozen=True)
class Fused:
    """Per-layer fused read of fixed states: ``W_mqᵀ`` (d × d_k), ``M_qᵀ`` and ``M_oᵀ``
    ((d_k × d_q) / (d_k × d), or (B, d_k, ·) for one state per row when ``batched``; None
    where the layer adds nothing)."""

    wmq: list[torch.Tensor]
    mq: list[torch.Tensor | None]
    mo: list[torch.Tensor | None]
    batched: bool


def add_read(out: torch.Tensor, q: torch.Tensor, mT: torch.Tensor, batched: bool) -> torch.Tensor:
    """``out + q mT``, in place when ``out`` is contiguous: out (B, T, n), q (B, T, d_k),
    mT (d_k, n) or (B, d_k, n)."""
    if batched:
        return out.baddbmm_(q, mT) if out.is_contiguous() else torch.baddbmm(out, q, mT)
    if out.is_contiguous():
        out.view(-1, out.shape[-1]).addmm_(q.reshape(-1, q.shape[-1]), mT)
        return out
    return out + q @ mT


@torch.no_grad()
def fuse(W_mq: torch.Tensor, W_dq: torch.Tensor, W_do: torch.Tensor, scale: torch.Tensor,
         states: torch.Tensor) -> Fused:
    """The fused read of fixed ``states`` (B or 1, L, d_v, d_k), for no_grad inference.

    ``W_mq`` (L, d_k, d), ``W_dq`` (L, d_q, d_v), ``W_do`` (L, d, d_v), ``scale`` (L,): the
    δ-mem parameters. A layer whose state is all zero, or whose matrix is all zero, gets
    ``None``: its hook adds nothing (bit-exact base model).
    """
    S = states.detach().to(W_dq.dtype)
    Bs, L = S.shape[:2]
    live = S.reshape(Bs, L, -1).ne(0).any(-1).any(0).tolist()
    sc = scale.detach()[None, :, None, None]
    mqT = torch.einsum("blvk,lqv->blkq", S, W_dq.detach()) * sc  # (Bs, L, d_k, d_q)
    moT = torch.einsum("blvk,lqv->blkq", S, W_do.detach()) * sc  # (Bs, L, d_k, d)
    nz_q = mqT.reshape(Bs, L, -1).ne(0).any(-1).any(0).tolist()
    nz_o = moT.reshape(Bs, L, -1).ne(0).any(-1).any(0).tolist()

    def per_layer(m: torch.Tensor, nz: list[bool]) -> list[torch.Tensor | None]:
        return [(m[0, li] if Bs == 1 else m[:, li]).contiguous() if live[li] and nz[li] else None
                for li in range(L)]

    wmqT = W_mq.detach().transpose(1, 2)  # (L, d, d_k)
    return Fused(wmq=[wmqT[li].contiguous() for li in range(L)],
                 mq=per_layer(mqT, nz_q), mo=per_layer(moT, nz_o), batched=Bs > 1)
