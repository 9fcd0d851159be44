"""``python -m benchmarks.clinc_compute [--sizes 10,25,64,100,500] [--memory JSON ...]``: the
compute target of CLINC150 in one run — learners against retraining after every micro-batch.

The retraining reference (scikit-learn LogisticRegression, C = 10, refitted on everything seen)
is fitted at 10 checkpoints of the random-order stream and its CPU time interpolated over every
micro-batch (:func:`benchmarks.eval_clinc.retrain_every_batch_seconds`, as in ``deltamem eval
clinc``); then each learner streams the same 15,000 events at each micro-batch size. By default
the two that meet the accuracy targets: rule ``softmax`` (rehearsing 7 earlier events per write,
float32 state) and ``rls`` (λ = 0.01, a 3072-d lift, float32 state). Everything is timed in CPU
seconds with one BLAS thread in this one process, so the ratios are measured side by side; the
full table with every method and accuracy is ``deltamem eval clinc``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import numpy as np

ACCURATE = {"rule": "rls", "ridge": 0.01, "lift_dim": 3072, "dtype": "float32"}
SOFTMAX = {"rule": "softmax", "dtype": "float32", "reservoir": None}  # every key kept


def measure(memories: list[dict[str, Any]], sizes: list[int], quick: bool = False) -> list[list[Any]]:
    """Rows ``[learner, micro-batch, retraining CPU s, learner CPU s, ratio, test accuracy]``."""
    from benchmarks.eval_baselines import BatchLogistic, DeltaMem
    from benchmarks.eval_clinc import learn_cpu, load, order, retrain_every_batch_seconds, stream

    data = load(quick)
    idx = order(data, "random")
    first = data["domain_order"][0]
    ref = stream(BatchLogistic(C=10.0), data, idx, 100, 10, first)  # fits at 10 checkpoints
    rows = []
    for memory in memories:
        for b in sizes:
            method = DeltaMem(dict(memory))
            cpu = learn_cpu(method, data, idx, b)
            acc = float(np.mean(np.array(method.predict_many(data["Xte"])) == np.array(data["yte"])))
            retrain = retrain_every_batch_seconds(ref["fit_cpu"], -(-len(idx) // b), b)
            rows.append([json.dumps(memory), b, retrain, cpu, retrain / max(cpu, 1e-9), acc])
            print(f"  {json.dumps(memory)} b={b}: retraining {retrain:.0f} CPU s, learner "
                  f"{cpu:.2f} CPU s", file=sys.stderr, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    from agent.memory.backend import set_blas_threads

    ap = argparse.ArgumentParser(prog="python -m benchmarks.clinc_compute",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10,25,64,100,500", help="micro-batch sizes")
    ap.add_argument("--memory", action="append", help="a learner's memory settings (JSON; "
                    "repeat for several; default: the softmax and the 3072-d rls learners)")
    ap.add_argument("--quick", action="store_true", help="the CI subsample of CLINC150")
    args = ap.parse_args(argv)
    set_blas_threads(1)
    memories: list[dict[str, Any]] = ([json.loads(m) for m in args.memory] if args.memory
                                      else [SOFTMAX, ACCURATE])
    rows = measure(memories, [int(v) for v in args.sizes.split(",")], args.quick)
    print("CLINC150 random order, one BLAS thread, CPU s")
    print("| learner memory | micro-batch | retraining after every batch | learner | "
          "retraining ÷ learner | test acc |")
    print("| --- | --- | --- | --- | --- | --- |")
    for memory, b, retrain, cpu, ratio, acc in rows:
        print(f"| `{memory}` | {b} | {retrain:.0f} | {cpu:.2f} | {ratio:.0f}× | {acc:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
