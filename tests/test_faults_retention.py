"""Fault class 4 of issue 15: the scheduled jobs, run by the real scheduler (APScheduler, jobs
persisted in the deployment's database, as ``deltamem serve`` runs them) with short intervals.

Retention keeps every version committed within ``retention_window_s`` and, past it, only the
points a snapshot makes loadable: the deltas a later snapshot covers are deleted and their
versions marked ``thinned``; a pinned version, the head and snapshot versions stay loadable.
Each job must run again and again without raising (it used to raise ``TypeError`` on every
run, so retention never ran).
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, JobExecutionEvent
from sqlalchemy import select

from storage.models import DeltaRow, Snapshot, Version
from tests.faults_helpers import BACKENDS, database, deployment
from tests.workers_helpers import all_applied, vector_events, wait_for

CONFIG = {"kind": "classifier", "encoder": "none", "dim": 6,
          "memory": {"rule": "delta", "beta": 0.5}}
WINDOW_S = 3.0


class JobLog:
    """What the real scheduler reports about each job run (its own event listener)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.runs: dict[str, int] = {}
        self.errors: list[str] = []

    def __call__(self, ev: JobExecutionEvent) -> None:
        with self.lock:
            name = ev.job_id.split(":")[-1]
            if ev.exception is not None:
                self.errors.append(f"{name}: {ev.exception!r}")
            else:
                self.runs[name] = self.runs.get(name, 0) + 1

    def count(self, name: str) -> int:
        with self.lock:
            return self.runs.get(name, 0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_scheduled_retention_and_snapshots_run_and_thin(ray_cluster, tmp_path, backend):
    with database(backend, tmp_path) as url, deployment(
            url, scheduler_enabled=True, retention_interval_s=1.0, retention_window_s=WINDOW_S,
            health_interval_s=1.0, snapshot_every_versions=3, snapshot_every_s=1.0,
            batch_max_events=4, batch_burst_events=4) as dep:
        jobs = JobLog()
        dep._scheduler.add_listener(jobs, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
        svc = dep.service
        tenant = svc.create_tenant("r")["id"]
        agent = svc.create_agent(tenant, "a", CONFIG)["id"]
        events = vector_events(np.random.default_rng(1), 40, 6, 3, "e")
        for i in range(0, 40, 4):  # one version per batch: wait for each before the next
            svc.ingest(tenant, agent, events[i:i + 4], partial=False)
            wait_for(lambda: all_applied(svc, tenant, [agent]), what="batch applied")
            if i == 0:  # pin version 1 at once, well inside the window
                with svc.store.tx() as repo:
                    repo.pin_version(agent, 1)
        head = svc.get_agent(tenant, agent)["head_version"]
        assert head >= 8
        done_at = time.monotonic()

        def thinned() -> list[int]:
            with svc.store.read() as repo:
                return list(repo.session.scalars(select(Version.version).where(
                    Version.agent_id == agent, Version.status == "thinned")))

        # every version is now older than the window after WINDOW_S; wait for the job to thin
        wait_for(lambda: time.monotonic() - done_at > WINDOW_S and len(thinned()) > 0
                 and jobs.count("retention_job") >= 2, timeout=60, what="retention thinning")
        runs = jobs.count("retention_job")
        wait_for(lambda: jobs.count("retention_job") >= runs + 2, timeout=30,
                 what="retention running again")
        assert not jobs.errors, jobs.errors
        assert jobs.count("snapshot_job") >= 2 and jobs.count("health_job") >= 1

        with svc.store.read() as repo:
            rows = {r.version: r for r in repo.session.scalars(select(Version).where(
                Version.agent_id == agent))}
            snaps = set(repo.session.scalars(select(Snapshot.version).where(
                Snapshot.agent_id == agent)))
            deltas = set(repo.session.scalars(select(DeltaRow.version).where(
                DeltaRow.agent_id == agent)))
            assert head in snaps, f"the snapshot job wrote no snapshot at head {head}: {snaps}"
            gone = sorted(v for v, r in rows.items() if r.status == "thinned")
            assert gone, "nothing was thinned"
            for v in gone:  # thinned: a delta version, not pinned, not the head, not a snapshot
                assert v not in (1, head) and v not in snaps and rows[v].kind == "delta"
                assert v not in deltas, f"version {v} is thinned but its delta is still stored"
            assert rows[1].pinned and rows[1].status == "ok"
            assert 1 in deltas, "the pinned version's delta was deleted"
            repo.load_state(agent, 1)  # the pinned version still loads (checksum verified)
            repo.load_state(agent, head)
        # the jobs are still scheduled after all those runs
        assert {j.name for j in dep._scheduler.get_jobs()} >= {"retention_job", "snapshot_job"}
        assert all(j.next_run_time is not None for j in dep._scheduler.get_jobs())


@pytest.mark.parametrize("backend", BACKENDS)
def test_scheduled_retention_thins_old_snapshots_to_one_per_slot(ray_cluster, tmp_path, backend):
    """With ``retention_snapshot_spacing_s`` the snapshots the snapshot job keeps writing stop
    piling up: past the window only version 0, the one the head builds on and one a slot stay."""
    with database(backend, tmp_path) as url, deployment(
            url, scheduler_enabled=True, retention_interval_s=1.0, retention_window_s=WINDOW_S,
            retention_snapshot_spacing_s=3600.0, health_interval_s=5.0,
            snapshot_every_versions=1, snapshot_every_s=0.5,
            batch_max_events=4, batch_burst_events=4) as dep:
        jobs = JobLog()
        dep._scheduler.add_listener(jobs, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
        svc = dep.service
        tenant = svc.create_tenant("r")["id"]
        agent = svc.create_agent(tenant, "a", CONFIG)["id"]
        events = vector_events(np.random.default_rng(2), 32, 6, 3, "e")

        def snaps() -> set[int]:
            with svc.store.read() as repo:
                return set(repo.session.scalars(select(Snapshot.version).where(
                    Snapshot.agent_id == agent)))

        most = 0
        for i in range(0, 32, 4):  # one version per batch, each snapshotted by the job
            svc.ingest(tenant, agent, events[i:i + 4], partial=False)
            wait_for(lambda: all_applied(svc, tenant, [agent]), what="batch applied")
            head = svc.get_agent(tenant, agent)["head_version"]
            wait_for(lambda h=head: h in snaps(), timeout=30, what="snapshot at the head")
            most = max(most, len(snaps()))
        done_at = time.monotonic()
        assert most >= 4, f"the snapshot job wrote too few snapshots to thin: {most}"
        wait_for(lambda: time.monotonic() - done_at > WINDOW_S + 1 and len(snaps()) <= 3
                 and jobs.count("retention_job") >= 2, timeout=60, what="snapshots thinned")
        assert not jobs.errors, jobs.errors
        assert 0 in snaps() and head in snaps()
        with svc.store.read() as repo:
            repo.load_state(agent, head)  # checksum verified
