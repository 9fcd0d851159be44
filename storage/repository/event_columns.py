"""Group commit of vector blocks in columns, on SQLite: what :func:`event_groups.append_groups`
does row by row (the reference), for the common case, without a Python object per event.

A group takes this path when every request is an :class:`EventBlock` whose rows all pass and
are stored in one dtype. Each request's events are one run of seqs after its agent's head,
its inputs one block coded from its matrix before the transaction takes the write lock (no
re-stacking), its rows one ``executemany`` of tuples zipped from columns, and its answer an
:class:`AcceptedRun` (the events in columns). The rows go in by ``INSERT OR IGNORE`` in a
savepoint: when an id was stored already or repeats within the group a row is skipped, the
savepoint is rolled back and :func:`append_columns` answers None; the caller then takes the
row path in the same transaction, which gives every request its own answer and error
(tests/test_event_columns.py compares the two). The statements run on the transaction's DBAPI
cursor (storage/repository/sqlite_cursor.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from itertools import repeat
from typing import Any, NamedTuple

import numpy as np

from storage.errors import AgentNotFound, InputError
from storage.repository.event_block import BlockColumns, EventBlock, parse_columns
from storage.repository.event_inputs import _BLOCKS, _block_values, _stored, block_rows
from storage.repository.events import (
    _MICROS,
    MAX_BATCH,
    SQLITE_INSERT_OR_IGNORE,
    AcceptedRun,
)
from storage.repository.sqlite_cursor import SqliteCursor

# the group's blocks in one INSERT ... VALUES (...), ... RETURNING id per _BLOCKS_MAX blocks
_BLOCK_COLS = tuple(c.name for c in _BLOCKS.c if not c.primary_key)  # _block_values' keys
_BLOCKS_MAX = 500  # 4,500 parameters a statement (SQLite takes 32,766)


def _insert_blocks(cur: SqliteCursor, blocks: list[dict[str, Any]]) -> list[int]:
    """Insert the blocks (SQLite, the write lock held); their ids in the order given. The
    ids of one statement are new rowids, each larger than every one before (SQLite gives a
    new row a rowid above the largest), so sorted they are in the order of the VALUES."""
    out: list[int] = []
    for k in range(0, len(blocks), _BLOCKS_MAX):
        part = blocks[k:k + _BLOCKS_MAX]
        values = ", ".join(["(" + ", ".join("?" * len(_BLOCK_COLS)) + ")"] * len(part))
        sql = (f"INSERT INTO {_BLOCKS.name} ({', '.join(_BLOCK_COLS)}) VALUES {values} "
               "RETURNING id")
        got = cur.execute(sql, tuple(b[c] for b in part for c in _BLOCK_COLS)).fetchall()
        out += sorted(int(i) for (i,) in got)
    return out


class ColumnRequest(NamedTuple):
    """A request ready for the column path: its columns, their stored ``(n, d)`` matrix, and
    its blocks (``_stored`` rows of ``matrix[lo:lo + step]``), coded before the write lock."""

    agent_id: str
    cols: BlockColumns
    matrix: np.ndarray
    step: int
    coded: list[dict[str, Any]]


Parsed = list[ColumnRequest | Exception]


def parse_group(requests: Sequence[tuple[str, Any]]) -> Parsed | None:
    """Per request its :class:`ColumnRequest` or its error; None when a request is not a
    block stored in one dtype (the row path takes the group)."""
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
        out.append(ColumnRequest(agent_id, cols, m, step,
                                 [_stored(m[lo:lo + step]) for lo in range(0, len(m), step)]))
    return out


def append_columns(cur: SqliteCursor, parsed: Parsed, heads: dict[str, list[int]],
                   keys: dict[str, int], now: datetime, dialect: Any) -> list[Any] | None:
    """Store the group in columns on ``cur``, the cursor of the caller's transaction (the
    agents' rows locked by it; ``heads``: next seq and events received per agent, moved on
    success; ``dialect``: the engine's, for the stored time). Per request
    ``(AcceptedRun, [])`` or its error; None, having written nothing, when the insert skipped
    a row (an id stored already or repeated in the group)."""
    stamp = _MICROS.process_bind_param(now, dialect)
    nxt = {a: list(h) for a, h in heads.items()}
    out: list[Any] = []
    blocks: list[dict[str, Any]] = []  # every block of the group, in order
    # per stored request: (request, agent key, seqs, ids, index of its first block)
    runs: list[tuple[ColumnRequest, int, range, list[str], int]] = []
    for p in parsed:
        if isinstance(p, Exception) or p.agent_id not in heads:
            out.append(p if isinstance(p, Exception) else AgentNotFound(p.agent_id))
            continue
        n, key, h = len(p.matrix), keys[p.agent_id], nxt[p.agent_id]
        ids = [c if c is not None else "ev_" + uuid.uuid4().hex for c in p.cols.ids]
        seqs = range(h[0], h[0] + n)
        h[0] += n
        h[1] += n
        runs.append((p, key, seqs, ids, len(blocks)))
        blocks.extend(_block_values(key, seqs[lo:lo + p.step], p.matrix[lo:lo + p.step], stored)
                      for lo, stored in zip(range(0, n, p.step), p.coded, strict=True))
        out.append((AcceptedRun(seqs, ids, p.cols.payloads, now, p.matrix), []))
    cur.execute("SAVEPOINT columns")
    # one statement for the group's blocks, their ids in the order given
    bids = _insert_blocks(cur, blocks) if blocks else []
    rows: list[tuple[Any, ...]] = []
    for p, key, seqs, ids, first in runs:
        n = len(seqs)
        per_row = [bids[first + i // p.step] for i in range(n)]
        rows.extend(zip(repeat(key, n), ids, seqs, repeat(stamp, n), p.cols.texts, per_row,
                        [i % p.step for i in range(n)], strict=True))
    if rows and cur.executemany(SQLITE_INSERT_OR_IGNORE, rows) != len(rows):
        cur.execute("ROLLBACK TO columns")
        cur.execute("RELEASE columns")
        return None
    cur.execute("RELEASE columns")
    for a, h in nxt.items():
        heads[a][:] = h
    return out
