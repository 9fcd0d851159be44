"""Migration 0005 with data: rejected events, an erased version and BIGINT version columns go
down to 0004 and up again (SQLite and PostgreSQL). Down, a rejected event becomes forgotten (an
older release never applies it) and an erased version thinned (listed, never loaded)."""

from __future__ import annotations

import numpy as np
from sqlalchemy import text

from agent.config import AgentConfig
from agent.model import MemoryAgent
from storage.engine import Database
from storage.migrate import downgrade, upgrade
from storage.repository import unit_of_work
from tests.db_fixtures import *  # noqa: F401,F403
from workers.actors.factory import make_replay

CONFIG = {"kind": "classifier", "encoder": "none", "dim": 2, "memory": {"rule": "delta"}}


def test_0005_down_and_up_with_rejected_and_erased(empty_db_url):
    upgrade(empty_db_url)
    db = Database(empty_db_url)
    learner = MemoryAgent(AgentConfig.from_dict(CONFIG))
    evs = [{"id": f"e{i}", "input": [1.0, float(i)], "target": "A"} for i in range(3)]
    with unit_of_work(db) as repo:
        tenant, _ = repo.create_tenant("t")
        agent = repo.create_agent(tenant.id, "a", CONFIG, *learner.state, learner.checksum())
        aid = agent.id
        repo.append_events(aid, evs)
        delta = learner.learn_many([e["input"] for e in evs[:2]], ["A", "A"])
        repo.commit_version(aid, 0, delta=delta, event_seqs=[1, 2], checksum=learner.checksum())
        assert repo.reject_events(aid, [(3, "ValueError: test")]) == 1
        res = repo.forget(aid, ["e1"], make_replay(CONFIG, None))
        head = res.version.version
        assert repo.pending_events(aid) == []
        counts = repo.get_agent(aid)
        assert (counts.events_received, counts.events_applied, counts.events_rejected) == (3, 2, 1)
    db.dispose()

    downgrade(empty_db_url, "0004")
    db = Database(empty_db_url)
    with db.session() as s:
        rows = dict(s.execute(text("SELECT client_id, forgotten_version FROM events "
                                   "WHERE agent_id = :a"), {"a": aid}).all())
        assert rows["e2"] == head and rows["e1"] == head and rows["e0"] is None
        status = dict(s.execute(text("SELECT version, status FROM versions WHERE agent_id = :a"),
                                {"a": aid}).all())
        assert status == {0: "ok", 1: "thinned", head: "ok"}
        cols = list(s.execute(text("SELECT * FROM events LIMIT 0")).keys())
        assert "rejected" not in cols and "reject_reason" not in cols
    db.dispose()

    upgrade(empty_db_url)
    db = Database(empty_db_url)
    try:
        with unit_of_work(db, write=False) as repo:
            layers, labels = repo.load_state(aid, head)
            ref = MemoryAgent(AgentConfig.from_dict(CONFIG))
            ref.learn_many([evs[0]["input"]], ["A"])
            np.testing.assert_array_equal(layers["S"], ref.state[0]["S"])
            assert repo.pending_events(aid) == []
            assert repo.list_events(aid, "rejected")[0] == []  # forgotten down there
    finally:
        db.dispose()
