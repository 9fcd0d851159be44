"""LoCoMo: conversation turns streamed in order into a recall agent; recall@5 of evidence turns.

Each of the conversations in ``locomo_dev.json`` gets its own recall agent. Every turn is one
event whose input and answer are the turn (``"<speaker>: <text>"``), so the answers are the turns
themselves (the explicit memory) and the read-out ``S k(question)`` is matched against them.
For each question with evidence, recall@5 = the share of its evidence turns among the top 5
answers; averaged by category (1 multi-hop, 2 temporal, 3 open-domain, 4 single-hop,
5 adversarial). The vector store ranks the turns by the cosine of their embedding with the
question's (every turn kept).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.eval_common import data_dir, embed_texts, md_table

FILES = ("locomo_dev.json",)
CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop", 5: "adversarial"}
CONFIGS: list[dict] = [
    {"rule": "delta", "beta": 1.0},
    {"rule": "delta", "beta": 1.0, "lift_dim": 4096},
    {"rule": "rls", "ridge": 0.1},
]


def load(quick: bool) -> list[dict[str, Any]]:
    convs = json.loads((data_dir() / FILES[0]).read_text())
    out = []
    for c in convs[:1] if quick else convs:
        conv = c["conversation"]
        turns = []
        for s in range(1, 100):
            for t in conv.get(f"session_{s}", []):
                turns.append((t["dia_id"], f"{t['speaker']}: {t['text']}"))
        qs = [q for q in c["qa"] if q.get("evidence")]
        out.append({"id": c["sample_id"], "turns": turns, "qa": qs})
    return out


def _ranks_memory(memory: dict, turns: list[tuple[str, str]], questions: list[str],
                  batch: int = 32, k: int = 5) -> list[list[str]]:
    from agent.config import AgentConfig
    from agent.model import MemoryAgent

    agent = MemoryAgent(AgentConfig.from_dict({"kind": "recall", "encoder": "minilm", "memory": memory}))
    texts = [t for _, t in turns]
    ids_of: dict[str, list[str]] = {}
    for did, t in turns:
        ids_of.setdefault(t, []).append(did)
    embed_texts(texts, tag="locomo-turns", verbose=False)
    for s in range(0, len(texts), batch):
        agent.learn_many(texts[s : s + batch], texts[s : s + batch])
    out = []
    for p in agent.predict_many(questions, top_k=k):
        out.append([d for lab, _ in p["top"] for d in ids_of[lab]][: max(k, 1)])
    return out


def _ranks_store(turns: list[tuple[str, str]], questions: list[str], k: int = 5) -> list[list[str]]:
    T = embed_texts([t for _, t in turns], tag="locomo-turns", verbose=False).astype(np.float64)
    Q = embed_texts(questions, tag="locomo-questions", verbose=False).astype(np.float64)
    S = Q @ T.T  # (q, turns)
    return [[turns[j][0] for j in np.argsort(-row, kind="stable")[:k]] for row in S]


def recall_at(ranked: list[str], evidence: list[str]) -> float:
    ev = set(evidence)
    return len(ev & set(ranked)) / len(ev)


def run(out: Path, quick: bool = False, configs: list[dict] | None = None) -> dict[str, Any]:
    convs = load(quick)
    methods = [("deltamem recall " + " ".join(f"{k}={v}" for k, v in c.items()), c)
               for c in (configs or CONFIGS)] + [("vector store (cosine top-5)", None)]
    scores: dict[str, dict[int, list[float]]] = {name: {} for name, _ in methods}
    for conv in convs:
        questions = [q["question"] for q in conv["qa"]]
        for name, cfg in methods:
            ranks = (_ranks_store(conv["turns"], questions) if cfg is None
                     else _ranks_memory(cfg, conv["turns"], questions))
            for q, r in zip(conv["qa"], ranks, strict=True):
                scores[name].setdefault(int(q["category"]), []).append(recall_at(r, q["evidence"]))
    cats = sorted({c for s in scores.values() for c in s})
    rows = []
    for name, _ in methods:
        s = scores[name]
        allv = [v for c in cats for v in s.get(c, [])]
        rows.append([name] + [float(np.mean(s[c])) if s.get(c) else "" for c in cats]
                    + [float(np.mean(allv))])
        print(f"  locomo {name:45s} " + " ".join(f"{x:.3f}" if isinstance(x, float) else x
                                                    for x in rows[-1][1:]), flush=True)
    n_q = {c: len(scores[methods[0][0]].get(c, [])) for c in cats}
    header = ["method"] + [f"{CATEGORIES.get(c, c)} (n={n_q[c]})" for c in cats] + ["all"]
    return {"name": "locomo", "markdown": md_table(header, rows), "plots": [], "results": scores}
