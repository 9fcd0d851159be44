"""Event inputs stored as raw bytes (migration 0007; in blocks since 0012): the append path,
the replay form, forks, and the backfill of JSON payload inputs (upgrade) and its undoing (downgrade), on SQLite and
PostgreSQL."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import numpy as np
import sqlalchemy as sa

from agent.memory.delta import state_checksum
from storage.engine import Database, make_engine
from storage.migrate import downgrade, upgrade
from storage.repository import unit_of_work
from tests.db_fixtures import *  # noqa: F401,F403

VEC = {"kind": "classifier", "encoder": "none", "dim": 3}


def _agent(repo, config=VEC):
    tenant, _ = repo.create_tenant("t")
    layers = {"S": np.zeros((0, 3))}
    return repo.create_agent(tenant.id, "a", config, layers, [], state_checksum(layers, [])).id


def test_array_inputs_are_stored_as_bytes_and_replayed_as_arrays(db):
    x32 = np.array([0.5, -1.0, 2.0], dtype=np.float32)
    x64 = np.array([0.1, 0.2, 0.3])
    emb = np.array([0.25, 0.5, 0.75], dtype=np.float32)
    with unit_of_work(db) as repo:
        agent_id = _agent(repo)
        repo.append_events(agent_id, [{"id": "a", "input": x32, "target": "p"},
                                      {"id": "b", "input": x64, "target": "q", "beta": 0.5},
                                      {"id": "c", "input": "hello", "embedding": emb,
                                       "target": "r"},
                                      {"id": "d", "input": [1.0, 2.0, 3.0], "target": "s"}])
    with unit_of_work(db, write=False) as repo:
        rows = {e.client_id: e for e in repo.events_of(agent_id)}
        a, b = rows["a"].input_block, rows["b"].input_block
        assert rows["a"].payload == {"target": "p"} and a.dtype == "<f4" and a.dim == 3
        assert a.data[rows["a"].input_row * 12:][:12] == x32.tobytes()
        assert a.sha256 == hashlib.sha256(a.data).digest()
        assert rows["b"].payload == {"target": "q", "beta": 0.5} and b.dtype == "<f8"
        assert rows["c"].payload == {"input": "hello", "target": "r"}
        assert rows["c"].input_block_id == rows["a"].input_block_id  # one block per dtype
        assert rows["d"].payload == {"input": [1.0, 2.0, 3.0], "target": "s"}
        assert rows["d"].input_block_id is None and rows["d"].input_data is None
        assert all(e.input_data is None for e in rows.values())
        replay = {e.client_id: e.as_replay() for e in repo.events_of(agent_id)}
    assert replay["a"]["input"].dtype == np.float32
    assert replay["a"]["input"].tolist() == x32.tolist()
    assert replay["b"]["input"].tolist() == x64.tolist() and replay["b"]["beta"] == 0.5
    assert replay["c"]["input"].tolist() == emb.tolist() and replay["c"]["text"] == "hello"
    assert replay["d"]["input"] == [1.0, 2.0, 3.0]


def _events_table():
    return sa.table("events", sa.column("id", sa.Integer), sa.column("client_id", sa.String),
                    sa.column("agent_id", sa.String), sa.column("seq", sa.Integer),
                    sa.column("payload", sa.JSON), sa.column("received_at", sa.DateTime))


def test_migration_0007_moves_vector_inputs_into_bytes_and_back(empty_db_url):
    vectors = {"f32": [0.5, -1.0, 2.0], "f64": [0.1, 1e-300, 3.0], "ints": [1, 0, 7]}
    upgrade(empty_db_url)  # the agent through the repository, its events as 0006 stored them
    db = Database(empty_db_url)
    try:
        with unit_of_work(db) as repo:
            agent_id = _agent(repo)
    finally:
        db.dispose()
    downgrade(empty_db_url, "0006")
    engine = make_engine(empty_db_url)
    ev = _events_table()
    now = datetime(2026, 1, 1, tzinfo=UTC).replace(tzinfo=None)
    payloads = {**{k: {"input": v, "target": "t", "beta": 0.5} for k, v in vectors.items()},
                "text": {"input": "some words", "target": "t"}}
    try:
        with engine.begin() as conn:
            for seq, (cid, payload) in enumerate(payloads.items(), start=1):
                conn.execute(sa.insert(ev).values(client_id=cid, agent_id=agent_id, seq=seq,
                                                  payload=payload, received_at=now))
    finally:
        engine.dispose()
    upgrade(empty_db_url)
    db = Database(empty_db_url)
    try:
        with unit_of_work(db, write=False) as repo:
            rows = {e.client_id: e for e in repo.events_of(agent_id)}
            for cid, v in vectors.items():
                e = rows[cid]
                assert e.payload == {"target": "t", "beta": 0.5}
                assert e.input_dtype == ("<f8" if cid == "f64" else "<f4")
                assert e.input_sha256 == hashlib.sha256(e.input_data).digest()
                assert e.as_replay()["input"].tolist() == [float(x) for x in v]
            assert rows["text"].payload == payloads["text"] and rows["text"].input_data is None
    finally:
        db.dispose()
    downgrade(empty_db_url, "0006")
    engine = make_engine(empty_db_url)
    try:
        with engine.connect() as conn:
            back = dict(conn.execute(sa.select(ev.c.client_id, ev.c.payload)).all())
            cols = {c["name"] for c in sa.inspect(conn).get_columns("events")}
    finally:
        engine.dispose()
    assert not any(c.startswith("input_") for c in cols)
    assert back == payloads


def test_stored_inputs_are_what_the_codec_writes():
    """The append path's own encoding of an input (fast) against storage.codec.encode (the
    reference) on random arrays of every accepted dtype and byte order; NaN/Inf refused."""
    import pytest

    from storage.codec import encode
    from storage.errors import InputError
    from storage.repository.events import stored_input

    rng = np.random.default_rng(4)
    for trial in range(200):
        n = int(rng.integers(1, 50))
        dt = [np.float32, np.float64, ">f4", ">f8", np.float16][trial % 5]
        a = (rng.normal(size=n) * 10.0 ** rng.integers(-5, 5)).astype(dt)
        got = stored_input(a, "events[0].input")
        blob = encode([a.reshape(-1)], "x")
        assert (got.tobytes(), got.dtype.str, (got.size,)) == \
            (blob.data, blob.dtype, blob.shapes[0])
    for bad in (np.array([1.0, np.nan]), np.array([np.inf], dtype=np.float32)):
        with pytest.raises(InputError):
            stored_input(bad, "events[0].input")


def test_forget_looks_its_ids_up_without_their_blocks(db):
    """Forget needs the seqs and marks of the ids it is given, not their input blocks (up to
    1 MiB each): ``events_by_ids(inputs=False)`` reads no block; the default reads them."""
    from sqlalchemy import event

    with unit_of_work(db) as repo:
        agent_id = _agent(repo)
        repo.append_events(agent_id, [{"id": f"e{i}", "target": "p",
                                       "input": np.array([i, 1.0, 2.0], dtype=np.float32)}
                                      for i in range(5)])
    seen: list[str] = []

    def record(conn, cursor, statement, *args):
        seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        with unit_of_work(db, write=False) as repo:
            bare = repo.events_by_ids(agent_id, ["e1", "e3"], inputs=False)
            reads = len(seen)
            full = repo.events_by_ids(agent_id, ["e1", "e3"])
            replayed = [e.as_replay()["input"].tolist() for e in full]
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    assert [e.seq for e in bare] == [2, 4] and replayed == [[1.0, 1.0, 2.0], [3.0, 1.0, 2.0]]
    assert not any("event_inputs" in s for s in seen[:reads])
    assert any("event_inputs" in s for s in seen[reads:])
