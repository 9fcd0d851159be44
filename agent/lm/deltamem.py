"""δ-mem modules on every attention layer of a frozen Llama: features, writes, and the read hooks.

Per layer l, from the attention input ``x`` (the ``input_layernorm`` output, d = hidden size)::

    q̃ = L2norm(tanh(W_mq x))   k̃ = L2norm(tanh(W_mk x))   v = W_mv x   β = σ(W_β x + b)
    r  = S q̃                                           # read (before any write)
    q_proj(x)  += s · W_Δq r                            # before RoPE
    o_proj(.)  += s · W_Δo r

``S`` is the layer's d_v × d_k state (8 × 8), written by the per-row delta rule of
:mod:`agent.lm.state` with the β above (decay ``1 − β`` per row when ``gated``). At init
``W_Δq = W_Δo = 0`` (corrections are exactly zero: an untrained δ-mem is the base model) and
``b = −2`` (β ≈ 0.12). Training starts from small random ``W_Δ`` instead (``delta_init`` > 0):
at exactly zero the read's ``r = S q̃`` is multiplied by zero, so ``W_mq``, ``W_mk``, ``W_mv``
and the gate get no gradient at all. SmolLM2-135M: 30 layers × 27,657 parameters = 829,710 (≈ 0.83 M).

Hooks sit on ``q_proj`` and ``o_proj`` of each ``LlamaAttention``; the ``q_proj`` hook sees the
attention input ``x`` itself. Modes (one at a time, set by context managers):

- ``off`` — every hook returns ``None``: the base model, bit for bit.
- ``read`` — states fixed, corrections added; a layer whose state is all zero is skipped, so a
  zero state gives logits ``torch.equal`` to the base model. Under ``torch.no_grad`` (generation,
  the chat agent) the read is fused once per context: ``M_q = s·W_Δq·S`` and ``M_o = s·W_Δo·S``
  per layer, so a token adds ``q̃ M_qᵀ`` and ``q̃ M_oᵀ`` in place (:meth:`DeltaMem.fuse`);
  with gradients (training) the unfused form ``s·W_Δ (S q̃)`` is used.
- ``capture`` — no corrections; the ``x`` of every layer is kept (the write pass).
- ``readwrite`` — per-token writes (TSW) with read before write inside the forward.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from agent.lm.fused import Fused, add_read, fuse
from agent.lm.state import write_chunk, write_naive

__all__ = ["DeltaMemConfig", "DeltaMem", "check_adapter_file"]


def check_adapter_file(path: str) -> None:
    """Raise :class:`FileNotFoundError` naming ``path`` unless it is a file (checked before the
    backbone is loaded, so a wrong ``--adapter`` fails at once with a clear line)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(errno.ENOENT, "δ-mem adapter file not found", path)


@dataclass(frozen=True)
class DeltaMemConfig:
    """Shape and behaviour of the δ-mem modules (one typed settings object).

    n_layers, d_model, d_q : the backbone's layers, hidden size and ``q_proj`` width.
    d_k, d_v : the state shape per layer (d_v × d_k).
    beta_bias : initial bias of the β gate (σ(−2) ≈ 0.12).
    gated : decay every row by ``1 − β`` at each write (else only along the key).
    write : ``"ssw"`` (one write per message, from the mean of its tokens) or ``"tsw"`` (per token).
    chunk : chunk length of the WY write kernel.
    delta_init : std of the initial ``W_Δq``, ``W_Δo`` (0: exactly zero, the base model).
    """

    n_layers: int
    d_model: int
    d_q: int
    d_k: int = 8
    d_v: int = 8
    beta_bias: float = -2.0
    scale_init: float = 1.0
    gated: bool = False
    write: str = "ssw"
    chunk: int = 64
    delta_init: float = 0.0

    def __post_init__(self) -> None:
        if self.write not in ("ssw", "tsw"):
            raise ValueError(f'write must be "ssw" or "tsw", got {self.write!r}')

    @classmethod
    def for_backbone(cls, bb: Any, **kw: Any) -> DeltaMemConfig:
        return cls(n_layers=bb.n_layers, d_model=bb.d_model, d_q=bb.d_q, **kw)


class DeltaMem(nn.Module):
    """All layers' δ-mem parameters, stacked on a leading layer axis."""

    def __init__(self, cfg: DeltaMemConfig, seed: int = 0) -> None:
        super().__init__()
        self.cfg = cfg
        L, d, dk, dv = cfg.n_layers, cfg.d_model, cfg.d_k, cfg.d_v
        g = torch.Generator().manual_seed(seed)

        def rand(*shape: int, std: float) -> nn.Parameter:
            return nn.Parameter(torch.randn(*shape, generator=g) * std)

        self.W_mq = rand(L, dk, d, std=d ** -0.5)
        self.W_mk = rand(L, dk, d, std=d ** -0.5)
        self.W_mv = rand(L, dv, d, std=d ** -0.5)
        self.W_b = rand(L, dv, d, std=0.1 * d ** -0.5)
        self.b_b = nn.Parameter(torch.full((L, dv), cfg.beta_bias))
        self.W_dq = nn.Parameter(torch.zeros(L, cfg.d_q, dv))
        self.W_do = nn.Parameter(torch.zeros(L, d, dv))
        self.scale = nn.Parameter(torch.full((L,), cfg.scale_init))
        if cfg.delta_init > 0:  # drawn last: the other parameters do not depend on it
            with torch.no_grad():
                self.W_dq.copy_(torch.randn(L, cfg.d_q, dv, generator=g) * cfg.delta_init)
                self.W_do.copy_(torch.randn(L, d, dv, generator=g) * cfg.delta_init)
        self._mode = "off"
        self._states: torch.Tensor | None = None  # (B, L, d_v, d_k) in read/readwrite
        self._new_states: list[torch.Tensor | None] = []
        self._seg: torch.Tensor | None = None  # (B, T) in readwrite: −1 = never written
        self._captured: list[torch.Tensor | None] = []
        self._r: list[torch.Tensor | None] = [None] * L
        self._handles: list[Any] = []
        # read mode, cached once per ``reading`` context (the states are fixed inside it)
        self._live: list[bool] = [False] * L  # layer's state not all zero
        self._fused: Fused | None = None  # fused read matrices (no_grad inference only)
        self._qf: list[torch.Tensor | None] = [None] * L  # fused path: q̃ from q_proj to o_proj

    # -- features and writes -------------------------------------------------------------
    def features(self, x: torch.Tensor, layer: int | None = None) -> tuple[torch.Tensor, ...]:
        """q̃, k̃, v, β, α from ``x``: (..., d) for one ``layer``, or (..., L, d) for all.

        Returns tensors (..., d_k), (..., d_k), (..., d_v), (..., d_v) and α (..., d_v) or None.
        """
        sl = slice(None) if layer is None else layer
        eq = "...ld,lkd->...lk" if layer is None else "...d,kd->...k"
        q = F.normalize(torch.tanh(torch.einsum(eq, x, self.W_mq[sl])), dim=-1)
        k = F.normalize(torch.tanh(torch.einsum(eq, x, self.W_mk[sl])), dim=-1)
        v = torch.einsum(eq, x, self.W_mv[sl])
        beta = torch.sigmoid(torch.einsum(eq, x, self.W_b[sl]) + self.b_b[sl])
        alpha = 1.0 - beta if self.cfg.gated else None
        return q, k, v, beta, alpha  # type: ignore[return-value]  # alpha: None when ungated

    def query(self, x: torch.Tensor, layer: int) -> torch.Tensor:
        """q̃ = L2norm(tanh(W_mq x)) of one ``layer`` only (the read needs nothing else):
        the same values as ``features(x, layer)[0]``."""
        return F.normalize(torch.tanh(torch.einsum("...d,kd->...k", x, self.W_mq[layer])), dim=-1)

    def fuse(self, states: torch.Tensor) -> Fused:
        """The fused read of fixed ``states`` (:func:`agent.lm.fused.fuse`)."""
        return fuse(self.W_mq, self.W_dq, self.W_do, self.scale, states)

    def zero_states(self, batch: int = 1, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.zeros(batch, self.cfg.n_layers, self.cfg.d_v, self.cfg.d_k, dtype=dtype)

    def write_items(self, S: torch.Tensor, X: torch.Tensor, mask: torch.Tensor | None = None,
                    kernel: str = "chunk") -> torch.Tensor:
        """Write N items per conversation into all layers' states, in order.

        Parameters
        ----------
        S : (B, L, d_v, d_k) states before.
        X : (B, N, L, d) the items: per-layer attention inputs of tokens (TSW) or message
            means (SSW), as captured from the base model.
        mask : (B, N) bool, False for padding items (exact no-ops), or None.
        kernel : ``"chunk"`` (WY form) or ``"naive"`` (one write at a time).

        Returns
        -------
        (B, L, d_v, d_k) states after.
        """
        _, k, v, beta, alpha = self.features(X.to(self.W_mk.dtype))  # (B, N, L, ·)
        return self.write_features(S, k, v, beta, alpha, mask, kernel)

    def write_features(self, S: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor,
                       alpha: torch.Tensor | None, mask: torch.Tensor | None = None,
                       kernel: str = "chunk") -> torch.Tensor:
        """:meth:`write_items` from the items' features (B, N, L, ·), as :meth:`features` returns
        them: training computes the features of each distinct message once per step and
        gathers them into conversations."""
        B, N, L, _ = k.shape
        if mask is not None:
            m = mask[:, :, None, None].to(beta.dtype)
            beta = beta * m
            alpha = None if alpha is None else alpha * m + (1.0 - m)

        def states_first(t: torch.Tensor) -> torch.Tensor:  # (B, N, L, c) -> (B·L, N, c)
            return t.permute(0, 2, 1, 3).reshape(B * L, N, t.shape[-1])

        S_flat = S.to(beta.dtype).reshape(B * L, self.cfg.d_v, self.cfg.d_k)
        a = None if alpha is None else states_first(alpha)
        if kernel == "naive":
            S_new, _ = write_naive(S_flat, states_first(k), states_first(v), states_first(beta), a)
        elif kernel == "chunk":
            S_new, _ = write_chunk(S_flat, states_first(k), states_first(v), states_first(beta), a,
                                   chunk=self.cfg.chunk)
        else:
            raise ValueError(f'kernel must be "naive" or "chunk", got {kernel!r}')
        return S_new.reshape(B, L, self.cfg.d_v, self.cfg.d_k)

    # -- hooks ---------------------------------------------------------------------------
    def attach(self, model: Any) -> None:
        """Install the q_proj/o_proj hooks on every layer of a Llama (idempotent)."""
        if self._handles:
            return
        layers = model.model.layers
        if len(layers) != self.cfg.n_layers:
            raise ValueError(f"model has {len(layers)} layers, δ-mem expects {self.cfg.n_layers}")
        for li, layer in enumerate(layers):
            att = layer.self_attn
            self._handles.append(att.q_proj.register_forward_hook(self._q_hook(li)))
            self._handles.append(att.o_proj.register_forward_hook(self._o_hook(li)))

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def _q_hook(self, li: int) -> Any:
        def hook(module: nn.Module, args: tuple[torch.Tensor, ...], out: torch.Tensor) -> Any:
            mode = self._mode
            if mode == "off":
                return None
            if mode == "read":
                f = self._fused
                if f is not None and not torch.is_grad_enabled():  # fused inference path
                    mq, mo = f.mq[li], f.mo[li]
                    if mq is None and mo is None:
                        return None  # zero state or zero corrections: add nothing at all
                    x = args[0]  # (B, T, d)
                    q = torch.matmul(x, f.wmq[li]).tanh_()  # (B, T, d_k)
                    q = q.div_(torch.linalg.vector_norm(q, dim=-1, keepdim=True).clamp_min_(1e-12))
                    self._qf[li] = q if mo is not None else None
                    return None if mq is None else add_read(out, q, mq, f.batched)
                self._r[li] = None
                if not self._live[li]:  # zero state: add nothing at all
                    return None
                x = args[0]  # (B, T, d) attention input
                S = self._states[:, li]  # type: ignore[index]  # (B or 1, d_v, d_k)
                S = S.expand(x.shape[0], -1, -1) if S.shape[0] == 1 else S
                q = self.query(x, li)  # (B, T, d_k)
                r = torch.einsum("bvk,btk->btv", S.to(q.dtype), q)  # (B, T, d_v)
            else:
                self._r[li] = None
                x = args[0]
                if mode == "capture":
                    self._captured[li] = x.detach()
                    return None
                assert self._states is not None
                S = self._states[:, li]  # (B or 1, d_v, d_k)
                S = S.expand(x.shape[0], -1, -1) if S.shape[0] == 1 else S
                # readwrite: TSW with read before write
                q, k, v, beta, alpha = self.features(x, li)
                if self._seg is not None:
                    m = (self._seg >= 0)[..., None].to(beta.dtype)  # (B, T, 1)
                    beta = beta * m
                    alpha = None if alpha is None else alpha * m + (1.0 - m)
                S = S.to(q.dtype)
                S_new, r = write_chunk(S, k, v, beta, alpha, Q=q, chunk=self.cfg.chunk)
                self._new_states[li] = S_new
            self._r[li] = r
            return out + self.scale[li] * (r @ self.W_dq[li].T)  # (B, T, d_q)

        return hook

    def _o_hook(self, li: int) -> Any:
        def hook(module: nn.Module, args: tuple[torch.Tensor, ...], out: torch.Tensor) -> Any:
            q = self._qf[li]
            if q is not None:  # fused path: o_proj(.) += q̃ M_oᵀ, in place
                self._qf[li] = None
                f = self._fused
                return add_read(out, q, f.mo[li], f.batched)  # type: ignore[union-attr,arg-type]
            r = self._r[li]
            if r is None:
                return None
            self._r[li] = None
            return out + self.scale[li] * (r @ self.W_do[li].T)  # (B, T, d)

        return hook

    @contextlib.contextmanager
    def _in_mode(self, mode: str) -> Iterator[None]:
        if not self._handles:
            raise RuntimeError("DeltaMem.attach(model) first")
        prev = self._mode
        self._mode = mode
        try:
            yield
        finally:
            self._mode = prev
            self._r = [None] * self.cfg.n_layers
            self._qf = [None] * self.cfg.n_layers

    @contextlib.contextmanager
    def reading(self, states: torch.Tensor, fused: bool | None = None) -> Iterator[None]:
        """Forward passes inside read ``states`` (B or 1, L, d_v, d_k) into every layer.

        The states must not change inside the context: which layers are zero is found once on
        entry. ``fused`` (default: when entered under ``torch.no_grad``) precomputes the fused
        read matrices (:meth:`fuse`) so that each token costs one d × d_k projection and two
        d_k-wide in-place products per layer; forwards with gradients enabled always take the
        unfused, differentiable form (training).
        """
        if fused is None:
            fused = not torch.is_grad_enabled()
        L = self.cfg.n_layers
        self._states = states
        self._live = states.detach().reshape(states.shape[0], L, -1).ne(0).any(-1).any(0).tolist()
        self._fused = self.fuse(states) if fused else None
        try:
            with self._in_mode("read"):
                yield
        finally:
            self._states, self._fused = None, None

    @contextlib.contextmanager
    def capturing(self) -> Iterator[list[torch.Tensor | None]]:
        """Forward passes inside add nothing and leave each layer's input ``x`` in the list."""
        self._captured = [None] * self.cfg.n_layers
        with self._in_mode("capture"):
            yield self._captured

    @contextlib.contextmanager
    def read_writing(self, states: torch.Tensor,
                     seg: torch.Tensor | None = None) -> Iterator[list[torch.Tensor | None]]:
        """TSW inside a forward: each token reads the state before its own write; the states
        after the forward are left in the yielded list (one (B, d_v, d_k) per layer)."""
        self._states, self._seg = states, seg
        self._new_states = [None] * self.cfg.n_layers
        with self._in_mode("readwrite"):
            yield self._new_states
        self._states, self._seg = None, None

    # -- persistence ---------------------------------------------------------------------
    def save(self, path: str, card: dict[str, Any] | None = None, dtype: torch.dtype = torch.float16) -> None:
        """safetensors file; the config and the training card go in its JSON metadata."""
        from safetensors.torch import save_file

        tensors = {k: v.detach().to(dtype).contiguous() for k, v in self.state_dict().items()}
        meta = {"config": json.dumps(asdict(self.cfg)), "card": json.dumps(card or {})}
        save_file(tensors, path, metadata=meta)

    @classmethod
    def load(cls, path: str) -> tuple[DeltaMem, dict[str, Any]]:
        """The module (float32) and its card from a file written by :meth:`save`.

        A missing file raises :class:`FileNotFoundError` naming it (the CLI prints
        ``error: <path>: δ-mem adapter file not found``)."""
        from safetensors import safe_open

        check_adapter_file(path)
        with safe_open(path, framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k).to(torch.float32) for k in f.keys()}
        cfg = DeltaMemConfig(**json.loads(meta["config"]))
        mem = cls(cfg)
        mem.load_state_dict(tensors)
        return mem, json.loads(meta.get("card", "{}"))

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
