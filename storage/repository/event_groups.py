"""Group commit of the event log: many ingest requests (for one or many agents) appended in one
transaction, so they share one commit (one fsync) and a few statements instead of a few each.

:func:`append_groups` gives every request the answer :meth:`Events.append_events` would
give it had the requests been appended one at a time in the given order (the reference the
tests compare with): an id already stored, or sent earlier in the same request or in an
earlier request of the group, is a duplicate; accepted events get the agent's next ``seq``
numbers, dense, in request order. A request that is invalid, or names an unknown agent, gets
its error and writes nothing; the others are appended.

Statements per group, whatever the number of requests: one ``SELECT ... FOR UPDATE`` of the
agents' rows (in id order, so two groups never deadlock), one ``INSERT ... ON CONFLICT DO
NOTHING RETURNING`` over all rows (per 1,000; an id already stored is skipped by the unique
index instead of looked up first), one ``UPDATE`` of the agents' counters; only when a stored id
was skipped, one more ``UPDATE`` moves the rows after it down, so ``seq`` stays dense. On
SQLite, where the transaction holds the database's write lock and a statement is a call into
the library, the stored ids are looked up first (one indexed ``IN`` per agent and 1,000 ids)
and the rows go in with one ``executemany`` of tuples (:func:`events.insert_rows`); the lock,
the counters and the column path run on the transaction's DBAPI cursor.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from storage.errors import AgentNotFound, InputError
from storage.models import utcnow
from storage.repository import Repository
from storage.repository._base import chunks
from storage.repository.event_block import EventBlock, parse_block
from storage.repository.event_columns import append_columns, parse_group
from storage.repository.event_inputs import pack_inputs, settle_blocks
from storage.repository.events import (
    _AGENTS,
    _EVENTS,
    INSERT_VALUES,
    MAX_BATCH,
    AcceptedEvent,
    _payload,
    insert_rows,
)
from storage.repository.sqlite_cursor import SqliteCursor

Result = tuple[list[AcceptedEvent], list[str]]
EventsIn = list[dict[str, Any]] | EventBlock

_LOCK = (select(_AGENTS.c.id, _AGENTS.c.next_seq, _AGENTS.c.events_received, _AGENTS.c.key)
         .where(_AGENTS.c.id.in_(bindparam("ids", expanding=True)))
         .order_by(_AGENTS.c.id).with_for_update())
_MOVE = (update(_EVENTS).where(_EVENTS.c.agent_key == bindparam("akey"),
                               _EVENTS.c.seq == bindparam("old")).values(seq=bindparam("new")))
_COUNT = (update(_AGENTS).where(_AGENTS.c.id == bindparam("aid"))
          .values(next_seq=bindparam("next_seq"), events_received=bindparam("received")))
# SQLite, where the transaction holds the whole database's write lock: the same two statements
# on the transaction's cursor (storage/repository/sqlite_cursor.py)
_LOCK_SQLITE = f"SELECT id, next_seq, events_received, key FROM {_AGENTS.name} WHERE id IN ({{}}) " \
    "ORDER BY id"
_COUNT_SQLITE = f"UPDATE {_AGENTS.name} SET next_seq = ?, events_received = ? WHERE id = ?"


# PostgreSQL: the event insert of storage.repository.events, ON CONFLICT (agent_key, client_id)
# DO NOTHING RETURNING agent_key, client_id (SQLite: _insert_rows_sqlite)
_INSERT = (pg_insert(_EVENTS).values(**INSERT_VALUES)
           .on_conflict_do_nothing(index_elements=["agent_key", "client_id"])
           .returning(_EVENTS.c.agent_key, _EVENTS.c.client_id))


def _parse(events: Any) -> list[tuple[Any, ...]]:
    if not isinstance(events, list | EventBlock):
        raise InputError("events", "expected a list")
    if len(events) > MAX_BATCH:
        raise InputError("events", f"at most {MAX_BATCH} events per batch")
    if isinstance(events, EventBlock):
        return parse_block(events)
    return [_payload(ev, i) for i, ev in enumerate(events)]


def append_groups(repo: Repository, requests: Sequence[tuple[str, EventsIn]], *,
                  received_at: datetime | None = None) -> list[Result | Exception]:
    """Append ``[(agent id, events)]`` in one transaction (the caller's); ``events``: a list of
    event dicts, or an :class:`EventBlock` (vector events in columns). Returns, per request
    in order, ``(accepted, duplicate ids)`` as :meth:`Events.append_events` gives them, or
    the :class:`InputError` / :class:`AgentNotFound` of that request (nothing of it written).

    The agents' rows stay locked until the caller's transaction ends.
    """
    s = repo.session
    dialect = s.get_bind().dialect
    sqlite = dialect.name == "sqlite"
    cols = parse_group(requests) if sqlite else None
    parsed: list[Any] = _parse_requests(requests) if cols is None else list(cols)
    wanted = sorted({a for (a, _), p in zip(requests, parsed, strict=True)
                     if not isinstance(p, Exception)})
    if not wanted:
        return list(parsed)  # type: ignore[arg-type]
    cur = None  # SQLite: the transaction's cursor, for the lock, the columns and the counts
    locked: Sequence[Any]
    with repo.core.translate(wanted[0]):
        if sqlite:
            cur = SqliteCursor(s)  # begins the transaction: the write lock
            locked = cur.execute(_LOCK_SQLITE.format(", ".join("?" * len(wanted))),
                                 wanted).fetchall()
        else:
            locked = s.execute(_LOCK, {"ids": wanted}).all()
    heads = {a: [nxt, received] for a, nxt, received, _ in locked}
    start = {a: tuple(h) for a, h in heads.items()}
    keys = {a: key for a, _, _, key in locked}
    now = received_at or utcnow()
    out: list[Result | Exception] | None = None
    if cols is not None and cur is not None:  # the common case in columns
        with repo.core.translate(wanted[0]):     # (storage/repository/event_columns.py)
            out = append_columns(cur, cols, heads, keys, now, dialect)
        if out is None:  # an id was stored or repeated: the row path, looking ids up first
            parsed = [p if isinstance(p, Exception) else p.cols.rows() for p in cols]
    if out is None:
        rows, plan = _plan_rows(requests, parsed, heads, keys, now)
        inserted = _insert_rows(repo, rows, heads, {k: a for a, k in keys.items()},
                                fresh=cols is None)
        out = _answers(requests, plan, inserted, now)
    moved = [a for a in wanted if a in heads and tuple(heads[a]) != start[a]]
    if moved and cur is not None:
        cur.executemany(_COUNT_SQLITE, [(*heads[a], a) for a in moved])
    elif moved:
        s.execute(_COUNT, [{"aid": a, "next_seq": heads[a][0], "received": heads[a][1]}
                           for a in moved])
    return out


def _parse_requests(requests: Sequence[tuple[str, EventsIn]],
                    ) -> list[list[tuple[Any, ...]] | Exception]:
    """Per request: its parsed events, or its :class:`InputError` / :class:`AgentNotFound`."""
    parsed: list[list[tuple[Any, ...]] | Exception] = []
    for agent_id, events in requests:
        try:
            if not isinstance(agent_id, str):
                raise AgentNotFound(repr(agent_id))
            parsed.append(_parse(events))
        except (InputError, AgentNotFound) as exc:
            parsed.append(exc)
    return parsed


Plan = list[list[tuple[Any, ...]] | Exception]  # per request: its events' tuples, or its error


def _plan_rows(requests: Sequence[tuple[str, EventsIn]], parsed: Plan,
               heads: dict[str, list[int]], keys: dict[str, int],
               now: datetime) -> tuple[list[dict[str, Any]], Plan]:
    """``(rows to insert, per request: its error or (cid, row or None, payload, input) per
    event)``; an id repeated within the group gets no row (a duplicate)."""
    seen: set[tuple[str, str]] = set()
    rows: list[dict[str, Any]] = []
    plan: list[list[tuple[Any, ...]] | Exception] = []  # per request: (cid, row or None, ...)
    for (agent_id, _), ps in zip(requests, parsed, strict=True):
        if isinstance(ps, Exception) or agent_id not in heads:
            plan.append(ps if isinstance(ps, Exception) else AgentNotFound(agent_id))
            continue
        mine: list[tuple[Any, ...]] = []
        for cid, payload, text, arr in ps:
            if cid is not None and (agent_id, cid) in seen:
                mine.append((cid, None, payload, arr))  # repeated within the group
                continue
            cid = cid or "ev_" + uuid.uuid4().hex
            seen.add((agent_id, cid))
            row = {"agent_id": agent_id, "agent_key": keys[agent_id], "client_id": cid,
                   "seq": 0, "payload_json": text,
                   "received_at": now, "input": arr}
            rows.append(row)
            mine.append((cid, row, payload, arr))
        plan.append(mine)
    return rows, plan


def _insert_rows(repo: Repository, rows: list[dict[str, Any]], heads: dict[str, list[int]],
                 ids: dict[int, str], fresh: bool = True) -> set[tuple[str, str]]:
    """Insert ``rows`` (``ids``: agent key → agent id); returns the ``(agent id, client id)``
    inserted. Their final seqs are written into the rows and ``heads`` (next seq, events
    received) moved past them. ``fresh`` False: some id is known to be stored or repeated
    already (SQLite looks them up first instead of trying every row as new)."""
    s = repo.session
    if rows and s.get_bind().dialect.name == "sqlite":
        if not fresh:
            return _insert_rows_looked_up(repo, rows, heads)
        return _insert_rows_sqlite(repo, rows, heads)
    # provisional seqs in acknowledgement order; an id already stored is skipped by the
    # unique (agent_key, client_id) index and the rows after it move down (dense seqs)
    nxt = {a: h[0] for a, h in heads.items()}
    for row in rows:
        row["seq"] = nxt[row["agent_id"]]
        nxt[row["agent_id"]] += 1
    inserted: set[tuple[str, str]] = set()
    if rows:
        pack_inputs(s, rows)  # blocks first: the rows refer to them (settled below)
        with repo.core.translate(rows[0]["agent_id"]):
            for part in chunks(rows, 1000):
                inserted.update((ids[r[0]], r[1]) for r in s.execute(_INSERT, list(part)))
    moves = []
    for row in rows:
        key = (row["agent_id"], row["client_id"])
        if key in inserted:
            h = heads[row["agent_id"]]
            if row["seq"] != h[0]:
                moves.append({"akey": row["agent_key"], "old": row["seq"], "new": h[0]})
                row["seq"] = h[0]
            h[0] += 1
            h[1] += 1
    if moves:  # ascending per agent: each new seq is free when its row moves there
        s.execute(_MOVE, moves)
    if len(inserted) < len(rows):  # (rows move only after a skipped one)
        settle_blocks(s, rows, {id(r) for r in rows
                                if (r["agent_id"], r["client_id"]) in inserted})
    return inserted


def _insert_rows_sqlite(repo: Repository, rows: list[dict[str, Any]],
                        heads: dict[str, list[int]]) -> set[tuple[str, str]]:
    """:func:`_insert_rows` on SQLite, where the writer holds the whole database's write lock.
    First as if every id were new (a client's retry is the exception): final seqs at once,
    one ``executemany`` of ``INSERT OR IGNORE`` in a savepoint; when it inserted every row,
    that is all. Else the savepoint is rolled back and :func:`_insert_rows_looked_up` looks
    the stored ids up first (the reference path, one indexed ``IN`` per agent)."""
    start = {a: list(h) for a, h in heads.items()}
    for row in rows:
        h = heads[row["agent_id"]]
        row["seq"] = h[0]
        h[0] += 1
        h[1] += 1
    s = repo.session
    with repo.core.translate(rows[0]["agent_id"]):
        nested = s.begin_nested()
        if insert_rows(s, rows, or_ignore=True) == len(rows):
            nested.commit()
            return {(r["agent_id"], r["client_id"]) for r in rows}
        nested.rollback()
    heads.update(start)
    return _insert_rows_looked_up(repo, rows, heads)


def _insert_rows_looked_up(repo: Repository, rows: list[dict[str, Any]],
                           heads: dict[str, list[int]]) -> set[tuple[str, str]]:
    """The ids already stored are looked up first (indexed), so the other rows get their
    final seqs at once and go in with one ``executemany`` (no ``RETURNING``, no moves)."""
    wanted: dict[int, list[str]] = {}
    for row in rows:
        wanted.setdefault(row["agent_key"], []).append(row["client_id"])
    stored = {(key, cid) for key, ids in wanted.items()
              for cid in repo.events.stored_client_ids(key, ids)}
    new = []
    for row in rows:
        if (row["agent_key"], row["client_id"]) not in stored:
            h = heads[row["agent_id"]]
            row["seq"] = h[0]
            h[0] += 1
            h[1] += 1
            new.append(row)
    with repo.core.translate(rows[0]["agent_id"]):
        insert_rows(repo.session, new)
    return {(r["agent_id"], r["client_id"]) for r in new}


def _answers(requests: Sequence[tuple[str, EventsIn]],
             plan: list[list[tuple[Any, ...]] | Exception], inserted: set[tuple[str, str]],
             now: datetime) -> list[Result | Exception]:
    """Per request: its error, or ``(accepted events, duplicate ids)``."""
    out: list[Result | Exception] = []
    for (agent_id, _), planned in zip(requests, plan, strict=True):
        if isinstance(planned, Exception):
            out.append(planned)
            continue
        accepted: list[AcceptedEvent] = []
        duplicates: list[str] = []
        for cid, row, payload, arr in planned:
            if row is None or (agent_id, cid) not in inserted:
                duplicates.append(cid)
            else:
                accepted.append(AcceptedEvent(cid, row["seq"], payload, now, arr))
        out.append((accepted, duplicates))
    return out
