"""The version horizon (``version_history_s``, opt-in) through the real scheduler, SQLite and
PostgreSQL: while an agent streams, the retention job deletes the rows of versions older than
the horizon once a snapshot on the head's path covers them, so its version rows stop growing;
the head predicts as a learner fed every event, a forget afterwards is exact, and a deleted
version answers 410 (predict at it, ``as_of`` its time, rollback to it), never 404 or 500."""

from __future__ import annotations

import time

import numpy as np
import pytest
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED
from sqlalchemy import func, select

from storage.errors import VersionThinned
from storage.models import Version
from tests.faults_helpers import BACKENDS, database, deployment
from tests.test_faults_event_retention import CONFIG, Errors, _send
from tests.workers_helpers import assert_same_predictions, reference, vector_events, wait_for
from workers.http.errors import error_answer

HORIZON_S = 3.0


def _versions(svc, agent: str) -> tuple[int, int]:
    """(rows, the oldest version after 0)."""
    with svc.store.read() as repo:
        n = repo.session.scalar(select(func.count()).select_from(Version).where(
            Version.agent_id == agent))
        return int(n or 0), repo.graph.history_start(agent)


@pytest.mark.parametrize("backend", BACKENDS)
def test_scheduled_horizon_bounds_version_rows_and_keeps_answers_exact(
        ray_cluster, tmp_path, backend):
    with database(backend, tmp_path) as url, deployment(
            url, scheduler_enabled=True, retention_interval_s=1.0, retention_window_s=1.0,
            version_history_s=HORIZON_S, event_retention_s=HORIZON_S, health_interval_s=1.0,
            retention_snapshot_spacing_s=86400.0,
            snapshot_every_versions=3, snapshot_every_s=1.0, batch_max_events=4,
            batch_burst_events=4) as dep:
        jobs = Errors()
        dep._scheduler.add_listener(jobs, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
        svc = dep.service
        tenant = svc.create_tenant("h")["id"]
        agent = svc.create_agent(tenant, "a", CONFIG)["id"]
        rng = np.random.default_rng(4)
        sent: list[dict] = []
        start = time.monotonic()
        rows = []
        while time.monotonic() - start < 4 * HORIZON_S:  # ~10 versions a second, streaming
            evs = vector_events(rng, 8, 6, 3, f"s{len(sent)}-")
            _send(svc, tenant, agent, evs)
            sent += evs
            rows.append(_versions(svc, agent)[0])
        wait_for(lambda: _versions(svc, agent)[1] > 2, timeout=60, what="versions deleted")
        assert not jobs.errors, jobs.errors
        n, first = _versions(svc, agent)
        head = svc.get_agent(tenant, agent)["head_version"]
        assert n < head / 2, (n, head, rows)  # the rows of the oldest versions are gone
        probes = [list(map(float, p)) for p in rng.normal(size=(8, 6))]
        assert_same_predictions(svc, tenant, agent, reference(CONFIG, sent, batch=4), probes)

        for call in (lambda: svc.predict(tenant, agent, probes[:1], version=1),
                     lambda: svc.rollback(tenant, agent, first - 1)):
            with pytest.raises(VersionThinned) as err:
                call()
            assert error_answer(err.value).status == 410  # type: ignore[union-attr]
        listed = [v["version"] for v in svc.versions(tenant, agent, 1000, None)["versions"]]
        assert min(v for v in listed if v > 0) >= first  # (the job may have run on since)

        fresh = vector_events(rng, 8, 6, 3, "fresh-")  # (older events may be pruned by now)
        _send(svc, tenant, agent, fresh)
        sent += fresh
        gone: set[str] = set()
        for recent in (fresh[5]["id"], fresh[2]["id"]):  # forgets after the fold: exact
            svc.forget(tenant, agent, [recent])
            gone.add(recent)
            assert_same_predictions(svc, tenant, agent, reference(
                CONFIG, [e for e in sent if e["id"] not in gone], batch=4), probes)
        runs = jobs.runs
        wait_for(lambda: jobs.runs >= runs + 2, timeout=30, what="retention running again")
        assert not jobs.errors, jobs.errors
