"""Prefill and decode tokens/s of the LM with and without δ-mem (``deltamem eval lm`` speed rows)."""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from typing import Any

import torch

__all__ = ["speed"]


@torch.no_grad()
def speed(lm: Any, prompt_tokens: int = 256, new_tokens: int = 32, repeats: int = 3) -> dict[str, float]:
    """Prefill and decode tokens/s: base, δ-mem read (fixed states; fused, and unfused for
    reference), TSW read-write prefill. Conditions are interleaved within each repeat (so load
    on a shared machine hits them alike); medians over ``repeats``, with the min–max spread of
    the overheads (``*_lo``/``*_hi``: overheads of the per-repeat pairs).

    With an untrained adapter (``W_Δ = 0``) the fused read skips every layer, which would
    measure nothing: random ``W_Δ`` (std 0.02) are then set for the run and restored after.
    """
    g = torch.Generator().manual_seed(0)
    hi = min(1000, int(lm.bb.model.config.vocab_size))  # SmolLM2: ids in [100, 1000)
    ids = torch.randint(min(100, hi // 2), hi, (1, prompt_tokens), generator=g)
    states = torch.randn(1, lm.cfg.n_layers, lm.cfg.d_v, lm.cfg.d_k, generator=g) * 0.1
    model, mem = lm.bb.model, lm.mem
    saved = None
    if not (bool(mem.W_dq.any()) or bool(mem.W_do.any())):
        saved = mem.W_dq.detach().clone(), mem.W_do.detach().clone()
        mem.W_dq.copy_(torch.randn(mem.W_dq.shape, generator=g) * 0.02)
        mem.W_do.copy_(torch.randn(mem.W_do.shape, generator=g) * 0.02)

    def timed(fn: Any) -> float:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    def read() -> None:
        with mem.reading(states):
            model(input_ids=ids, use_cache=False)

    def readwrite() -> None:
        with mem.read_writing(states):
            model(input_ids=ids, use_cache=False)

    def decode(st: Any, fused: bool = True) -> float:
        r = lm.generate(ids[0].tolist(), st, new_tokens, fused=fused)[1]
        return r["new_tokens"] / max(r["decode_s"], 1e-9)

    runs: dict[str, list[float]] = defaultdict(list)
    try:
        for _ in range(repeats):
            runs["prefill_base"].append(prompt_tokens / timed(lambda: model(input_ids=ids, use_cache=False)))
            runs["prefill_delta_read"].append(prompt_tokens / timed(read))
            runs["prefill_delta_tsw"].append(prompt_tokens / timed(readwrite))
            runs["decode_base"].append(decode(None))
            runs["decode_delta_read"].append(decode(states))
            runs["decode_delta_read_unfused"].append(decode(states, fused=False))
    finally:
        if saved is not None:
            mem.W_dq.copy_(saved[0])
            mem.W_do.copy_(saved[1])
    out = {k: statistics.median(v) for k, v in runs.items()}
    for name, base, other in (("prefill_overhead_read", "prefill_base", "prefill_delta_read"),
                              ("prefill_overhead_tsw", "prefill_base", "prefill_delta_tsw"),
                              ("decode_overhead_read", "decode_base", "decode_delta_read"),
                              ("decode_overhead_read_unfused", "decode_base", "decode_delta_read_unfused")):
        pairs = [b / o - 1 for b, o in zip(runs[base], runs[other], strict=True)]
        out[name] = out[base] / out[other] - 1
        out[name + "_lo"], out[name + "_hi"] = min(pairs), max(pairs)
    out["repeats"] = float(repeats)
    return out
