"""``deltamem eval lm``: what each part of the chat agent contributes, and what δ-mem costs.

Conditions (each question answered greedily by SmolLM2):

- ``none``      — the base model, no history;
- ``full``      — the base model with the whole history in the prompt (the upper bound, only
  where it fits the context: longer histories are counted as not fitting and skipped);
- ``retrieval`` — the base model with the MiniLM-retrieved turns and the recent window;
- ``state``     — the base model with the δ-mem states read in, no history in the prompt;
- ``agent``     — the full chat agent: retrieval + recent window + states (the ablation's whole).

Figures: synthetic recall (a fact told before ``--filler-tokens`` of small talk, asked at the
end; a hit when the normalised answer appears in the reply), LoCoMo dev token F1 by category
(category 5 left out), and prefill/decode tokens/s with and without δ-mem.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import string
import time
from collections import Counter, defaultdict
from typing import Any

import torch

from agent.config import AgentConfig
from agent.lm.chat import ChatAgent, ChatSettings
from agent.lm.episodes import Episode, locomo_episodes, synthetic_episodes

__all__ = ["token_f1", "is_hit", "synthetic_recall", "run_condition", "speed", "main"]

CONDITIONS = ("none", "full", "retrieval", "state", "agent")
STATE_CONDITIONS = {"state", "agent"}  # the conditions that read the δ-mem states


def _norm(s: str) -> str:
    s = "".join(ch for ch in s.lower() if ch not in set(string.punctuation))
    return " ".join(w for w in s.split() if w not in ("a", "an", "the", "and"))


def token_f1(pred: str, gold: str) -> float:
    """SQuAD-style token F1 of normalised strings.

    >>> token_f1("in Lisbon, Portugal", "Lisbon")
    0.5
    """
    p, g = _norm(pred).split(), _norm(gold).split()
    common = sum((Counter(p) & Counter(g)).values())
    if common == 0:
        return 0.0
    prec, rec = common / len(p), common / len(g)
    return 2 * prec * rec / (prec + rec)


def is_hit(pred: str, gold: str) -> bool:
    """The normalised answer appears as whole words in the normalised reply."""
    g = _norm(gold)
    return bool(g) and re.search(rf"(^| ){re.escape(g)}($| )", _norm(pred)) is not None


def _agent(lm: Any, ep: Episode, settings: ChatSettings, write_state: bool = True) -> ChatAgent:
    """A chat agent that has heard ``ep``'s history.

    ``write_state=False`` keeps the turns as explicit memory only (zero states): enough for the
    conditions that never read the states, and it skips the LM pass over the whole history.
    """
    agent = ChatAgent(AgentConfig.from_dict({"kind": "chat"}), lm=lm, settings=settings)
    turns, speakers = [t for _, t in ep.turns], [s for s, _ in ep.turns]
    if write_state:
        agent.learn_many(turns, speakers=speakers)
    else:
        layers, _ = agent.initial_state(agent.config, agent.dtype, agent.state_shape)
        agent.load_state(layers, agent.turn_labels(turns, speakers))
    return agent


def run_condition(lm: Any, agent: ChatAgent, ep: Episode, cond: str,
                  max_new_tokens: int) -> str | None:
    """One reply under ``cond``; None when the full history does not fit the context."""
    if cond == "none":
        return lm.answer(ep.question, None, None, max_new_tokens)
    if cond == "full":
        ids = lm.prompt(ep.question, agent.labels)
        if len(ids) + max_new_tokens > lm.bb.max_positions:
            return None
        return lm.answer(ep.question, None, agent.labels, max_new_tokens)
    if cond == "retrieval":
        lines, _ = agent.context(ep.question, agent.settings.top_k)
        return lm.answer(ep.question, None, lines, max_new_tokens)
    if cond == "state":
        return lm.answer(ep.question, agent._states(), None, max_new_tokens)
    if cond == "agent":
        return str(agent.predict_many([ep.question])[0]["text"])
    raise ValueError(f"unknown condition {cond!r}")


def synthetic_recall(lm: Any, episodes: list[Episode], cond: str = "state",
                     settings: ChatSettings | None = None) -> dict[str, float]:
    """Recall of one condition over synthetic episodes: ``{"recall", "n"}``."""
    settings = settings or ChatSettings(max_new_tokens=16)
    hits, n = 0, 0
    for ep in episodes:
        agent = _agent(lm, ep, settings, cond in STATE_CONDITIONS)
        reply = run_condition(lm, agent, ep, cond, settings.max_new_tokens)
        if reply is not None:
            n += 1
            hits += is_hit(reply, ep.answer)
    return {"recall": hits / n if n else float("nan"), "n": float(n)}


def evaluate_episodes(lm: Any, episodes: list[Episode], conds: list[str], settings: ChatSettings,
                      metric: str) -> dict[str, dict[str, list[float]]]:
    """Scores per condition and category; one agent per distinct history."""
    scores: dict[str, dict[str, list[float]]] = {c: defaultdict(list) for c in conds}
    agents: dict[Any, ChatAgent] = {}
    write_state = bool(set(conds) & STATE_CONDITIONS)
    for ep in episodes:
        key = tuple(ep.turns)
        if key not in agents:
            agents.clear()
            agents[key] = _agent(lm, ep, settings, write_state)
        for c in conds:
            reply = run_condition(lm, agents[key], ep, c, settings.max_new_tokens)
            if reply is None:
                continue
            s = float(is_hit(reply, ep.answer)) if metric == "recall" else token_f1(reply, ep.answer)
            scores[c][ep.category].append(s)
            scores[c]["all"].append(s)
    return scores


def _table(title: str, scores: dict[str, dict[str, list[float]]]) -> str:
    cats = sorted({k for v in scores.values() for k in v if k != "all"}) + ["all"]
    rows = [f"\n{title}", "| condition | " + " | ".join(cats) + " |",
            "|---" * (len(cats) + 1) + "|"]
    for c, by in scores.items():
        cells = [f"{statistics.mean(by[k]):.3f} (n={len(by[k])})" if by.get(k) else "n/a" for k in cats]
        rows.append(f"| {c} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


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


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="deltamem eval lm", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="CPU smoke: <= 6 synthetic episodes with <= 500 filler tokens, 3 LoCoMo "
                        "questions per category from the first conversation")
    p.add_argument("--adapter", default=None, help="δ-mem safetensors (default: shipped or untrained)")
    p.add_argument("--synthetic", type=int, default=50)
    p.add_argument("--filler-tokens", type=int, default=10_000)
    p.add_argument("--locomo-convs", default="conv-30,conv-41")
    p.add_argument("--locomo-per-category", type=int, default=0, help="0: every question")
    p.add_argument("--conditions", default=",".join(CONDITIONS))
    p.add_argument("--no-speed", action="store_true")
    p.add_argument("--speed-only", action="store_true", help="only the tokens/s figures")
    p.add_argument("--speed-repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out", default=None, help="write the figures as JSON here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from agent.lm.runtime import get_lm

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.synthetic = min(args.synthetic, 6)
        args.filler_tokens = min(args.filler_tokens, 500)  # a 10k-token history takes ~25 min on 1 CPU
        args.locomo_convs = args.locomo_convs.split(",")[0]
        args.locomo_per_category = args.locomo_per_category or 3
    lm = get_lm(args.adapter)
    print(f"backbone {lm.bb.name}; adapter: {json.dumps(lm.card)[:300]}", flush=True)
    conds = [c for c in args.conditions.split(",") if c]
    settings = ChatSettings(max_new_tokens=24)
    figures: dict[str, Any] = {"adapter_card": lm.card}
    if not args.speed_only:
        words = int(args.filler_tokens / 1.3)
        syn = synthetic_episodes(args.synthetic, seed=20_000, filler_words=words)
        t0 = time.time()
        figures["synthetic"] = evaluate_episodes(lm, syn, conds, settings, "recall")
        print(_table(f"Synthetic recall, facts then ~{args.filler_tokens} tokens of small talk "
                     f"({time.time() - t0:.0f}s)", figures["synthetic"]), flush=True)
        convs = [c for c in args.locomo_convs.split(",") if c]
        loc = [e for e in locomo_episodes() if e.conversation in convs]
        if args.locomo_per_category:
            taken: Counter[tuple[str, str]] = Counter()
            keep = []
            for e in loc:
                if taken[(e.conversation, e.category)] < args.locomo_per_category:
                    taken[(e.conversation, e.category)] += 1
                    keep.append(e)
            loc = keep
        if loc:
            t0 = time.time()
            figures["locomo"] = evaluate_episodes(lm, loc, conds, settings, "f1")
            print(_table(f"LoCoMo dev token F1 ({','.join(convs)}; {time.time() - t0:.0f}s)",
                         figures["locomo"]), flush=True)
        else:
            print("LoCoMo dev data not found: skipped")
    if not args.no_speed:
        figures["speed"] = speed(lm, repeats=args.speed_repeats)
        print(f"\n| measure | value |\n|---|---|\n| torch threads | {torch.get_num_threads()} |")
        for k, v in figures["speed"].items():
            if k == "repeats":
                print(f"| repeats (interleaved; medians) | {v:.0f} |")
            else:
                print(f"| {k} | {v:.1%} |" if "overhead" in k else f"| {k} tok/s | {v:.1f} |")
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(figures, f, indent=2, default=lambda o: dict(o))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
