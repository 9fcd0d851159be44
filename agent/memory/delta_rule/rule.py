"""Rule ``"delta"``: ``S ← α·S + β·(v − α·S k)kᵀ`` per event (β = the event's or ``memory.beta``,
α = ``memory.decay``), a micro-batch in the chunk form (``agent/memory/README.md`` §1)."""

from __future__ import annotations

import numpy as np

from agent.memory.delta_rule.chunk import delta_rule_chunk
from agent.memory.deltas import LayerDelta
from agent.memory.rule import Layers, WriteRule

__all__ = ["DeltaRule"]


class DeltaRule(WriteRule):
    """``S`` alone; one factor delta per micro-batch."""

    name = "delta"
    # random Fourier features: zero-mean, so distinct inputs get nearly orthogonal keys, which
    # the plain delta rule needs to keep old associations (benchmarks/EVAL.md)
    lift_activation = "cos"

    def deltas(self, layers: Layers, S: np.ndarray, K: np.ndarray, V: np.ndarray,
               beta: np.ndarray, labels0: int) -> dict[str, LayerDelta]:
        return {"S": delta_rule_chunk(S, K, V, beta, alpha=self.mem.decay)}
