"""Ingest actors: persist validated events idempotently, then route the agent to its learner.

An event is acknowledged only after its transaction committed (durable), so a crash after
the acknowledgement loses nothing. Backpressure: each learner shard reports its backlog with
every notify; while a shard's backlog exceeds ``queue_max_events`` new events for its agents
are refused with 429 (the caller should slow down and retry), so memory stays bounded.
"""

from __future__ import annotations

from typing import Any

import ray

from workers.contract import returning_errors
from workers.learner import shard_of
from workers.settings import Settings
from workers.store import Store


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1, max_concurrency=8)
class IngestActor:
    def __init__(self, settings_json: str) -> None:
        self._s = Settings.model_validate_json(settings_json)
        self._store = Store(self._s.database_url)
        self._backlog: dict[int, int] = {}
        self._pending_refs: dict[int, Any] = {}

    def _learner(self, shard: int) -> Any:
        return ray.get_actor(f"learner-{shard}", namespace=self._s.ray_namespace)

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

    @returning_errors
    def ingest(self, agent_id: str, events: list[dict[str, Any]]) -> dict[str, Any]:
        shard = shard_of(agent_id, self._s.learner_shards)
        backlog = self._refresh_backlog(shard)
        if backlog + len(events) > self._s.queue_max_events:
            return {"error": {"status": 429, "code": "backpressure",
                              "message": f"learner shard {shard} has {backlog} events queued; "
                                         "slow down and retry", "field": None,
                              "extra": {"retry_after_ms": 200}}}
        with self._store.tx() as repo:
            accepted, duplicates = repo.append_events(agent_id, events)
            n = len(accepted)
        if n:
            self._pending_refs[shard] = self._learner(shard).notify.remote([agent_id], n)
            self._backlog[shard] = backlog + n
        return {"accepted": n, "duplicates": len(duplicates), "duplicate_ids": duplicates}
