"""Learner actors: hold head states, micro-batch each agent's events, commit one version per batch.

Events are durable in the store before the client is acknowledged; a ``notify`` only says
"agent X may have pending events", so a lost or repeated notify is harmless and a restarted
learner finds its work by asking the store (``__init__``). Each commit is one transaction:
version row + delta rows + events marked applied + head moved. The effect of every
acknowledged event is therefore exactly once, in acknowledgement order.

Rollback and forget for an agent go through its learner shard too, so the head of an agent
has a single writer: pending events acknowledged before a rollback are applied first (and
are undone by it); events acknowledged after it are applied on the rolled-back state.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections import OrderedDict
from datetime import datetime
from typing import Any, NamedTuple

import ray
from sqlalchemy import func, select

from agent.learner import Learner
from agent.memory.delta import Delta
from storage.models import Event
from storage.repository.events import pending_terms
from storage.repository.version_groups import commit_delta_group, prepare_delta
from workers.actors.encoder import RemoteEncoder
from workers.actors.factory import (
    event_inputs,
    make_learner,
    make_replay,
    state_nbytes,
    use_encoder,
)
from workers.actors.guard import Decision, Guard, check_release, record_action, set_quarantined
from workers.actors.handover import Handed, unpack
from workers.actors.inbox import Inbox
from workers.actors.poison import copy_learner, find_poison, is_transient, learn_checked
from workers.actors.quality import QualityHistogram, pretest
from workers.actors.retention_run import run_retention
from workers.actors.serving import Publication
from workers.contract import ActorRef
from workers.gc_tuning import settle_gc
from workers.settings import Settings
from workers.store import Store

log = logging.getLogger("deltamem.learner")


class _Batch(NamedTuple):
    """A micro-batch learnt on the agent's head (``version``), waiting for its commit."""

    agent_id: str
    version: int
    learner: Learner
    delta: Delta
    seqs: list[int]
    tested: list[bool] | None
    complete: bool  # every pending event the store held up to seqs[-1] is in it


def shard_of(agent_id: str, n_shards: int) -> int:
    """Stable across processes (Python's ``hash`` is salted per process)."""
    return zlib.crc32(agent_id.encode()) % n_shards


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1, max_concurrency=16)
class LearnerActor:
    def __init__(self, shard: int, n_shards: int, settings_json: str) -> None:
        from agent.memory.backend import set_blas_threads

        set_blas_threads(1)  # small matrices: one BLAS thread per process is much faster here
        self._s = Settings.model_validate_json(settings_json)
        self._shard, self._n = shard, n_shards
        use_encoder(RemoteEncoder(self._s.ray_namespace, self._s.encoder_cpus))  # texts: one model
        self._store = Store(self._s.database_url)
        self._heads: dict[str, tuple[int, Learner]] = {}  # agent -> (version, learner)
        # bytes of each held head, least recently used first (guarded by self._cv); beyond
        # learner_cache_bytes the oldest idle heads are dropped (reloaded on their next event)
        self._sizes: OrderedDict[str, int] = OrderedDict()
        self._held = 0  # sum of self._sizes, kept as it changes (guarded by self._cv)
        self._locks: dict[str, threading.RLock] = {}
        self._dirty: set[str] = set()
        self._inbox = Inbox(self._s.queue_max_events)  # accepted events, given with notify
        self._servers: dict[int, ActorRef] = {}  # serving replica -> handle
        self._backlog = 0
        self._cv = threading.Condition()
        # timers (seconds, summed over commits): read_s = pending events + head state from
        # SQL, learn_s = the kernel, commit_s = the commit transactions (commits: how many;
        # a round commits several agents' versions in one), busy_s = all of the draining
        self._stats = {"versions": 0, "events": 0, "commit_s": 0.0, "learn_s": 0.0,
                       "read_s": 0.0, "busy_s": 0.0, "errors": 0, "evicted": 0, "rejected": 0,
                       "inbox_events": 0, "sql_reads": 0, "commits": 0}
        self._quality = QualityHistogram()  # micro-batch hit rates per agent kind (metrics)
        self._guard = Guard()  # detectors of guarded agents (workers/actors/guard.py)
        self._guard_muted: set[str] = set()  # agents whose released events are being applied
        self._quarantined: dict[str, bool] = {}  # the store's flag, read once per agent
        self._decisions: dict[str, tuple[int, Decision]] = {}  # guard actions to take
        self._held_seen: dict[str, int] = {}  # held events taken out of the backlog, by agent
        self._stop = False
        with self._store.read() as repo:  # recover: whatever was acknowledged but not applied
            pending = [a for a in repo.agents_with_pending_events()
                       if shard_of(a, self._n) == self._shard]
        self._dirty.update(pending)
        settle_gc()  # workers/gc_tuning.py
        self._thread = threading.Thread(target=self._loop, name=f"learner-{shard}", daemon=True)
        self._thread.start()

    # ---- messages --------------------------------------------------------------------
    def notify(self, agent_ids: list[str], n_events: int = 0,
               events: dict[str, Handed] | None = None) -> int:
        """Agents that may have pending events, and (``events``) the events accepted for
        them as ``Event.as_replay()`` gives them, or in columns (:mod:`workers.actors.handover`;
        :mod:`workers.actors.inbox`; an agent without them is read from the store). Returns
        this shard's backlog (events)."""
        for agent_id in agent_ids:
            handed = (events or {}).get(agent_id)
            self._inbox.put(agent_id, None if handed is None else unpack(handed))
        with self._cv:
            self._dirty.update(agent_ids)
            self._backlog += n_events
            self._cv.notify()
            return self._backlog

    def pid(self) -> int:
        import os

        return os.getpid()

    def node(self) -> str:
        """The id of the Ray node this shard runs on."""
        return ray.get_runtime_context().get_node_id()

    def ping(self) -> dict[str, Any]:
        return {"shard": self._shard, "backlog": self._backlog, "agents": len(self._heads),
                "held_bytes": self._held, "quality": self._quality.snapshot(),
                "guard": dict(self._guard.counts), **self._stats}

    def flush(self, agent_id: str) -> int:
        """Apply every pending event of ``agent_id`` now; returns the head version."""
        self._drain(agent_id)
        return self._head(agent_id)[0]

    def rollback(self, agent_id: str, version: int) -> dict[str, Any]:
        with self._lock(agent_id):
            self._drain(agent_id)
            with self._store.tx() as repo:
                row = repo.rollback(agent_id, version)
                out = {"version": row.version, "kind": "rollback", "state_of": version,
                       "checksum": row.checksum}
            self._reset(agent_id)
            return out

    def forget(self, agent_id: str, event_ids: list[str]) -> dict[str, Any]:
        with self._lock(agent_id):
            self._drain(agent_id)
            with self._store.tx() as repo:
                cfg = repo.get_agent(agent_id).config
                res = repo.forget(agent_id, event_ids,
                                  make_replay(cfg, self._s.delta_dtype, self._s.batch_max_events))
                out = {"version": res.version.version, "kind": "forget",
                       "events_removed": res.events_removed + res.pending_dropped,
                       "checksum": res.version.checksum}
            # SQLite: the pages that held the erased rows leave the WAL file too
            if not self._store.db.checkpoint():
                log.warning("learner %s: WAL checkpoint after a forget of %s stayed busy",
                            self._shard, agent_id)
            self._reset(agent_id)
            return out

    def snapshot_due(self, every_versions: int, every_s: float) -> int:
        """Write snapshots of held heads that are due; returns how many were written."""
        n = 0
        for agent_id in list(self._heads):
            with self._lock(agent_id):
                if agent_id not in self._heads:
                    continue
                wrote = self._snapshot_if_due(agent_id, *self._heads[agent_id],
                                              every_versions, every_s)
            if wrote:  # outside the agent's lock: a waiting ingest commit goes first
                self._store.db.yield_write_lock()
            n += wrote
        return n

    def _snapshot_if_due(self, agent_id: str, version: int, learner: Learner,
                         every_versions: int, every_s: float) -> int:
        with self._store.read() as repo:  # the usual answer, no, without the write lock
            if not repo.snapshot_due(agent_id, version, every_versions, every_s):
                return 0
        with self._store.tx() as repo:
            if repo.snapshot_due(agent_id, version, every_versions, every_s):
                layers, labels = learner.state
                repo.write_snapshot(agent_id, version, layers, labels)
                return 1
        return 0

    def retention(self, agent_ids: list[str], now_iso: str) -> dict[str, int]:
        """The retention job's work for ``agent_ids`` (this shard's) at ``now_iso``, with this
        deployment's settings (workers/actors/retention_run.py)."""
        s = self._s
        return run_retention(self._store, agent_ids, s.retention_window_s,
                             s.retention_snapshot_spacing_s, s.event_retention_s,
                             datetime.fromisoformat(now_iso))

    def stop(self) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify()

    # ---- internals -------------------------------------------------------------------
    def _lock(self, agent_id: str) -> threading.RLock:
        with self._cv:
            return self._locks.setdefault(agent_id, threading.RLock())

    def _head(self, agent_id: str) -> tuple[int, Learner]:
        held = self._heads.get(agent_id)
        if held is not None:
            with self._cv:
                if agent_id in self._sizes:
                    self._sizes.move_to_end(agent_id)
            return held
        with self._store.read() as repo:
            agent = repo.get_agent(agent_id)
            layers, labels = repo.load_state(agent_id, agent.head_version)
        learner = make_learner(agent.config)
        learner.load_state(layers, labels)
        self._hold(agent_id, agent.head_version, learner)
        return agent.head_version, learner

    def _hold(self, agent_id: str, version: int, learner: Learner) -> None:
        """Keep ``learner`` as the agent's head (the caller holds the agent's lock), then drop
        least recently used idle heads while the shard holds more than learner_cache_bytes."""
        self._heads[agent_id] = (version, learner)
        size = state_nbytes(learner)
        with self._cv:
            self._held += size - self._sizes.get(agent_id, 0)
            self._sizes[agent_id] = size
            self._sizes.move_to_end(agent_id)
            if self._held <= self._s.learner_cache_bytes:  # the usual case: nothing to scan
                return
            older = [a for a in self._sizes if a != agent_id]
        for other in older:
            if self._held <= self._s.learner_cache_bytes:
                break
            lock = self._lock(other)
            if not lock.acquire(blocking=False):  # busy in another thread: keep it
                continue
            try:
                held = self._heads.get(other)
                if held is None:
                    continue
                # the head is committed already; a snapshot (when due) keeps its reload short
                self._snapshot_if_due(other, *held, self._s.snapshot_every_versions,
                                      self._s.snapshot_every_s)
                self._drop(other)
                self._stats["evicted"] += 1
            finally:
                lock.release()

    def _drop(self, agent_id: str) -> None:
        """Forget the agent's head (reloaded from the store when next needed), and what the
        inbox knows of it (its next events are read from the store)."""
        self._heads.pop(agent_id, None)
        self._inbox.reset(agent_id)
        self._quarantined.pop(agent_id, None)  # read from the store again when next needed
        with self._cv:
            self._held -= self._sizes.pop(agent_id, 0)

    def _reset(self, agent_id: str) -> None:
        self._drop(agent_id)
        version, _ = self._head(agent_id)
        self._publish([(agent_id, None, version, None)])

    def _loop(self) -> None:
        backoff = self._s.learner_backoff_s
        while True:
            with self._cv:
                while not self._dirty and not self._stop:
                    self._cv.wait()
                if self._stop:
                    return
                # time window: give a burst a moment to fill the micro-batch
                deadline = time.monotonic() + self._s.batch_max_ms / 1000.0
                while self._backlog < self._s.batch_max_events and not self._stop:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cv.wait(left)
                agents, self._dirty = sorted(self._dirty), set()
            failed = self._drain_round(agents)
            # events already acknowledged must not wait for a next notify (there may be none,
            # e.g. the database restarted under the last commit): retry, backing off (settings)
            backoff = min(self._s.learner_backoff_max_s, 2 * backoff) if failed \
                else self._s.learner_backoff_s
            if failed:
                with self._cv:
                    self._cv.wait(backoff)
                    self._dirty.update(failed)

    def _drain(self, agent_id: str) -> None:
        """Apply every pending event of ``agent_id``, one version per micro-batch (the
        one-agent path; :meth:`_drain_round` commits several agents' batches at once)."""
        with self._lock(agent_id):
            while True:
                b = self._prepare(agent_id)
                if b is None:
                    return
                self._publish([self._finish(b, self._commit([b])[0])])

    def _drain_round(self, agents: list[str]) -> list[str]:
        """Apply the pending events of ``agents``: each pass learns one micro-batch per agent
        and commits them all in one transaction (one write lock, one fsync), until none has
        events left. A pass whose transaction fails is redone agent by agent
        (:meth:`_drain`, which finds the one at fault). Returns the agents that failed."""
        cap = 4 * max(self._s.batch_max_events, self._s.batch_burst_events)
        failed: list[str] = []
        todo = list(agents)
        while todo:
            group: list[_Batch] = []
            later: list[str] = []
            held: list[threading.RLock] = []
            rows: list[Any] | None = None
            n = 0
            try:
                for agent_id in todo:
                    if n >= cap:  # the transaction is full: the rest in the next one
                        later.append(agent_id)
                        continue
                    lock = self._lock(agent_id)
                    lock.acquire()
                    held.append(lock)
                    try:
                        b = self._prepare(agent_id)
                    except Exception:  # keep the shard alive; retried after a backoff
                        self._failed(agent_id)
                        failed.append(agent_id)
                        continue
                    if b is not None:
                        group.append(b)
                        n += len(b.seqs)
                if group:
                    try:
                        rows = self._commit(group)
                    except Exception:  # noqa: BLE001 - redone one agent at a time
                        log.warning("learner %s: a commit of %d agents failed; committing them "
                                    "one by one", self._shard, len(group), exc_info=True)
                    if rows is not None:  # the replicas hear of the pass in one message
                        self._publish([self._finish(b, row)
                                       for b, row in zip(group, rows, strict=True)])
            finally:
                for lock in held:
                    lock.release()
            if group and rows is None:
                for b in group:
                    try:
                        self._drain(b.agent_id)
                    except Exception:
                        self._failed(b.agent_id)
                        failed.append(b.agent_id)
            else:  # agents that had a batch may have more
                later = [b.agent_id for b in group] + later
            todo = later
        return failed

    def _failed(self, agent_id: str) -> None:
        self._stats["errors"] += 1
        log.exception("learner %s: applying events of %s failed", self._shard, agent_id)
        self._drop(agent_id)

    def _prepare(self, agent_id: str) -> _Batch | None:
        """The agent's next micro-batch learnt on its head, not committed (None: nothing
        pending, or held by its guard). The caller holds the agent's lock; on an error the
        head is dropped (the learner may hold part of the batch)."""
        while True:
            if self._held_back(agent_id):  # quarantined by its guard: events stay held
                return None
            tr = time.perf_counter()
            limit = max(self._s.batch_max_events, self._s.batch_burst_events)
            payloads, seqs, complete = self._pending(agent_id, limit)
            if not seqs:
                self._stats["read_s"] += time.perf_counter() - tr
                self._stats["busy_s"] += time.perf_counter() - tr
                return None
            version, learner = self._head(agent_id)
            t0 = time.perf_counter()
            self._stats["read_s"] += t0 - tr
            X = event_inputs(payloads)  # (n, dim) once, for the pretest and the write
            tested = pretest(learner, payloads, X)  # test-then-train: the head before the batch
            try:
                try:
                    delta = learn_checked(learner, payloads, self._s.delta_dtype, X)
                except Exception as exc:  # noqa: BLE001 - isolate the events that cause it
                    if is_transient(exc):
                        raise
                    self._drop(agent_id)  # the learner may hold part of the batch
                    got = self._isolate(agent_id, payloads, seqs)
                    if got is None:  # poison rejected: read the pending events again
                        continue
                    version, learner, delta, n = got
                    seqs = seqs[:n]
            except Exception:
                self._drop(agent_id)
                raise
            t1 = time.perf_counter()
            self._stats["learn_s"] += t1 - t0
            self._stats["busy_s"] += t1 - tr
            return _Batch(agent_id, version, learner, delta, seqs, tested,
                          complete and len(seqs) == len(payloads))

    def _commit(self, group: list[_Batch]) -> list[Any]:
        """One transaction: a version per batch (with its quality and guard checks); the
        version rows, in order. On an error every head of the group is dropped."""
        t1 = time.perf_counter()
        try:
            # checked and encoded before the transaction: the write lock is held for the
            # statements alone (storage/repository/version_groups.py)
            commits = [prepare_delta(b.agent_id, b.version, b.delta, b.seqs, b.learner.checksum(),
                                     b.delta.norm(),
                                     None if b.tested is None else b.tested[:len(b.seqs)])
                       for b in group]
            with self._store.tx() as repo:
                rows = commit_delta_group(repo, commits)
                for b, row in zip(group, rows, strict=True):
                    self._after_commit(repo, row, b.learner, b.tested, len(b.seqs))
        except Exception:
            for b in group:
                self._drop(b.agent_id)  # the learner holds an uncommitted write
                self._decisions.pop(b.agent_id, None)  # a guard check of a version not made
            raise
        t2 = time.perf_counter()
        self._stats["commit_s"] += t2 - t1
        self._stats["busy_s"] += t2 - t1
        self._stats["commits"] += 1
        return rows

    def _finish(self, b: _Batch, row: Any) -> Publication:
        """After the commit: the inbox, the held head, the backlog; returns what the replicas
        are told (:meth:`_publish`)."""
        tf = time.perf_counter()
        self._inbox.committed(b.agent_id, b.seqs[-1], b.complete)
        self._hold(b.agent_id, row.version, b.learner)
        with self._cv:
            self._backlog = max(0, self._backlog - len(b.seqs))
        self._stats["versions"] += 1
        self._stats["events"] += len(b.seqs)
        self._stats["busy_s"] += time.perf_counter() - tf
        return (b.agent_id, b.version, row.version, b.learner.for_reads(b.delta))

    def _after_commit(self, repo: Any, row: Any, learner: Learner, tested: list[bool] | None,
                      n: int) -> None:
        """In the commit's transaction, after the version ``row`` was written with its quality
        totals: the quality histogram and the guard (workers/actors/quality.py)."""
        if tested is None:
            return
        agent_id, version = row.agent_id, row.version
        hits = tested[:n]  # a batch cut short by a poison event commits its first n events
        if hits:
            self._quality.observe(learner.config.kind, sum(hits) / len(hits))
        policy = learner.config.guard
        if policy is not None and hits and agent_id not in self._guard_muted:
            decision = self._guard.observe(repo, agent_id, policy, version, hits,
                                           row.tested_total)
            if decision is not None:  # settled and taken after this commit (_guard_act)
                self._decisions[agent_id] = (version, decision)

    def _guard_act(self, agent_id: str, version: int, d: Decision) -> None:
        """Settle the decision (its check fits learners on a read transaction, never under the
        write lock); record the action; quarantine, or roll back and quarantine
        (workers/actors/guard.py)."""
        if d.check is not None:
            with self._store.read() as repo:
                d = self._guard.settle(repo, agent_id, d)
        with self._store.tx() as repo:
            if d.action == "alert":
                record_action(repo, agent_id, "alert", version, d.reason)
            elif d.action == "rollback" and d.good_version is not None:
                row = repo.rollback(agent_id, d.good_version)
                record_action(repo, agent_id, "rollback", row.version,
                              f"{d.reason}; rolled back to version {d.good_version}, new events held")
                set_quarantined(repo, agent_id, True)
            else:
                record_action(repo, agent_id, "quarantine", version, f"{d.reason}; new events held")
                set_quarantined(repo, agent_id, True)
        self._guard.counts[d.action] = self._guard.counts.get(d.action, 0) + 1
        self._guard.reset(agent_id)
        if d.action != "alert":
            self._quarantined.pop(agent_id, None)
            self._reset(agent_id)  # reload the head (moved by a rollback)

    def _held_back(self, agent_id: str) -> bool:
        """Take a pending guard action; then whether the agent is quarantined (events held)."""
        pending = self._decisions.pop(agent_id, None)
        if pending is not None:
            try:
                self._guard_act(agent_id, *pending)
            except Exception:  # noqa: BLE001 - a failed action never stops the agent
                log.exception("learner %s: guard action for %s failed", self._shard, agent_id)
        q = self._quarantined.get(agent_id)
        if q is None:
            with self._store.read() as repo:
                q = self._quarantined[agent_id] = bool(repo.get_agent(agent_id).quarantined)
        if q:  # held events leave the shard's backlog: they must not throttle other agents
            with self._store.read() as repo:
                a = repo.get_agent(agent_id)
                held = a.pending
            with self._cv:
                self._backlog = max(0, self._backlog - (held - self._held_seen.get(agent_id, 0)))
            self._held_seen[agent_id] = held
        return q

    def release(self, agent_id: str, event_ids: list[str] | None) -> dict[str, Any]:
        """Lift the quarantine and apply the held events (workers/actors/guard.py)."""
        with self._lock(agent_id):
            with self._store.tx() as repo:
                a = repo.get_agent(agent_id)
                held = a.pending
                check_release(repo, agent_id, event_ids, held)
                set_quarantined(repo, agent_id, False)
                record_action(repo, agent_id, "release", a.head_version,
                              f"an operator released {held} held events")
            self._quarantined[agent_id] = False
            with self._cv:  # the held events count again until applied
                self._backlog += self._held_seen.pop(agent_id, 0)
            self._guard_muted.add(agent_id)  # the operator accepted these: no action on them
            try:
                self._drain(agent_id)
            finally:
                self._guard_muted.discard(agent_id)
                self._guard.reset(agent_id)  # watching starts again after them
                self._decisions.pop(agent_id, None)
            with self._store.read() as repo:  # what was applied (forgotten held events are not)
                released = repo.get_agent(agent_id).events_applied - a.events_applied
            return {"released": released, "version": self._head(agent_id)[0]}

    def _isolate(self, agent_id: str, payloads: list[dict[str, Any]],
                 seqs: list[int]) -> tuple[int, Learner, Delta, int] | None:
        """After a failed micro-batch (workers/actors/poison.py): reject the events that fail on
        their own (None: the caller reads the pending events again), or, when none does,
        learn the first clean part alone: ``(head version, learner, delta, events in it)``."""
        version, head = self._head(agent_id)
        config = head.config
        poison, clean = find_poison(head, payloads,
                                    lambda lr, evs: learn_checked(lr, evs, self._s.delta_dtype),
                                    lambda lr: copy_learner(config, lr))
        if poison:
            with self._store.tx() as repo:
                n = repo.reject_events(agent_id, [(seqs[i], why) for i, why in poison])
            with self._cv:
                self._backlog = max(0, self._backlog - n)
            self._stats["rejected"] += n
            log.warning("learner %s: agent %s: %d event(s) rejected, first: seq %d: %s",
                        self._shard, agent_id, n, seqs[poison[0][0]], poison[0][1])
            self._drop(agent_id)  # what is pending now is read again (without the poison)
            return None
        delta = learn_checked(head, payloads[:clean], self._s.delta_dtype)
        return version, head, delta, clean

    def _pending(self, agent_id: str, limit: int) -> tuple[list[dict[str, Any]], list[int], bool]:
        """The agent's next pending events (at most ``limit``): from the inbox when it holds
        the next ones, else from the store (recovery). ``(events, seqs, complete)``; complete:
        no pending event beyond these is known only to the store."""
        if self._inbox.unstarted(agent_id):  # first events since start: where do they begin?
            with self._store.read() as repo:
                self._inbox.start(agent_id, repo.session.scalar(  # its oldest pending seq
                    select(func.min(Event.seq)).where(*pending_terms(agent_id))))
        got = self._inbox.take(agent_id, limit)
        if got is not None:
            self._stats["inbox_events"] += len(got)
            return got, [int(e["seq"]) for e in got], True
        self._stats["sql_reads"] += 1
        with self._store.read() as repo:
            rows = repo.pending_events(agent_id, limit=limit)
            return ([e.as_replay() for e in rows], [e.seq for e in rows],  # arrays decoded
                    len(rows) < limit)

    def _publish(self, items: list[Publication]) -> None:
        """Tell every serving replica: one message per replica for ``items`` (a pass's
        versions, in commit order). Handles are looked up once (a restarted replica keeps its
        name and handle); a replica not up yet rebuilds from the store on a miss."""
        for i in range(self._s.serving_replicas):
            h = self._servers.get(i)
            if h is None:
                try:
                    h = self._servers[i] = ray.get_actor(f"serving-{i}",
                                                         namespace=self._s.ray_namespace)
                except ValueError:
                    continue
            h.publish_many.remote(items)
