"""``deltamem eval lm``: what each part of the chat agent contributes, and what δ-mem costs.

Conditions (each question answered greedily by the LM):

- ``none``        — the base model, no history;
- ``full``        — the base model with the whole history in the prompt (the upper bound, only
  where it fits the context: longer histories are counted as not fitting and skipped);
- ``retrieval``   — the base model with the chat agent's prompt (MiniLM-retrieved turns + the
  recent window): today's agent without an adapter;
- ``state``       — the δ-mem states read in, no history in the prompt;
- ``agent``       — the full chat agent: its prompt + the conversation's own states;
- ``agent-other`` — the same prompt with **another conversation's** states (the next distinct
  history of the set): the control that isolates what the state carries;
- ``agent-zero``  — the same prompt with all-zero states (the adapter reads nothing: by
  construction the ``retrieval`` replies; a check that the adapter adds nothing on its own);
- ``agent-norecent`` — the agent with no recent window (the retrieved turns alone; the
  default since session 14);
- ``agent-recent4`` — the agent with the last 4 turns always in the prompt (the old default);
- ``agent-hitslast`` — the agent with the recent window first and the retrieved turns nearest
  the question (``ChatSettings.hits_last``). The two prompt variants are paired with ``agent``:
  same agents, same questions.

Figures: recall (the normalised answer appears in the reply) and SQuAD token F1 per condition
and category, each with n and its standard error, on synthetic episodes (a fact told before
``--filler-tokens`` of small talk) and on LoCoMo dev conversations (category 5 left out); and
prefill/decode tokens/s with and without δ-mem (:mod:`agent.lm.speed`).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import string
import time
from collections import Counter, defaultdict
from dataclasses import replace
from typing import Any

import torch

from agent.config import AgentConfig
from agent.lm.chat import ChatAgent, ChatSettings
from agent.lm.episodes import Episode, locomo_episodes, synthetic_episodes
from agent.lm.speed import speed

__all__ = ["token_f1", "is_hit", "synthetic_recall", "run_condition", "evaluate_episodes",
           "speed", "main", "CONDITIONS"]

CONDITIONS = ("none", "full", "retrieval", "state", "agent", "agent-other", "agent-zero",
              "agent-norecent", "agent-recent4", "agent-hitslast")
# the agent's own prompt, and the settings the paired prompt variants change
PROMPT_VARIANTS: dict[str, dict[str, Any]] = {
    "agent": {}, "agent-norecent": {"recent": 0}, "agent-recent4": {"recent": 4},
    "agent-hitslast": {"hits_last": True}}
STATE_CONDITIONS = {"state", "agent-other", *PROMPT_VARIANTS}  # need written states
METRICS = ("recall", "f1")


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


def run_condition(lm: Any, agent: ChatAgent, ep: Episode, cond: str, max_new_tokens: int,
                  other: Any = None) -> str | None:
    """One reply under ``cond``; None when it cannot be asked (the full history does not fit
    the context, or ``agent-other`` without another conversation's ``other`` states)."""
    if cond == "none":
        return lm.answer(ep.question, None, None, max_new_tokens)
    if cond == "full":
        ids = lm.prompt(ep.question, agent.labels)
        if len(ids) + max_new_tokens > lm.bb.max_positions:
            return None
        return lm.answer(ep.question, None, agent.labels, max_new_tokens)
    if cond == "state":
        return lm.answer(ep.question, agent._states(), None, max_new_tokens)
    if cond in PROMPT_VARIANTS:
        kept = agent.settings
        agent.settings = replace(kept, **PROMPT_VARIANTS[cond])
        try:
            return str(agent.predict_many([ep.question])[0]["text"])
        finally:
            agent.settings = kept
    states = {"retrieval": None, "agent-other": other, "agent-zero": lm.mem.zero_states()}
    if cond not in states:
        raise ValueError(f"unknown condition {cond!r}; expected one of {CONDITIONS}")
    if cond == "agent-other" and other is None:
        return None
    ids, _ = agent.prompt(ep.question, agent.settings.top_k)  # the chat agent's own prompt
    return lm.bb.decode(lm.generate(ids, states[cond], max_new_tokens)[0]).strip()


def synthetic_recall(lm: Any, episodes: list[Episode], cond: str = "state",
                     settings: ChatSettings | None = None) -> dict[str, float]:
    """Recall of one condition over synthetic episodes: ``{"recall", "se", "n"}``."""
    settings = settings or ChatSettings(max_new_tokens=16)
    scores = evaluate_episodes(lm, episodes, [cond], settings)["recall"][cond].get("all", [])
    mean, se = _mean_se(scores)
    return {"recall": mean, "se": se, "n": float(len(scores))}


def evaluate_episodes(lm: Any, episodes: list[Episode], conds: list[str],
                      settings: ChatSettings) -> dict[str, dict[str, dict[str, list[float]]]]:
    """Scores ``{metric: {condition: {category or "all": [score per question]}}}`` for both
    metrics (recall and token F1); one agent per distinct history. ``agent-other`` reads the
    states of the next distinct history (cyclically); with one history it is not asked."""
    unknown = [c for c in conds if c not in CONDITIONS]
    if unknown:
        raise ValueError(f"unknown conditions {unknown}; expected some of {CONDITIONS}")
    write_state = bool(set(conds) & STATE_CONDITIONS)
    order: dict[Any, int] = {}
    agents: list[ChatAgent] = []
    for ep in episodes:
        key = tuple(ep.turns)
        if key not in order:
            order[key] = len(agents)
            agents.append(_agent(lm, ep, settings, write_state))
    scores: dict[str, dict[str, dict[str, list[float]]]] = {
        m: {c: defaultdict(list) for c in conds} for m in METRICS}
    for ep in episodes:
        h = order[tuple(ep.turns)]
        other = agents[(h + 1) % len(agents)]._states() if len(agents) > 1 else None
        for c in conds:
            reply = run_condition(lm, agents[h], ep, c, settings.max_new_tokens, other)
            if reply is None:
                continue
            for m, s in (("recall", float(is_hit(reply, ep.answer))), ("f1", token_f1(reply, ep.answer))):
                scores[m][c][ep.category].append(s)
                scores[m][c]["all"].append(s)
    return scores


def _mean_se(xs: list[float]) -> tuple[float, float]:
    if not xs:
        return float("nan"), float("nan")
    se = statistics.stdev(xs) / math.sqrt(len(xs)) if len(xs) > 1 else float("nan")
    return statistics.fmean(xs), se


def _table(title: str, scores: dict[str, dict[str, list[float]]]) -> str:
    """Markdown: one row per condition, ``mean ± s.e. (n)`` per category and overall."""
    cats = sorted({k for v in scores.values() for k in v if k != "all"}) + ["all"]
    rows = [f"\n{title}", "| condition | " + " | ".join(cats) + " |",
            "|---" * (len(cats) + 1) + "|"]
    for c, by in scores.items():
        cells = []
        for k in cats:
            mean, se = _mean_se(by.get(k, []))
            cells.append(f"{mean:.3f} ± {se:.3f} (n={len(by[k])})" if by.get(k) else "n/a")
        rows.append(f"| {c} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _non_negative(text: str) -> int:
    n = int(text)
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {n}")
    return n


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="deltamem eval lm", description=__doc__.split("\n")[0])
    a = p.add_argument
    a("--quick", action="store_true", help="CPU smoke: <= 6 synthetic episodes with <= 500 filler "
      "tokens, 3 LoCoMo questions per category from each of the first two conversations")
    a("--model", default="smollm2", choices=["smollm2", "tiny"], help="tiny: a random-weight "
      "test model (mechanism checks only)")
    a("--adapter", default=None, help="δ-mem safetensors (default: shipped or untrained)")
    a("--synthetic", type=int, default=50)
    a("--filler-tokens", type=int, default=10_000)
    a("--locomo-convs", default="conv-30,conv-41", help="held out from training (conv-26)")
    a("--locomo-per-category", type=int, default=0, help="0: every question")
    a("--conditions", default=",".join(CONDITIONS))
    a("--no-speed", action="store_true")
    a("--speed-only", action="store_true", help="only the tokens/s figures")
    a("--speed-repeats", type=int, default=3)
    a("--threads", type=int, default=0)
    a("--recent", type=_non_negative, default=None,
      help="the chat agent's recent window (ChatSettings.recent; default its own, 0)")
    a("--out", default=None, help="write the figures as JSON here")
    return p


def _lm(args: argparse.Namespace) -> Any:
    from agent.lm.deltamem import check_adapter_file

    if args.adapter:
        check_adapter_file(args.adapter)
    if args.model == "smollm2":
        from agent.lm.runtime import get_lm

        return get_lm(args.adapter)
    from agent.lm.backbone import tiny_llama
    from agent.lm.deltamem import DeltaMem, DeltaMemConfig
    from agent.lm.runtime import MemLM

    bb = tiny_llama(0)
    if args.adapter:
        mem, card = DeltaMem.load(args.adapter)
    else:  # random small corrections, so that the states change the replies
        mem, card = DeltaMem(DeltaMemConfig.for_backbone(bb, delta_init=0.05)), {"trained": False}
    return MemLM(bb, mem, card)


def _report(name: str, title: str, scores: dict[str, Any], figures: dict[str, Any]) -> None:
    figures[name] = {"scores": scores, "summary": {
        m: {c: dict(zip(("mean", "se"), _mean_se(by.get("all", [])), strict=True),
                    n=len(by.get("all", []))) for c, by in per.items()} for m, per in scores.items()}}
    for m, label in (("recall", "recall"), ("f1", "token F1")):
        print(_table(f"{title}: {label}, mean ± s.e. (n)", scores[m]), flush=True)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.synthetic = min(args.synthetic, 6)
        args.filler_tokens = min(args.filler_tokens, 500)  # the write pass over a long history is slow on a CPU
        args.locomo_convs = ",".join(args.locomo_convs.split(",")[:2])
        args.locomo_per_category = args.locomo_per_category or 3
    lm = _lm(args)
    print(f"backbone {lm.bb.name}; adapter: {json.dumps(lm.card)[:300]}", flush=True)
    conds = [c for c in args.conditions.split(",") if c]
    settings = ChatSettings(max_new_tokens=24,
                            max_prompt_tokens=min(ChatSettings.max_prompt_tokens, lm.bb.max_positions // 2),
                            **({} if args.recent is None else {"recent": args.recent}))
    if args.recent is not None:
        print(f"recent window: {settings.recent} turns", flush=True)
    figures: dict[str, Any] = {"adapter_card": lm.card, "conditions": conds}
    if not args.speed_only:
        words = int(args.filler_tokens / 1.3)
        syn = synthetic_episodes(args.synthetic, seed=20_000, filler_words=words)
        t0 = time.time()
        scores = evaluate_episodes(lm, syn, conds, settings)
        _report("synthetic", f"Synthetic, facts then ~{args.filler_tokens} tokens of small talk "
                f"({time.time() - t0:.0f}s)", scores, figures)
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
            scores = evaluate_episodes(lm, loc, conds, settings)
            _report("locomo", f"LoCoMo dev ({','.join(convs)}; {time.time() - t0:.0f}s)", scores, figures)
        else:
            print("LoCoMo dev: no conversations selected or data not found: skipped")
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
