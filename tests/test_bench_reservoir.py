"""Smoke of ``benchmarks/clinc_reservoir.py`` on a small synthetic intent set (the real figures
come from the coordinator's run on CLINC150 and Elec2): it prints every learner, and the bounded
reservoir's state stops growing where the unbounded one keeps every key."""

from __future__ import annotations

import numpy as np

from benchmarks.clinc_reservoir import run_clinc, run_elec2


def _data(per_class: int = 12, classes: int = 6, dim: int = 384) -> dict:
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((classes, dim))
    y = np.repeat(np.arange(classes), per_class)
    X = centers[y] + 0.8 * rng.standard_normal((len(y), dim))
    yt = np.repeat(np.arange(classes), 3)
    Xt = centers[yt] + 0.8 * rng.standard_normal((len(yt), dim))
    names = [f"i{c}" for c in range(classes)]
    return {"Xtr": X, "ytr": [names[c] for c in y], "Xte": Xt, "yte": [names[c] for c in yt],
            "domain_order": ["a", "b"], "intent_domain": {n: "a" if i < 3 else "b" for i, n in enumerate(names)}}


def test_clinc_rows_and_bounded_bytes():
    rows = run_clinc(_data(), [None, 2, 4], [0], batch=10)
    by = {(r[0], r[1]): r for r in rows}
    assert len(rows) == 3 * 2 + 1
    for order in ("random", "class-incremental"):
        every, two = by["softmax, every event", order], by["softmax, reservoir 2", order]
        assert two[6] < by["softmax, reservoir 4", order][6] < every[6]  # bytes: 2 < 4 < every key
        assert every[2] > 0.8  # separable classes: everyone learns them
    assert by["batch logistic regression (C=10.0, retrained), fitted once", "any"][2] > 0.8


def test_elec2_rows():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((120, 6))
    y = ["UP" if v > 0 else "DOWN" for v in X[:, 1]]
    rows = run_elec2(X, y, [None, 3], refit=40)
    assert [r[0].split(",")[0] for r in rows] == ["softmax", "softmax", "batch logistic regression"]
    assert rows[1][3] < rows[0][3]
