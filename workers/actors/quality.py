"""Test-then-train in the learner: each micro-batch is predicted by the head it is learnt on.

:func:`pretest` reads the head the learner already holds (the version the micro-batch's version
is committed on top of) for the batch's inputs and says which predictions match their targets:
a label for classifiers, the answer text for recall agents (their exact-match rate). The learner
records the outcome on the new version in the commit's transaction
(:meth:`storage.repository.quality.Quality.record_quality`). Chat agents have no targets: not tested.

A failure here never stops the learner: the version is then committed without quality.
:class:`QualityHistogram` counts each micro-batch's hit rate per agent kind for Prometheus
(no per-agent labels: the series stay bounded).

A reference learner reproduces the hits exactly: predict each version's events with the state
of its parent, then learn them (tests/test_workers_quality.py).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from agent.learner import Inputs, Learner, learns_labels
from workers.actors.factory import event_inputs
from workers.actors.handover import fields

__all__ = ["pretest", "QualityHistogram", "BUCKETS"]

log = logging.getLogger(__name__)
BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)


def pretest(learner: Learner, payloads: Sequence[dict[str, Any]],
            inputs: Inputs | None = None, keys: np.ndarray | None = None) -> list[bool] | None:
    """Whether the head ``learner`` holds predicts each event's target (before learning them).
    ``inputs``: ``event_inputs(payloads)`` when the caller has built it already; ``keys``:
    their ``write_keys`` (likewise)."""
    if not learns_labels(learner) or not payloads:
        return None
    try:
        labels = learner.predict_labels(event_inputs(payloads) if inputs is None else inputs,
                                        keys=keys)
        return [y is not None and y == t for y, t in
                zip(labels, fields(payloads, "target", required=True), strict=True)]
    except Exception:  # noqa: BLE001 - quality is a measurement: never block learning
        log.warning("pretest failed; the version is committed without quality", exc_info=True)
        return None


class QualityHistogram:
    """Cumulative bucket counts of micro-batch hit rates, per agent kind."""

    def __init__(self) -> None:
        self.counts: dict[str, list[int]] = {}  # kind -> per bucket (cumulative le), then +Inf
        self.sums: dict[str, float] = {}

    def observe(self, kind: str, rate: float) -> None:
        c = self.counts.setdefault(kind, [0] * (len(BUCKETS) + 1))
        for i, b in enumerate(BUCKETS):
            if rate <= b:
                c[i] += 1
        c[-1] += 1
        self.sums[kind] = self.sums.get(kind, 0.0) + rate

    def snapshot(self) -> dict[str, Any]:
        return {"counts": {k: list(v) for k, v in self.counts.items()}, "sums": dict(self.sums)}


def render_histogram(out: list[str], snapshots: Sequence[dict[str, Any]]) -> None:
    """Prometheus lines of the merged histograms of every learner shard."""
    counts: dict[str, list[int]] = {}
    sums: dict[str, float] = {}
    for snap in snapshots:
        for kind, c in snap.get("counts", {}).items():
            acc = counts.setdefault(kind, [0] * (len(BUCKETS) + 1))
            for i, v in enumerate(c):
                acc[i] += int(v)
        for kind, v in snap.get("sums", {}).items():
            sums[kind] = sums.get(kind, 0.0) + float(v)
    name = "deltamem_prequential_accuracy"
    out.append(f"# HELP {name} Hit rate of each micro-batch predicted before it was learnt, by agent kind.")
    out.append(f"# TYPE {name} histogram")
    for kind in sorted(counts):
        c = counts[kind]
        for b, v in zip(BUCKETS, c, strict=False):
            out.append(f'{name}_bucket{{kind="{kind}",le="{b}"}} {v}')
        out.append(f'{name}_bucket{{kind="{kind}",le="+Inf"}} {c[-1]}')
        out.append(f'{name}_sum{{kind="{kind}"}} {round(sums.get(kind, 0.0), 6)}')
        out.append(f'{name}_count{{kind="{kind}"}} {c[-1]}')
