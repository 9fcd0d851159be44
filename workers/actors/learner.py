"""Learner actors: hold head states, micro-batch each agent's events, commit one version per batch.

Events are durable in the store before the client is acknowledged; a ``notify`` only says
"agent X may have pending events", so a lost or repeated notify is harmless and a restarted
learner finds its work by asking the store (``__init__``). Each commit is one transaction:
version row + delta rows + events marked applied + head moved. The effect of every
acknowledged event is therefore exactly once, in acknowledgement order.

Rollback and forget for an agent go through its learner shard too, so the head of an agent
has a single writer: pending events acknowledged before a rollback are applied first (and
are undone by it); events acknowledged after it are applied on the rolled-back state.

The actor is composed of: the heads it holds (:mod:`workers.actors.held_heads`), the inbox of
accepted events (:mod:`workers.actors.inbox`), one micro-batch's learning and commit
(:mod:`workers.actors.micro_batch`) and the guard's side (:mod:`workers.actors.shard_guard`);
here are its messages, the loop that groups agents into rounds, and the operations.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from datetime import datetime
from typing import Any

import ray

from agent.learner import Learner
from workers.actors.encoder import RemoteEncoder
from workers.actors.factory import make_replay, use_encoder
from workers.actors.handover import Handed
from workers.actors.held_heads import HeldHeads
from workers.actors.inbox import Inbox
from workers.actors.micro_batch import Batch, MicroBatches
from workers.actors.retention_run import run_retention
from workers.actors.serving import Publication
from workers.actors.shard_guard import ShardGuard
from workers.contract import ActorRef
from workers.gc_tuning import settle_gc
from workers.settings import Settings
from workers.store import Store

log = logging.getLogger("deltamem.learner")


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
        # heads held, within learner_cache_bytes (workers/actors/held_heads.py)
        self._cache = HeldHeads(self._store, self._s.learner_cache_bytes, self._evict)
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
        # the guard's watching, actions and held agents (workers/actors/shard_guard.py)
        self._guard = ShardGuard(self._store, shard, self._adjust_backlog, self._reset)
        # learning and committing each micro-batch (workers/actors/micro_batch.py)
        self._batches = MicroBatches(self._store, self._s, shard, self._cache, self._inbox,
                                     self._guard, self._stats, self._drop, self._adjust_backlog)
        self._stop = False
        self._round_end = float("-inf")  # when the last round ended (monotonic): none yet
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
        now = time.monotonic()
        for agent_id in agent_ids:
            handed = (events or {}).get(agent_id)
            self._inbox.put(agent_id, handed)  # columns stay columns
            if handed:  # its apply lag runs from now (workers/actors/apply_lag.py)
                self._batches.lag.arrived(agent_id, int(handed[-1]["seq"]), now)
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
        return {"shard": self._shard, "backlog": self._backlog, "agents": len(self._cache),
                "held_bytes": self._cache.held_bytes, "quality": self._batches.quality.snapshot(),
                "guard": self._guard.counts, "apply_lag": self._batches.lag.histogram(),
                **self._stats}

    def apply_lag(self, last: int) -> dict[str, Any]:
        """The apply lag's record, quantiles of the ``last`` figures (benchmarks)."""
        return self._batches.lag.snapshot(last)

    def flush(self, agent_id: str) -> int:
        """Apply every pending event of ``agent_id`` now; returns the head version."""
        self._drain(agent_id)
        return self._cache.get(agent_id)[0]

    def rollback(self, agent_id: str, version: int) -> dict[str, Any]:
        with self._cache.lock(agent_id):
            self._drain(agent_id)
            with self._store.tx() as repo:
                row = repo.rollback(agent_id, version)
                out = {"version": row.version, "kind": "rollback", "state_of": version,
                       "checksum": row.checksum}
            self._reset(agent_id)
            return out

    def forget(self, agent_id: str, event_ids: list[str]) -> dict[str, Any]:
        with self._cache.lock(agent_id):
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

    def release(self, agent_id: str, event_ids: list[str] | None) -> dict[str, Any]:
        """Lift the quarantine and apply the held events (workers/actors/shard_guard.py)."""
        with self._cache.lock(agent_id):
            released = self._guard.release(agent_id, event_ids, lambda: self._drain(agent_id))
            return {"released": released, "version": self._cache.get(agent_id)[0]}

    def snapshot_due(self, every_versions: int, every_s: float) -> int:
        """Write snapshots of held heads that are due; returns how many were written."""
        n = 0
        for agent_id in self._cache.agents():
            with self._cache.lock(agent_id):
                held = self._cache.peek(agent_id)
                if held is None:
                    continue
                wrote = self._snapshot_if_due(agent_id, *held, every_versions, every_s)
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
                             datetime.fromisoformat(now_iso), s.version_history_s)

    def stop(self) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify()

    # ---- internals -------------------------------------------------------------------
    def _evict(self, agent_id: str, version: int, learner: Learner) -> None:
        """An idle head leaves the cache (workers/actors/held_heads.py); it is committed
        already, and a snapshot, when due, keeps its reload short."""
        self._snapshot_if_due(agent_id, version, learner, self._s.snapshot_every_versions,
                              self._s.snapshot_every_s)
        self._drop(agent_id)
        self._stats["evicted"] += 1

    def _drop(self, agent_id: str) -> None:
        """Forget the agent's head (reloaded from the store when next needed), and what the
        inbox knows of it (its next events are read from the store)."""
        self._cache.drop(agent_id)
        self._inbox.reset(agent_id)
        self._guard.drop(agent_id)

    def _reset(self, agent_id: str) -> None:
        self._drop(agent_id)
        version, _ = self._cache.get(agent_id)
        self._publish([(agent_id, None, version, None)])

    def _loop(self) -> None:
        backoff = self._s.learner_backoff_s
        while True:
            with self._cv:
                while not self._dirty and not self._stop:
                    self._cv.wait()
                if self._stop:
                    return
                # rounds start batch_max_ms apart at least (from the end of one to the start
                # of the next), so under load the events arriving meanwhile share a version;
                # an event reaching an idle learner (no round that recent) goes at once
                deadline = self._round_end + self._s.batch_max_ms / 1000.0
                while self._backlog < self._s.batch_max_events and not self._stop:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cv.wait(left)
                agents, self._dirty = sorted(self._dirty), set()
            failed = self._drain_round(agents)
            self._round_end = time.monotonic()
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
        with self._cache.lock(agent_id):
            while True:
                b = self._batches.prepare(agent_id)
                if b is None:
                    return
                self._publish([self._batches.finish(b, self._batches.commit([b])[0])])

    def _drain_round(self, agents: list[str]) -> list[str]:
        """Apply the pending events of ``agents``: each pass learns one micro-batch per agent
        and commits them all in one transaction (one write lock, one fsync); another pass takes
        the agents whose batch was cut short (a full batch, a poison event, the store's next
        events), while events that arrived meanwhile wait for the next round. A pass whose
        transaction fails is redone agent by agent (:meth:`_drain`, which finds the one at
        fault). Returns the agents that failed."""
        limit = self._batches.limit
        cap = 4 * limit
        failed: list[str] = []
        todo = list(agents)
        while todo:
            group: list[Batch] = []
            later: list[str] = []
            held: list[threading.RLock] = []
            rows: list[Any] | None = None
            n = 0
            try:
                for agent_id in todo:
                    if n >= cap:  # the transaction is full: the rest in the next one
                        later.append(agent_id)
                        continue
                    lock = self._cache.lock(agent_id)
                    lock.acquire()
                    held.append(lock)
                    try:
                        b = self._batches.prepare(agent_id)
                    except Exception:  # keep the shard alive; retried after a backoff
                        self._failed(agent_id)
                        failed.append(agent_id)
                        continue
                    if b is not None:
                        group.append(b)
                        n += len(b.seqs)
                if group:
                    try:
                        rows = self._batches.commit(group)
                    except Exception:  # noqa: BLE001 - redone one agent at a time
                        log.warning("learner %s: a commit of %d agents failed; committing them "
                                    "one by one", self._shard, len(group), exc_info=True)
                    if rows is not None:  # the replicas hear of the pass in one message
                        self._publish([self._batches.finish(b, row)
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
            else:  # an agent whose batch was cut short has more now; events that came
                # meanwhile came with a notify (the next round, a window later, takes them)
                later = [b.agent_id for b in group
                         if not b.complete or len(b.seqs) >= limit] + later
            todo = later
        return failed

    def _failed(self, agent_id: str) -> None:
        self._stats["errors"] += 1
        log.exception("learner %s: applying events of %s failed", self._shard, agent_id)
        self._drop(agent_id)

    def _adjust_backlog(self, n: int) -> None:
        """Move the shard's backlog (events) by ``n``, never below 0."""
        with self._cv:
            self._backlog = max(0, self._backlog + n)

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
