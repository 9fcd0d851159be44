"""Accepted events as an ingest actor hands them to a learner shard: in columns when they can be.

A learner is told of the events ingest just stored (:mod:`workers.actors.inbox`) as
``Event.as_replay()`` would read them back. Sent one dict per event, each input is a small
array of its own, which Ray serialises (and the learner deserialises) one by one; by py-spy
that was a fifth of both actors' time on vector ingest. So an agent's accepted events whose
inputs all have one shape and dtype travel as :class:`AcceptedColumns`: their inputs as one
matrix (one buffer), the rest as lists, and the learner unpacks them into the same dicts
(:func:`unpack`). Anything else (texts without embeddings, chat turns, mixed dtypes) travels
as the dicts themselves.

>>> import numpy as np
>>> from datetime import datetime, timezone
>>> from storage.repository.events import AcceptedEvent, AcceptedRun
>>> t = datetime(2026, 1, 1, tzinfo=timezone.utc)
>>> evs = [AcceptedEvent(f"e{i}", i, {"target": "a"}, t, np.full(2, i, np.float32))
...        for i in (1, 2)]
>>> packed = pack(evs); type(packed).__name__
'AcceptedColumns'
>>> [(e["id"], e["seq"], e["input"].tolist()) for e in unpack(packed)]
[('e1', 1, [1.0, 1.0]), ('e2', 2, [2.0, 2.0])]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, overload

import numpy as np

from storage.models import replay_dict
from storage.repository.events import AcceptedEvent, AcceptedRun


class AcceptedColumns:
    """One agent's accepted events in columns: ``seqs``, ``ids``, ``payloads`` (lists of n)
    and ``inputs`` (n, d), the stored input arrays stacked (one dtype)."""

    __slots__ = ("seqs", "ids", "payloads", "inputs")

    def __init__(self, seqs: list[int], ids: list[str], payloads: list[dict[str, Any]],
                 inputs: np.ndarray) -> None:
        self.seqs = seqs
        self.ids = ids
        self.payloads = payloads
        self.inputs = inputs  # (n, d)

    def __len__(self) -> int:
        return len(self.seqs)


Handed = AcceptedColumns | list[dict[str, Any]]


def pack(events: Sequence[AcceptedEvent]) -> Handed:
    """The events for a learner: columns when every input is an array of one shape and
    dtype, else their ``as_replay()`` dicts."""
    first = events[0].input if events else None
    if not isinstance(first, np.ndarray) or first.ndim != 1 or any(
            not isinstance(e.input, np.ndarray) or e.input.shape != first.shape
            or e.input.dtype != first.dtype for e in events):
        return [e.as_replay() for e in events]
    return AcceptedColumns([e.seq for e in events], [e.client_id for e in events],
                           [e.payload for e in events], np.stack([e.input for e in events]))


def pack_parts(parts: Sequence[Sequence[AcceptedEvent]]) -> Handed:
    """:func:`pack` of the parts' events in order; runs stored in columns
    (:class:`AcceptedRun`, one dtype and size) are joined without an object per event."""
    runs = [p for p in parts if len(p)]
    if runs and all(isinstance(p, AcceptedRun) for p in runs):
        first = runs[0].inputs  # type: ignore[attr-defined]
        if all(p.inputs.dtype == first.dtype and p.inputs.shape[1:] == first.shape[1:]  # type: ignore[attr-defined]
               for p in runs):
            rs: list[AcceptedRun] = runs  # type: ignore[assignment]
            return AcceptedColumns([s for r in rs for s in r.seqs], [i for r in rs for i in r.ids],
                                   [p for r in rs for p in r.payloads],
                                   first if len(rs) == 1 else np.concatenate([r.inputs for r in rs]))
    return pack([e for p in parts for e in p])


def unpack(handed: Handed) -> list[dict[str, Any]]:
    """The events as ``as_replay()`` dicts (each input a row of the matrix, same numbers and
    dtype as stored)."""
    if not isinstance(handed, AcceptedColumns):
        return handed
    return [replay_dict(payload, cid, seq, x) for seq, cid, payload, x in
            zip(handed.seqs, handed.ids, handed.payloads, handed.inputs, strict=True)]


class ColumnEvents(Sequence[dict[str, Any]]):
    """Accepted events kept in columns by the learner (:mod:`workers.actors.inbox`): the
    sequence of their ``as_replay()`` dicts (:func:`unpack`'s), each built only when read one
    by one; a micro-batch takes its inputs matrix, targets and betas from the columns
    (:func:`fields`, ``factory.event_inputs``) without building any."""

    __slots__ = ("seqs", "ids", "payloads", "inputs")

    def __init__(self, seqs: Sequence[int], ids: Sequence[str],
                 payloads: Sequence[dict[str, Any]], inputs: np.ndarray) -> None:
        self.seqs, self.ids, self.payloads = seqs, ids, payloads
        self.inputs = inputs  # (n, d), as stored

    @classmethod
    def of(cls, handed: AcceptedColumns) -> ColumnEvents:
        return cls(handed.seqs, handed.ids, handed.payloads, handed.inputs)

    @classmethod
    def join(cls, parts: Sequence[tuple[ColumnEvents, int, int]]) -> ColumnEvents:
        """The rows ``lo:hi`` of each ``(events, lo, hi)`` in order, as one (the inputs
        must share a dtype and size)."""
        if len(parts) == 1:
            c, lo, hi = parts[0]
            return cls(c.seqs[lo:hi], c.ids[lo:hi], c.payloads[lo:hi], c.inputs[lo:hi])
        return cls([s for c, lo, hi in parts for s in c.seqs[lo:hi]],
                   [i for c, lo, hi in parts for i in c.ids[lo:hi]],
                   [p for c, lo, hi in parts for p in c.payloads[lo:hi]],
                   np.concatenate([c.inputs[lo:hi] for c, lo, hi in parts]))

    def __len__(self) -> int:
        return len(self.seqs)

    @overload
    def __getitem__(self, i: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, i: slice) -> ColumnEvents: ...

    def __getitem__(self, i: int | slice) -> dict[str, Any] | ColumnEvents:
        if isinstance(i, slice):
            lo, hi, step = i.indices(len(self))
            if step != 1:
                raise ValueError("ColumnEvents: slices of step 1 only")
            return ColumnEvents.join([(self, lo, hi)])
        return replay_dict(self.payloads[i], self.ids[i], self.seqs[i], self.inputs[i])


def fields(events: Sequence[dict[str, Any]], name: str, required: bool = False) -> list[Any]:
    """``[e[name] for e in events]`` (``required``) or ``[e.get(name) ...]``; read from the
    stored payloads of :class:`ColumnEvents` (a replay dict is its payload plus ``id``,
    ``seq`` and ``input``, so the payload's own fields are the dict's)."""
    if isinstance(events, ColumnEvents):
        rows: Sequence[dict[str, Any]] = events.payloads
    else:
        rows = events
    return [e[name] for e in rows] if required else [e.get(name) for e in rows]
