"""Migration 0011 with data (SQLite and PostgreSQL): events written at the head go down to 0010
(agent id strings, hex digests, SQLite text times) and up again unchanged, a row written by
0010 itself comes up readable, and :class:`storage.models.UTCMicros` keeps every datetime
exactly (against the datetime itself, on random values)."""

from __future__ import annotations

import hashlib
import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np
import sqlalchemy as sa

from agent.config import AgentConfig
from agent.model import MemoryAgent
from storage.engine import Database, make_engine
from storage.migrate import downgrade, upgrade
from storage.models import UTCMicros
from storage.repository import unit_of_work
from tests.db_fixtures import *  # noqa: F401,F403

CONFIG = {"kind": "classifier", "encoder": "none", "dim": 3, "memory": {"rule": "delta"}}
# odd receipt times: before 1970, a whole second, the last microsecond of a year
TIMES = [datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
         datetime(2026, 12, 6, 4, 0, 0, tzinfo=UTC),
         datetime(2499, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)]


def _rows(repo: Any, agent_id: str) -> list[tuple[Any, ...]]:
    # the version that applied each (a version's seq range since 0013, whose downgrade writes
    # it into applied_version, which the upgrade then keeps)
    applied = {e.seq: v for e, v in repo.applied_events(agent_id)}
    return [(e.client_id, e.seq, e.payload, e.received_at, applied.get(e.seq),
             e.forgotten_version, e.origin_event_id, e.rejected, e.reject_reason, *_input(e))
            for e in repo.events_of(agent_id)]


def _input(e: Any) -> tuple[Any, ...]:
    """An event's input as 0011's columns hold it (bytes, dtype, size, SHA-256), wherever it
    is stored (a block's row since 0012, whose downgrade writes these columns)."""
    x = e.as_replay().get("input")
    if not isinstance(x, np.ndarray):
        return (None, None, None, None)
    data = x.tobytes()
    return (data, x.dtype.str, x.size, hashlib.sha256(data).digest())


def _history(db: Database) -> tuple[str, str, dict[str, list[tuple[Any, ...]]]]:
    """An agent with applied, rejected, pending, text and vector events at odd times, and a
    fork (its rows point at the source's); returns (agent, fork, their rows)."""
    learner = MemoryAgent(AgentConfig.from_dict(CONFIG))
    with unit_of_work(db) as repo:
        tenant, _ = repo.create_tenant("t")
        aid = repo.create_agent(tenant.id, "a", CONFIG, *learner.state, learner.checksum()).id
        for i, at in enumerate(TIMES):
            x = np.array([1.0, float(i), 0.5], dtype=np.float32 if i % 2 else np.float64)
            repo.append_events(aid, [{"id": f"v{i}", "input": x, "target": "A"},
                                     {"id": f"t{i}", "input": f"text {i}", "target": "B",
                                      "embedding": x.astype(np.float32)}], received_at=at)
        evs = [e.as_replay() for e in repo.pending_events(aid, limit=2)]
        delta = learner.learn_many(np.stack([e["input"] for e in evs]).astype(np.float64),
                                   ["A", "B"])
        repo.commit_version(aid, 0, delta=delta, event_seqs=[1, 2], checksum=learner.checksum())
        repo.reject_events(aid, [(3, "ValueError: test")])
    with unit_of_work(db) as repo:
        fork = repo.fork(aid, 1, "f", tenant.id).id
    with unit_of_work(db, write=False) as repo:
        assert len(repo.pending_events(aid)) == 3  # 3 rejected, 4..6 pending
        return aid, fork, {a: _rows(repo, a) for a in (aid, fork)}


def test_0011_down_and_up_keeps_every_event(empty_db_url):
    upgrade(empty_db_url)
    db = Database(empty_db_url)
    try:
        aid, fork, before = _history(db)
    finally:
        db.dispose()
    assert before[fork][0][6] is not None  # the fork's row points at its source row

    downgrade(empty_db_url, "0010")
    engine = make_engine(empty_db_url)
    ev = sa.table("events", sa.column("id", sa.Integer), sa.column("agent_id", sa.String),
                  sa.column("client_id", sa.String), sa.column("seq", sa.Integer),
                  sa.column("payload", sa.JSON), sa.column("received_at", sa.DateTime),
                  sa.column("input_data", sa.LargeBinary), sa.column("input_dtype", sa.String),
                  sa.column("input_dim", sa.Integer), sa.column("input_sha256", sa.String))
    try:
        with engine.begin() as conn:
            old = conn.execute(sa.select(ev.c.client_id, ev.c.received_at, ev.c.input_sha256)
                               .where(ev.c.agent_id == aid).order_by(ev.c.seq)).all()
            cols = {c["name"] for c in sa.inspect(conn).get_columns("agents")}
            # a row 0010 itself writes: an id string, a hex digest, a text time on SQLite
            data = np.array([2.0, 3.0, 4.0], dtype=np.float32).tobytes()
            conn.execute(sa.insert(ev).values(
                agent_id=aid, client_id="old", seq=len(before[aid]) + 1,
                payload={"target": "A"}, received_at=datetime(2001, 2, 3, 4, 5, 6, 7),
                input_data=data, input_dtype="<f4", input_dim=3,
                input_sha256=hashlib.sha256(data).hexdigest()))
            conn.execute(sa.text("UPDATE agents SET next_seq = next_seq + 1, "
                                 "events_received = events_received + 1 WHERE id = :a"),
                         {"a": aid})
    finally:
        engine.dispose()
    assert "key" not in cols
    assert [r[0] for r in old] == [r[0] for r in before[aid]]
    assert [r[1].replace(tzinfo=UTC) for r in old] == [r[3] for r in before[aid]]
    assert [r[2] for r in old] == [None if r[12] is None else r[12].hex() for r in before[aid]]

    upgrade(empty_db_url)
    db = Database(empty_db_url)
    try:
        with unit_of_work(db, write=False) as repo:
            after = {a: _rows(repo, a) for a in (aid, fork)}
            last = repo.events_of(aid)[-1]
            assert last.as_replay()["input"].tolist() == [2.0, 3.0, 4.0]
            assert last.received_at == datetime(2001, 2, 3, 4, 5, 6, 7, tzinfo=UTC)
            replayed = [e.as_replay() for e in repo.events_of(aid)]  # digests verified
            # 0013's watermark (the last applied seq) keeps the pending ones pending
            pend = [e.client_id for e in repo.pending_events(aid)]
            assert pend == [r[0] for r in before[aid][3:]] + ["old"], pend
        with unit_of_work(db) as repo:  # the agents still take events and new agents
            repo.append_events(aid, [{"id": "new", "input": "x", "target": "A"}])
            tenant = repo.get_agent(aid).tenant_id
            other = repo.create_agent(tenant, "b", CONFIG,
                                      *MemoryAgent(AgentConfig.from_dict(CONFIG)).state,
                                      MemoryAgent(AgentConfig.from_dict(CONFIG)).checksum())
            assert other.key != repo.get_agent(aid).key
    finally:
        db.dispose()
    assert after[aid][:-1] == before[aid] and after[fork] == before[fork]
    assert len(replayed) == len(before[aid]) + 1


def test_utc_micros_round_trips_every_datetime_exactly():
    """Bind then read back through each dialect: the same instant, to the microsecond, for
    random datetimes (naive ones taken as UTC, offsets converted), as the datetime compares."""
    from sqlalchemy.dialects import postgresql, sqlite

    t = UTCMicros()
    rng = random.Random(3)
    lo, hi = datetime(1, 1, 2, tzinfo=UTC), datetime(9999, 12, 30, tzinfo=UTC)
    span = (hi - lo) // timedelta(microseconds=1)
    for i in range(2000):
        d = lo + timedelta(microseconds=rng.randrange(span))
        given = d.replace(tzinfo=None) if i % 3 == 0 else d.astimezone(
            timezone(timedelta(minutes=rng.randrange(-600, 600))))
        stored = t.process_bind_param(given, sqlite.dialect())
        assert isinstance(stored, int)
        assert t.process_result_value(stored, sqlite.dialect()) == d
        assert t.process_result_value(stored, sqlite.dialect()).tzinfo == UTC
        assert t.process_bind_param(given, postgresql.dialect()) == d
