"""Group commit of vector blocks in columns (storage/repository/event_columns.py) against the
reference, appending each request's events one at a time (``append_events``): random groups of
blocks (ids missing, repeated in the group or stored already, unknown agents, bad rows,
float64 rows that are float32 numbers or not, requests over a block's size) give every
request the same answer and leave the same events, inputs byte for byte, and counters. On
SQLite the clean groups must take the column path (they are checked to), the others the row
path; PostgreSQL takes the row path always.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from storage.repository import unit_of_work
from storage.repository.event_block import EventBlock
from storage.repository.event_columns import parse_group
from storage.repository.event_groups import append_groups
from tests.db_fixtures import *  # noqa: F401,F403
from tests.storage_helpers import empty_agents, event_rows

DIM = 5


def _block(rng: np.random.Generator, n: int, pool: int, kind: int) -> EventBlock:
    """kind 0: clean float32 rows, fresh ids; 1: ids from a small pool (repeats, retries);
    2: a bad row; 3: float64 rows, some float32 numbers exactly."""
    X = rng.normal(size=(n, DIM))
    if kind == 3:
        exact = rng.random(n) < 0.5
        X[exact] = X[exact].astype(np.float32)
    else:
        X = X.astype(np.float32)
    ids: list[str | None] = []
    for _ in range(n):
        r = rng.random()
        ids.append(None if r < 0.15 else f"p{int(rng.integers(pool))}" if kind == 1
                   else f"u{rng.integers(1 << 62)}")
    fields = [{"target": f"L{int(rng.integers(3))}", **({"beta": 0.5} if rng.random() < 0.2
                                                         else {})} for _ in range(n)]
    if kind == 2:
        X[int(rng.integers(n))] = np.nan
    return EventBlock(X, ids, fields)


def _answer(res: Any) -> Any:
    if isinstance(res, Exception):
        return (type(res).__name__, str(res))
    accepted, dups = res
    return ([(e.client_id if not e.client_id.startswith("ev_") else "gen", e.seq, e.payload,
              e.input.dtype.str, e.input.tobytes()) for e in accepted], dups)


@pytest.mark.parametrize("seed", range(3))
def test_column_groups_answer_and_store_as_one_at_a_time(db, seed, monkeypatch):
    import storage.repository.event_columns as ec

    monkeypatch.setattr(ec, "block_rows", lambda row_bytes: 7)  # requests over a block
    rng = np.random.default_rng(seed)
    with unit_of_work(db) as repo:
        tenant, _ = repo.create_tenant("t")
        grouped = empty_agents(repo, tenant.id, "g", 3)
        single = empty_agents(repo, tenant.id, "s", 3)
    columns = 0
    for step in range(14):
        clean = step % 2 == 0
        reqs = []
        for _ in range(int(rng.integers(1, 5))):
            kind = 0 if clean else int(rng.integers(4))
            a = -1 if not clean and rng.random() < 0.1 else int(rng.integers(3))
            reqs.append((a, _block(rng, int(rng.integers(1, 20)), 12, kind)))
        named = [(grouped[a] if a >= 0 else "ag_missing", b) for a, b in reqs]
        took_columns = parse_group(named) is not None and clean and db.is_sqlite
        with unit_of_work(db) as repo:
            statements: list[str] = []
            if took_columns:  # the column path must take a clean group, not decline it
                raw = repo.session.connection().connection.dbapi_connection
                raw.set_trace_callback(statements.append)
            got = append_groups(repo, named)
            if took_columns:
                raw.set_trace_callback(None)
                assert any("insert or ignore" in x.lower() for x in statements)
                assert not any(x.lower().startswith("rollback to") for x in statements)
                columns += 1
        want = []
        for a, b in reqs:
            try:
                with unit_of_work(db) as repo:
                    want.append(repo.append_events(single[a] if a >= 0 else "ag_missing",
                                                   b.events()))
            except Exception as exc:  # noqa: BLE001 - compared with the group's answer
                want.append(exc)
        assert [_answer(g) for g in got] == [_answer(w) for w in want]
    with unit_of_work(db, write=False) as repo:
        for g, s in zip(grouped, single, strict=True):
            assert event_rows(repo, g, inputs=True) == event_rows(repo, s, inputs=True)
            ga, sa = repo.get_agent(g), repo.get_agent(s)
            assert (ga.next_seq, ga.events_received) == (sa.next_seq, sa.events_received)
    assert columns == (7 if db.is_sqlite else 0)


def test_a_run_reads_as_its_events():
    from datetime import UTC, datetime

    from storage.repository.events import AcceptedEvent, AcceptedRun

    t = datetime(2026, 1, 1, tzinfo=UTC)
    X = np.arange(6, dtype=np.float32).reshape(3, 2)
    run = AcceptedRun(range(4, 7), ["a", "b", "c"], [{"target": "x"}] * 3, t, X)
    e = run[1]
    assert len(run) == 3 and isinstance(e, AcceptedEvent)
    assert (e.client_id, e.seq, e.payload, e.received_at) == ("b", 5, {"target": "x"}, t)
    assert e.input.tobytes() == X[1].tobytes()
    assert [e.seq for e in run] == [4, 5, 6] and [e.client_id for e in run[1:]] == ["b", "c"]


def test_runs_are_handed_to_the_learner_as_their_events():
    """The ingest actor joins an agent's runs of a group into one column handover
    (handover.pack_parts); the learner unpacks the events ``pack`` of them one by one gives."""
    from datetime import UTC, datetime

    from storage.repository.events import AcceptedRun
    from workers.actors.handover import AcceptedColumns, pack, pack_parts, unpack

    t = datetime(2026, 1, 1, tzinfo=UTC)
    rng = np.random.default_rng(3)

    def run(lo: int, n: int, dtype: Any) -> AcceptedRun:
        return AcceptedRun(range(lo, lo + n), [f"e{lo + i}" for i in range(n)],
                           [{"target": f"L{i % 2}"} for i in range(n)], t,
                           rng.normal(size=(n, 3)).astype(dtype))

    def same(a: Any, b: Any) -> None:
        ua, ub = unpack(a), unpack(b)
        assert [{**e, "input": e["input"].tobytes()} for e in ua] == \
            [{**e, "input": e["input"].tobytes()} for e in ub]

    for parts in ([run(1, 4, np.float32)], [run(1, 4, np.float32), run(5, 1, np.float32)],
                  [run(1, 2, np.float32), run(3, 2, np.float64)],  # two dtypes: as events
                  [run(1, 3, np.float64), [], run(4, 15, np.float64)]):
        got = pack_parts(parts)
        same(got, pack([e for p in parts for e in p]))
        dtypes = {p.inputs.dtype for p in parts if isinstance(p, AcceptedRun)}
        assert isinstance(got, AcceptedColumns) == (len(dtypes) == 1)
