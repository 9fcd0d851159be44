"""Training examples in the chat agent's regime: its prompt, the whole history's state.

An :class:`Example` is one question about one history:

- ``ids``: the prompt exactly as :meth:`agent.lm.chat.ChatAgent.prompt` builds it at predict
  time (MiniLM-retrieved turns + the recent window + the question, regime ``"agent"``), or the
  question alone (regime ``"state"``: the state is all the model has), then the answer tokens
  and the end marker; the last ``n_target`` tokens are scored.
- ``msgs``: the history's turns, as indices into a :class:`MessageBank`. The bank holds the
  write items of each *distinct* message once (the base model's per-layer attention inputs,
  computed with no corrections; the backbone is frozen, so they never change). Small talk and
  replies repeat across episodes, so this needs far fewer base passes and bytes than caching
  per history; each step recomputes only the features of the messages its batch uses.

The labels are the chat agent's own (:meth:`ChatAgent.turn_labels`), so the state written in
training is the state the agent writes for the same turns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from agent.config import AgentConfig
from agent.lm.chat import ChatAgent, ChatSettings
from agent.lm.episodes import Episode

__all__ = ["Example", "MessageBank", "prepare", "REGIMES"]

REGIMES = ("agent", "state")


class MessageBank:
    """Write items of distinct messages: ``items(i)`` is (n_items, L, d) on the LM's device."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self._items: list[torch.Tensor] = []
        self._pending: list[str] = []

    def add(self, label: str) -> int:
        if label not in self.index:
            self.index[label] = len(self.index)
            self._pending.append(label)
        return self.index[label]

    def encode_pending(self, lm: Any, batch: int = 32) -> None:
        """Base passes for the messages added since the last call (batched, right-padded)."""
        todo, self._pending = self._pending, []
        for i in range(0, len(todo), batch):
            self._items += lm.batch_items(todo[i: i + batch])

    def items(self, i: int) -> torch.Tensor:
        return self._items[i]

    def __len__(self) -> int:
        return len(self.index)


@dataclass
class Example:
    """One question: the history as bank indices, the read-pass tokens, the scored tail."""

    bank: MessageBank
    msgs: list[int]
    ids: list[int]
    n_target: int
    history: int = 0  # which distinct history (the contrastive term pairs different ones)
    answer: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def items(self) -> torch.Tensor:
        """(N, L, d): the write items of the whole history, in order."""
        return torch.cat([self.bank.items(m) for m in self.msgs], dim=0)


def prepare(lm: Any, episodes: list[Episode], batch: int = 32, regime: str = "agent",
            settings: ChatSettings | None = None, encoder: Any = None,
            bank: MessageBank | None = None) -> list[Example]:
    """Examples of ``episodes``; ``bank`` may be shared between calls (train and held-out).

    ``settings`` (top_k, recent, max_prompt_tokens) and ``encoder`` (default: MiniLM) are the
    chat agent's; only the ``"agent"`` regime uses them.
    """
    if regime not in REGIMES:
        raise ValueError(f"regime must be one of {REGIMES}, got {regime!r}")
    settings = settings or ChatSettings()
    bank = bank if bank is not None else MessageBank()
    config = AgentConfig.from_dict({"kind": "chat"})
    histories: dict[Any, int] = {}
    agent = ChatAgent(config, lm=lm, encoder=encoder, settings=settings)
    last: Any = None
    out = []
    for ep in episodes:
        key = tuple(ep.turns)
        histories.setdefault(key, len(histories))
        if key != last:  # explicit memory only (zero states): retrieval needs no LM pass
            agent = ChatAgent(config, lm=lm, encoder=agent._encoder, settings=settings)
            layers, _ = agent.initial_state(config, agent.dtype, agent.state_shape)
            agent.load_state(layers, agent.turn_labels([t for _, t in ep.turns],
                                                       [s for s, _ in ep.turns]))
            last = key
        msgs = [bank.add(label) for label in agent.labels]
        if regime == "agent":
            ids, _ = agent.prompt(ep.question, settings.top_k)
        else:
            ids = lm.prompt(ep.question, None)
        target = lm.bb.encode(ep.answer) + [lm.bb.im_end]
        out.append(Example(bank, msgs, ids + target, len(target), histories[key], ep.answer,
                           {"category": ep.category, "conversation": ep.conversation}))
    bank.encode_pending(lm, batch)
    return out
