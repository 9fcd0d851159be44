"""Build the in-memory learner for an agent's config, and the replay used by ``forget``.

Both learner and serving actors call :func:`make_learner`; the store's forget calls
:func:`make_replay`. Keeping the mapping here means every process builds the same learner
(and so the same bits) from the same config.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from agent.config import AgentConfig
from agent.memory.delta import Delta

Layers = dict[str, np.ndarray]


def config_of(config: dict[str, Any] | AgentConfig) -> AgentConfig:
    return config if isinstance(config, AgentConfig) else AgentConfig.from_dict(config)


def state_nbytes(learner: Any) -> int:
    """Bytes of a learner's state (layers and label texts, and spare rows where it keeps them):
    what a cache entry costs."""
    if hasattr(learner, "held_nbytes"):
        return int(learner.held_nbytes())
    layers, labels = learner.state
    return int(sum(a.nbytes for a in layers.values())) + sum(len(x) for x in labels)


def make_learner(config: dict[str, Any] | AgentConfig) -> Any:
    """The learner object for ``config``: a ``MemoryAgent`` or, for ``chat``, a ``ChatAgent``."""
    cfg = config_of(config)
    if cfg.kind == "chat":
        from agent.lm.chat import ChatAgent

        return ChatAgent(cfg)
    from agent.model import MemoryAgent

    encoder = None
    if cfg.encoder == "minilm":
        from agent.backbones.minilm import get_minilm

        encoder = get_minilm()
    return MemoryAgent(cfg, encoder=encoder)


def initial_state(config: dict[str, Any] | AgentConfig) -> tuple[Layers, list[str]]:
    cfg = config_of(config)
    if cfg.kind == "chat":
        from agent.lm.chat import ChatAgent

        return ChatAgent.initial_state(cfg)
    from agent.model import MemoryAgent

    return MemoryAgent.initial_state(cfg)


def learn_events(learner: Any, events: Sequence[dict[str, Any]], delta_dtype: str | None) -> Delta:
    """One micro-batch of stored event payloads → the applied (stored) delta."""
    inputs = [e["input"] for e in events]
    betas = [e.get("beta") for e in events]
    if getattr(learner, "is_chat", False):
        speakers = [e.get("speaker") for e in events]
        return learner.learn_many(inputs, None, betas=betas, delta_dtype=delta_dtype,
                                  speakers=speakers)
    targets = [e["target"] for e in events]
    return learner.learn_many(inputs, targets, betas=betas, delta_dtype=delta_dtype)


def make_replay(config: dict[str, Any] | AgentConfig, delta_dtype: str | None,
                batch: int = 64) -> Callable[[Layers, list[str], Sequence[dict[str, Any]]],
                                              tuple[Layers, list[str]]]:
    """A replay function for ``forget``: start state + remaining events (in their original
    order, in micro-batches of ``batch``) → the state a learner that never saw the
    forgotten events would hold."""

    def replay(layers: Layers, labels: list[str],
               events: Sequence[dict[str, Any]]) -> tuple[Layers, list[str]]:
        learner = make_learner(config)
        learner.load_state(layers, labels)
        for i in range(0, len(events), batch):
            learn_events(learner, events[i : i + batch], delta_dtype)
        return learner.state

    return replay
