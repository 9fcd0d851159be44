"""``deltamem train-adapter``: train the δ-mem parameters in the chat agent's regime, backbone frozen.

Each example is a question about a history, with the prompt the chat agent sends at predict time
(retrieved turns, recent window, the question; :mod:`agent.lm.examples`) and the state of the
whole history read in. Each step writes the batch's histories into fresh states (chunk kernel;
the write items of every distinct message are cached once, only the features are recomputed),
reads the prompts with their own states and, once more, with another conversation's states, and
minimises :func:`agent.lm.objective.objective` (answer cross-entropy + a hinge on the own-vs-other
gap). Learning rate: warm-up then cosine (:func:`agent.lm.objective.lr_at`). Training starts
from small random corrections (``--delta-init``) so that every δ-mem matrix gets gradient.

Stop rule, fixed before the run: every ``--eval-every`` steps the own-vs-other-state answer
cross-entropy gap and its standard error are measured on ``--gap-n`` held-out examples and
logged; the run stops early once gap > ``--stop-se`` s.e., and the card says whether and when
that happened by the step budget. ``--max-minutes`` bounds preparation and training (the final
figures follow); ``--checkpoint`` is written every ``--checkpoint-every`` steps and at the end,
and ``--resume`` continues from one bit for bit. Only δ-mem parameters get gradients. The
adapter is float16 safetensors with the config and a card (command, seed, data, steps, stop
rule, figures before and after) in its metadata, and the card beside it as JSON. ``python -m
benchmarks.lm_train --help``.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from typing import Any

import torch

from agent.lm.backbone import load_smollm2, tiny_llama
from agent.lm.chat import ChatSettings
from agent.lm.checkpoint import load_checkpoint, save_checkpoint
from agent.lm.deltamem import DeltaMem, DeltaMemConfig
from agent.lm.episodes import Episode, locomo_episodes, synthetic_episodes
from agent.lm.examples import REGIMES, Example, MessageBank, prepare
from agent.lm.objective import answer_nll, lr_at, objective_backward, state_gap, write_states
from agent.lm.runtime import MemLM

__all__ = ["Example", "prepare", "train_step", "batch_loss", "mean_loss", "draw", "main"]

# the arguments a resumed run must share with the run that wrote the checkpoint
SAME_ON_RESUME = ("model", "synthetic", "locomo_convs", "heldout", "gap_n", "steps", "batch", "lr",
                  "warmup", "min_lr_ratio", "seed", "write", "gated", "delta_init", "regime",
                  "margin", "contrast_weight", "distractors", "filler_words", "top_k", "recent")


def batch_loss(lm: MemLM, batch: list[Example], kernel: str = "chunk") -> torch.Tensor:
    """Mean answer-token cross-entropy of a batch, each history written into its own state."""
    nll, n = answer_nll(lm, batch, write_states(lm, batch, kernel))
    return nll.sum() / n.sum()


def train_step(lm: MemLM, opt: torch.optim.Optimizer, batch: list[Example], margin: float = 0.5,
               weight: float = 1.0, max_tokens: int = 0) -> dict[str, float]:
    """One optimizer step on :func:`agent.lm.objective.objective`, its read passes in
    micro-batches of at most ``max_tokens`` padded tokens (0: one); returns its parts."""
    opt.zero_grad(set_to_none=True)
    stats = objective_backward(lm, batch, margin, weight, max_tokens=max_tokens)
    torch.nn.utils.clip_grad_norm_(lm.mem.parameters(), 1.0)
    opt.step()
    return stats


@torch.no_grad()
def mean_loss(lm: MemLM, examples: list[Example], batch: int) -> float:
    """Token-mean answer cross-entropy over ``examples`` with their own states."""
    tot, cnt = 0.0, 0.0
    for i in range(0, len(examples), batch):
        chunk = examples[i: i + batch]
        nll, n = answer_nll(lm, chunk, write_states(lm, chunk))
        tot, cnt = tot + float(nll.sum()), cnt + float(n.sum())
    return tot / max(cnt, 1.0)


def draw(examples: list[Example], batch: int, seed: int, step: int) -> list[Example]:
    """The batch of ``step``, a function of (seed, step) only (a resumed run draws the same):
    a random order of the examples, taking at most one question per history while there are
    enough histories (so every example has another conversation's state to be contrasted with;
    a LoCoMo conversation holds many questions), then filling up from the rest."""
    rng = random.Random(seed * 1_000_003 + step)
    order = rng.sample(range(len(examples)), len(examples))
    taken: list[int] = []
    seen: set[int] = set()
    for i in order:
        if examples[i].history not in seen:
            seen.add(examples[i].history)
            taken.append(i)
            if len(taken) == batch:
                return [examples[j] for j in taken]
    rest = [i for i in order if i not in set(taken)]
    return [examples[j] for j in taken + rest[: batch - len(taken)]]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="deltamem train-adapter", description=__doc__.split("\n")[0],
                                epilog="example: deltamem train-adapter --out adapter.safetensors "
                                       "--synthetic 200 --steps 20 --max-minutes 5")
    a = p.add_argument
    a("--out", required=True, help="output .safetensors file")
    a("--model", default="smollm2", choices=["smollm2", "tiny"])
    a("--synthetic", type=int, default=2000, help="synthetic training episodes")
    a("--distractors", type=float, default=0.5,
      help="probability of each distractor turn next to the asked fact (same person, older value)")
    a("--filler-words", type=int, default=0, help="small talk after the facts, in words")
    a("--locomo-convs", default="", help="LoCoMo dev conversations to mix in, e.g. conv-26")
    a("--regime", default="agent", choices=REGIMES, help="agent: the chat agent's prompt; "
      "state: the question alone")
    a("--top-k", type=int, default=ChatSettings.top_k)
    a("--recent", type=int, default=ChatSettings.recent)
    a("--heldout", type=int, default=128, help="held-out synthetic episodes")
    a("--gap-n", type=int, default=128, help="held-out examples of the stop statistic")
    a("--recall-eval", type=int, default=32, help="held-out episodes decoded for recall")
    a("--steps", type=int, default=2000, help="step budget")
    a("--batch", type=int, default=16)
    a("--max-tokens", type=int, default=1024,
      help="padded read tokens per micro-batch (own + other pass; bounds the activations held "
           "for backward: about 1.3 MB per token on SmolLM2; 0: the whole batch at once)")
    a("--lr", type=float, default=2e-3)
    a("--warmup", type=int, default=100)
    a("--min-lr-ratio", type=float, default=0.1)
    a("--margin", type=float, default=0.5, help="hinge margin on the own-vs-other gap (nats/token)")
    a("--contrast-weight", type=float, default=1.0, help="0: plain answer cross-entropy")
    a("--delta-init", type=float, default=0.01, help="std of the initial W_Δq, W_Δo")
    a("--eval-every", type=int, default=100, help="stop statistic every K steps")
    a("--stop-se", type=float, default=3.0, help="stop once gap > this many standard errors")
    a("--no-early-stop", action="store_true", help="log the stop statistic but run every step")
    a("--seed", type=int, default=0)
    a("--write", default="ssw", choices=["ssw", "tsw"])
    a("--gated", action="store_true")
    a("--max-minutes", type=float, default=0.0,
      help="bound on preparation + training wall time (the final held-out figures follow)")
    a("--checkpoint", default="", help="checkpoint file (default: <out stem>.ckpt.safetensors)")
    a("--checkpoint-every", type=int, default=100)
    a("--resume", default="", help="continue from this checkpoint")
    a("--stop-after", type=int, default=0, help="end this run segment after N steps (checkpointed; "
      "continue with --resume)")
    a("--threads", type=int, default=0, help="torch CPU threads (0: leave as is)")
    a("--device", default="cpu")
    a("--log-every", type=int, default=10)
    return p


def _episodes(args: argparse.Namespace) -> tuple[list[Episode], list[Episode]]:
    kw = {"distractor_prob": args.distractors, "filler_words": args.filler_words}
    train = synthetic_episodes(args.synthetic, seed=args.seed, **kw)
    convs = [c for c in args.locomo_convs.split(",") if c]
    train += [e for e in locomo_episodes() if e.conversation in convs]  # [] without the file
    return train, synthetic_episodes(args.heldout, seed=10_000 + args.seed, **kw)


def _figures(lm: MemLM, args: argparse.Namespace, held_ex: list[Example], held: list[Episode],
             settings: ChatSettings) -> dict[str, Any]:
    from benchmarks.lm_eval import synthetic_recall

    cond = "agent" if args.regime == "agent" else "state"
    out: dict[str, Any] = {"heldout_ce": mean_loss(lm, held_ex, args.batch),
                           "gap": state_gap(lm, held_ex[: args.gap_n], args.batch, args.stop_se)}
    if args.recall_eval:
        out["recall_" + cond] = synthetic_recall(lm, held[: args.recall_eval], cond, settings)
    return out


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    t_start = time.time()
    deadline = t_start + 60 * args.max_minutes if args.max_minutes else math.inf
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    bb = load_smollm2() if args.model == "smollm2" else tiny_llama(args.seed)
    bb.model.to(args.device)
    cfg = DeltaMemConfig.for_backbone(bb, write=args.write, gated=args.gated, delta_init=args.delta_init)
    mem = DeltaMem(cfg, seed=args.seed).to(args.device)
    lm = MemLM(bb, mem)
    settings = ChatSettings(top_k=args.top_k, recent=args.recent, max_new_tokens=16,
                            max_prompt_tokens=min(ChatSettings.max_prompt_tokens, bb.max_positions // 2))
    eps, held = _episodes(args)
    bank = MessageBank()
    train_ex = prepare(lm, eps, regime=args.regime, settings=settings, bank=bank)
    held_ex = prepare(lm, held, regime=args.regime, settings=settings, bank=bank)
    print(f"prepared {len(train_ex)} train / {len(held_ex)} held-out examples, {len(bank)} distinct "
          f"messages, in {time.time() - t_start:.0f}s; δ-mem params {mem.n_params():,}", flush=True)
    opt = torch.optim.AdamW(mem.parameters(), lr=args.lr, weight_decay=0.0)
    ckpt = args.checkpoint or args.out.rsplit(".", 1)[0] + ".ckpt.safetensors"
    progress = _start(args, mem, opt, lambda: _figures(lm, args, held_ex, held, settings))
    progress, step, stopped = _train(args, lm, mem, opt, train_ex, held_ex, progress, ckpt,
                                     deadline)
    if ckpt:
        save_checkpoint(ckpt, mem, opt, progress)
    after = _figures(lm, args, held_ex, held, settings)
    print(f"after: {json.dumps(after)}", flush=True)
    reached = next((g["step"] for g in progress["gaps"] if g["reached"]), None)
    card = _card(args, argv, bb.name, step, stopped, progress, after, reached,
                 len(train_ex), len(held_ex), t_start)
    mem.cpu().save(args.out, card)
    with open(args.out.rsplit(".", 1)[0] + ".json", "w", encoding="utf-8") as f:
        json.dump(card, f, indent=2)
    print(json.dumps({k: v for k, v in card.items() if k != "stop_rule"}, indent=2))
    print("stop rule: " + card["stop_rule"]["rule"] + (f": reached at step {reached}" if reached
                                                       else ": NOT reached"), flush=True)
    return 0


def _start(args: argparse.Namespace, mem: DeltaMem, opt: torch.optim.Optimizer,
           figures: Any) -> dict[str, Any]:
    """The run's progress: the checkpoint's (``--resume``, same settings) or a fresh one
    holding the figures before training."""
    same = {k: getattr(args, k) for k in SAME_ON_RESUME}
    if args.resume:
        progress = load_checkpoint(args.resume, mem, opt)
        for k, v in same.items():
            if progress["args"].get(k) != v:
                raise SystemExit(f"--resume: --{k.replace('_', '-')} is {v!r}, the checkpoint's run "
                                 f"used {progress['args'].get(k)!r}")
        print(f"resumed at step {progress['step']} from {args.resume}", flush=True)
    else:
        progress = {"args": same, "step": 0, "losses": [], "gaps": [], "train_seconds": 0.0,
                    "stopped": None, "before": figures()}
        print(f"before: {json.dumps(progress['before'])}", flush=True)
    return progress


def _train(args: argparse.Namespace, lm: MemLM, mem: DeltaMem, opt: torch.optim.Optimizer,
           train_ex: list[Example], held_ex: list[Example], progress: dict[str, Any],
           ckpt: str, deadline: float) -> tuple[dict[str, Any], int, str | None]:
    """Train until ``args.steps``, the stop rule, ``--stop-after`` or the deadline; returns
    ``(progress, last step, why it stopped early or None)``."""
    t1, step = time.time(), progress["step"]
    stopped = "stop_rule" if progress["stopped"] == "stop_rule" else None  # a rule once met stays met
    while step < args.steps and stopped is None:
        if time.time() > deadline:
            stopped = "max_minutes"
            break
        if args.stop_after and step - progress["step"] >= args.stop_after:
            stopped = "stop_after"
            break
        step += 1
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args.lr, args.warmup, args.steps, args.min_lr_ratio)
        stats = train_step(lm, opt, draw(train_ex, args.batch, args.seed, step), args.margin,
                           args.contrast_weight, args.max_tokens)
        progress["losses"].append(stats["loss"])
        if step % args.log_every == 0:
            print(f"step {step} lr {opt.param_groups[0]['lr']:.2e} "
                  + " ".join(f"{k} {v:.4f}" for k, v in stats.items())
                  + f" ({(time.time() - t1) / max(1, step - progress['step']):.2f}s/step)", flush=True)
        if step % args.eval_every == 0 or step == args.steps:
            if _stop_check(args, lm, held_ex, progress, step):
                stopped = "stop_rule"
        if stopped:
            break
        if ckpt and step % args.checkpoint_every == 0 and step < args.steps:
            save_checkpoint(ckpt, mem, opt, _done(progress, step, None, time.time() - t1))
    return _done(progress, step, stopped, time.time() - t1), step, stopped


def _stop_check(args: argparse.Namespace, lm: MemLM, held_ex: list[Example],
                progress: dict[str, Any], step: int) -> bool:
    """The stop statistic at ``step``, logged; whether the stop rule now ends the run."""
    gap = state_gap(lm, held_ex[: args.gap_n], args.batch, args.stop_se)
    progress["gaps"].append({"step": step, **gap})
    print(f"stop statistic at step {step}: own {gap['ce_own']:.4f} other {gap['ce_other']:.4f} "
          f"gap {gap['gap']:+.4f} ± {gap['se']:.4f} s.e. (n={gap['n']}; rule: gap > "
          f"{args.stop_se:g} s.e.: {'reached' if gap['reached'] else 'not reached'})", flush=True)
    return bool(gap["reached"] and not args.no_early_stop)


def _card(args: argparse.Namespace, argv: list[str] | None, backbone: str, step: int,
          stopped: str | None, progress: dict[str, Any], after: dict[str, Any],
          reached: int | None, n_train: int, n_held: int, t_start: float) -> dict[str, Any]:
    """The adapter's card: how it was trained, on what, and its figures before and after."""
    return {"command": "deltamem train-adapter " + " ".join(argv if argv is not None else sys.argv[1:]),
            "seed": args.seed, "backbone": backbone, "steps": step, "batch": args.batch, "lr": args.lr,
            "regime": args.regime, "objective": {"margin": args.margin, "weight": args.contrast_weight,
                                                 "delta_init": args.delta_init, "warmup": args.warmup},
            "data": {"synthetic": args.synthetic, "synthetic_seed": args.seed,
                     "distractors": args.distractors, "filler_words": args.filler_words,
                     "locomo_convs": [c for c in args.locomo_convs.split(",") if c],
                     "examples": n_train, "heldout_seed": 10_000 + args.seed},
            "stop_rule": {"rule": f"own-vs-other-state answer CE gap > {args.stop_se:g} s.e. on "
                          f"{min(args.gap_n, n_held)} held-out examples, every "
                          f"{args.eval_every} steps, by step {args.steps}",
                          "reached_at_step": reached, "log": progress["gaps"]},
            "stopped": stopped or "steps", "train_loss_first": progress["losses"][:1],
            "train_loss_last10": sum(progress["losses"][-10:]) / max(1, len(progress["losses"][-10:])),
            "before": progress["before"], "after": after, "device": args.device,
            "train_seconds": round(progress["train_seconds"], 1),
            "wall_seconds_this_run": round(time.time() - t_start, 1), "trained": step > 0}


def _done(progress: dict[str, Any], step: int, stopped: str | None, seconds: float) -> dict[str, Any]:
    """The progress up to ``step``, with this run segment's training seconds added."""
    return dict(progress, step=step, stopped=stopped, train_seconds=progress["train_seconds"] + seconds)


if __name__ == "__main__":
    raise SystemExit(main())
