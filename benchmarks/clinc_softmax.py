"""``python -m benchmarks.clinc_softmax [--betas 0.3,0.5,0.8] [--replays 0,3,7,15,31] [--seeds 0,1,2]``:
the settings of rule ``softmax`` on CLINC150, in both orders and over several stream orders.

For each (β, R) the learner streams the 15,000 training events in micro-batches of 100, in random
and in class-incremental order (domains in the data set's order, events shuffled inside a domain),
once per order seed; the table gives the mean and spread of the final test accuracy, of the
accuracy on the first domain, and the CPU seconds of learning (one BLAS thread). This is the
evidence for the defaults (``agent/config.py``: β 0.8, R 7) in ``benchmarks/EVAL.md``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np


def run(betas: list[float], replays: list[int], seeds: list[int], dtype: str = "float32",
        quick: bool = False, batch: int = 100) -> list[list[Any]]:
    """Rows ``[β, R, order, test mean, test min, first mean, first min, CPU s mean]``."""
    from benchmarks.eval_baselines import DeltaMem
    from benchmarks.eval_clinc import learn_cpu, load, order

    data = load(quick)
    first = np.array([data["intent_domain"][y] == data["domain_order"][0] for y in data["yte"]])
    yte = np.array(data["yte"])
    rows = []
    for beta in betas:
        for R in replays:
            for kind in ("random", "class-incremental"):
                test, fst, cpu = [], [], []
                for seed in seeds:
                    idx = order(data, kind, seed)
                    method = DeltaMem({"rule": "softmax", "beta": beta, "replay": R, "dtype": dtype,
                                       "reservoir": None})  # every key kept
                    cpu.append(learn_cpu(method, data, idx, batch))
                    pred = np.array(method.predict_many(data["Xte"]))
                    test.append(float(np.mean(pred == yte)))
                    fst.append(float(np.mean(pred[first] == yte[first])))
                rows.append([beta, R, kind, np.mean(test), min(test), np.mean(fst), min(fst), np.mean(cpu)])
                print(f"  β={beta} R={R} {kind}: test {np.mean(test):.4f} first {np.mean(fst):.4f} "
                      f"{np.mean(cpu):.2f} CPU s", file=sys.stderr, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    from agent.memory.backend import set_blas_threads

    ap = argparse.ArgumentParser(prog="python -m benchmarks.clinc_softmax",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--betas", default="0.3,0.5,0.8")
    ap.add_argument("--replays", default="0,3,7,15,31")
    ap.add_argument("--seeds", default="0,1,2", help="stream order seeds")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--quick", action="store_true", help="the CI subsample of CLINC150")
    args = ap.parse_args(argv)
    set_blas_threads(1)
    rows = run([float(v) for v in args.betas.split(",")], [int(v) for v in args.replays.split(",")],
               [int(v) for v in args.seeds.split(",")], args.dtype, args.quick)
    print(f"CLINC150, rule softmax ({args.dtype} state), micro-batches of 100, order seeds {args.seeds}")
    print("| β | replay R | order | test acc (mean / min) | first-domain acc (mean / min) | learn CPU s |")
    print("| --- | --- | --- | --- | --- | --- |")
    for beta, R, kind, tm, tmin, fm, fmin, cpu in rows:
        print(f"| {beta} | {R} | {kind} | {tm:.3f} / {tmin:.3f} | {fm:.3f} / {fmin:.3f} | {cpu:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
