"""``storage.repository.events.insert_rows`` (on SQLite one DBAPI ``executemany`` of tuples)
stores every column exactly as the Core insert statement with SQLAlchemy's parameter
processing (the reference) does, the inputs packed into blocks the same way
(``event_inputs.pack_inputs``), on random events: vectors of both float dtypes, texts with
their embedding, inputs that are neither, unicode payloads, timestamps, one or many rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy import JSON, Text, bindparam, cast, insert, text

from storage.models import Event, utcnow
from storage.repository import unit_of_work
from storage.repository.event_inputs import pack_inputs
from storage.repository.events import _NO_INPUT, _payload, insert_rows
from tests.db_fixtures import *  # noqa: F401,F403
from tests.storage_helpers import checksum, empty_state

COLUMNS = ("client_id, seq, received_at, payload, input_data, input_dtype, input_dim, "
           "input_sha256, input_row, rejected, applied_version, forgotten_version, "
           "reject_reason, origin_event_id")
# each row's input block, by content (the two agents' blocks have their own ids)
BLOCKS = ("SELECT b.first_seq, b.last_seq, b.rows, b.dtype, b.dim, b.data, b.sha256 FROM events "
          "e LEFT JOIN event_inputs b ON b.id = e.input_block_id WHERE e.agent_key = :k "
          "ORDER BY e.seq")


def _reference_insert(sqlite: bool) -> Any:
    """The Core statement: every value through SQLAlchemy's type processing."""
    payload = bindparam("payload_json", type_=Text())
    return insert(Event.__table__).values(
        agent_key=bindparam("agent_key"), client_id=bindparam("client_id"),
        seq=bindparam("seq"), received_at=bindparam("received_at"),
        payload=payload if sqlite else cast(payload, JSON()),
        **{name: bindparam(name) for name in _NO_INPUT})


def _event(rng: np.random.Generator, i: int) -> dict[str, Any]:
    kind = int(rng.integers(4))
    ev: dict[str, Any] = {"id": f"é{i}-{int(rng.integers(10**6))}", "target": f"L{i % 3} ✓"}
    if kind == 0:
        ev["input"] = rng.normal(size=int(rng.integers(1, 9))).astype(np.float32)
    elif kind == 1:
        ev["input"] = rng.normal(size=5) * 1e300  # float64, large
    elif kind == 2:
        ev["input"] = "a text «quoted»"
        ev["embedding"] = rng.normal(size=3).astype(np.float32)
    else:
        ev["input"] = "a chat turn"
        ev["ts"] = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    if rng.random() < 0.3:
        ev["beta"] = float(rng.random())
    return ev


def _rows(key: int, events: list[dict[str, Any]], at: datetime) -> list[dict[str, Any]]:
    out = []
    for seq, ev in enumerate(events, 1):
        cid, _, payload_json, arr = _payload(ev, seq - 1)
        out.append({"agent_key": key, "client_id": cid, "seq": seq, "payload_json": payload_json,
                    "received_at": at, **_NO_INPUT, "input": arr})
    return out


@pytest.mark.parametrize("n", [1, 15, 63, 300])
def test_insert_rows_stores_what_the_core_statement_stores(db, n):
    rng = np.random.default_rng(n)
    events = [_event(rng, i) for i in range(n)]
    at = utcnow() - timedelta(microseconds=int(rng.integers(10**9)))
    with unit_of_work(db) as repo:
        tenant, _ = repo.create_tenant("t")
        st0 = empty_state()
        a, b = (repo.create_agent(tenant.id, name, {}, *st0, checksum(st0)) for name in "ab")
        keys = (a.key, b.key)
    with unit_of_work(db) as repo:
        insert_rows(repo.session, _rows(keys[0], events, at))
        ref = _rows(keys[1], events, at)
        pack_inputs(repo.session, ref)
        repo.session.execute(_reference_insert(db.is_sqlite), ref)
    with db.engine.connect() as c:
        got, want = (c.execute(text(f"SELECT {COLUMNS} FROM events WHERE agent_key = :k "
                                    "ORDER BY seq"), {"k": k}).all() for k in keys)
        if db.is_sqlite:  # the same SQLite storage classes, not only equal values
            types = (f"SELECT {', '.join(f'typeof({c})' for c in COLUMNS.split(', '))} FROM "
                     "events WHERE agent_key = :k ORDER BY seq")
            assert c.execute(text(types), {"k": keys[0]}).all() == \
                c.execute(text(types), {"k": keys[1]}).all()
        blocks = [c.execute(text(BLOCKS), {"k": k}).all() for k in keys]
    assert len(got) == n and got == want
    assert blocks[0] == blocks[1] and any(b[0] is not None for b in blocks[0])
    with unit_of_work(db, write=False) as repo:  # and they read back as the events sent
        for ev, row in zip(events, repo.events_of(a.id), strict=True):
            replay = row.as_replay()
            assert row.received_at == at and replay["target"] == ev["target"]
            arr = ev.get("embedding", ev["input"])
            if isinstance(arr, np.ndarray):
                np.testing.assert_array_equal(replay["input"], arr)
