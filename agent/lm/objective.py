"""The training objective that must use the state, its schedule, and the stop statistic.

Per example ``i`` (its history written into a fresh state ``S_i``, its prompt read with it):

    ce_own_i   = mean answer-token cross-entropy reading S_i
    ce_other_i = the same prompt reading S_j, j = another history of the batch (:func:`partners`)
    loss = mean_i ce_own_i + w · mean_i max(0, m − (ce_other_i − ce_own_i))

Plain answer cross-entropy can be lowered by learning the answer format alone (the prior); the
hinge term is zero only when the conversation's own state makes its answer more likely than
another conversation's state by ``m`` nats per token, so it can only be met through the state.
One extra read pass per step (the other states are the batch's own, rolled).

Stop statistic (decided before a run, logged during it): on a fixed held-out set, the per-example
gap ``g_i = ce_other_i − ce_own_i``, its mean and standard error ``sd(g)/√n``; the run stops
early once ``mean > z · s.e.`` (``z = 3``). :func:`state_gap_reference` is the slow, one example
at a time reference of :func:`state_gap`.

Learning rate: linear warm-up over ``warmup`` steps, then cosine decay to ``min_ratio · lr`` at
``total`` steps (:func:`lr_at`).
"""

from __future__ import annotations

import math
import statistics
from typing import Any

import torch
import torch.nn.functional as F

from agent.lm.examples import Example

__all__ = ["lr_at", "partners", "write_states", "answer_nll", "objective", "state_gap",
           "state_gap_reference"]


def lr_at(step: int, base: float, warmup: int, total: int, min_ratio: float = 0.1) -> float:
    """Learning rate of optimizer step ``step`` (1-based)."""
    if warmup > 0 and step <= warmup:
        return base * step / warmup
    span = max(1, total - warmup)
    t = min(1.0, (step - warmup) / span)
    return base * (min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * t)))


def partners(histories: list[int]) -> list[int | None]:
    """For each position, the next position (cyclically) holding a different history; None
    when every example shares one history."""
    n = len(histories)
    out: list[int | None] = []
    for i in range(n):
        j = next((j % n for j in range(i + 1, i + n) if histories[j % n] != histories[i]), None)
        out.append(j)
    return out


def write_states(lm: Any, batch: list[Example], kernel: str = "chunk") -> torch.Tensor:
    """Each example's whole history written into a fresh state: (B, L, d_v, d_k).

    The features of each distinct message of the batch are computed once, then gathered.
    """
    uniq: dict[int, int] = {}
    for ex in batch:
        for m in ex.msgs:
            uniq.setdefault(m, len(uniq))
    parts = [batch[0].bank.items(m) for m in uniq]
    offsets, total = [], 0
    for p in parts:
        offsets.append(total)
        total += p.shape[0]
    dev = lm.device
    feats = lm.mem.features(torch.cat(parts).to(dev, lm.mem.W_mk.dtype))  # (U, L, ·)
    rows = [[offsets[uniq[m]] + r for m in ex.msgs for r in range(batch[0].bank.items(m).shape[0])]
            for ex in batch]
    N = max(len(r) for r in rows)
    idx = torch.zeros(len(batch), N, dtype=torch.long)
    mask = torch.zeros(len(batch), N, dtype=torch.bool)
    for i, r in enumerate(rows):
        idx[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, : len(r)] = True
    idx, mask = idx.to(dev), mask.to(dev)
    _, k, v, beta, alpha = (None if f is None else f[idx] for f in feats)  # (B, N, L, ·)
    S0 = lm.mem.zero_states(len(batch)).to(dev)
    return lm.mem.write_features(S0, k, v, beta, alpha, mask, kernel=kernel)


def answer_nll(lm: Any, batch: list[Example], S: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed answer-token negative log-likelihood per example (B,) and the token counts (B,),
    each prompt read with its row of ``S`` (B, L, d_v, d_k)."""
    B, T = len(batch), max(len(ex.ids) for ex in batch)
    ids = torch.full((B, T), lm.bb.eos, dtype=torch.long)
    att = torch.zeros(B, T, dtype=torch.long)
    labels = torch.full((B, T), -100, dtype=torch.long)
    for i, ex in enumerate(batch):
        n = len(ex.ids)
        ids[i, :n] = torch.tensor(ex.ids)
        att[i, :n] = 1
        labels[i, n - ex.n_target: n] = torch.tensor(ex.ids[n - ex.n_target:])
    dev = lm.device
    ids, att, labels = ids.to(dev), att.to(dev), labels.to(dev)
    with lm.mem.reading(S):
        logits = lm.bb.model(input_ids=ids, attention_mask=att, use_cache=False).logits
    tok = F.cross_entropy(logits[:, :-1].transpose(1, 2), labels[:, 1:], ignore_index=-100,
                          reduction="none")  # (B, T-1), zero where ignored
    return tok.sum(1), (labels[:, 1:] != -100).sum(1).to(tok.dtype)


def objective(lm: Any, batch: list[Example], margin: float = 0.5, weight: float = 1.0,
              kernel: str = "chunk") -> tuple[torch.Tensor, dict[str, float]]:
    """The training loss of a batch and its parts (floats, for the log)."""
    S = write_states(lm, batch, kernel)
    nll, n = answer_nll(lm, batch, S)
    ce_own = nll / n
    loss = ce_own.mean()
    stats = {"ce": float(ce_own.mean().detach())}
    pair = partners([ex.history for ex in batch])
    keep = [i for i, j in enumerate(pair) if j is not None]
    if weight > 0 and keep:
        sub = [batch[i] for i in keep]
        nll_o, n_o = answer_nll(lm, sub, S[[pair[i] for i in keep]])  # type: ignore[misc]
        gap = nll_o / n_o - ce_own[keep]
        hinge = torch.relu(margin - gap).mean()
        loss = loss + weight * hinge
        stats.update(gap=float(gap.detach().mean()), hinge=float(hinge.detach()))
    stats["loss"] = float(loss.detach())
    return loss, stats


def _summary(own: list[float], other: list[float], z: float) -> dict[str, Any]:
    gaps = [b - a for a, b in zip(own, other, strict=True)]
    n = len(gaps)
    mean = statistics.fmean(gaps) if n else float("nan")
    se = statistics.stdev(gaps) / math.sqrt(n) if n > 1 else float("nan")
    return {"n": n, "ce_own": statistics.fmean(own) if n else float("nan"),
            "ce_other": statistics.fmean(other) if n else float("nan"),
            "gap": mean, "se": se, "z": z, "reached": bool(n > 1 and mean > z * se)}


@torch.no_grad()
def state_gap(lm: Any, examples: list[Example], batch: int = 16, z: float = 3.0,
              kernel: str = "chunk") -> dict[str, Any]:
    """Own- vs other-state answer cross-entropy on ``examples`` (each example's partner is
    :func:`partners` over the whole list): ``{"n", "ce_own", "ce_other", "gap", "se", "z",
    "reached"}`` with ``reached = gap > z·se``."""
    pair = partners([ex.history for ex in examples])
    keep = [i for i, j in enumerate(pair) if j is not None]
    states = torch.cat([write_states(lm, examples[i: i + batch], kernel)
                        for i in range(0, len(examples), batch)])
    own: list[float] = []
    other: list[float] = []
    for s in range(0, len(keep), batch):
        sel = keep[s: s + batch]
        sub = [examples[i] for i in sel]
        a, n = answer_nll(lm, sub, states[sel])
        b, _ = answer_nll(lm, sub, states[[pair[i] for i in sel]])  # type: ignore[misc]
        own += (a / n).tolist()
        other += (b / n).tolist()
    return _summary(own, other, z)


@torch.no_grad()
def state_gap_reference(lm: Any, examples: list[Example], z: float = 3.0) -> dict[str, Any]:
    """:func:`state_gap` one example at a time: the history written with the loop kernel, the
    prompt read unpadded, each answer token's log-probability taken by hand."""
    pair = partners([ex.history for ex in examples])
    state = [lm.mem.write_items(lm.mem.zero_states(1).to(lm.device), ex.items[None].to(lm.device),
                                kernel="naive") for ex in examples]

    def ce(ex: Example, S: torch.Tensor) -> float:
        with lm.mem.reading(S, fused=False):
            logp = lm.bb.model(input_ids=torch.tensor([ex.ids], device=lm.device)).logits[0]
        logp = torch.log_softmax(logp.double(), dim=-1)
        n = len(ex.ids)
        return -sum(float(logp[t - 1, ex.ids[t]]) for t in range(n - ex.n_target, n)) / ex.n_target

    own, other = [], []
    for i, ex in enumerate(examples):
        j = pair[i]
        if j is not None:
            own.append(ce(ex, state[i]))
            other.append(ce(ex, state[j]))
    return _summary(own, other, z)
