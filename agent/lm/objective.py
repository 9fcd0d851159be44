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

__all__ = ["lr_at", "partners", "write_states", "answer_nll", "objective", "micro_batches",
           "objective_backward", "state_gap", "state_gap_reference"]


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
    each prompt read with its row of ``S`` (B, L, d_v, d_k).

    The decoder runs over the padded prompts; the LM head (vocabulary 49k on SmolLM2) is applied
    to the positions that predict an answer token only, so no (B, T, vocab) logits are held."""
    B, T = len(batch), max(len(ex.ids) for ex in batch)
    ids = torch.full((B, T), lm.bb.eos, dtype=torch.long)
    att = torch.zeros(B, T, dtype=torch.long)
    rows: list[int] = []
    pos: list[int] = []
    tgt: list[int] = []
    for i, ex in enumerate(batch):
        n = len(ex.ids)
        ids[i, :n] = torch.tensor(ex.ids)
        att[i, :n] = 1
        rows += [i] * ex.n_target
        pos += range(n - ex.n_target - 1, n - 1)  # position t predicts token t + 1
        tgt += ex.ids[n - ex.n_target:]
    dev = lm.device
    ids, att = ids.to(dev), att.to(dev)
    r, p, y = (torch.tensor(v, dtype=torch.long, device=dev) for v in (rows, pos, tgt))
    with lm.mem.reading(S):
        hidden = lm.bb.model.model(input_ids=ids, attention_mask=att, use_cache=False)[0]
    logits = lm.bb.model.lm_head(hidden[r, p])  # (K, vocab), K = answer tokens of the batch
    tok = F.cross_entropy(logits, y, reduction="none")
    nll = torch.zeros(B, dtype=tok.dtype, device=dev).index_add(0, r, tok)
    return nll, torch.bincount(r, minlength=B).to(tok.dtype)


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


def micro_batches(batch: list[Example], max_tokens: int) -> list[list[int]]:
    """Positions of ``batch`` in groups whose padded read tokens (rows × longest prompt, own and
    other pass together) stay within ``max_tokens``; shortest prompts first, at least one row
    per group. ``max_tokens <= 0``: one group."""
    order = sorted(range(len(batch)), key=lambda i: len(batch[i].ids))
    if max_tokens <= 0:
        return [order] if order else []
    groups: list[list[int]] = []
    for i in order:
        if groups and 2 * (len(groups[-1]) + 1) * len(batch[i].ids) <= max_tokens:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def objective_backward(lm: Any, batch: list[Example], margin: float = 0.5, weight: float = 1.0,
                       kernel: str = "chunk", max_tokens: int = 0) -> dict[str, float]:
    """``objective(...)[0].backward()`` with bounded memory; returns the same parts.

    The states of the whole batch are written once; the read passes (own and other state) run
    in :func:`micro_batches` of at most ``max_tokens`` padded tokens, each backpropagated into a
    detached copy of the states as soon as it is done, so only one micro-batch's activations are
    held at a time. The states' accumulated gradient then flows through the write pass once.
    The loss is a sum over examples, so the gradient equals the one-graph reference's up to float
    summation order (``test_micro_batched_gradient_equals_one_graph``)."""
    S = write_states(lm, batch, kernel)
    S_leaf = S.detach().requires_grad_(True)
    pair = partners([ex.history for ex in batch])
    keep = [i for i, j in enumerate(pair) if j is not None]
    contrast = weight > 0 and bool(keep)
    B, K = len(batch), max(1, len(keep))
    ce_sum = gap_sum = hinge_sum = 0.0
    for group in micro_batches(batch, max_tokens):
        sub = [batch[i] for i in group]
        nll, n = answer_nll(lm, sub, S_leaf[group])
        ce_own = nll / n
        part = ce_own.sum() / B
        ce_sum += float(ce_own.detach().sum())
        if contrast:
            sel = [g for g, i in enumerate(group) if pair[i] is not None]
            if sel:
                nll_o, n_o = answer_nll(lm, [sub[g] for g in sel],
                                        S_leaf[[pair[group[g]] for g in sel]])  # type: ignore[misc]
                gap = nll_o / n_o - ce_own[sel]
                hinge = torch.relu(margin - gap)
                part = part + weight * hinge.sum() / K
                gap_sum += float(gap.detach().sum())
                hinge_sum += float(hinge.detach().sum())
        part.backward()
    if S_leaf.grad is not None and S.requires_grad:
        S.backward(S_leaf.grad)
    stats = {"ce": ce_sum / B}
    if contrast:
        stats.update(gap=gap_sum / len(keep), hinge=hinge_sum / len(keep))
    stats["loss"] = stats["ce"] + (weight * stats["hinge"] if contrast else 0.0)
    return stats


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
