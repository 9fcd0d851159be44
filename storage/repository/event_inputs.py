"""Event inputs in blocks (``event_inputs``, migration 0012): the inputs of one agent's events
of one group commit, of one dtype and size, stored as one ``(rows, dim)`` array of raw bytes
(:mod:`storage.codec`; since migration 0014 coded by byte planes, :mod:`storage.planes`) with
one SHA-256, each event row referring to its row.

Why: an event row that holds its own 1.5 KB input makes PostgreSQL's heap take ≥ 2,048 B an
event (four rows a page) before any index, and every insert, applied mark and read moves the
whole row. With the inputs apart an event row is ~100 B (SQLite's ``events`` table: 103 B an
event, ``benchmarks.storage_breakdown``) and a request's inputs one blob.

The rules that keep it exact and erasable:

- a block's ``first_seq``..``last_seq`` covers the ``seq`` of every event of its agent that
  refers to it (one group's accepted rows of one agent, or a fork's copy of rows of one source
  block: a short range, shared at most with the group's blocks of other dtypes or sizes), so
  "is it still referred to" is an indexed range read of ``events``, never a scan;
- a row no event keeps (a duplicate skipped by PostgreSQL's ``ON CONFLICT``, an erased event)
  is zeroed, and a block no event refers to is deleted (:func:`drop_unreferenced`);
- a fork copies only the rows its events use (:func:`copy_for_fork`), so a later erasure in
  the source leaves no copy of a forgotten input behind in a block of the fork.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from sqlalchemy import Table, and_, delete, exists, insert, select, update

from storage.models import Base, Event, EventInputs
from storage.planes import decode_block, pack
from storage.repository._base import chunks

_BLOCKS: Table = Base.metadata.tables[EventInputs.__tablename__]
_EVENTS: Table = Base.metadata.tables[Event.__tablename__]
_INSERT = insert(_BLOCKS).returning(_BLOCKS.c.id)
#: bytes a block holds at most (one row at least): reading one event reads its whole block
#: and checks its SHA-256, so a request of 100,000 events at 384-d is blocks of 682 rows
#: (1 MiB), not one of 150 MB. Smaller blocks read faster one at a time but store more:
#: SQLite's overflow pages and PostgreSQL's TOAST chunks each waste part of a page per blob
BLOCK_BYTES = 1 << 20


def block_rows(row_bytes: int) -> int:
    """Rows of ``row_bytes`` bytes a block holds at most."""
    return max(1, BLOCK_BYTES // max(1, row_bytes))


def _stored(m: np.ndarray) -> dict[str, Any]:
    """The columns that hold the ``(rows, dim)`` array ``m`` (coded: storage/planes.py)."""
    data, codec = pack(m)
    return {"data": data, "codec": codec, "sha256": hashlib.sha256(data).digest()}


def _block_values(agent_key: int, seqs: Sequence[int], m: np.ndarray,
                  stored: dict[str, Any] | None = None) -> dict[str, Any]:
    """A block row of ``m`` (``stored``: ``_stored(m)`` when coded already)."""
    return {"agent_key": agent_key, "first_seq": min(seqs), "last_seq": max(seqs),
            "rows": int(m.shape[0]), "dtype": m.dtype.str, "dim": int(m.shape[1]),
            **(stored if stored is not None else _stored(m))}


def pack_inputs(session: Any, rows: Iterable[dict[str, Any]]) -> list[int]:
    """Store the inputs of event rows about to be inserted (dicts with ``agent_key``,
    ``seq`` and ``input``: a 1-d little-endian float array or None) as blocks, one per
    (agent, dtype, size) and :data:`BLOCK_BYTES`, and set each row's ``input_block_id``
    and ``input_row``. Returns the new blocks' ids."""
    groups: dict[tuple[int, str, int], list[dict[str, Any]]] = {}
    for r in rows:
        a = r.get("input")
        if a is None:
            r["input_block_id"] = r["input_row"] = None
            continue
        groups.setdefault((r["agent_key"], a.dtype.str, a.size), []).append(r)
    ids: list[int] = []
    for (key, dtype, dim), group in groups.items():
        for rs in chunks(group, block_rows(dim * np.dtype(dtype).itemsize)):
            m = np.stack([r["input"] for r in rs])  # (rows, dim)
            bid = int(session.execute(_INSERT, _block_values(
                key, [r["seq"] for r in rs], m)).scalar_one())
            ids.append(bid)
            for i, r in enumerate(rs):
                r["input_block_id"], r["input_row"] = bid, i
    return ids


def settle_blocks(session: Any, rows: Sequence[dict[str, Any]], kept: set[int]) -> None:
    """After an insert that skipped some of ``rows`` (PostgreSQL's ``ON CONFLICT DO
    NOTHING``; ``kept``: the ``id()`` of the rows inserted, whose ``seq`` is final): zero the
    skipped rows' inputs, move each block's seq range onto its kept rows, delete blocks that
    kept none."""
    per: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        if r.get("input_block_id") is not None:
            per.setdefault(r["input_block_id"], []).append(r)
    for bid, rs in per.items():
        mine = [r for r in rs if id(r) in kept]
        if not mine:
            session.execute(delete(_BLOCKS).where(_BLOCKS.c.id == bid))
            continue
        seqs = [r["seq"] for r in mine]
        values: dict[str, Any] = {"first_seq": min(seqs), "last_seq": max(seqs)}
        if len(mine) < len(rs):
            m = np.stack([r["input"] for r in rs])  # (rows, dim) as packed
            m[[r["input_row"] for r in rs if id(r) not in kept]] = 0
            values.update(_stored(m))
        session.execute(update(_BLOCKS).where(_BLOCKS.c.id == bid).values(**values))


def zero_rows(session: Any, refs: Iterable[tuple[int, int]]) -> set[int]:
    """Zero the rows ``(block id, row)`` of their blocks (an erasure: the bytes are
    overwritten, not just no longer referred to); returns the blocks touched."""
    per: dict[int, list[int]] = {}
    for bid, row in refs:
        per.setdefault(bid, []).append(row)
    for bid, rws in per.items():
        b = session.execute(select(_BLOCKS.c.rows, _BLOCKS.c.dtype, _BLOCKS.c.dim,
                                   _BLOCKS.c.data, _BLOCKS.c.codec, _BLOCKS.c.sha256)
                            .where(_BLOCKS.c.id == bid)).one_or_none()
        if b is None:
            continue
        m = decode_block(b.data, b.codec, b.dtype, b.rows, b.dim, b.sha256,
                         f"input block {bid}").copy()
        m[rws] = 0
        session.execute(update(_BLOCKS).where(_BLOCKS.c.id == bid).values(**_stored(m)))
    return set(per)


def drop_unreferenced(session: Any, block_ids: Iterable[int]) -> int:
    """Delete those of the blocks that no event of their agent in their seq range refers to
    (an indexed range read of ``events`` per block); returns how many."""
    ev = _EVENTS.c
    b = _BLOCKS.c
    used = exists().where(and_(ev.agent_key == b.agent_key, ev.seq >= b.first_seq,
                               ev.seq <= b.last_seq, ev.input_block_id == b.id))
    n = 0
    for part in chunks(sorted(set(block_ids))):
        done = session.execute(delete(_BLOCKS).where(b.id.in_(part), ~used))
        n += int(getattr(done, "rowcount", 0) or 0)
    return n


def block_refs(session: Any, event_ids: Sequence[int]) -> set[int]:
    """The blocks the events (by row id) refer to."""
    out: set[int] = set()
    for part in chunks(list(event_ids)):
        out.update(session.scalars(select(_EVENTS.c.input_block_id).where(
            _EVENTS.c.id.in_(part), _EVENTS.c.input_block_id.is_not(None)).distinct()))
    return out


def copy_for_fork(session: Any, fork_key: int, events: Sequence[Event],
                  seqs: Sequence[int]) -> list[tuple[int | None, int | None]]:
    """The ``(input_block_id, input_row)`` of a fork's copies of ``events`` (its new ``seqs``):
    the rows they use of each source block copied into a block of the fork's own (so the
    source's later erasures leave no copy behind), in the events' order."""
    out: list[tuple[int | None, int | None]] = [(None, None)] * len(events)
    per: dict[int, list[int]] = {}
    for i, e in enumerate(events):
        if e.input_block_id is not None:
            per.setdefault(e.input_block_id, []).append(i)
    for bid, idx in per.items():  # (a source block is within BLOCK_BYTES)
        block = events[idx[0]].input_block
        if block is None:
            continue
        m = block.matrix(f"block {bid}")[[int(events[i].input_row or 0) for i in idx]]
        new = int(session.execute(_INSERT, _block_values(
            fork_key, [seqs[i] for i in idx], np.ascontiguousarray(m))).scalar_one())
        for j, i in enumerate(idx):
            out[i] = (new, j)
    return out
