"""Elec2 (NSW electricity, 45,312 events, UP/DOWN): prequential accuracy over the whole stream.

Every event is predicted, then learnt (micro-batches of one event by default: the label of the
previous half hour is the strongest signal of this drifting stream, so a method must use it at
once). Every method gets the same six columns standardised online
(:class:`agent.backbones.vector.OnlineStandardizer`, statistics of earlier events only);
vector agents are ``encoder: "none"``, dim 6.
Baselines: Vowpal Wabbit with logistic loss and quadratic features, River LogisticRegression and
the Hoeffding adaptive tree, and the "no change" rule (predict the previous label).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from agent.backbones.vector import OnlineStandardizer
from benchmarks.eval_baselines import DeltaMem, River, VowpalWabbit
from benchmarks.eval_common import Timer, data_dir, md_table, plot_curves, rolling_mean

FILES = ("elec2.csv",)


def load(quick: bool) -> tuple[np.ndarray, list[str]]:
    with open(data_dir() / FILES[0], newline="") as f:
        rows = list(csv.reader(f))
    X = np.array([[float(v) for v in r[:-1]] for r in rows[1:]], dtype=np.float64)  # (n, 6)
    y = [r[-1].strip() for r in rows[1:]]
    if quick:
        X, y = X[:4000], y[:4000]
    return X, y


class NoChange:
    """Predicts the last label seen (the persistence baseline of drifting streams)."""

    name = "no change (last label)"

    def __init__(self) -> None:
        self._last = ""

    def learn_many(self, X: np.ndarray, y: list[str]) -> None:
        self._last = y[-1]

    def predict_many(self, X: np.ndarray) -> list[str]:
        return [self._last] * len(X)


def default_methods(quick: bool) -> list[Any]:
    from river import linear_model, tree

    return [
        DeltaMem({"rule": "delta", "beta": 0.5}, dim=6, encoder="none"),
        DeltaMem({"rule": "delta", "beta": 0.5, "lift_dim": 1024}, dim=6, encoder="none"),
        DeltaMem({"rule": "delta", "beta": 0.3, "lift_dim": 1024}, dim=6, encoder="none"),
        DeltaMem({"rule": "rls", "ridge": 1.0, "lift_dim": 512}, dim=6, encoder="none"),
        VowpalWabbit("-q aa"),
        VowpalWabbit("-q aa --power_t 0 -l 0.5"),
        River(linear_model.LogisticRegression(), "river LogisticRegression", binary=True),
        River(tree.HoeffdingAdaptiveTreeClassifier(seed=0), "river HoeffdingAdaptiveTree"),
        NoChange(),
    ]


def stream(method: Any, X: np.ndarray, y: list[str], batch: int = 1,
           standardize: bool = True) -> dict[str, Any]:
    """Prequential run; inputs are standardised online with the statistics of earlier events
    (the same preprocessing for every method, as River's StandardScaler would do)."""
    hits: list[bool] = []
    t = Timer()
    std = OnlineStandardizer(X.shape[1])
    for s in range(0, len(y), batch):
        Xb, yb = X[s : s + batch], y[s : s + batch]
        if standardize:
            raw = Xb
            Xb = std.transform_many(raw) if std.n_ >= 2 else raw
            std.learn_many(raw)
        with t:
            pred = method.predict_many(Xb)
            method.learn_many(Xb, yb)
        hits.extend(p == q for p, q in zip(pred, yb, strict=True))
    return {"preq_acc": float(np.mean(hits)), "seconds": t.total, "hits": np.array(hits, float)}


def run(out: Path, quick: bool = False, batch: int = 1, methods: Any = None) -> dict[str, Any]:
    X, y = load(quick)
    rows, curves, results = [], {}, {}
    for method in (default_methods(quick) if methods is None else methods()):
        r = stream(method, X, y, batch)
        results[method.name] = r
        w = 500 if quick else 2000
        curves[method.name] = (np.arange(1, len(y) + 1), rolling_mean(r["hits"], w))
        rows.append([method.name, r["preq_acc"], f"{r['seconds']:.1f}", f"{len(y) / r['seconds']:.0f}"])
        print(f"  elec2 {method.name:60s} prequential {r['preq_acc']:.4f} {r['seconds']:.1f}s", flush=True)
    plot = plot_curves(out / "elec2.png", f"Elec2: prequential accuracy (rolling {w})", curves)
    md = md_table(["method", "prequential acc", "seconds (predict+learn)", "events/s"], rows)
    return {"name": "elec2", "markdown": md, "plots": [plot], "results": results}
