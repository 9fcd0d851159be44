"""The head's labels kept with the agent (``Agent.labels``, migration 0008) on SQLite and
PostgreSQL: after every step of random histories of commits (with and without snapshots),
rollbacks, forgets and forks they equal the labels the history gives (``labels_at``, which
walks the version rows: the reference), and the reads a request makes never touch the
version, event or answer history."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import event, inspect, select, update

from agent.memory.delta import apply_delta
from storage.engine import Database
from storage.errors import AgentNotFound, ForgottenEvents
from storage.migrate import downgrade, upgrade
from storage.models import Agent
from storage.repository import unit_of_work
from tests.db_fixtures import *  # noqa: F401,F403
from tests.storage_helpers import batch_delta, checksum, empty_state, event_payload, replay

POOL = [f"l{i}" for i in range(12)]


def _check(repo, agents):
    for aid, (versions, head) in agents.items():
        row = repo.get_agent(aid)
        assert row.head_version == head
        assert row.labels == repo.labels_at(aid, head) == versions[head][1]


def _random_history(db, seed: int, steps: int = 30):
    """Random steps on one agent and its forks; checks the labels after each."""
    rng = np.random.default_rng(seed)
    with unit_of_work(db) as repo:
        tenant, _ = repo.create_tenant("t")
        st0 = empty_state()
        aid = repo.create_agent(tenant.id, "a", {}, *st0, checksum(st0)).id
    agents = {aid: ({0: st0}, 0)}
    hist: dict[str, dict[int, list[str]]] = {aid: {0: []}}  # version → event ids in its state
    payloads: dict[str, dict] = {}
    gone: dict[str, set[str]] = {aid: set()}
    n = 0
    for _ in range(steps):
        a = list(agents)[int(rng.integers(len(agents)))]  # creation order: ids are random
        versions, head = agents[a]
        op = rng.choice(["learn", "learn", "learn", "snap", "rollback", "forget", "fork"])
        with unit_of_work(db) as repo:
            if op in ("learn", "snap"):
                pool = POOL[: 2 + int(rng.integers(len(POOL) - 1))]
                evs = []
                for _ in range(int(rng.integers(1, 4))):
                    n += 1
                    evs.append({"id": f"e{n}", **event_payload(rng, pool)})
                    payloads[f"e{n}"] = {k: v for k, v in evs[-1].items() if k != "id"}
                repo.append_events(a, evs)
                pending = repo.pending_events(a)
                cur = versions[head]
                d = batch_delta(*cur, [e.payload for e in pending], "float64", False)
                new = (apply_delta(cur[0], d), cur[1] + d.labels_added)
                v = repo.commit_version(a, head, delta=d, event_seqs=[e.seq for e in pending],
                                        checksum=checksum(new),
                                        snapshot=new if op == "snap" else None).version
                versions[v] = new
                hist[a][v] = hist[a][head] + [e.client_id for e in pending]
            elif op == "rollback":
                to = sorted(versions)[int(rng.integers(len(versions)))]
                if set(hist[a][to]) & gone[a]:
                    with pytest.raises(ForgottenEvents):
                        repo.rollback(a, to)
                    continue
                v = repo.rollback(a, to).version
                versions[v], hist[a][v] = versions[to], hist[a][to]
            elif op == "forget":
                if not hist[a][head]:
                    continue
                ids = list(rng.choice(hist[a][head], size=1))
                v = repo.forget(a, ids, replay).version.version
                gone[a] |= set(ids)
                kept = [c for c in hist[a][head] if c not in gone[a]]
                versions[v] = replay(*empty_state(), [payloads[c] for c in kept])
                hist[a][v] = kept
            else:
                at = sorted(versions)[int(rng.integers(len(versions)))]
                if set(hist[a][at]) & gone[a]:
                    continue
                f = repo.fork(a, at, "f", tenant.id).id
                agents[f] = ({0: versions[at]}, 0)
                hist[f], gone[f] = {0: list(hist[a][at])}, set()
                continue
            agents[a] = (versions, v)
        with unit_of_work(db, write=False) as repo:
            _check(repo, agents)
    return agents


@pytest.mark.parametrize("seed", range(4))
def test_head_labels_equal_the_history_after_every_step(db, seed):
    agents = _random_history(db, seed)
    assert any(len(v[0]) > 3 for v in agents.values())


def test_request_reads_never_touch_the_history(db):
    agents = _random_history(db, 7, steps=12)
    seen: list[str] = []

    def record(conn, cursor, statement, *args):
        seen.append(statement.lower())

    aid = sorted(agents)[0]
    event.listen(db.engine, "before_cursor_execute", record)
    try:
        with unit_of_work(db, write=False) as repo:
            tenant_id, config = repo.agent_identity(aid)
            head = repo.head_version(aid)
            labels = repo.get_agent(aid, tenant_id=tenant_id).labels
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    assert head == agents[aid][1] and labels == agents[aid][0][head][1] and config == {}
    assert seen and not [s for s in seen if any(t in s for t in (
        "from versions", "from events", "from answers", "from snapshots"))]
    with unit_of_work(db, write=False) as repo:
        with pytest.raises(AgentNotFound):
            repo.agent_identity("ag_nope")
        with pytest.raises(AgentNotFound):
            repo.head_version("ag_nope")


def test_migration_fills_and_drops_the_labels(db_url):
    db = Database(db_url)
    try:
        agents = _random_history(db, 11)
        with unit_of_work(db) as repo:  # what the upgrade must recompute, wiped
            repo.session.execute(update(Agent).values(labels=[]))
    finally:
        db.dispose()
    downgrade(db_url, "0007")
    db = Database(db_url)
    try:
        with db.session() as s:
            cols = s.execute(select(Agent.__table__.c.id).limit(1)).all()  # table still there
            assert cols
            assert "labels" not in {c["name"] for c in inspect(s.connection()).get_columns(
                "agents")}
    finally:
        db.dispose()
    upgrade(db_url)
    db = Database(db_url)
    try:
        with unit_of_work(db, write=False) as repo:
            _check(repo, agents)
    finally:
        db.dispose()


def test_rebuild_reads_versions_back_to_the_snapshot_only(db):
    """``load_state``/``labels_at`` at the head of a long history read version rows in ranges
    (back to the snapshot), never the whole history."""
    from benchmarks.history_cost import grow

    agents = _random_history(db, 3, steps=6)
    aid = sorted(agents)[0]
    grow(db, aid, 3000)  # 3000 versions: rollbacks to the old head
    seen: list[str] = []

    def record(conn, cursor, statement, *args):
        seen.append(" ".join(statement.lower().split()))

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        with unit_of_work(db, write=False) as repo:
            head = repo.head_version(aid)
            state = repo.load_state(aid, head)
            assert state[1] == repo.labels_at(aid, head) == repo.get_agent(aid).labels
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    versions = [s for s in seen if "from versions" in s]
    assert head == 2999 and versions
    assert all("between" in s or "versions.version =" in s or "versions.version in" in s
               for s in versions), versions


def test_pending_reads_use_a_range_after_the_watermark(sqlite_template_path, tmp_path):
    """SQLite plans the learner's pending-event reads (each micro-batch) on
    ``ix_events_pending`` (a partial index of the few unapplied rows), not on an index that
    walks every event the agent ever had."""
    import shutil

    path = tmp_path / "plan.db"
    shutil.copyfile(sqlite_template_path, path)
    db = Database(f"sqlite:///{path}")
    try:
        agents = _random_history(db, 5, steps=8)
        aid = sorted(agents)[0]
        seen: list[tuple[str, object]] = []

        def record(conn, cursor, statement, params, *args):
            seen.append((statement, params))

        event.listen(db.engine, "before_cursor_execute", record)
        with unit_of_work(db) as repo:
            repo.append_events(aid, [{"id": "plan1", "input": [1.0, 0, 0, 0], "target": "l0",
                                      "beta": 1.0, "gamma": 1.0}])
            pend = repo.pending_events(aid)
            repo.pending_count(aid)
            repo.versions.check_next_pending(aid, [e.seq for e in pend])  # the commit's check
        event.remove(db.engine, "before_cursor_execute", record)
        pending = [(s, p) for s, p in seen if "FROM events" in s and "applied_seq" in s]
        assert len(pending) == 3
        with db.engine.connect() as conn:
            for stmt, params in pending:  # a range after the agent's watermark
                plan = " ".join(str(r) for r in conn.exec_driver_sql(
                    "EXPLAIN QUERY PLAN " + stmt, params).all())
                # (the unique (agent_key, seq) index: SQLite names it sqlite_autoindex_*)
                assert "INDEX" in plan and "(agent_key=? AND seq>?" in plan, plan
    finally:
        db.dispose()
