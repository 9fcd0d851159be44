"""``deltamem bench soak`` for a few seconds with tiny settings: every column of the per-minute
table is computed (finite numbers of the right kind), the per-process RSS is collected and the
steady-state verdict is given; the figures themselves are not checked (that is the benchmark's
job, on a quiet machine)."""

from __future__ import annotations

import math

import pytest

from benchmarks.soak import run, verdict


def test_soak_computes_every_column():
    lines: list[str] = []
    out = run(minutes=3, minute_s=3.0, agents=3, rate=8.0, clients=2, retention_s=4.0,
              snapshot_every=3, say=lambda s: lines.append(str(s)))
    rows = out["rows"]
    assert [r["minute"] for r in rows] == [1, 2, 3]
    for r in rows:
        for k in ("ingest_p50", "ingest_p99", "predict_p50", "predict_p99"):
            assert math.isfinite(r[k]) and 0 < r[k] <= r[k.replace("p50", "p99")] + 1e-9, (k, r)
        assert r["applied_per_s"] >= 0 and r["db_bytes"] > 0 and r["version_rows"] >= 3
        assert r["commit_ms"] >= 0 and r["versions_per_s"] >= 0
        assert r["rss_total"] > 0 and r["processes"] >= 3 and r["errors"] == 0
    assert sum(r["applied_per_s"] for r in rows) > 0  # the learner applied events
    assert sum(r["versions_per_s"] for r in rows) > 0 and max(r["commit_ms"] for r in rows) > 0
    assert any(name.startswith("ray::") for name in out["processes"])
    assert all(len(v) == 3 for v in out["processes"].values())
    assert set(out["verdict"]) == {"p99", "db_plateau", "rss", "steady"}
    assert all(isinstance(v, bool) for v in out["verdict"].values())
    assert lines[0].split()[:3] == ["min", "ingest", "p50"] and len(lines) == 1 + 3 + 3
    assert lines[-2].startswith("database growth over the second half: ")
    assert math.isfinite(out["db_growth_mb_per_day"])
    assert lines[-1].startswith("steady state: ")


def test_verdict_follows_its_rules():
    row = {"ingest_p99": 10.0, "predict_p99": 5.0, "db_bytes": 100, "version_rows": 50,
           "rss_total": 1000}
    steady = [dict(row) for _ in range(4)]
    assert verdict(steady) == {"p99": True, "db_plateau": True, "rss": True, "steady": True}
    slow = steady[:3] + [{**row, "predict_p99": 6.1}]
    assert verdict(slow)["p99"] is False and verdict(slow)["steady"] is False
    grows = steady[:3] + [{**row, "db_bytes": 111}]
    assert verdict(grows)["db_plateau"] is False
    rows_grow = steady[:3] + [{**row, "version_rows": 56}]  # the file alone can hide them
    assert verdict(rows_grow)["db_plateau"] is False
    fat = steady[:3] + [{**row, "rss_total": 1101}]
    assert verdict(fat)["rss"] is False
    assert verdict(steady[:2])["steady"] is None


def test_db_growth_is_the_second_half_rate_per_day():
    from benchmarks.soak import db_growth

    rows = [{"db_bytes": b * 2**20} for b in (40, 60, 62, 62, 63, 64)]  # MB; half = row 3
    assert db_growth(rows, 60.0) == pytest.approx(2 / 2 / 60 * 86400)  # 2 MB in 2 minutes
    assert db_growth(rows, 30.0) == pytest.approx(2 / 1 / 60 * 86400)
    assert db_growth(rows[:3], 60.0) == pytest.approx(2 / 60 * 86400)  # half = row 1
    assert db_growth(rows[2:5], 60.0) == pytest.approx(1 / 60 * 86400)
    assert db_growth(rows[:2], 60.0) is None
