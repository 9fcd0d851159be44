"""HeadReader (workers/head_read.py) reads what the repository reads, on SQLite and PostgreSQL.

The fast read (one statement on a kept DBAPI connection) is compared with the repository's
``head_version`` (a SQLAlchemy transaction) for random agents while their heads move; unknown
ids, a failed connection, PostgreSQL and the thread bound answer as documented.
"""

from __future__ import annotations

import threading
import uuid

import numpy as np
from sqlalchemy import update

from storage.errors import NotFound
from storage.models import Agent
from tests.db_fixtures import *  # noqa: F401,F403
from workers.head_read import MISSING, HeadReader
from workers.store import Store


def _agents(store: Store, n: int) -> list[str]:
    from agent.config import AgentConfig
    from agent.memory.delta import state_checksum
    from workers.actors.factory import initial_state

    cfg = AgentConfig.from_dict({"kind": "classifier", "encoder": "none", "dim": 3})
    layers, labels = initial_state(cfg)
    with store.tx() as repo:
        tenant, _ = repo.create_tenant(f"t-{uuid.uuid4().hex[:6]}")
        return [repo.create_agent(tenant.id, f"a{i}", cfg.to_dict(), layers, labels,
                                  state_checksum(layers, labels)).id for i in range(n)]


def _reference(store: Store, agent_id: str) -> int:
    with store.read() as repo:
        try:
            return repo.head_version(agent_id)
        except NotFound:
            return MISSING


def test_reads_what_the_repository_reads_as_heads_move(db_url):
    store = Store(db_url)
    reader = HeadReader(store.engine)
    assert reader.enabled == db_url.startswith("sqlite")
    ids = _agents(store, 5)
    rng = np.random.default_rng(3)
    try:
        for _ in range(40):
            a = ids[int(rng.integers(len(ids)))]
            with store.engine.begin() as conn:
                conn.execute(update(Agent).where(Agent.id == a)
                             .values(head_version=Agent.head_version + 1))
            for b in [*ids, "ag_unknown"]:
                fast = reader.read(b)
                if reader.enabled:
                    assert fast == _reference(store, b)
                else:
                    assert fast is None
    finally:
        reader.close()
        store.close()


def test_failure_bound_and_close(db_url):
    store = Store(db_url)
    reader = HeadReader(store.engine, max_threads=1)
    if not reader.enabled:
        store.close()
        return
    a = _agents(store, 1)[0]
    try:
        assert reader.read(a) == 0
        got: list[int | None] = []
        t = threading.Thread(target=lambda: got.append(reader.read(a)))
        t.start()
        t.join()
        assert got == [None]  # a second thread: over the bound, the caller reads itself
        reader._local.conn.close()  # a connection that fails: dropped, None, then reopened
        assert reader.read(a) is None
        assert reader.read(a) == 0
        reader.close()
        assert reader.read(a) is None  # closed: this thread's connection fails, is dropped
    finally:
        reader.close()
        store.close()
