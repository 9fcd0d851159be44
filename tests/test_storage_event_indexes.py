"""The pending, rejected and applied lookups of the events table: they find what a plain
filter over what happened finds, the rejected one reads a partial index that holds only the
rejected rows (migration 0010), and the pending one a range of ``(agent_key, seq)`` after the
agent's watermark (migration 0013); SQLite and PostgreSQL plan them there."""

from __future__ import annotations

import numpy as np
import sqlalchemy as sa
from sqlalchemy import event

from agent.memory.delta import Delta, LayerDelta, state_checksum
from storage.engine import Database
from storage.models import Event, agent_key_of
from storage.repository import unit_of_work
from tests.db_fixtures import *  # noqa: F401,F403


def _history(db: Database, seed: int) -> tuple[str, dict[int, int]]:
    """One agent with random events: some applied (in versions), some rejected, the rest
    pending, in random proportions; and ``seq -> version`` of the applied ones."""
    rng = np.random.default_rng(seed)
    with unit_of_work(db) as repo:
        tenant, _ = repo.create_tenant("t")
        layers: dict[str, np.ndarray] = {"S": np.zeros((0, 3))}
        aid = repo.create_agent(tenant.id, "a", {"kind": "classifier", "encoder": "none",
                                                 "dim": 3}, layers, [],
                                state_checksum(layers, [])).id
    head, n = 0, 0
    applied: dict[int, int] = {}
    for _ in range(int(rng.integers(3, 7))):
        m = int(rng.integers(1, 25))
        with unit_of_work(db) as repo:
            repo.append_events(aid, [{"id": f"e{n + i}", "input": rng.standard_normal(3),
                                      "target": "l0"} for i in range(m)])
        n += m
        with unit_of_work(db) as repo:
            pend = [e.seq for e in repo.pending_events(aid)]
            bad = [s for s in pend if rng.random() < 0.2]
            repo.reject_events(aid, [(s, "test") for s in bad])
            left = [s for s in pend if s not in bad]
            k = int(rng.integers(0, len(left) + 1))
            if k:
                d = Delta({"S": LayerDelta.factors(np.zeros((1, 3)), np.zeros((1, 0)))})
                repo.commit_version(aid, head, delta=d, event_seqs=left[:k],
                                    checksum=state_checksum(layers, []))
                head += 1
                applied.update((s, head) for s in left[:k])
    return aid, applied


def test_pending_and_rejected_reads_match_a_filter_over_every_row(db):
    for seed in range(3):
        aid, applied = _history(db, seed)
        with unit_of_work(db, write=False) as repo:
            rows = repo.session.execute(sa.select(Event.seq, Event.rejected)
                                        .where(Event.agent_key == agent_key_of(aid))).all()
            want_pending = sorted(s for s, rj in rows if s not in applied and not rj)
            want_rejected = sorted(s for s, rj in rows if rj)
            assert [e.seq for e in repo.pending_events(aid)] == want_pending
            assert repo.pending_count(aid) == len(want_pending)
            got, _ = repo.list_events(aid, "pending", limit=1000)
            assert [e["seq"] for e in got] == want_pending
            got, _ = repo.list_events(aid, "rejected", limit=1000)
            assert [e["seq"] for e in got] == want_rejected
            got, _ = repo.list_events(aid, "applied", limit=1000)
            assert {e["seq"]: e["applied_version"] for e in got} == applied
            assert [(e.seq, v) for e, v in repo.applied_events(aid)] == sorted(applied.items())
            assert want_rejected and len(rows) > len(want_pending)


def _plans(db: Database, aid: str) -> dict[str, str]:
    """Each pending/rejected read's statement → its plan on this backend."""
    seen: list[tuple[str, object]] = []

    def record(conn, cursor, statement, params, *args):
        seen.append((statement, params))

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        with unit_of_work(db, write=False) as repo:
            repo.pending_events(aid)
            repo.pending_count(aid)
            repo.list_events(aid, "pending")
            repo.list_events(aid, "rejected")
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    reads = [(s, p) for s, p in seen if "FROM events" in s
             and ("applied_seq" in s or "rejected IS" in s)]
    assert len(reads) == 4, seen
    out = {}
    with db.engine.connect() as conn:
        if db.is_sqlite:
            for stmt, params in reads:
                out[stmt] = " ".join(str(r) for r in conn.exec_driver_sql(
                    "EXPLAIN QUERY PLAN " + stmt, params).all())
        else:  # a small table: without this PostgreSQL reads it whole, whatever the indexes
            conn.exec_driver_sql("SET enable_seqscan = off")
            conn.exec_driver_sql("ANALYZE events")
            for stmt, params in reads:
                out[stmt] = " ".join(str(r[0]) for r in conn.exec_driver_sql(
                    "EXPLAIN " + stmt, params).all())
    return out


def test_the_reads_are_planned_on_their_indexes(db):
    aid, _ = _history(db, 7)
    for stmt, plan in _plans(db, aid).items():
        if "applied_seq" in stmt:  # after the watermark: a range of the unique (agent_key,
            # seq) index (SQLite names it sqlite_autoindex_*)
            assert ("INDEX" in plan and "(agent_key=? AND seq>?" in plan) if db.is_sqlite \
                else ("uq_events_agent_seq" in plan and "seq >" in plan), (stmt, plan)
        else:
            assert "ix_events_rejected" in plan, (stmt, plan)


def test_sqlite_partial_index_holds_only_rejected_rows(sqlite_template_path, tmp_path):
    import shutil

    path = tmp_path / "ix.db"
    shutil.copyfile(sqlite_template_path, path)
    db = Database(f"sqlite:///{path}")
    try:
        aid, _ = _history(db, 3)
        with db.engine.connect() as conn:
            cells = dict(conn.exec_driver_sql(
                "SELECT name, SUM(ncell) FROM dbstat WHERE name LIKE 'ix_events_%' "
                "AND pagetype = 'leaf' GROUP BY name").all())
            total, rejected = conn.exec_driver_sql(
                "SELECT count(*), SUM(rejected) FROM events "
                "WHERE agent_key = (SELECT key FROM agents WHERE id = ?)", (aid,)).one()
        assert cells.get("ix_events_rejected") == rejected < total
        assert "ix_events_pending" not in cells
    finally:
        db.dispose()
