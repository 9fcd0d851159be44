"""Group commit of vector blocks in columns, on SQLite: what :func:`event_groups.append_groups`
does row by row (the reference), for the common case, without a Python object per event.

A group takes this path when every request is an :class:`EventBlock` whose rows all pass
and are stored in one dtype, no event id repeats within the group, and none is stored already.
Then each request's events are one run of seqs after its agent's head, its inputs one block
coded from its matrix before the transaction takes the write lock (no re-stacking), its rows
one ``executemany`` of tuples zipped from columns, and its answer an :class:`AcceptedRun`
(the events in columns). Anything else, found
before or by the insert (a savepoint: an id already stored makes ``INSERT OR IGNORE`` skip a
row), returns None and the caller takes the row path in the same transaction, which gives
every request its own answer and error (tests/test_event_columns.py compares the two).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from itertools import repeat
from typing import Any

from storage.errors import AgentNotFound, InputError
from storage.repository import Repository
from storage.repository.event_block import BlockColumns, EventBlock, parse_columns
from storage.repository.event_inputs import _INSERT as _BLOCK_INSERT
from storage.repository.event_inputs import _block_values, _stored, block_rows
from storage.repository.events import _MICROS, _SQLITE_INSERT, MAX_BATCH, AcceptedRun

_INSERT_OR_IGNORE = _SQLITE_INSERT.replace("INSERT", "INSERT OR IGNORE", 1)
Parsed = list[tuple[str, BlockColumns, list[dict[str, Any]]] | Exception]


def parse_group(requests: Sequence[tuple[str, Any]]) -> Parsed | None:
    """Per request ``(agent id, its columns, its blocks coded)`` or its error; None when a
    request is not a block stored in one dtype (the row path takes the group). The blocks are
    coded here, before the caller's transaction takes the write lock."""
    if not all(isinstance(events, EventBlock) for _, events in requests):
        return None
    out: Parsed = []
    for agent_id, events in requests:
        try:
            if not isinstance(agent_id, str):
                raise AgentNotFound(repr(agent_id))
            if len(events) > MAX_BATCH:
                raise InputError("events", f"at most {MAX_BATCH} events per batch")
            cols = parse_columns(events)
        except (InputError, AgentNotFound) as exc:
            out.append(exc)
            continue
        m = cols.matrix()  # (n, d)
        if m is None:
            return None
        step = block_rows(m.shape[1] * m.dtype.itemsize)
        out.append((agent_id, cols, [_stored(m[lo:lo + step]) for lo in range(0, len(m), step)]))
    return out


def append_columns(repo: Repository, parsed: Parsed, heads: dict[str, list[int]],
                   keys: dict[str, int], now: datetime) -> list[Any] | None:
    """Store the group in columns (the agents' rows locked by the caller; ``heads``: next seq
    and events received per agent, moved on success). Per request ``(AcceptedRun, [])`` or
    its error; None, having written nothing, when the row path must take it."""
    seen: dict[str, set[str]] = {}
    for p in parsed:
        if isinstance(p, Exception) or p[0] not in heads:
            continue
        given = [c for c in p[1].ids if c is not None]
        mine = seen.setdefault(p[0], set())
        if len(set(given)) < len(given) or not mine.isdisjoint(given):
            return None  # an id repeated within the group: the row path answers it
        mine.update(given)
    s = repo.session
    conn = s.connection()
    stamp = _MICROS.process_bind_param(now, s.get_bind().dialect)
    nxt = {a: list(h) for a, h in heads.items()}
    out: list[Any] = []
    rows: list[tuple[Any, ...]] = []
    nested = s.begin_nested()
    for p in parsed:
        if isinstance(p, Exception):
            out.append(p)
            continue
        agent_id, cols, coded = p
        if agent_id not in heads:
            out.append(AgentNotFound(agent_id))
            continue
        m = cols.matrix()  # (n, d), one dtype (parse_group)
        assert m is not None
        n, key = len(cols.ids), keys[agent_id]
        ids = [c if c is not None else "ev_" + uuid.uuid4().hex for c in cols.ids]
        seqs = range(nxt[agent_id][0], nxt[agent_id][0] + n)
        nxt[agent_id][0] += n
        nxt[agent_id][1] += n
        bids: list[int] = []
        step = block_rows(m.shape[1] * m.dtype.itemsize)
        for lo, stored in zip(range(0, n, step), coded, strict=True):
            part = m[lo:lo + step]  # (rows, d)
            bid = int(s.execute(_BLOCK_INSERT, _block_values(
                key, seqs[lo:lo + len(part)], part, stored)).scalar_one())
            bids.extend(repeat(bid, len(part)))
        rows.extend(zip(repeat(key, n), ids, seqs, repeat(stamp, n), cols.texts, bids,
                        [i % step for i in range(n)], strict=True))
        out.append((AcceptedRun(seqs, ids, cols.payloads, now, m), []))
    if rows and conn.exec_driver_sql(_INSERT_OR_IGNORE, rows).rowcount != len(rows):
        nested.rollback()  # an id stored already: the row path looks them up
        return None
    nested.commit()
    for a, h in nxt.items():
        heads[a][:] = h
    return out

