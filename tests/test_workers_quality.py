"""Prequential quality per version (issue 18 §2): the learner predicts each micro-batch with the
head it is learnt on, and records hits and running totals on the version.

Through the real service (Ray, SQLite, HTTP): a reference learner fed the same micro-batches
(the versions' event counts), predicting each before learning it, gives the same hits per version
(and the same checksums, so it held the same states); ``/quality`` is the windowed accuracy of
those hits; Prometheus has a histogram per agent kind. The repository functions on SQLite and
PostgreSQL against a plain recomputation.
"""

from __future__ import annotations

import numpy as np
import pytest

from agent.config import AgentConfig
from agent.model import MemoryAgent
from storage.repository import unit_of_work
from tests.db_fixtures import *  # noqa: F401,F403
from tests.db_fixtures import commit_learning
from tests.service_fixtures import auth, wait_applied

DIM = 6


def _events(n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    c = rng.integers(0, 4, n)
    X = rng.standard_normal((n, DIM))
    X[np.arange(n), c] += 1.5  # learnable, not trivially: accuracy moves over the stream
    return [{"id": f"q{i}", "input": X[i].tolist(), "target": f"c{int(c[i])}"} for i in range(n)]


def _window_acc(per: list[tuple[int, int]], k: int, window: int) -> float | None:
    """Accuracy over the last ``window`` events at version index k, by plain recomputation."""
    cum = np.cumsum([n for n, _ in per])
    hits = np.cumsum([h for _, h in per])
    base = [j for j in range(k) if cum[j] <= cum[k] - window]
    t0, h0 = (cum[base[-1]], hits[base[-1]]) if base else (0, 0)
    return float((hits[k] - h0) / (cum[k] - t0))


def test_hits_per_version_equal_a_reference_learner_run_test_then_train(raw, tenant_a):
    body = {"name": "quality", "kind": "classifier", "encoder": "none", "dim": DIM}
    r = raw.post("/v1/agents", json=body, headers=auth(tenant_a))
    assert r.status_code == 201, r.text
    aid = r.json()["id"]
    events = _events(400, seed=3)
    for s in range(0, 400, 37):
        tenant_a.ingest(aid, events[s:s + 37])
    wait_applied(tenant_a, aid, 400)
    got = raw.get(f"/v1/agents/{aid}/versions", params={"limit": 1000}, headers=auth(tenant_a)).json()
    versions = sorted(got["versions"], key=lambda v: v["version"])
    assert versions[0]["hits"] is None and versions[0]["accuracy"] is None  # create: not tested
    ref = MemoryAgent(AgentConfig.from_dict(body))
    at, per, total_hits = 0, [], 0
    for v in versions[1:]:
        assert v["kind"] == "delta"
        part = events[at:at + v["events"]]
        X, y = [e["input"] for e in part], [e["target"] for e in part]
        hits = sum(p["label"] == t for p, t in zip(ref.predict_many(X), y, strict=True))  # test
        ref.learn_many(X, y)  # then train
        assert ref.checksum() == v["checksum"]  # the same state the learner held
        assert v["hits"] == hits, f"version {v['version']}"
        total_hits += hits
        at += v["events"]
        assert v["accuracy"] == pytest.approx(total_hits / at, abs=1e-12)
        per.append((v["events"], hits))
    assert at == 400 and 0.3 < total_hits / 400 < 1.0
    q = raw.get(f"/v1/agents/{aid}/quality", params={"window": 100, "limit": 1000},
                headers=auth(tenant_a))
    assert q.status_code == 200, q.text
    points = q.json()["points"]
    assert q.json()["window"] == 100 and [p["version"] for p in points] == \
        [v["version"] for v in reversed(versions[1:])]  # newest first
    for k, p in enumerate(reversed(points)):
        assert p["hits"] == per[k][1] and p["events"] == per[k][0]
        assert p["accuracy"] == pytest.approx(_window_acc(per, k, 100), abs=1e-12)
    page = raw.get(f"/v1/agents/{aid}/quality", params={"limit": 2, "before": points[0]["version"]},
                   headers=auth(tenant_a)).json()
    assert [p["version"] for p in page["points"]] == [points[1]["version"], points[2]["version"]]
    assert page["window"] == 500
    metrics = raw.get("/metrics").text
    count = [ln for ln in metrics.splitlines()
             if ln.startswith('deltamem_prequential_accuracy_count{kind="classifier"}')]
    assert count and float(count[0].split()[-1]) >= len(per)
    # the apply lag (workers/actors/apply_lag.py): one figure per notify, each of the 11
    # requests here one at least; cumulative buckets
    lag = {ln.split()[0]: float(ln.split()[1]) for ln in metrics.splitlines()
           if ln.startswith("deltamem_apply_lag_seconds")}
    buckets = [v for k, v in lag.items() if k.startswith("deltamem_apply_lag_seconds_bucket")]
    assert lag["deltamem_apply_lag_seconds_count"] >= 11 and lag["deltamem_apply_lag_seconds_sum"] > 0
    assert buckets == sorted(buckets) and buckets[-1] == lag["deltamem_apply_lag_seconds_count"]


@pytest.mark.parametrize("params,field", [({"window": 0}, "window"), ({"window": "x"}, "window"),
                                          ({"limit": 0}, "limit"), ({"before": -1}, "before")])
def test_quality_refuses_bad_parameters_naming_them(raw, tenant_a, params, field):
    aid = tenant_a.create_agent("q-bad", kind="classifier", encoder="none", dim=DIM).id
    r = raw.get(f"/v1/agents/{aid}/quality", params=params, headers=auth(tenant_a))
    assert r.status_code == 422 and r.json()["error"]["field"] == field, r.text


def test_quality_of_an_unknown_or_foreign_agent_is_404(raw, tenant_a, tenant_b):
    aid = tenant_a.create_agent("q-mine", kind="classifier", encoder="none", dim=DIM).id
    assert raw.get(f"/v1/agents/{aid}/quality", headers=auth(tenant_b)).status_code == 404
    assert raw.get("/v1/agents/ag_nope/quality", headers=auth(tenant_a)).status_code == 404


def test_record_quality_keeps_running_totals_across_untested_versions(db):
    cfg = AgentConfig.from_dict({"kind": "classifier", "encoder": "none", "dim": DIM})
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((60, DIM)), [f"c{i % 3}" for i in range(60)]
    agent_id, _ = commit_learning(db, cfg, X, y, 5)  # versions 1 … 12
    hits = [list(rng.random(int(rng.integers(1, 9))) < 0.6) for _ in range(12)]
    with unit_of_work(db) as repo:
        for v, h in enumerate(hits, start=1):
            if v != 6:  # version 6 is not tested: the totals carry on past it
                repo.record_quality(agent_id, v, h)
    with unit_of_work(db, write=False) as repo:
        points = repo.quality_points(agent_id, window=10, limit=100)
        assert repo.quality_points(agent_id, window=10, limit=3, before=5)[0]["version"] == 4
    per = [(len(h), int(sum(h))) for v, h in enumerate(hits, start=1) if v != 6]
    assert [p["version"] for p in points] == [v for v in range(12, 0, -1) if v != 6]
    for k, p in enumerate(reversed(points)):
        assert p["hits"] == per[k][1]
        assert p["accuracy"] == pytest.approx(_window_acc(per, k, 10), abs=1e-12)


def test_record_quality_of_an_older_version_builds_on_the_tested_version_below_it(db):
    cfg = AgentConfig.from_dict({"kind": "classifier", "encoder": "none", "dim": DIM})
    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((20, DIM)), [f"c{i % 3}" for i in range(20)]
    agent_id, _ = commit_learning(db, cfg, X, y, 5)  # versions 1 … 4
    with unit_of_work(db) as repo:
        for v, h in ((1, [True, False]), (2, [True]), (4, [False, False, True])):
            repo.record_quality(agent_id, v, h)
        row = repo.record_quality(agent_id, 3, [True, True])  # out of order: below version 4
        assert (row.tested_total, row.hits_total) == (3 + 2, 2 + 2)
