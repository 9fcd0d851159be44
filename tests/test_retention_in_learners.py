"""The scheduled retention job hands each learner shard the agents it owns
(workers/actors/retention_run.py), so the serve process's interpreter stays on requests:
through the real scheduler with three shards, every agent's old events are pruned, whichever
shard owns it; the shard's own call reports what it deleted. SQLite (PostgreSQL: the event
retention tests run the same job on both)."""

from __future__ import annotations

import time
from datetime import timedelta

import numpy as np
import ray
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED
from sqlalchemy import func, select

from storage.models import Event, agent_key_of, utcnow
from tests.faults_helpers import deployment
from tests.test_faults_event_retention import CONFIG, Errors, _send
from tests.workers_helpers import vector_events, wait_for
from workers.actors.learner import shard_of

WINDOW_S = 2.0


def _rows(svc, agent: str) -> int:
    with svc.store.read() as repo:
        return int(repo.session.scalar(select(func.count()).select_from(Event).where(
            Event.agent_key == agent_key_of(agent))) or 0)


def test_scheduled_retention_runs_in_every_learner_shard(ray_cluster, tmp_path):
    with deployment(f"sqlite:///{tmp_path / 'r.db'}", scheduler_enabled=True, learner_shards=3,
                    retention_interval_s=1.0, retention_window_s=WINDOW_S,
                    event_retention_s=WINDOW_S, snapshot_every_versions=2, snapshot_every_s=1.0,
                    batch_max_events=4, batch_burst_events=4) as dep:
        jobs = Errors()
        dep._scheduler.add_listener(jobs, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
        svc = dep.service
        tenant = svc.create_tenant("r")["id"]
        agents = [svc.create_agent(tenant, f"a{i}", CONFIG)["id"] for i in range(6)]
        assert len({shard_of(a, 3) for a in agents}) >= 2  # the agents span shards
        rng = np.random.default_rng(4)
        for a in agents:
            _send(svc, tenant, a, vector_events(rng, 16, 6, 3, f"{a[:6]}-"))
        start = time.monotonic()
        wait_for(lambda: time.monotonic() - start > WINDOW_S
                 and all(_rows(svc, a) < 16 for a in agents), timeout=90,
                 what="every agent's old events pruned")
        assert not jobs.errors, jobs.errors

        # one shard's call, by hand (the scheduler stopped): it deletes what is left to prune,
        # as of a moment past the window, and says how many
        dep._scheduler.pause()
        time.sleep(1.5)  # a run already started finishes (each run takes well under a second)
        a = agents[0]
        mine = svc.learner_handles()[shard_of(a, 3)]
        _send(svc, tenant, a, vector_events(rng, 8, 6, 3, "late-"))
        ray.get(mine.snapshot_due.remote(1, 1e-3))
        before = _rows(svc, a)
        later = utcnow() + timedelta(seconds=WINDOW_S + 1)
        report = ray.get(mine.retention.remote([a], later.isoformat()), timeout=60)
        assert set(report) == {"dropped", "thinned", "bytes_freed", "events", "versions_deleted"}
        assert report["versions_deleted"] == 0  # the horizon is off by default
        assert report["events"] > 0 and report["events"] == before - _rows(svc, a)
