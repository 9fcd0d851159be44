"""Event retention (``event_retention_s``, opt-in): the retention job deletes events older than
the window once a kept snapshot covers them, so a long-running deployment's database stops
growing; pending events stay, forget stays exact (a pruned id is unknown: 404), forks keep
working. Through the real scheduler (jobs persisted in the database), SQLite and PostgreSQL.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
import ray
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, JobExecutionEvent
from sqlalchemy import select

from storage.errors import UnknownEvents, VersionThinned
from storage.models import Event, agent_key_of, utcnow
from tests.faults_helpers import BACKENDS, database, deployment
from tests.workers_helpers import (
    all_applied,
    assert_same_predictions,
    reference,
    vector_events,
    wait_for,
)
from workers.actors.retention_run import prune_events
from workers.http.errors import error_answer

CONFIG = {"kind": "classifier", "encoder": "none", "dim": 6,
          "memory": {"rule": "delta", "beta": 0.5}}
WINDOW_S = 3.0


class Errors:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.errors: list[str] = []
        self.runs = 0

    def __call__(self, ev: JobExecutionEvent) -> None:
        with self.lock:
            if ev.exception is not None:
                self.errors.append(f"{ev.job_id}: {ev.exception!r}")
            elif ev.job_id.endswith("retention_job"):
                self.runs += 1


def _ids(svc: Any, agent: str) -> set[str]:
    with svc.store.read() as repo:
        return set(repo.session.scalars(select(Event.client_id).where(
            Event.agent_key == agent_key_of(agent))))


def _send(svc: Any, tenant: str, agent: str, events: list[dict[str, Any]]) -> None:
    for i in range(0, len(events), 4):  # one version per batch
        svc.ingest(tenant, agent, events[i:i + 4], partial=False)
        wait_for(lambda: all_applied(svc, tenant, [agent]), what="batch applied")


@pytest.mark.parametrize("backend", BACKENDS)
def test_scheduled_event_retention_prunes_covered_events_and_forget_stays_exact(
        ray_cluster, tmp_path, backend):
    with database(backend, tmp_path) as url, deployment(
            url, scheduler_enabled=True, retention_interval_s=1.0, retention_window_s=WINDOW_S,
            event_retention_s=WINDOW_S, health_interval_s=1.0, snapshot_every_versions=3,
            snapshot_every_s=1.0, batch_max_events=4, batch_burst_events=4) as dep:
        jobs = Errors()
        dep._scheduler.add_listener(jobs, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
        svc = dep.service
        tenant = svc.create_tenant("r")["id"]
        agent = svc.create_agent(tenant, "a", CONFIG)["id"]
        rng = np.random.default_rng(3)
        old = vector_events(rng, 40, 6, 3, "e")
        _send(svc, tenant, agent, old[:8])
        with svc.store.tx() as repo:  # version 2 stays loadable: a rollback target later
            repo.pin_version(agent, 2)
        _send(svc, tenant, agent, old[8:])
        fork = svc.fork(tenant, agent, None, "f")["id"]  # its rows point at the source's
        start = time.monotonic()
        wait_for(lambda: time.monotonic() - start > WINDOW_S
                 and len(_ids(svc, agent)) < 30 and len(_ids(svc, fork)) < 30,
                 timeout=90, what="old events pruned")
        assert not jobs.errors, jobs.errors
        pruned = {e["id"] for e in old} - _ids(svc, agent)
        new = vector_events(rng, 12, 6, 3, "n")
        _send(svc, tenant, agent, new)
        assert {e["id"] for e in new} <= _ids(svc, agent)  # recent: kept

        # forget of a recent event right after pruning: a learner that never saw it
        svc.forget(tenant, agent, ["n5"])
        probes = [list(map(float, p)) for p in rng.normal(size=(8, 6))]
        assert_same_predictions(svc, tenant, agent, reference(
            CONFIG, [e for e in old + new if e["id"] != "n5"], batch=4), probes)
        # a pruned id is unknown: 404, and nothing changes
        head = svc.get_agent(tenant, agent)["head_version"]
        with pytest.raises(UnknownEvents) as err:
            svc.forget(tenant, agent, [sorted(pruned)[0]])
        assert error_answer(err.value).status == 404  # type: ignore[union-attr]
        assert svc.get_agent(tenant, agent)["head_version"] == head

        # a fork made now holds pruned events in its state: forgetting one it inherited
        # is exact or refused (410), never a replay that silently misses the pruned ones
        late = svc.fork(tenant, agent, None, "g")["id"]
        try:
            svc.forget(tenant, late, ["n0"])
        except VersionThinned as e:
            assert error_answer(e).status == 410, e  # type: ignore[union-attr]
        else:
            assert_same_predictions(svc, tenant, late, reference(
                CONFIG, [e for e in old + new if e["id"] not in ("n0", "n5")], batch=4),
                probes)

        # back to version 2 (its events are pruned), then forget a new event: exact, or
        # refused (410) when no snapshot after the pruned events can start the replay
        svc.rollback(tenant, agent, 2)
        back = vector_events(rng, 8, 6, 3, "k")
        _send(svc, tenant, agent, back)
        head = svc.get_agent(tenant, agent)["head_version"]
        try:
            svc.forget(tenant, agent, ["k1"])
        except VersionThinned as e:
            assert error_answer(e).status == 410, e  # type: ignore[union-attr]
            assert svc.get_agent(tenant, agent)["head_version"] == head
        else:
            assert_same_predictions(svc, tenant, agent, reference(
                CONFIG, old[:8] + [e for e in back if e["id"] != "k1"], batch=4), probes)

        # the fork still predicts, learns and forgets its own events exactly
        mine = vector_events(rng, 8, 6, 3, "f")
        _send(svc, tenant, fork, mine)
        svc.forget(tenant, fork, ["f2"])
        assert_same_predictions(svc, tenant, fork, reference(
            CONFIG, old + [e for e in mine if e["id"] != "f2"], batch=4), probes)

        # a pending event is never pruned, however old (appended straight to the store; no
        # learner is told, so it stays pending)
        with svc.store.tx() as repo:
            repo.append_events(agent, [{**old[0], "id": "held"}],
                               received_at=utcnow() - timedelta(hours=1))
        runs = jobs.runs
        wait_for(lambda: jobs.runs >= runs + 2, timeout=30, what="retention running again")
        prune_events(svc.store, [agent], 0.0, utcnow())
        assert "held" in _ids(svc, agent)
        assert not jobs.errors, jobs.errors


def _live_bytes(path: str) -> int:
    """Bytes in the SQLite file's pages in use (pages less the free list, times the page
    size: new files have 16 KiB pages, storage/engine.py)."""
    import sqlite3

    with sqlite3.connect(path) as con:
        return int(con.execute("PRAGMA page_count").fetchone()[0]
                   - con.execute("PRAGMA freelist_count").fetchone()[0]) \
            * int(con.execute("PRAGMA page_size").fetchone()[0])


def _stream(tmp_path, prune: bool, rounds: int = 8, per_round: int = 160) -> list[int]:
    """Live SQLite bytes after each round of a stream, the retention job's work run between
    rounds (a snapshot at the head, delta retention, event retention if ``prune``)."""
    path = str(tmp_path / f"grow-{int(prune)}.db")
    config = {**CONFIG, "dim": 64}
    pages = []
    with deployment(f"sqlite:///{path}", batch_max_events=64, batch_burst_events=64) as dep:
        svc = dep.service
        tenant = svc.create_tenant("g")["id"]
        agent = svc.create_agent(tenant, "a", config)["id"]
        rng = np.random.default_rng(5)
        for r in range(rounds):
            evs = vector_events(rng, per_round, 64, 3, f"r{r}-")
            svc.ingest(tenant, agent, evs, partial=False)
            wait_for(lambda: all_applied(svc, tenant, [agent]), what="round applied")
            ray.get([a.snapshot_due.remote(1, 1e-3) for a in svc.learner_handles()])
            now = utcnow() + timedelta(seconds=1)
            with svc.store.tx() as repo:
                repo.apply_retention(agent, 0.0, now)
            if prune:
                prune_events(svc.store, [agent], 0.0, now)
            pages.append(_live_bytes(path))
    return pages


def test_sqlite_database_stops_growing_with_event_retention(ray_cluster, tmp_path):
    kept = _stream(tmp_path, prune=False)
    pruned = _stream(tmp_path, prune=True)
    grow_kept, grow_pruned = kept[-1] - kept[2], pruned[-1] - pruned[2]
    assert grow_kept > 50 * 4096, kept  # without event retention every event's row stays
    assert grow_pruned <= 0.15 * grow_kept, (pruned, kept)
