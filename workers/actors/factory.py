"""Build the in-memory learner for an agent's config, and the replay used by ``forget``.

Both learner and serving actors call :func:`make_learner`; the store's forget calls
:func:`make_replay`. Keeping the mapping here means every process builds the same learner
(and so the same bits) from the same config.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from agent.backbones.minilm import Encoder
from agent.config import AgentConfig
from agent.learner import Inputs, Layers, Learner, is_chat, learns_labels
from agent.memory.delta import Delta
from workers.actors.handover import AcceptedColumns, fields


def config_of(config: dict[str, Any] | AgentConfig) -> AgentConfig:
    return config if isinstance(config, AgentConfig) else AgentConfig.from_dict(config)


def state_nbytes(learner: Learner) -> int:
    """Bytes of a learner's state (layers and label texts, and spare rows where it keeps them):
    what a cache entry costs."""
    return int(learner.held_nbytes())


_encoder: Encoder | None = None  # this process's text encoder for learners (None: the local MiniLM)


def use_encoder(encoder: Encoder | None) -> None:
    """Make :func:`make_learner` give MiniLM agents ``encoder`` (an actor process passes the
    deployment's :class:`workers.actors.encoder.RemoteEncoder`, so it loads no model of its own)."""
    global _encoder
    _encoder = encoder


def text_encoder() -> Encoder:
    """The encoder learners of this process use: the one given to :func:`use_encoder` (learner
    shards and serving replicas give the deployment's encoder actor, so no actor loads a
    model of its own), else the local MiniLM (in-process use: evaluation, reference learner)."""
    if _encoder is not None:
        return _encoder
    from agent.backbones.minilm import get_minilm

    return get_minilm()


def make_learner(config: dict[str, Any] | AgentConfig, encoder: Encoder | None = None) -> Learner:
    """The learner object for ``config``: a ``MemoryAgent`` or, for ``chat``, a ``ChatAgent``;
    a MiniLM agent's texts go to ``encoder`` (default: :func:`text_encoder`)."""
    cfg = config_of(config)
    if cfg.kind == "chat":
        from agent.lm.chat import ChatAgent

        return ChatAgent(cfg)
    from agent.model import MemoryAgent

    if cfg.encoder != "minilm":
        return MemoryAgent(cfg)
    return MemoryAgent(cfg, encoder=encoder if encoder is not None else text_encoder())


def initial_state(config: dict[str, Any] | AgentConfig) -> tuple[Layers, list[str]]:
    cfg = config_of(config)
    if cfg.kind == "chat":
        from agent.lm.chat import ChatAgent

        return ChatAgent.initial_state(cfg)
    from agent.model import MemoryAgent

    return MemoryAgent.initial_state(cfg)


def event_inputs(events: Sequence[dict[str, Any]]) -> Inputs:
    """The inputs of a micro-batch: one ``(n, dim)`` float64 array when every input is an array
    (stored vectors, or embeddings of texts), which the learner takes without checking floats
    one by one; else the list as given (texts, or JSON lists of an event stored before inputs
    were kept as arrays). Events in columns (``handover.AcceptedColumns``) give their matrix as
    stored (float32 or float64: learners key it in float64, the same numbers)."""
    if isinstance(events, AcceptedColumns):
        return events.inputs  # (n, dim)
    inputs = [e["input"] for e in events]
    if inputs and all(isinstance(x, np.ndarray) for x in inputs):
        dims = {x.shape for x in inputs}
        if len(dims) == 1 and next(iter(dims)) and len(next(iter(dims))) == 1:
            return np.array(inputs, dtype=np.float64)  # (n, dim), the same numbers
    return inputs


def learn_events(learner: Learner, events: Sequence[dict[str, Any]], delta_dtype: str | None,
                 inputs: Inputs | None = None, keys: np.ndarray | None = None) -> Delta:
    """One micro-batch of stored events (``Event.as_replay()``, or accepted events carrying
    their arrays) → the applied (stored) delta. ``inputs``: ``event_inputs(events)`` when the
    caller has built it already (the learner's pretest did); ``keys``: their
    ``write_keys`` (likewise)."""
    betas = fields(events, "beta")
    if is_chat(learner):  # turns are texts (never stored as arrays)
        texts = [e.get("text", e["input"]) for e in events]
        speakers = [e.get("speaker") for e in events]
        return learner.learn_many(texts, None, betas=betas, delta_dtype=delta_dtype,
                                  speakers=speakers)
    if not learns_labels(learner):
        raise TypeError(f"{type(learner).__name__} is neither a chat nor a label learner")
    targets = fields(events, "target", required=True)
    X = event_inputs(events) if inputs is None else inputs
    return learner.learn_many(X, targets, betas=betas, delta_dtype=delta_dtype, keys=keys)


def write_keys(learner: Learner, inputs: Inputs) -> np.ndarray | None:
    """The keys a label learner's pretest and learning of ``inputs`` share (computed once per
    micro-batch); None for a chat learner, a standardising agent, or inputs it refuses (the
    pretest and the learning then find the error themselves)."""
    if not learns_labels(learner):
        return None
    try:
        return learner.write_keys(inputs)
    except Exception:  # noqa: BLE001 - reported by the learning, which raises it again
        return None


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
