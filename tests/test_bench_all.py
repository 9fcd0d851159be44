"""``deltamem bench all --quick --json`` runs end to end and its JSON line holds every figure,
each with a finite positive reference from the same run (slow: about two minutes)."""

from __future__ import annotations

import json
import math

import pytest

from benchmarks.bench_all import main


@pytest.mark.slow
def test_bench_all_quick_json(capsys):
    assert main(["--quick", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    rows = out["rows"]
    for prefix in ("kernel delta", "ingest vector", "ingest text", "predict single p99.9",
                   "predict batched p50", "storage after retention", "rebuild 100 versions"):
        assert any(k.startswith(prefix) for k in rows), prefix
    for r in rows.values():
        assert r["value"] > 0 and r["ref_value"] > 0 and math.isfinite(r["ratio"]), r
    assert rows["storage after retention"]["value"] < rows["storage before retention"]["value"]
    rebuild = [rows[f"rebuild {k} versions past snapshot"]["value"] for k in (0, 10, 50, 100)]
    assert rebuild[0] < rebuild[-1]
