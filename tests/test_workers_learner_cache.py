"""A learner shard holds at most ``learner_cache_bytes`` of head states: idle heads are dropped
(least recently used first, snapshotted when due) and reloaded from the store on their next
event, with the same results. A real service on the shared local Ray, SQLite, real HTTP."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from agent.config import AgentConfig
from agent.model import MemoryAgent
from client import Client
from storage.engine import Database
from storage.models import Version
from tests.service_fixtures import ADMIN_KEY, LIMITS, wait_applied
from workers.settings import Settings

DIM = 8
BUDGET = 6 * 2**20  # one 1024-d float32 rls head (P alone is 4 MiB) fits, two do not
MEMORY = {"rule": "rls", "ridge": 0.05, "lift_dim": 1024, "dtype": "float32"}


@pytest.fixture(scope="module")
def small(ray_cluster, tmp_path_factory) -> Iterator[tuple[Any, Client]]:
    from workers.runtime import free_port, start

    tmp = tmp_path_factory.mktemp("learner-cache")
    settings = Settings(database_url=f"sqlite:///{tmp / 'c.db'}", port=free_port(),
                        admin_key=ADMIN_KEY, ray_namespace=f"lc-{uuid.uuid4().hex[:8]}",
                        scheduler_enabled=False, batch_max_ms=5.0, learner_cache_bytes=BUDGET,
                        snapshot_every_versions=2, **LIMITS)
    running = start(settings)
    try:
        with Client(running.url, admin_key=ADMIN_KEY, timeout=120) as admin:
            key = admin.create_tenant("cache").api_key
        with Client(running.url, api_key=key, timeout=120) as client:
            yield running, client
    finally:
        running.stop()


def _stream(n: int, seed: int) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    c = rng.integers(0, 4, n)
    X = rng.standard_normal((n, DIM))
    X[np.arange(n), c] += 3.0
    return X, [f"c{int(v)}" for v in c]


def _metric(client: Client, name: str) -> float:
    import httpx

    text = httpx.get(f"{client.base_url}/metrics", timeout=30).text
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith(name + "{") or line.startswith(name + " "))


def _ingest(client: Client, agent_id: str, X: np.ndarray, y: list[str], start: int) -> None:
    for s in range(0, len(y), 30):  # several commits: snapshots become due (every 2 versions)
        client.ingest(agent_id, [{"id": f"e{start + i}", "input": X[i].tolist(), "target": y[i]}
                                 for i in range(s, min(s + 30, len(y)))])
        wait_applied(client, agent_id, start + min(s + 30, len(y)))


def test_idle_heads_are_dropped_within_the_budget_and_reload_with_the_same_results(small):
    running, client = small
    data = {}
    ids = []
    for k in range(3):
        agent = client.create_agent(f"a{k}", kind="classifier", encoder="none", dim=DIM, memory=MEMORY)
        X, y = _stream(90, seed=k)
        _ingest(client, agent.id, X, y, 0)
        ids.append(agent.id)
        data[agent.id] = (X, y)
    assert _metric(client, "deltamem_learner_evicted_total") >= 2
    assert 0 < _metric(client, "deltamem_learner_held_bytes") <= BUDGET
    # the first agent was dropped; it was snapshotted on the way out and now reloads
    head0 = client.get_agent(ids[0]).head_version
    db = Database(running.settings.database_url)
    try:
        with db.session() as s:
            snaps = s.scalars(select(Version.version).where(Version.agent_id == ids[0],
                                                            Version.has_snapshot)).all()
        assert head0 >= 2 and head0 in snaps  # the head when it was dropped
    finally:
        db.dispose()
    X0, y0 = data[ids[0]]
    X1, y1 = _stream(40, seed=10)
    _ingest(client, ids[0], X1, y1, 90)
    ref = MemoryAgent(AgentConfig.from_dict({"kind": "classifier", "encoder": "none", "dim": DIM,
                                             "memory": MEMORY}))
    ref.learn_many(np.concatenate([X0, X1]), y0 + y1)
    probes, _ = _stream(20, seed=11)
    head = client.get_agent(ids[0]).head_version
    got = client.predict(ids[0], probes.tolist(), min_version=head).predictions
    assert [p.label for p in got] == [p["label"] for p in ref.predict_many(probes)]
