"""Ingest actors: persist validated events idempotently, then route the agent to its learner.

An event is acknowledged only after its transaction committed (durable), so a crash after
the acknowledgement loses nothing. Backpressure: each learner shard reports its backlog with
every notify; while a shard's backlog exceeds ``queue_max_events`` new events for its agents
are refused with 429 (the caller should slow down and retry), so memory stays bounded.

Group commit (:mod:`workers.actors.group_commit`): the actor takes many calls at once, and the calls
that arrive while a commit runs are appended together in the next transaction
(:func:`storage.repository.event_groups.append_groups`): one commit, one fsync, a few
statements for the whole group, each request still answered on its own, after the commit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import ray

from storage.repository.event_groups import EventsIn, Result, append_groups
from workers.actors.group_commit import GroupCommitter
from workers.actors.handover import pack_parts
from workers.actors.learner import shard_of
from workers.contract import ActorRef, ServiceError
from workers.gc_tuning import settle_gc
from workers.settings import Settings
from workers.store import Store

if TYPE_CHECKING:
    from ray import ObjectRef


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1, max_concurrency=64)
class IngestActor:
    def __init__(self, settings_json: str) -> None:
        self._s = Settings.model_validate_json(settings_json)
        self._store = Store(self._s.database_url)
        self._backlog: dict[int, int] = {}
        self._pending_refs: dict[int, ObjectRef[Any]] = {}
        self._learners: dict[int, ActorRef] = {}
        self._groups = GroupCommitter(self._commit_group)
        settle_gc()  # workers/gc_tuning.py

    def _learner(self, shard: int) -> ActorRef:
        """The shard's handle, looked up once (a restarted learner keeps its name and handle)."""
        h = self._learners.get(shard)
        if h is None:
            h = self._learners[shard] = ray.get_actor(f"learner-{shard}",
                                                      namespace=self._s.ray_namespace)
        return h

    def _refresh_backlog(self, shard: int) -> int:
        ref = self._pending_refs.get(shard)
        if ref is not None:
            ready, _ = ray.wait([ref], timeout=0)
            if ready:
                try:
                    self._backlog[shard] = int(ray.get(ready[0]))
                except Exception:  # learner restarting: it recovers its backlog from the store
                    self._backlog[shard] = 0
                self._pending_refs.pop(shard, None)
        return self._backlog.get(shard, 0)

    def ingest(self, agent_id: str, events: EventsIn) -> dict[str, Any]:
        self._admit(agent_id, len(events))
        return _answer(self._groups.submit((agent_id, events), len(events)))

    def ingest_many(self, requests: list[tuple[str, EventsIn]]) -> list[Any]:
        """Several requests in one call (an HTTP process merges its concurrent requests:
        :mod:`workers.ingest_edge`): each one's answer, or the error it alone raised, in order;
        each request is admitted, stored and answered as :meth:`ingest` would."""
        out: list[Any] = [None] * len(requests)
        admitted: list[int] = []
        for i, (agent_id, events) in enumerate(requests):
            try:
                self._admit(agent_id, len(events))
                admitted.append(i)
            except ServiceError as e:
                out[i] = e
        results = self._groups.submit_many([(requests[i], len(requests[i][1])) for i in admitted])
        for i, res in zip(admitted, results, strict=True):
            out[i] = res if isinstance(res, BaseException) else _answer(res)
        return out

    def _admit(self, agent_id: str, n: int) -> None:
        """Backpressure: 429 while the agent's learner shard has too many events queued."""
        shard = shard_of(agent_id, self._s.learner_shards)
        backlog = self._refresh_backlog(shard)
        if backlog + n > self._s.queue_max_events:
            raise ServiceError(429, "backpressure", f"learner shard {shard} has {backlog} events "
                               "queued; slow down and retry", None,
                               {"retry_after_ms": self._s.retry_after_ms})

    def _commit_group(self, requests: list[tuple[str, EventsIn]]) -> list[Any]:
        """One transaction for the group, then one notify per learner shard."""
        with self._store.tx() as repo:
            results = append_groups(repo, requests)
        by_shard: dict[int, dict[str, list[Any]]] = {}  # shard -> agent -> accepted parts
        for (agent_id, _), res in zip(requests, results, strict=True):
            if not isinstance(res, Exception) and res[0]:
                shard = shard_of(agent_id, self._s.learner_shards)
                by_shard.setdefault(shard, {}).setdefault(agent_id, []).append(res[0])
        for shard, accepted in by_shard.items():
            n = sum(len(p) for parts in accepted.values() for p in parts)
            # the accepted events go with the notification: the learner need not read them
            self._pending_refs[shard] = self._learner(shard).notify.remote(
                sorted(accepted), n, {a: pack_parts(parts) for a, parts in accepted.items()})
            self._backlog[shard] = self._backlog.get(shard, 0) + n
        return results

    def stats(self) -> dict[str, int]:
        """Group commit counters: groups, requests, largest group."""
        return self._groups.stats()


def _answer(res: Result) -> dict[str, Any]:
    accepted, duplicates = res
    return {"accepted": len(accepted), "duplicates": len(duplicates), "duplicate_ids": duplicates}
