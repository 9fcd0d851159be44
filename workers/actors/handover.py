"""Accepted events as an ingest actor hands them to a learner shard: in columns when they can be.

A learner is told of the events ingest just stored (:mod:`workers.actors.inbox`) as
``Event.as_replay()`` would read them back. Sent one dict per event, each input is a small
array of its own, which Ray serialises (and the learner deserialises) one by one; by py-spy
that was a fifth of both actors' time on vector ingest. So an agent's accepted events whose
inputs all have one shape and dtype travel as :class:`AcceptedColumns`: their inputs as one
matrix (one buffer), the rest as lists, which read one by one are the same dicts
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


class AcceptedColumns(Sequence[dict[str, Any]]):
    """One agent's accepted events in columns: ``seqs``, ``ids``, ``payloads`` (lists of n)
    and ``inputs`` (n, d), the stored input arrays stacked (one dtype). Read one by one they
    are their ``as_replay()`` dicts, each built only then; the learner keeps them as they came
    (:mod:`workers.actors.inbox`) and a micro-batch takes its inputs matrix, targets and
    betas from the columns (``factory.event_inputs``, :func:`fields`) without building any."""

    __slots__ = ("seqs", "ids", "payloads", "inputs")

    def __init__(self, seqs: Sequence[int], ids: Sequence[str],
                 payloads: Sequence[dict[str, Any]], inputs: np.ndarray) -> None:
        self.seqs, self.ids, self.payloads = seqs, ids, payloads
        self.inputs = inputs  # (n, d)

    @classmethod
    def join(cls, parts: Sequence[tuple[AcceptedColumns, int, int]]) -> AcceptedColumns:
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
    def __getitem__(self, i: slice) -> AcceptedColumns: ...

    def __getitem__(self, i: int | slice) -> dict[str, Any] | AcceptedColumns:
        if isinstance(i, slice):
            lo, hi, step = i.indices(len(self))
            if step != 1:
                raise ValueError("AcceptedColumns: slices of step 1 only")
            return AcceptedColumns.join([(self, lo, hi)])
        return replay_dict(self.payloads[i], self.ids[i], self.seqs[i], self.inputs[i])


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
    given = [p for p in parts if len(p)]
    runs = [p for p in given if isinstance(p, AcceptedRun)]
    if runs and len(runs) == len(given) and all(
            r.inputs.dtype == runs[0].inputs.dtype
            and r.inputs.shape[1:] == runs[0].inputs.shape[1:] for r in runs):
        return AcceptedColumns([s for r in runs for s in r.seqs], [i for r in runs for i in r.ids],
                               [p for r in runs for p in r.payloads],
                               np.concatenate([r.inputs for r in runs]) if len(runs) > 1
                               else runs[0].inputs)
    return pack([e for p in parts for e in p])


def unpack(handed: Handed) -> list[dict[str, Any]]:
    """The events as ``as_replay()`` dicts (each input a row of the matrix, same numbers and
    dtype as stored)."""
    return list(handed)


def fields(events: Sequence[dict[str, Any]], name: str, required: bool = False) -> list[Any]:
    """``[e[name] for e in events]`` (``required``) or ``[e.get(name) ...]``; read from the
    stored payloads of :class:`AcceptedColumns` (a replay dict is its payload plus ``id``,
    ``seq`` and ``input``, so the payload's own fields are the dict's)."""
    if isinstance(events, AcceptedColumns):
        rows: Sequence[dict[str, Any]] = events.payloads
    else:
        rows = events
    return [e[name] for e in rows] if required else [e.get(name) for e in rows]
