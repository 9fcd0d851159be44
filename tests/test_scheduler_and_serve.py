"""Scheduled jobs persisted as JSON in the deployment's database, one acting scheduler per
database, snapshots written by the job; and the HTTP API served through Ray Serve."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest
from sqlalchemy import delete, select

from storage.models import SchedulerJob, SchedulerLease, Snapshot
from tests.workers_helpers import all_applied, start_deployment, vector_events, wait_for
from workers.actors.scheduler import _hold_lease, snapshot_job, start_scheduler
from workers.runtime import free_port

CONFIG = {"kind": "classifier", "encoder": "none", "dim": 8,
          "memory": {"rule": "rls", "ridge": 1.0, "forget": 1.0}}


@pytest.fixture(scope="module")
def dep(ray_cluster, tmp_path_factory):
    running = start_deployment(tmp_path_factory.mktemp("sched"), snapshot_every_versions=3,
                               batch_max_events=10, batch_burst_events=10)
    yield running
    running.stop()


def test_jobs_are_stored_as_json_not_pickle(dep):
    sched = start_scheduler(dep.settings, dep.service)
    try:
        with dep.service.store.read() as repo:
            rows = repo.session.scalars(select(SchedulerJob)).all()
        names = sorted(r.id.split(":")[-1] for r in rows)
        assert names == ["health_job", "retention_job", "snapshot_job"]
        for r in rows:
            state = json.loads(bytes(r.job_state).decode())  # raises if it were a pickle
            assert state["func"].startswith("workers.actors.scheduler:")
            assert state["trigger"]["type"] == "interval"
        # the scheduler reads its jobs back from the store
        assert {j.id for j in sched.get_jobs()} == {r.id for r in rows}
    finally:
        sched.shutdown()


def test_snapshot_job_snapshots_held_heads(dep):
    svc = dep.service
    tenant = svc.create_tenant("s")["id"]
    agent = svc.create_agent(tenant, "a", CONFIG)["id"]
    events = vector_events(np.random.default_rng(0), 60, 8, 3, "e")
    for i in range(0, 60, 10):  # several versions (10 events per micro-batch at most)
        svc.ingest(tenant, agent, events[i : i + 10], partial=False)
    wait_for(lambda: all_applied(svc, tenant, [agent]))
    head = svc.get_agent(tenant, agent)["head_version"]
    assert head >= 3
    from workers.actors import scheduler as sch

    dep.service.scheduler_id = "test-scheduler"
    sch._RUNTIMES[dep.settings.ray_namespace] = dep.service
    try:
        snapshot_job(dep.settings.ray_namespace)
    finally:
        sch._RUNTIMES.pop(dep.settings.ray_namespace, None)
    with svc.store.read() as repo:
        snaps = repo.session.scalars(select(Snapshot.version).where(
            Snapshot.agent_id == agent)).all()
        assert head in snaps, f"no snapshot at head {head}: {snaps}"
        layers, labels = repo.load_state(agent, head)  # loads from the new snapshot
    assert labels and set(layers) == {"S", "P"}


def test_one_scheduler_acts_per_database(dep):
    class Other:
        store = dep.service.store
        scheduler_id = "another-deployment"

    with dep.service.store.tx() as repo:  # start from no lease
        repo.session.execute(delete(SchedulerLease))
    dep.service.scheduler_id = "first"
    assert _hold_lease(dep.service)
    assert not _hold_lease(Other()), "a second scheduler took a live lease"
    assert _hold_lease(dep.service), "the holder could not renew its lease"


def test_http_through_ray_serve(ray_cluster, tmp_path):
    port = free_port()
    running = start_deployment(tmp_path, http=True, http_backend="serve", port=port,
                               admin_key="adm")
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as c:
            wait_for(lambda: c.get("/healthz").status_code == 200, what="Serve ingress up")
            r = c.post("/v1/tenants", json={"name": "t"}, headers={"Authorization": "Bearer adm"})
            assert r.status_code == 201, r.text
            h = {"Authorization": f"Bearer {r.json()['api_key']}"}
            a = c.post("/v1/agents", headers=h, json={"name": "a", "encoder": "none", "dim": 2})
            assert a.status_code == 201, a.text
            aid = a.json()["id"]
            r = c.post(f"/v1/agents/{aid}/events", headers=h,
                       json={"events": [{"id": "1", "input": [1, 0], "target": "x"}]})
            assert r.status_code == 202 and r.json()["accepted"] == 1
            r = c.post(f"/v1/agents/{aid}/predict", headers=h,
                       json={"inputs": [[1, 0]], "min_version": 1})
            assert r.status_code == 200, r.text
            assert r.json()["version"] == 1 and r.json()["predictions"][0]["label"] == "x"
            assert c.post(f"/v1/agents/{aid}/predict", json={"inputs": [[1, 0]]}).status_code == 401
    finally:
        running.stop()
