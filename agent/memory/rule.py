"""A write rule: the layers it keeps beside ``S`` and the deltas of one micro-batch.

:class:`agent.model.MemoryAgent` turns events into unit keys ``K`` and values ``V`` (one-hot
label rows, or answer embeddings), and reads ``S``; everything that depends on the rule is a
:class:`WriteRule`: one class per rule, each in its folder beside its oracle and kernels
(:mod:`agent.memory.delta_rule`, :mod:`agent.memory.rls`, :mod:`agent.memory.softmax`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from agent.config import AgentConfig
from agent.memory.deltas import LayerDelta

__all__ = ["WriteRule", "Layers"]

Layers = dict[str, np.ndarray]


class WriteRule:
    """The default rule has no layer but ``S``; subclasses say what else they keep.

    Parameters
    ----------
    config : the agent's config (its ``memory`` settings are the rule's).
    dtype : the state's dtype.
    """

    name = ""
    lift_activation = "relu"  # the lift φ this rule learns best with (agent.model)
    write_only: tuple[str, ...] = ()  # layers predictions never read (a serving replica drops them)
    optional: tuple[str, ...] = ()  # layers a state stored by an earlier version may lack

    def __init__(self, config: AgentConfig, dtype: np.dtype) -> None:
        self.check_config(config)
        self.config = config
        self.mem = config.memory
        self.dtype = np.dtype(dtype)

    @staticmethod
    def check_config(config: AgentConfig) -> None:
        """Raise :class:`~agent.errors.InputError` for settings the rule cannot keep."""

    def initial_layers(self, d_k: int) -> Layers:
        """The rule's layers (besides ``S``) at version 0."""
        return {}

    def loaded_shape(self, name: str, arr: np.ndarray, layers: Layers, ref: Layers) -> tuple[int, ...]:
        """The shape a loaded layer ``name`` must have (``ref``: the layers at version 0)."""
        return tuple(ref[name].shape)

    def check_loaded(self, layers: Layers, labels: Sequence[str]) -> None:
        """Raise ``ValueError`` when loaded layers hold values the rule never writes."""

    def stored_as_is(self, layers: Layers) -> tuple[str, ...]:
        """Layers whose deltas keep the state's own dtype when deltas are stored narrower."""
        return ()

    def deltas(self, layers: Layers, S: np.ndarray, K: np.ndarray, V: np.ndarray,
               beta: np.ndarray, labels0: int) -> dict[str, LayerDelta]:
        """The deltas of writing ``(K, V)`` in order.

        ``S``: (d_v, d_k) padded to the batch's labels; ``K``: (n, d_k) unit keys float64;
        ``V``: (n, d_v) values in the state's dtype; ``beta``: (n,) strengths;
        ``labels0``: labels before the batch."""
        raise NotImplementedError
