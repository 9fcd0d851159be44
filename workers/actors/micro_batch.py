"""One micro-batch of an agent: its pending events learnt on the head (test-then-train first),
then committed, with other agents' batches, in one transaction; the learner shard
(workers/actors/learner.py) drives the rounds.

- :meth:`MicroBatches.prepare` takes the agent's next pending events (from the inbox the
  ingest actor fills, or from the store when recovering), scores them with the head before
  learning (the version's quality totals), and learns them into a delta, not committed. An
  event the learner cannot apply is found and rejected (workers/actors/poison.py); the rest is
  learnt.
- :meth:`MicroBatches.commit` writes a version per batch (delta rows, events marked applied,
  head moved, quality totals, the guard's observation) in one transaction.
- :meth:`MicroBatches.finish` moves the inbox, the held head and the backlog past a committed
  batch and returns what the serving replicas are told.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from sqlalchemy import func, select

from agent.learner import Learner
from agent.memory.delta import Delta
from storage.models import Event
from storage.repository.events import pending_terms
from storage.repository.version_groups import commit_delta_group, prepare_delta
from workers.actors.apply_lag import ApplyLag
from workers.actors.factory import event_inputs, write_keys
from workers.actors.handover import AcceptedColumns
from workers.actors.held_heads import HeldHeads
from workers.actors.inbox import Inbox
from workers.actors.poison import copy_learner, find_poison, is_transient, learn_checked
from workers.actors.quality import QualityHistogram, pretest
from workers.actors.serving import Publication
from workers.actors.shard_guard import ShardGuard
from workers.settings import Settings
from workers.store import Store

log = logging.getLogger("deltamem.learner")


class Batch(NamedTuple):
    """A micro-batch learnt on the agent's head (``version``), waiting for its commit."""

    agent_id: str
    version: int
    learner: Learner
    delta: Delta
    seqs: list[int]
    tested: list[bool] | None
    complete: bool  # every pending event the store held up to seqs[-1] is in it


class MicroBatches:
    """Learning and committing micro-batches for one learner shard.

    Parameters
    ----------
    store, settings : the shard's.
    shard : its number (in log lines).
    cache, inbox, guard : the shard's heads, accepted events and guard.
    stats : the shard's counters and timers (``ping``), updated in place.
    drop : ``drop(agent_id)`` forgets the agent's head and what the inbox knows of it.
    adjust_backlog : ``adjust_backlog(n)`` moves the shard's backlog by ``n`` events.
    """

    def __init__(self, store: Store, settings: Settings, shard: int, cache: HeldHeads,
                 inbox: Inbox, guard: ShardGuard, stats: dict[str, Any],
                 drop: Callable[[str], None], adjust_backlog: Callable[[int], None]) -> None:
        self._store, self._s, self._shard = store, settings, shard
        self._cache, self._inbox, self._guard = cache, inbox, guard
        self._stats = stats
        self._drop = drop
        self._adjust_backlog = adjust_backlog
        self.quality = QualityHistogram()  # micro-batch hit rates per agent kind (metrics)
        self.lag = ApplyLag()  # notify -> commit, per notify (workers/actors/apply_lag.py)
        # the most events a batch takes: one that full may leave more pending
        self.limit = max(settings.batch_max_events, settings.batch_burst_events)

    def prepare(self, agent_id: str) -> Batch | None:
        """The agent's next micro-batch learnt on its head, not committed (None: nothing
        pending, or held by its guard). The caller holds the agent's lock; on an error the
        head is dropped (the learner may hold part of the batch)."""
        while True:
            if self._guard.held_back(agent_id):  # quarantined by its guard: events stay held
                return None
            tr = time.perf_counter()
            payloads, seqs, complete = self._pending(agent_id, self.limit)
            if not seqs:
                self._stats["read_s"] += time.perf_counter() - tr
                self._stats["busy_s"] += time.perf_counter() - tr
                return None
            version, learner = self._cache.get(agent_id)
            t0 = time.perf_counter()
            self._stats["read_s"] += t0 - tr
            X = event_inputs(payloads)  # (n, dim) once, for the pretest and the write
            K = write_keys(learner, X)  # (n, d_k) once too, where reads and writes share them
            tested = pretest(learner, payloads, X, K)  # test-then-train: the head before
            try:
                try:
                    delta = learn_checked(learner, payloads, self._s.delta_dtype, X, K)
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
            return Batch(agent_id, version, learner, delta, seqs, tested,
                         complete and len(seqs) == len(payloads))

    def commit(self, group: list[Batch]) -> list[Any]:
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
                self._guard.discard(b.agent_id)
            raise
        t2 = time.perf_counter()
        self._stats["commit_s"] += t2 - t1
        self._stats["busy_s"] += t2 - t1
        self._stats["commits"] += 1
        return rows

    def finish(self, b: Batch, row: Any) -> Publication:
        """After the commit: the inbox, the held head, the backlog, the apply lag; returns
        what the replicas are told (``LearnerActor._publish``)."""
        tf = time.perf_counter()
        self.lag.applied(b.agent_id, b.seqs[-1], time.monotonic())
        self._inbox.committed(b.agent_id, b.seqs[-1], b.complete)
        self._cache.hold(b.agent_id, row.version, b.learner)
        self._adjust_backlog(-len(b.seqs))
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
        hits = tested[:n]  # a batch cut short by a poison event commits its first n events
        if hits:
            self.quality.observe(learner.config.kind, sum(hits) / len(hits))
        self._guard.observe(repo, row, learner, hits)

    def _isolate(self, agent_id: str, payloads: Sequence[dict[str, Any]],
                 seqs: list[int]) -> tuple[int, Learner, Delta, int] | None:
        """After a failed micro-batch (workers/actors/poison.py): reject the events that fail on
        their own (None: the caller reads the pending events again), or, when none does,
        learn the first clean part alone: ``(head version, learner, delta, events in it)``."""
        version, head = self._cache.get(agent_id)
        config = head.config
        poison, clean = find_poison(head, payloads,
                                    lambda lr, evs: learn_checked(lr, evs, self._s.delta_dtype),
                                    lambda lr: copy_learner(config, lr))
        if poison:
            with self._store.tx() as repo:
                n = repo.reject_events(agent_id, [(seqs[i], why) for i, why in poison])
            self._adjust_backlog(-n)
            self._stats["rejected"] += n
            log.warning("learner %s: agent %s: %d event(s) rejected, first: seq %d: %s",
                        self._shard, agent_id, n, seqs[poison[0][0]], poison[0][1])
            self._drop(agent_id)  # what is pending now is read again (without the poison)
            return None
        delta = learn_checked(head, payloads[:clean], self._s.delta_dtype)
        return version, head, delta, clean

    def _pending(self, agent_id: str, limit: int) -> tuple[Sequence[dict[str, Any]], list[int], bool]:
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
            seqs = list(got.seqs) if isinstance(got, AcceptedColumns) else [int(e["seq"]) for e in got]
            return got, seqs, True
        self._stats["sql_reads"] += 1
        with self._store.read() as repo:
            rows = repo.pending_events(agent_id, limit=limit)
            return ([e.as_replay() for e in rows], [e.seq for e in rows],  # arrays decoded
                    len(rows) < limit)
