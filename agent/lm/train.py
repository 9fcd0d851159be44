"""``deltamem train-adapter``: train the δ-mem parameters on memory episodes, backbone frozen.

Each step takes a batch of episodes and

1. writes each history into fresh states — the write items (per-layer attention inputs of the
   base model, no corrections) are computed once per history and cached, since the backbone is
   frozen and the write pass has no corrections; only the delta-rule write itself (which depends
   on W_mk, W_mv, W_β) runs per step, batched over episodes and layers (chunk kernel);
2. reads the question with those states (corrections on) and takes the cross-entropy of the
   answer tokens (history not in the prompt: the state is all the model has).

Only δ-mem parameters get gradients. The result is a safetensors file (float16, ~1.7 MB for
SmolLM2) whose metadata holds the config and a card: the exact command, seed, data, steps, loss
and recall before and after. Run ``python -m agent.lm.train --help``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import dataclass
from typing import Any

import torch

from agent.lm.backbone import load_smollm2, tiny_llama
from agent.lm.deltamem import DeltaMem, DeltaMemConfig
from agent.lm.episodes import Episode, locomo_episodes, synthetic_episodes
from agent.lm.runtime import MemLM, render

__all__ = ["Example", "prepare", "train_step", "batch_loss", "main"]

SYSTEM = "Answer the question briefly."


@dataclass
class Example:
    """One cached training example: write items of the history and the read-pass tokens."""

    items: torch.Tensor  # (N, L, d) shared by the episodes of one history
    ids: list[int]  # system + question + answer + end marker
    n_target: int  # the last n_target tokens are scored


def _history_key(ep: Episode) -> tuple[tuple[str, str], ...]:
    return tuple(ep.turns)


def prepare(lm: MemLM, episodes: list[Episode], batch: int = 32) -> list[Example]:
    """Write items once per distinct history (batched base passes), read tokens per question."""
    cache: dict[Any, torch.Tensor] = {}
    out = []
    for ep in episodes:
        key = _history_key(ep)
        if key not in cache:
            texts = ep.labels()
            parts = []
            for i in range(0, len(texts), batch):
                parts += lm.batch_items(texts[i: i + batch])
            cache[key] = torch.cat(parts, dim=0)  # (N, L, d)
        ids, _ = render(lm.bb, [("system", SYSTEM), ("user", ep.question)], add_generation_prompt=True)
        target = lm.bb.encode(ep.answer) + [lm.bb.im_end]
        out.append(Example(cache[key], ids + target, len(target)))
    return out


def batch_loss(lm: MemLM, batch: list[Example], kernel: str = "chunk") -> torch.Tensor:
    """Mean answer-token cross-entropy of a batch, the histories written into the states."""
    B = len(batch)
    N = max(ex.items.shape[0] for ex in batch)
    L, d = batch[0].items.shape[1:]
    dev = lm.device
    X = torch.zeros(B, N, L, d, device=dev)
    mask = torch.zeros(B, N, dtype=torch.bool, device=dev)
    for i, ex in enumerate(batch):
        X[i, : ex.items.shape[0]] = ex.items
        mask[i, : ex.items.shape[0]] = True
    S = lm.mem.write_items(lm.mem.zero_states(B).to(dev), X, mask, kernel=kernel)  # (B, L, d_v, d_k)
    T = max(len(ex.ids) for ex in batch)
    ids = torch.full((B, T), lm.bb.eos, dtype=torch.long)
    att = torch.zeros(B, T, dtype=torch.long)
    labels = torch.full((B, T), -100, dtype=torch.long)
    for i, ex in enumerate(batch):
        n = len(ex.ids)
        ids[i, :n] = torch.tensor(ex.ids)
        att[i, :n] = 1
        labels[i, n - ex.n_target: n] = torch.tensor(ex.ids[n - ex.n_target:])
    ids, att, labels = ids.to(dev), att.to(dev), labels.to(dev)
    with lm.mem.reading(S):
        logits = lm.bb.model(input_ids=ids, attention_mask=att, use_cache=False).logits
    return torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                             labels[:, 1:].reshape(-1), ignore_index=-100)


def train_step(lm: MemLM, opt: torch.optim.Optimizer, batch: list[Example]) -> float:
    opt.zero_grad(set_to_none=True)
    loss = batch_loss(lm, batch)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(lm.mem.parameters(), 1.0)
    opt.step()
    return float(loss.detach())


@torch.no_grad()
def mean_loss(lm: MemLM, examples: list[Example], batch: int) -> float:
    losses = [float(batch_loss(lm, examples[i: i + batch])) * len(examples[i: i + batch])
              for i in range(0, len(examples), batch)]
    return sum(losses) / max(1, len(examples))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="deltamem train-adapter", description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="output .safetensors file")
    p.add_argument("--model", default="smollm2", choices=["smollm2", "tiny"])
    p.add_argument("--synthetic", type=int, default=2000, help="synthetic training episodes")
    p.add_argument("--locomo-convs", default="", help="LoCoMo conversations to train on, e.g. conv-26")
    p.add_argument("--heldout", type=int, default=64, help="held-out synthetic episodes for figures")
    p.add_argument("--recall-eval", type=int, default=32, help="held-out episodes decoded for recall")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--write", default="ssw", choices=["ssw", "tsw"])
    p.add_argument("--gated", action="store_true")
    p.add_argument("--max-minutes", type=float, default=0.0, help="stop after this wall time")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave as is)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--log-every", type=int, default=10)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from agent.lm.evaluate import synthetic_recall  # evaluate imports train's helpers lazily

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    bb = load_smollm2() if args.model == "smollm2" else tiny_llama(args.seed)
    bb.model.to(args.device)
    mem = DeltaMem(DeltaMemConfig.for_backbone(bb, write=args.write, gated=args.gated), seed=args.seed)
    lm = MemLM(bb, mem.to(args.device))
    t0 = time.time()
    eps = synthetic_episodes(args.synthetic, seed=args.seed)
    convs = [c for c in args.locomo_convs.split(",") if c]
    eps += [e for e in locomo_episodes() if e.conversation in convs]
    held = synthetic_episodes(args.heldout, seed=10_000 + args.seed)
    train_ex, held_ex = prepare(lm, eps), prepare(lm, held)
    print(f"prepared {len(train_ex)} train / {len(held_ex)} held-out examples in "
          f"{time.time() - t0:.0f}s; δ-mem params {mem.n_params():,}", flush=True)
    before = {"heldout_loss": mean_loss(lm, held_ex, args.batch),
              "recall": synthetic_recall(lm, held[: args.recall_eval], "state")["recall"]}
    print(f"before: {before}", flush=True)
    opt = torch.optim.AdamW(mem.parameters(), lr=args.lr, weight_decay=0.0)
    rng = random.Random(args.seed)
    t1, losses, step = time.time(), [], 0
    for step in range(1, args.steps + 1):
        losses.append(train_step(lm, opt, rng.sample(train_ex, min(args.batch, len(train_ex)))))
        if step % args.log_every == 0:
            recent = sum(losses[-args.log_every:]) / args.log_every
            print(f"step {step} loss {recent:.4f} ({(time.time() - t1) / step:.2f}s/step)", flush=True)
        if args.max_minutes and time.time() - t1 > 60 * args.max_minutes:
            break
    after = {"heldout_loss": mean_loss(lm, held_ex, args.batch),
             "recall": synthetic_recall(lm, held[: args.recall_eval], "state")["recall"]}
    print(f"after: {after}", flush=True)
    card = {"command": "deltamem train-adapter " + " ".join(argv if argv is not None else sys.argv[1:]),
            "seed": args.seed, "backbone": bb.name, "steps": step, "batch": args.batch, "lr": args.lr,
            "data": {"synthetic": args.synthetic, "synthetic_seed": args.seed,
                     "locomo_convs": convs, "examples": len(train_ex)},
            "train_loss_first": losses[0] if losses else None,
            "train_loss_last10": sum(losses[-10:]) / max(1, len(losses[-10:])),
            "before": before, "after": after, "device": args.device,
            "train_seconds": round(time.time() - t1, 1), "trained": True}
    mem.cpu().save(args.out, card)
    with open(args.out.rsplit(".", 1)[0] + ".json", "w", encoding="utf-8") as f:
        json.dump(card, f, indent=2)
    print(json.dumps(card, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
