"""Rule ``"rls"``: DESIGN §2 with ``P0 = I/ridge`` and ``ρ = forget`` (``beta`` and ``decay`` are
ignored: RLS sets its own gain). Wide keys without forgetting keep pending rows ``Q`` (the state
holds ``P − QᵀQ``: :mod:`agent.memory.rls.pending`)."""

from __future__ import annotations

import numpy as np

from agent.config import AgentConfig
from agent.errors import InputError
from agent.memory.deltas import LayerDelta
from agent.memory.rls.chunk import rls_chunk
from agent.memory.rls.pending import pending_rows, rls_pending
from agent.memory.rule import Layers, WriteRule

__all__ = ["RlsRule", "MAX_RLS_KEY_DIM"]

MAX_RLS_KEY_DIM = 4096  # P is d_k × d_k: 4096² float64 = 128 MiB per agent


class RlsRule(WriteRule):
    """``S`` and ``P`` (d_k × d_k), and ``Q`` (r, d_k) pending rows when :meth:`pending`."""

    name = "rls"
    # ReLU features (the arc-cosine kernel): RLS decorrelates keys itself and fits best on the
    # richer kernel (benchmarks/EVAL.md)
    lift_activation = "relu"
    write_only = ("P", "Q")
    optional = ("Q",)  # a state stored before pending rows existed keeps learning without them

    @staticmethod
    def check_config(config: AgentConfig) -> None:
        if config.key_dim > MAX_RLS_KEY_DIM:
            fld = "memory.lift_dim" if config.memory.lift_dim else "dim"
            raise InputError(fld, f'rule "rls" keeps a d_k × d_k matrix; d_k = {config.key_dim} '
                             f"exceeds {MAX_RLS_KEY_DIM}")

    @property
    def pending(self) -> bool:
        """Whether the state keeps pending rows ``Q``: wide keys and no forgetting (with
        ρ < 1 every batch replaces P anyway)."""
        return self.mem.forget == 1.0 and pending_rows(self.config.key_dim) > 0

    def initial_layers(self, d_k: int) -> Layers:
        out = {"P": np.eye(d_k, dtype=self.dtype) / np.asarray(self.mem.ridge, dtype=self.dtype)}
        if self.pending:  # rows of the P update not yet folded in: P − QᵀQ
            out["Q"] = np.zeros((0, d_k), dtype=self.dtype)
        return out

    def loaded_shape(self, name: str, arr: np.ndarray, layers: Layers, ref: Layers) -> tuple[int, ...]:
        d_k = self.config.key_dim
        if name == "Q" and arr.ndim == 2 and arr.shape[0] <= pending_rows(d_k):
            return (arr.shape[0], d_k)
        return tuple(ref[name].shape)

    def deltas(self, layers: Layers, S: np.ndarray, K: np.ndarray, V: np.ndarray,
               beta: np.ndarray, labels0: int) -> dict[str, LayerDelta]:
        if "Q" not in layers:
            dS, dP = rls_chunk(S, layers["P"], K, V, rho=self.mem.forget)
            return {"S": dS, "P": dP}
        dS, dP_, dQ, _ = rls_pending(S, layers["P"], layers["Q"], K, V,
                                     max_rows=pending_rows(self.config.key_dim))
        out = {"S": dS}
        if dP_ is not None:
            out["P"] = dP_
        if dQ is not None:
            out["Q"] = dQ
        return out
