"""A backbone with δ-mem attached: chat prompts with segment ids, write items, greedy decoding.

:class:`MemLM` is what training, evaluation and the chat agent share:

- :func:`render` builds a ChatML prompt (the SmolLM2 template) token by token and marks which
  tokens are message content (segment = message index) and which are template or system tokens
  (segment −1, never written into memory).
- :meth:`MemLM.turn_items` runs the frozen base model over one message on its own (no
  corrections) and returns the write items: per-layer attention inputs of its content tokens
  (TSW) or their mean (SSW, one item). A message's items depend on that message alone, so
  replaying a conversation without one turn gives exactly the states of never having seen it.
- :meth:`MemLM.generate` is greedy decoding with a KV cache and the states read in.

:func:`get_lm` loads SmolLM2 and the shipped adapter once per process.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import torch

from agent.lm.backbone import Backbone, load_smollm2
from agent.lm.deltamem import DeltaMem, DeltaMemConfig, check_adapter_file
from agent.lm.state import masked_mean

__all__ = ["render", "MemLM", "get_lm", "ADAPTER_PATH"]

ADAPTER_PATH = os.path.join(os.path.dirname(__file__), "adapters", "deltamem-smollm2-135m.safetensors")
_CACHE: dict[str, MemLM] = {}
_LOCK = threading.Lock()


def render(bb: Backbone, messages: list[tuple[str, str]],
           add_generation_prompt: bool = False) -> tuple[list[int], list[int]]:
    """ChatML token ids and segment ids for ``[(role, content), ...]``.

    Returns ``ids`` and ``seg`` of equal length: ``seg[i]`` is the message index for content
    tokens of non-system messages, −1 for template and system tokens.
    """
    ids: list[int] = []
    seg: list[int] = []
    nl = bb.encode("\n")
    for m, (role, content) in enumerate(messages):
        head = [bb.im_start] + bb.encode(role + "\n")
        body = bb.encode(content)
        tail = [bb.im_end] + nl
        ids += head + body + tail
        seg += [-1] * len(head) + [m if role != "system" else -1] * len(body) + [-1] * len(tail)
    if add_generation_prompt:
        gen = [bb.im_start] + bb.encode("assistant\n")
        ids += gen
        seg += [-1] * len(gen)
    return ids, seg


CONTEXT_RULE = " Use the conversation. If something was said twice, the later statement is true."


class MemLM:
    """A frozen :class:`Backbone` with a :class:`DeltaMem` attached to it."""

    def __init__(self, bb: Backbone, mem: DeltaMem, card: dict[str, Any] | None = None) -> None:
        if mem.cfg.n_layers != bb.n_layers or mem.cfg.d_model != bb.d_model:
            raise ValueError("δ-mem config does not match the backbone")
        self.bb = bb
        self.mem = mem
        self.card = card or {}
        mem.attach(bb.model)

    @property
    def device(self) -> torch.device:
        return self.bb.model.device

    @property
    def cfg(self) -> DeltaMemConfig:
        return self.mem.cfg

    def batch_items(self, texts: list[str], role: str = "user") -> list[torch.Tensor]:
        """Write items of each text as its own message: (n_items, L, d) per text.

        The texts go through the base model in one right-padded batch (causal attention: the
        padding never reaches a content token).
        """
        rows = [render(self.bb, [(role, t)]) for t in texts]
        T = max(len(ids) for ids, _ in rows)
        ids = torch.full((len(rows), T), self.bb.eos, dtype=torch.long)
        seg = torch.full((len(rows), T), -1, dtype=torch.long)
        att = torch.zeros((len(rows), T), dtype=torch.long)
        for i, (r_ids, r_seg) in enumerate(rows):
            ids[i, : len(r_ids)] = torch.tensor(r_ids)
            seg[i, : len(r_seg)] = torch.tensor(r_seg)
            att[i, : len(r_ids)] = 1
        dev = self.device
        ids, seg, att = ids.to(dev), seg.to(dev), att.to(dev)
        with torch.no_grad(), self.mem.capturing() as xs:  # the decoder only: no lm_head
            self.bb.model.model(input_ids=ids, attention_mask=att, use_cache=False)
        X = torch.stack([x for x in xs if x is not None], dim=2)  # (B, T, L, d)
        if self.cfg.write == "ssw":
            B, _, L, d = X.shape
            means, _ = masked_mean(X.reshape(B, T, L * d), seg, 1)  # (B, 1, L·d)
            return [means[i].reshape(1, L, d) for i in range(B)]
        return [X[i][seg[i] >= 0] for i in range(len(rows))]  # (n_tok, L, d)

    def turn_items(self, text: str) -> torch.Tensor:
        """Write items of one message, computed alone (no padding): (n_items, L, d)."""
        return self.batch_items([text])[0]

    def prompt(self, question: str, context: list[str] | None = None,
               system: str = "Answer the question briefly.") -> list[int]:
        """The read prompt: a system line, optional context turns, the question.

        With context, the system line also says that a later statement overrides an earlier one
        and the question asks for a short answer (measured in agent/lm/README.md).
        """
        user = question
        if context:
            system = system + CONTEXT_RULE
            user = ("Conversation so far:\n" + "\n".join(context) + "\n\nQuestion: " + question
                    + "\nAnswer in a few words.")
        ids, _ = render(self.bb, [("system", system), ("user", user)], add_generation_prompt=True)
        return ids

    @torch.no_grad()
    def generate(self, ids: list[int], states: torch.Tensor | None = None,
                 max_new_tokens: int = 32, fused: bool = True) -> tuple[list[int], dict[str, float]]:
        """Greedy decoding with the states read in (None: the base model).

        The states are fixed while decoding: with ``fused`` (default) the read matrices are
        precomputed once (:meth:`DeltaMem.fuse`); ``fused=False`` reads in the unfused form.

        Returns the new token ids (without the end marker) and timings
        ``{"prefill_s", "decode_s", "prompt_tokens", "new_tokens"}``.
        """
        from transformers import DynamicCache

        model = self.bb.model
        states = None if states is None else states.to(self.device)
        ctx = self.mem.reading(states, fused=fused) if states is not None else _nullcontext()
        out: list[int] = []
        with ctx:
            t0 = time.perf_counter()
            cache = DynamicCache()
            x = torch.tensor([ids], dtype=torch.long, device=self.device)
            logits = model(input_ids=x, past_key_values=cache, use_cache=True).logits[:, -1]
            t1 = time.perf_counter()
            for _ in range(max_new_tokens):
                nxt = int(torch.argmax(logits[0]))
                if nxt in (self.bb.eos, self.bb.im_end):
                    break
                out.append(nxt)
                if len(out) == max_new_tokens:
                    break
                logits = model(input_ids=torch.tensor([[nxt]], device=self.device), past_key_values=cache,
                               use_cache=True).logits[:, -1]
            t2 = time.perf_counter()
        return out, {"prefill_s": t1 - t0, "decode_s": t2 - t1, "prompt_tokens": float(len(ids)),
                     "new_tokens": float(len(out))}

    def answer(self, question: str, states: torch.Tensor | None = None,
               context: list[str] | None = None, max_new_tokens: int = 32) -> str:
        ids, _ = self.generate(self.prompt(question, context), states, max_new_tokens)
        return self.bb.decode(ids).strip()


class _nullcontext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


def get_lm(adapter: str | None = None) -> MemLM:
    """SmolLM2 + δ-mem, once per process. ``adapter``: a safetensors file from training; by
    default the shipped one when present, else an untrained δ-mem (W_Δ = 0: the base model)."""
    path = adapter if adapter is not None else (ADAPTER_PATH if os.path.exists(ADAPTER_PATH) else "")
    if path:
        check_adapter_file(path)
    with _LOCK:
        if path in _CACHE:
            return _CACHE[path]
        bb = load_smollm2()
        if path:
            mem, card = DeltaMem.load(path)
        else:
            mem, card = DeltaMem(DeltaMemConfig.for_backbone(bb), seed=0), {"trained": False}
        if any(lm.bb is bb for lm in _CACHE.values()):
            raise RuntimeError("one δ-mem adapter per process: the hooks of two would stack")
        lm = MemLM(bb, mem, card)
        _CACHE[path] = lm
        return lm
