"""The chat agent: δ-mem states on SmolLM2 plus the turns themselves as explicit memory.

Same interface as :class:`agent.model.MemoryAgent`, so the learner, the store and the serving
replicas run it like every other agent:

- state: 30 layers ``"L00".."L29"`` of (8, 8) float32 (one δ-mem state per attention layer) and
  ``labels`` = the turns, ``"speaker: text"``, in order (duplicates allowed: people say "ok" twice).
- :meth:`ChatAgent.compute_delta` writes each turn into the 30 states (SSW: one write per turn
  from the mean attention input of its tokens, chat-template tokens never written), one turn at a
  time with the reference kernel, each turn encoded on its own: the states depend on the turns and
  their order only, never on micro-batch boundaries, so forget-by-replay is exact. The delta is
  dense with ``gamma = 0`` (``S_new = 0·S_old + D``, ``D`` the new state with −0.0 folded to
  +0.0), so :func:`agent.memory.delta.apply_layer` reproduces the state bit for bit.
- :meth:`ChatAgent.predict_many` answers each question greedily with the MiniLM-retrieved turns
  (top-k by cosine over the labels) and a recent window in the prompt and the states read in.

The adapter is the one shipped in ``agent/lm/adapters/`` (see agent/lm/README.md); without that
file the δ-mem corrections start at exactly zero (``W_Δq = W_Δo = 0``): states are still written
and versioned, but replies equal the base model with retrieval (the "retrieval" row of the
evaluation).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from agent.config import DEFAULT_PROMPT_RECENT, DEFAULT_PROMPT_TOP_K, AgentConfig
from agent.errors import InputError
from agent.memory.delta import Delta, LayerDelta, StateView, apply_delta

__all__ = ["ChatAgent", "ChatSettings", "layer_names"]

SMOLLM2_SHAPE = (30, 8, 8)  # layers, d_v, d_k of the default adapter


@dataclass(frozen=True)
class ChatSettings:
    """top_k: retrieved turns; recent: last turns always in the prompt; hits_last: the recent
    window first, then the retrieved turns (in conversation order) nearest the question, instead
    of all in conversation order (these three: the agent's ``prompt`` config,
    :class:`agent.config.PromptConfig`); max_new_tokens: reply bound; max_turn_chars /
    max_question_chars: input bounds; max_prompt_tokens: context budget."""

    top_k: int = DEFAULT_PROMPT_TOP_K
    recent: int = DEFAULT_PROMPT_RECENT
    hits_last: bool = False
    max_new_tokens: int = 48
    max_turn_chars: int = 4000
    max_question_chars: int = 2000
    max_prompt_tokens: int = 1536

    @classmethod
    def of(cls, config: AgentConfig) -> ChatSettings:
        """The settings an agent's config asks for (its ``prompt``), the others their defaults.

        >>> ChatSettings.of(AgentConfig.from_dict({"kind": "chat", "prompt": {"recent": 0}})).recent
        0
        """
        p = config.prompt
        return cls(top_k=p.top_k, recent=p.recent, hits_last=p.hits_last)


def layer_names(n: int) -> list[str]:
    return [f"L{i:02d}" for i in range(n)]


def _texts(values: Any, name: str, limit: int) -> list[str]:
    if isinstance(values, str) or not isinstance(values, Sequence) or len(values) == 0:
        raise InputError(name, "expected a non-empty list of strings")
    for i, v in enumerate(values):
        if not isinstance(v, str) or not v.strip():
            raise InputError(f"{name}[{i}]", f"expected a non-empty string, got {v!r}")
        if len(v) > limit:
            raise InputError(f"{name}[{i}]", f"expected at most {limit} characters, got {len(v)}")
    return list(values)


class ChatAgent(StateView):
    """A chat agent's learner and reader.

    Parameters
    ----------
    config : an :class:`AgentConfig` with ``kind == "chat"``.
    lm : a :class:`agent.lm.runtime.MemLM`; default: SmolLM2 + the shipped adapter, loaded on
        first use and shared by the process.
    encoder : the retrieval encoder (``encode(list[str]) -> (n, 384)``); default: shared MiniLM.
    settings : :class:`ChatSettings`; default: those of ``config`` (:meth:`ChatSettings.of`).
    dtype : the state's dtype (float32 or float64).
    """

    is_chat = True  # the workers pass turns (and speakers), never targets

    def __init__(self, config: AgentConfig, lm: Any = None, encoder: Any = None,
                 settings: ChatSettings | None = None, dtype: Any = np.float32) -> None:
        if config.kind != "chat":
            raise InputError("kind", f'ChatAgent serves "chat", not {config.kind!r}')
        self.config = config
        self.settings = settings or ChatSettings.of(config)
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise InputError("dtype", f"expected float32 or float64, got {self.dtype}")
        self._lm = lm
        self._encoder = encoder
        self._shape = SMOLLM2_SHAPE if lm is None else (lm.cfg.n_layers, lm.cfg.d_v, lm.cfg.d_k)
        self._layers, self._labels = self.initial_state(config, self.dtype, self._shape)
        self._emb = np.zeros((0, 0), dtype=np.float32)  # (m', 384) embeddings of labels[:m']

    # ------------------------------------------------------------------ state
    @staticmethod
    def initial_state(config: AgentConfig, dtype: Any = np.float32,
                      shape: tuple[int, int, int] = SMOLLM2_SHAPE) -> tuple[dict[str, np.ndarray], list[str]]:
        """Version 0: every layer's state zero, no turns."""
        n, d_v, d_k = shape
        return {name: np.zeros((d_v, d_k), dtype=dtype) for name in layer_names(n)}, []

    @property
    def state_shape(self) -> tuple[int, int, int]:
        """``(layers, d_v, d_k)`` of the δ-mem states."""
        return self._shape

    @property
    def lm(self) -> Any:
        if self._lm is None:
            from agent.lm.runtime import get_lm

            self._lm = get_lm()
            if (self._lm.cfg.n_layers, self._lm.cfg.d_v, self._lm.cfg.d_k) != self._shape:
                raise RuntimeError(f"adapter state shape does not match {self._shape}")
        return self._lm

    @property
    def encoder(self) -> Any:
        if self._encoder is None:
            from agent.backbones.minilm import get_minilm

            self._encoder = get_minilm()
        return self._encoder

    def load_state(self, layers: dict[str, np.ndarray], labels: Sequence[str]) -> None:
        ref, _ = self.initial_state(self.config, self.dtype, self._shape)
        if set(layers) != set(ref):
            raise ValueError(f"expected layers {sorted(ref)[:2]}…, got {sorted(layers)[:2]}…")
        for name, arr in layers.items():
            if tuple(arr.shape) != ref[name].shape or not np.all(np.isfinite(arr)):
                raise ValueError(f"layer {name}: expected finite {ref[name].shape}, got {arr.shape}")
        self._layers = {k: np.asarray(v, dtype=self.dtype) for k, v in layers.items()}
        self._labels = [str(x) for x in labels]
        self._emb = np.zeros((0, 0), dtype=np.float32)

    def apply(self, delta: Delta) -> None:
        """Apply a committed delta (the operation a rebuild uses) and append its turns."""
        self._layers = apply_delta(self._layers, delta)
        self._labels = self._labels + list(delta.labels_added)

    def _states(self) -> torch.Tensor:
        """The numpy states as one (1, L, d_v, d_k) float32 tensor."""
        names = layer_names(self._shape[0])
        return torch.from_numpy(np.stack([self._layers[n] for n in names]).astype(np.float32))[None]

    # ------------------------------------------------------------------ writes
    def turn_labels(self, inputs: Sequence[str], speakers: Sequence[str | None] | None) -> list[str]:
        texts = _texts(inputs, "inputs", self.settings.max_turn_chars)
        if speakers is None:
            return [t.strip() for t in texts]
        if isinstance(speakers, str) or len(speakers) != len(texts):
            raise InputError("speakers", f"expected {len(texts)} speakers (one per input)")
        out = []
        for i, (s, t) in enumerate(zip(speakers, texts, strict=True)):
            if s is not None and (not isinstance(s, str) or not s.strip() or len(s) > 200):
                raise InputError(f"speakers[{i}]", f"expected a short non-empty string, got {s!r}")
            out.append(f"{s.strip()}: {t.strip()}" if s else t.strip())
        return out

    def compute_delta(self, inputs: Sequence[str], targets: Sequence[Any] | None = None,
                      betas: Sequence[Any] | None = None,
                      speakers: Sequence[str | None] | None = None) -> Delta:
        """The delta of hearing ``inputs`` (turns) in order; changes nothing."""
        labels = self.turn_labels(inputs, speakers)
        if targets is not None and any(t is not None for t in targets):
            raise InputError("targets", "chat turns have no target")
        if betas is not None and any(b is not None for b in betas):
            raise InputError("betas", "a chat agent learns its write strengths; omit beta")
        lm = self.lm
        S = self._states().to(lm.device)  # (1, L, d_v, d_k)
        with torch.no_grad():
            for label in labels:
                items = lm.turn_items(label)  # (n_items, L, d), this turn alone
                S = lm.mem.write_items(S, items[None], kernel="naive")
        names = layer_names(self._shape[0])
        S_np = S[0].cpu().numpy().astype(self.dtype) + self.dtype.type(0.0)  # −0.0 → +0.0
        layers = {n: LayerDelta.of_dense(np.ascontiguousarray(S_np[i]), gamma=0.0)
                  for i, n in enumerate(names)}
        return Delta(layers, labels)

    def learn_many(self, inputs: Sequence[str], targets: Sequence[Any] | None = None,
                   betas: Sequence[Any] | None = None, delta_dtype: Any = None,
                   speakers: Sequence[str | None] | None = None) -> Delta:
        """Hear a micro-batch of turns; returns the delta exactly as applied."""
        delta = self.compute_delta(inputs, targets, betas, speakers)
        delta = delta.astype(delta_dtype if delta_dtype is not None else self.dtype)
        self.apply(delta)
        return delta

    # ------------------------------------------------------------------ reads
    def retrieve(self, question: str, k: int) -> list[tuple[int, float]]:
        """Top-``k`` turns by MiniLM cosine: ``[(turn index, cosine)]``, best first."""
        m = len(self._labels)
        if m == 0 or k <= 0:
            return []
        if self._emb.shape[0] < m:  # embed the turns added since the last call
            new = np.asarray(self.encoder.encode(self._labels[self._emb.shape[0]:]), dtype=np.float32)
            self._emb = new if self._emb.shape[0] == 0 else np.concatenate([self._emb, new])
        q = np.asarray(self.encoder.encode([question]), dtype=np.float32)[0]
        cos = self._emb[:m] @ q / np.maximum(np.linalg.norm(self._emb[:m], axis=1) * np.linalg.norm(q), 1e-12)
        order = np.argsort(-cos, kind="stable")[:k]
        return [(int(i), float(cos[i])) for i in order]

    def context(self, question: str, k: int) -> tuple[list[str], list[tuple[int, float]]]:
        """Prompt lines: retrieved turns and the recent window, in conversation order (or, with
        ``hits_last``, the recent turns that are not hits, then the hits), each text once, within
        the token budget (the lines farthest from the question dropped first)."""
        m = len(self._labels)
        recent = list(range(max(0, m - self.settings.recent), m))
        hits = self.retrieve(question, k)
        hit_idx = {i for i, _ in hits}
        if self.settings.hits_last:
            idx = [i for i in recent if i not in hit_idx] + sorted(hit_idx)
        else:
            idx = sorted(hit_idx | set(recent))
        budget = self.settings.max_prompt_tokens
        lines: list[str] = []
        for i in reversed(idx):  # nearest the question first until the budget is spent
            if self._labels[i] in lines:  # a turn said again is shown once, nearest the question
                continue
            n = len(self.lm.bb.encode(self._labels[i])) + 1
            if n > budget:
                break
            budget -= n
            lines.append(self._labels[i])
        return lines[::-1], hits

    def prompt(self, question: str, k: int) -> tuple[list[int], list[tuple[int, float]]]:
        """The token ids sent to the LM for ``question`` (context lines of :meth:`context`, then
        the question) and the retrieval hits. Training builds its examples with this too."""
        lines, hits = self.context(question, k)
        return self.lm.prompt(question, lines or None), hits

    def predict_many(self, questions: Sequence[str], top_k: int | None = None) -> list[dict]:
        """A greedy reply per question: ``{"text", "label", "score", "top"?}``."""
        qs = _texts(questions, "inputs", self.settings.max_question_chars)
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
            raise InputError("top_k", f"expected a positive integer, got {top_k!r}")
        k = self.settings.top_k if top_k is None else top_k
        states = self._states()
        out = []
        for q in qs:
            ids, hits = self.prompt(q, k)
            reply = self.lm.bb.decode(self.lm.generate(ids, states, self.settings.max_new_tokens)[0]).strip()
            p: dict = {"text": reply, "label": reply, "score": 0.0}
            if top_k is not None:
                p["top"] = [[self._labels[i], c] for i, c in hits]
            out.append(p)
        return out
