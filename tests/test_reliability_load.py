"""The load generator's CI form against a real deployment (``deltamem serve`` subprocess, its own
Ray, SQLite): ingest and predict mixed from several client threads for ~10 s over 20 agents.

Every request is valid, so every answer must be 2xx (429 backpressure aside): no 5xx, no 4xx, no
dropped connection; every accepted event gets applied (bounded drain); and the resident memory
of every process of the deployment stays bounded between the end of the warm-up and the end.
The long form (60 s, 100 agents) is ``python -m benchmarks.load`` (see the README).
"""

from __future__ import annotations

import pytest

from benchmarks.load import run

PER_PROCESS_MB = 64.0  # growth allowed after warm-up, per process
TOTAL_MB = 128.0


def _check(out: dict) -> None:
    for op, row in out["ops"].items():
        assert row["requests"] > 0, f"no {op} request completed"
        assert row["5xx"] == 0, f"{op}: {row['5xx']} answers 5xx"
        assert row["4xx"] == 0 and row["transport"] == 0, (op, row)
    assert out["events_accepted"] > 0
    assert out["drain_s"] is not None, "accepted events were not all applied in time"
    mem = out["memory"]
    assert len(mem["processes"]) >= 5, "expected the serve process plus Ray's processes"
    for p in mem["processes"]:
        assert p["growth_mb"] < PER_PROCESS_MB, f"{p['name']} grew {p['growth_mb']:.1f} MB"
    assert mem["growth_mb"] < TOTAL_MB, f"the deployment grew {mem['growth_mb']:.1f} MB"


def test_load_ci_form_no_errors_bounded_memory():
    _check(run(seconds=10, agents=20, workers=4, warmup=0.3))


@pytest.mark.slow
def test_load_long_form_60s_100_agents():
    _check(run(seconds=60, agents=100, workers=8, warmup=0.2))
