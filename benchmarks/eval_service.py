"""``deltamem eval <task> --service URL --key KEY``: the same stream through the real service.

A CLINC150 subsample (texts, so the service encodes them with its own MiniLM) is sent to a
running deltamem service with :class:`client.Client`, and the same events go through the
in-process :class:`agent.model.MemoryAgent` with the same config. After the service reports every
event applied, both answer the same test questions; the report gives both accuracies, the share
of identical labels and the largest score difference (float rounding only: micro-batch boundaries
do not change the result).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.eval_common import md_table

FILES = ("clinc150_data_full.json", "clinc150_domains.json")
CONFIGS: list[dict[str, Any]] = [
    {"rule": "delta"},
    {"rule": "rls", "ridge": 0.1},
    # the accurate learner of EVAL.md: wide keys, float32 state, pending rows in the service
    {"rule": "rls", "ridge": 0.01, "lift_dim": 3072, "dtype": "float32"},
    # the cheap accurate learner: rule softmax, rehearsing 7 earlier events per write
    {"rule": "softmax", "dtype": "float32"},
]
PREDICT_INPUTS = 20  # the service's default DELTAMEM_MAX_PREDICT_INPUTS


def _subsample(n_train: int, n_test: int, seed: int = 0) -> tuple[list[str], list[str], list[str], list[str]]:
    import json

    from benchmarks.eval_common import data_dir

    d = json.loads((data_dir() / FILES[0]).read_text())
    rng = np.random.default_rng(seed)
    tr = [d["train"][i] for i in rng.permutation(len(d["train"]))[:n_train]]
    te = [d["test"][i] for i in rng.permutation(len(d["test"]))[:n_test]]
    return [t for t, _ in tr], [y for _, y in tr], [t for t, _ in te], [y for _, y in te]


def _wait_applied(client: Any, agent_id: str, n: int, timeout_s: float = 600.0) -> Any:
    t0 = time.monotonic()
    while True:
        a = client.get_agent(agent_id)
        if a.events_applied >= n:
            return a
        if time.monotonic() - t0 > timeout_s:
            raise TimeoutError(f"service applied {a.events_applied}/{n} events in {timeout_s:.0f} s")
        time.sleep(0.2)


def run(out: Path, url: str, key: str, quick: bool = False, batch: int = 100,
        sizes: tuple[int, int] | None = None, configs: list[dict[str, Any]] | None = None
        ) -> dict[str, Any]:
    """Stream ``sizes`` = (train, test) utterances (default 3,000 / 1,500; quick 600 / 300)
    through the service for each memory config (default :data:`CONFIGS`)."""
    from agent.config import AgentConfig
    from agent.model import MemoryAgent
    from client import Client

    n_train, n_test = sizes or ((600, 300) if quick else (3000, 1500))
    Xtr, ytr, Xte, yte = _subsample(n_train, n_test)
    rows, results = [], {}
    with Client(url, api_key=key, timeout=300) as client:
        for mem in configs or CONFIGS:
            cfg = AgentConfig.from_dict({"kind": "classifier", "encoder": "minilm", "memory": mem})
            agent = client.create_agent(f"eval-clinc-{mem['rule']}-{int(time.time())}",
                                        kind="classifier", encoder="minilm", memory=mem)
            local = MemoryAgent(cfg)
            t0 = time.perf_counter()
            for s in range(0, len(ytr), batch):
                client.ingest(agent.id, [{"id": f"e{i}", "input": Xtr[i], "target": ytr[i]}
                                         for i in range(s, min(s + batch, len(ytr)))])
            head = _wait_applied(client, agent.id, len(ytr)).head_version
            svc_s = time.perf_counter() - t0
            for s in range(0, len(ytr), batch):
                local.learn_many(Xtr[s : s + batch], ytr[s : s + batch])
            svc, loc = [], local.predict_many(Xte)
            for s in range(0, len(Xte), PREDICT_INPUTS):
                svc.extend(client.predict(agent.id, Xte[s : s + PREDICT_INPUTS],
                                          min_version=head).predictions)
            same = np.mean([a.label == b["label"] for a, b in zip(svc, loc, strict=True)])
            diff = max(abs((a.score or 0.0) - b["score"]) for a, b in zip(svc, loc, strict=True))
            acc_s = np.mean([a.label == y for a, y in zip(svc, yte, strict=True)])
            acc_l = np.mean([b["label"] == y for b, y in zip(loc, yte, strict=True)])
            name = " ".join(f"{k}={v}" for k, v in mem.items())
            results[name] = {"service_acc": acc_s, "local_acc": acc_l, "same": same, "max_diff": diff}
            rows.append([name, len(ytr), float(acc_s), float(acc_l), float(same), f"{diff:.2e}",
                         f"{len(ytr) / svc_s:.0f}"])
            print(f"  service {name}: service {acc_s:.3f} local {acc_l:.3f} same {same:.3f} "
                  f"max |Δscore| {diff:.2e}", flush=True)
    md = md_table(["memory", "events", "service acc", "in-process acc", "same label",
                   "max |score diff|", "service events/s (ingest→applied)"], rows)
    return {"name": "service", "markdown": md, "plots": [], "results": results}
