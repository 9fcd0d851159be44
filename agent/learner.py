"""What the workers ask of a learner: the :class:`Learner` protocol.

A learner holds one agent's state (named arrays and labels) at one version, learns micro-batches
as :class:`~agent.memory.deltas.Delta`\\ s, applies committed deltas and answers predictions.
The learner shards, the serving replicas, poison isolation, test-then-train and ``forget``'s
replay use exactly these verbs, whatever the agent's kind:

* :class:`LabelLearner` (``classifier``, ``recall``: :class:`agent.model.MemoryAgent`) learns
  ``(inputs, targets)``; inputs are texts, vectors or one ``(n, dim)`` array;
* :class:`ChatLearner` (``chat``: ``agent.lm.chat.ChatAgent``) hears turns (and speakers) and
  has no targets.

``learner.is_chat`` tells them apart; :func:`is_chat` / :func:`learns_labels` narrow the type.
:class:`StateView` is the state side both implement the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, TypeGuard

import numpy as np

from agent.config import AgentConfig
from agent.memory.checksum import PrefixHasher
from agent.memory.deltas import Delta

__all__ = ["Inputs", "Layers", "Learner", "LabelLearner", "ChatLearner", "is_chat", "learns_labels",
           "StateView"]

Layers = dict[str, np.ndarray]
# texts, lists of numbers, or one (n, dim) float array (stored vectors, checked as a whole)
Inputs = Sequence[Any] | np.ndarray


class Learner(Protocol):
    """The verbs every learner offers (state, deltas, reads)."""

    config: AgentConfig
    is_chat: bool  # True: a ChatLearner (turns, no targets); False: a LabelLearner

    @property
    def state(self) -> tuple[Layers, list[str]]:
        """``(layers, labels)``; arrays are replaced, never changed in place."""
        ...

    @property
    def labels(self) -> list[str]: ...

    def load_state(self, layers: Layers, labels: Sequence[str], /) -> None:
        """Replace the state (a snapshot or a rebuild); shapes are checked first."""
        ...

    def apply(self, delta: Delta, /) -> None:
        """Apply a committed delta: the operation a rebuild uses, so the bits agree."""
        ...

    def for_reads(self, delta: Delta, /) -> Delta:
        """The part of ``delta`` a reads-only view (:meth:`keep_reads_only`) applies."""
        ...

    def keep_reads_only(self) -> None:
        """Drop the layers only writes use (what a serving replica keeps)."""
        ...

    def checksum(self) -> str:
        """The state's checksum (``state_checksum``), as the version stores it."""
        ...

    def held_nbytes(self) -> int:
        """Bytes held: layers, spare rows, label texts (what a cache entry costs)."""
        ...

    def predict_many(self, inputs: Sequence[Any], /, top_k: int | None = None) -> list[dict[str, Any]]:
        """One answer per input (DESIGN §7's prediction objects)."""
        ...


class LabelLearner(Learner, Protocol):
    """A learner of ``(input, target)`` events: classifiers and recall agents."""

    def keys(self, inputs: Inputs, /) -> np.ndarray:
        """Unit keys ``(n, d_k)`` float64 of validated inputs."""
        ...

    def write_keys(self, inputs: Inputs, /) -> np.ndarray | None:
        """Keys that both :meth:`predict_labels` and :meth:`learn_many` of ``inputs`` use now
        (None: they differ)."""
        ...

    def compute_delta(self, inputs: Inputs, targets: Sequence[str] | None,
                      betas: Sequence[float | None] | None = None, *,
                      keys: np.ndarray | None = None) -> Delta:
        """The delta of learning the batch in order; changes nothing."""
        ...

    def learn_many(self, inputs: Inputs, targets: Sequence[str] | None,
                   betas: Sequence[float | None] | None = None, delta_dtype: Any = None, *,
                   keys: np.ndarray | None = None) -> Delta:
        """Learn the batch; returns the delta exactly as applied (and as stored)."""
        ...

    def predict_many(self, inputs: Inputs, /, top_k: int | None = None) -> list[dict[str, Any]]: ...

    def predict_labels(self, inputs: Inputs, /, *,
                       keys: np.ndarray | None = None) -> list[str | None]:
        """``[p["label"] for p in predict_many(inputs)]``, without building the predictions."""
        ...


class ChatLearner(Learner, Protocol):
    """A learner of conversation turns: chat agents (no targets, no betas)."""

    def learn_many(self, inputs: Sequence[str], targets: Sequence[Any] | None = None,
                   betas: Sequence[Any] | None = None, delta_dtype: Any = None,
                   speakers: Sequence[str | None] | None = None) -> Delta:
        """Hear the turns; returns the delta exactly as applied."""
        ...


def is_chat(learner: Learner) -> TypeGuard[ChatLearner]:
    """Whether ``learner`` hears turns (a chat agent)."""
    return learner.is_chat


def learns_labels(learner: Learner) -> TypeGuard[LabelLearner]:
    """Whether ``learner`` learns ``(input, target)`` events."""
    return not learner.is_chat


class StateView:
    """The read side every learner shares: ``state``, ``labels`` and ``checksum`` over
    ``self._layers`` / ``self._labels`` (arrays are replaced, never changed in place)."""

    _layers: dict[str, np.ndarray]
    _labels: list[str]

    @property
    def state(self) -> tuple[dict[str, np.ndarray], list[str]]:
        """``(layers, labels)``; the arrays are never changed in place, only replaced."""
        return dict(self._layers), list(self._labels)

    @property
    def labels(self) -> list[str]:
        return list(self._labels)

    def held_nbytes(self) -> int:
        """Bytes held: the layers and the label texts (what a learner cache counts)."""
        return sum(int(a.nbytes) for a in self._layers.values()) + sum(len(x) for x in self._labels)

    def keep_reads_only(self) -> None:
        """Drop layers that only writes use (a serving replica's view); none by default."""

    def for_reads(self, delta: Delta) -> Delta:
        """The part of ``delta`` a reads-only view applies; all of it by default."""
        return delta

    def checksum(self) -> str:
        """:func:`state_checksum` of the state; unchanged layers are not hashed again."""
        ph = self.__dict__.get("_hasher")
        if ph is None:
            ph = self.__dict__["_hasher"] = PrefixHasher()
        return ph.checksum(self._layers, self._labels)
