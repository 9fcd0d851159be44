"""``python -m benchmarks.clinc_reservoir [--caps 8,16,32,64] [--seeds 0,1,2] [--datasets clinc,elec2]``:
the bounded rehearsal memory of rule ``softmax`` against the unbounded one and batch logistic
regression, on CLINC150 (random and class-incremental order) and Elec2 (prequential).

CLINC150: each learner streams the 15,000 training events in micro-batches of 100 (MiniLM keys,
float32 state, the default β and R), once per order seed; the table gives the final test
accuracy, the first domain's, the learning CPU seconds, and the bytes the agent's state holds
after the stream (its layers: ``S`` and the rehearsal memory). Batch logistic regression is fitted
once on all the training events. Elec2: prequential accuracy (predict each micro-batch, then learn
it) of vector agents on the six raw columns standardised with earlier events' statistics, against
logistic regression refitted on everything seen every ``--refit`` events.

This is the evidence for ``memory.reservoir``'s default (``agent/config.py``) in
``benchmarks/EVAL.md``; ``--limit`` / ``--quick`` give smoke runs.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np

from agent.config import DEFAULT_REPLAY, DEFAULT_SOFTMAX_BETA
from benchmarks.eval_baselines import BatchLogistic, DeltaMem


def _state_bytes(method: DeltaMem) -> int:
    layers, _ = method._agent.state
    return int(sum(a.nbytes for a in layers.values()))


def _learners(caps: list[int | None], memory: dict[str, Any], dim: int, encoder: str) -> list[DeltaMem]:
    out = []
    for cap in caps:
        name = "softmax, every event" if cap is None else f"softmax, reservoir {cap}"
        out.append(DeltaMem({"rule": "softmax", "dtype": "float32", **memory, "reservoir": cap},
                            dim=dim, encoder=encoder, name=name))
    return out


def run_clinc(data: dict[str, Any], caps: list[int | None], seeds: list[int], batch: int = 100,
              limit: int | None = None) -> list[list[Any]]:
    """Rows ``[method, order, test mean, test min, first-domain mean, CPU s, state bytes]``."""
    from benchmarks.eval_clinc import learn_cpu, order

    first = np.array([data["intent_domain"][y] == data["domain_order"][0] for y in data["yte"]])
    yte = np.array(data["yte"])
    rows: list[list[Any]] = []
    for kind in ("random", "class-incremental"):
        per: dict[str, list[tuple[float, float, float, int]]] = {}
        for seed in seeds:
            idx = order(data, kind, seed)[:limit]
            for method in _learners(caps, {}, 384, "minilm"):
                cpu = learn_cpu(method, data, idx, batch)
                pred = np.array(method.predict_many(data["Xte"]))
                per.setdefault(method.name, []).append(
                    (float(np.mean(pred == yte)), float(np.mean(pred[first] == yte[first])), cpu,
                     _state_bytes(method)))
                print(f"  {method.name} {kind} seed {seed}: {per[method.name][-1]}", file=sys.stderr,
                      flush=True)
        for name, got in per.items():
            acc = [g[0] for g in got]
            rows.append([name, kind, np.mean(acc), min(acc), np.mean([g[1] for g in got]),
                         np.mean([g[2] for g in got]), int(np.mean([g[3] for g in got]))])
    lr = BatchLogistic()
    idx = np.arange(len(data["ytr"]))[:limit]
    lr.learn_many(data["Xtr"][idx], [data["ytr"][i] for i in idx])
    lr.refit()
    pred = np.array(lr.predict_many(data["Xte"]))
    rows.append([lr.name + ", fitted once", "any", float(np.mean(pred == yte)), float(np.mean(pred == yte)),
                 float(np.mean(pred[first] == yte[first])), lr.fit_cpu[-1][1] if lr.fit_cpu else 0.0,
                 int(sum(x.nbytes for x in lr._X))])
    return rows


def run_elec2(X: np.ndarray, y: list[str], caps: list[int | None], batch: int = 10,
              refit: int = 1000) -> list[list[Any]]:
    """Rows ``[method, prequential accuracy, CPU s, state bytes]``."""
    from benchmarks.eval_elec2 import stream

    rows: list[list[Any]] = []
    for method in _learners(caps, {"lift_dim": 1024}, X.shape[1], "none"):
        out = stream(method, X, y, batch=batch)
        rows.append([method.name + ", lift 1024", out["preq_acc"], out["seconds"], _state_bytes(method)])
        print(f"  elec2 {rows[-1]}", file=sys.stderr, flush=True)
    lr = _RefitLogistic(refit)
    out = stream(lr, X, y, batch=batch)
    rows.append([f"batch logistic regression, refitted every {refit}", out["preq_acc"], out["seconds"],
                 int(sum(x.nbytes for x in lr.inner._X))])
    return rows


class _RefitLogistic:
    """Prequential batch logistic regression: refitted on everything seen every ``every`` events."""

    def __init__(self, every: int):
        self.inner, self.every, self._seen, self._last = BatchLogistic(C=1.0), every, 0, 0

    def learn_many(self, X: np.ndarray, y: list[str]) -> None:
        self.inner.learn_many(X, y)
        self._seen += len(y)
        if self._seen - self._last >= self.every or self.inner._clf is None:
            self.inner.refit()
            self._last = self._seen

    def predict_many(self, X: np.ndarray) -> list[str]:
        return self.inner.predict_many(X)


def main(argv: list[str] | None = None) -> int:
    from agent.memory.backend import set_blas_threads
    from benchmarks.eval_common import md_table

    ap = argparse.ArgumentParser(prog="python -m benchmarks.clinc_reservoir",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--caps", default="8,16,32,64", help="reservoir caps; 'none' adds the unbounded rule")
    ap.add_argument("--seeds", default="0,1,2", help="CLINC150 stream order seeds")
    ap.add_argument("--datasets", default="clinc,elec2")
    ap.add_argument("--quick", action="store_true", help="the CI subsample of CLINC150, 4,000 Elec2 events")
    ap.add_argument("--limit", type=int, default=None, help="stream only the first N events (smoke)")
    ap.add_argument("--refit", type=int, default=1000, help="Elec2: logistic regression refit period")
    args = ap.parse_args(argv)
    set_blas_threads(1)
    caps: list[int | None] = [None] + [int(c) for c in args.caps.split(",") if c != "none"]
    if "clinc" in args.datasets:
        from benchmarks.eval_clinc import load

        rows = run_clinc(load(args.quick), caps, [int(s) for s in args.seeds.split(",")],
                         limit=args.limit)
        print(f"CLINC150, rule softmax (float32, β {DEFAULT_SOFTMAX_BETA}, R {DEFAULT_REPLAY}), "
              f"micro-batches of 100, order seeds {args.seeds}")
        print(md_table(["method", "order", "test acc (mean / min)", "first domain", "learn CPU s",
                        "state bytes after the stream"],
                       [[m, o, f"{t:.3f} / {tm:.3f}", f"{f:.3f}", f"{c:.2f}", f"{b:,}"]
                        for m, o, t, tm, f, c, b in rows]))
    if "elec2" in args.datasets:
        from benchmarks.eval_elec2 import load as load_elec2

        X, y = load_elec2(args.quick)
        X, y = X[:args.limit], y[:args.limit]
        rows = run_elec2(X, y, caps, refit=args.refit)
        print(f"Elec2, {len(y):,} events, prequential, micro-batches of 10")
        print(md_table(["method", "prequential acc", "CPU s", "state bytes after the stream"],
                       [[m, f"{a:.3f}", f"{c:.2f}", f"{b:,}"] for m, a, c, b in rows]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
