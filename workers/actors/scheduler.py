"""Scheduled jobs (APScheduler 3.x), persisted in the deployment's own database.

Jobs: snapshots every N versions or T seconds (asked of the learners, which hold the head
states), retention, and a health probe. The job store is APScheduler's SQLAlchemy store with
its pickle replaced by JSON (stored data is never pickled); its table ``scheduler_jobs`` is
created by the Alembic migrations, like every other table. One scheduler acts per deployment:
every job first takes or renews a lease row (``scheduler_lease``); a second deployment on the
same database runs its scheduler idle until the lease expires.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import ray
from apscheduler.job import Job
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from apscheduler.util import datetime_to_utc_timestamp
from sqlalchemy import text

from workers.actors.learner import shard_of

log = logging.getLogger("deltamem.scheduler")
LEASE_S = 60.0
_RUNTIMES: dict[str, Any] = {}  # namespace -> Runtime, in the driver process only


def _trigger_json(t: IntervalTrigger) -> dict[str, Any]:
    st = t.__getstate__()
    return {"type": "interval", "seconds": st["interval"].total_seconds(),
            "start_date": st["start_date"].isoformat() if st["start_date"] else None,
            "end_date": st["end_date"].isoformat() if st["end_date"] else None,
            "timezone": str(st["timezone"]), "jitter": st["jitter"]}


def _trigger_from(d: dict[str, Any]) -> IntervalTrigger:
    if d.get("type") != "interval":
        raise ValueError(f"unsupported trigger {d.get('type')!r}")
    return IntervalTrigger(seconds=d["seconds"], start_date=d["start_date"],
                           end_date=d["end_date"], timezone=d["timezone"], jitter=d["jitter"])


class JsonJobStore(SQLAlchemyJobStore):
    """APScheduler's SQLAlchemy job store, with JSON instead of pickle for the job state."""

    def start(self, scheduler: Any, alias: str) -> None:
        super(SQLAlchemyJobStore, self).start(scheduler, alias)  # table comes from Alembic

    @staticmethod
    def _dumps(job: Job) -> bytes:
        st = job.__getstate__()
        nrt = st["next_run_time"]
        return json.dumps({**st, "trigger": _trigger_json(st["trigger"]), "args": list(st["args"]),
                           "next_run_time": nrt.isoformat() if nrt else None}).encode()

    def add_job(self, job: Job) -> None:
        from apscheduler.jobstores.base import ConflictingIdError
        from sqlalchemy.exc import IntegrityError

        ins = self.jobs_t.insert().values(id=job.id, job_state=self._dumps(job),
                                          next_run_time=datetime_to_utc_timestamp(job.next_run_time))
        with self.engine.begin() as conn:
            try:
                conn.execute(ins)
            except IntegrityError:
                raise ConflictingIdError(job.id) from None

    def update_job(self, job: Job) -> None:
        from apscheduler.jobstores.base import JobLookupError

        upd = (self.jobs_t.update().where(self.jobs_t.c.id == job.id)
               .values(job_state=self._dumps(job),
                       next_run_time=datetime_to_utc_timestamp(job.next_run_time)))
        with self.engine.begin() as conn:
            if conn.execute(upd).rowcount == 0:
                raise JobLookupError(job.id)

    def _reconstitute_job(self, job_state: bytes) -> Job:
        st = json.loads(bytes(job_state).decode())
        st["trigger"] = _trigger_from(st["trigger"])
        st["args"] = tuple(st["args"])
        st["next_run_time"] = (datetime.fromisoformat(st["next_run_time"])
                               if st["next_run_time"] else None)
        st["jobstore"] = self
        job = Job.__new__(Job)
        job.__setstate__(st)
        job._scheduler = self._scheduler
        job._jobstore_alias = self._alias
        return job


def _hold_lease(rt: Any) -> bool:
    """Take or renew this deployment's scheduler lease; False if another holds it."""
    now = datetime.now(UTC).replace(tzinfo=None)
    until = now + timedelta(seconds=LEASE_S)
    with rt.store.db.write_session() as session:  # SQLite: take the write lock at BEGIN
        conn = session.connection()
        # no row yet: one insert wins, the others (jobs starting together, another deployment)
        # find its row; PostgreSQL locks no absent row, so a plain INSERT would raise for them
        res = conn.execute(text("INSERT INTO scheduler_lease (name, holder, expires_at) "
                                "VALUES ('scheduler', :h, :t) ON CONFLICT (name) DO NOTHING"),
                           {"h": rt.scheduler_id, "t": until})
        if res.rowcount == 1:
            return True
        row = conn.execute(text("SELECT holder, expires_at FROM scheduler_lease "
                                "WHERE name = 'scheduler'")).one()
        expires = row.expires_at if isinstance(row.expires_at, datetime) \
            else datetime.fromisoformat(str(row.expires_at))
        if row.holder != rt.scheduler_id and expires > now:
            return False
        res = conn.execute(text("UPDATE scheduler_lease SET holder = :h, expires_at = :t "
                                "WHERE name = 'scheduler' AND holder = :old"),
                           {"h": rt.scheduler_id, "t": until, "old": row.holder})
        return res.rowcount == 1


def snapshot_job(namespace: str) -> None:
    rt = _RUNTIMES.get(namespace)
    if rt is None or not _hold_lease(rt):
        return
    n = sum(ray.get([a.snapshot_due.remote(rt.s.snapshot_every_versions, rt.s.snapshot_every_s)
                     for a in rt.learner_handles()], timeout=300))
    if n:
        log.info("wrote %d snapshots", n)


def retention_job(namespace: str) -> None:
    """List the agents and have each learner shard run retention for the ones it owns
    (workers/actors/retention_run.py: not in this process, which answers HTTP requests)."""
    rt = _RUNTIMES.get(namespace)
    if rt is None or not _hold_lease(rt):
        return
    now = datetime.now(UTC)
    with rt.store.read() as repo:
        ids = repo.all_agent_ids()
    learners = rt.learner_handles()
    parts: list[list[str]] = [[] for _ in learners]
    for agent_id in ids:
        parts[shard_of(agent_id, len(learners))].append(agent_id)
    reports = ray.get([h.retention.remote(part, now.isoformat())
                       for h, part in zip(learners, parts, strict=True) if part],
                      timeout=rt.s.actor_call_timeout_s)
    total = {k: sum(r[k] for r in reports)
             for k in ("dropped", "thinned", "bytes_freed", "events", "versions_deleted")}
    if total["dropped"]:
        log.info("retention dropped the deltas of %d versions (%d thinned, %d bytes freed)",
                 total["dropped"], total["thinned"], total["bytes_freed"])
    if total["events"]:
        log.info("event retention deleted %d events", total["events"])
    if total["versions_deleted"]:
        log.info("the version horizon deleted %d versions", total["versions_deleted"])


def health_job(namespace: str) -> None:
    rt = _RUNTIMES.get(namespace)
    if rt is None or not _hold_lease(rt):
        return
    status = rt.ready()
    if not status.get("ready"):
        log.warning("health probe: not ready: %s", status)


def start_scheduler(settings: Any, runtime: Any) -> BackgroundScheduler:
    runtime.scheduler_id = uuid.uuid4().hex
    _RUNTIMES[settings.ray_namespace] = runtime
    store = JsonJobStore(engine=runtime.store.engine, tablename="scheduler_jobs")
    sched = BackgroundScheduler(jobstores={"default": store}, timezone="UTC",
                                job_defaults={"coalesce": True, "max_instances": 1,
                                              "misfire_grace_time": 60})
    sched.start()
    ns = settings.ray_namespace
    every = max(1.0, min(10.0, settings.snapshot_every_s))
    for fn, seconds in ((snapshot_job, every), (retention_job, settings.retention_interval_s),
                        (health_job, settings.health_interval_s)):
        sched.add_job(f"workers.actors.scheduler:{fn.__name__}", IntervalTrigger(seconds=seconds),
                      args=[ns], id=f"{ns}:{fn.__name__}", name=fn.__name__,
                      replace_existing=True)
    return sched
