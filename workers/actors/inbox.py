"""A learner shard's inbox: the events ingest accepted, handed over with the notification, so
the learner learns them without reading back from SQL what was just written there.

Events arrive per agent as ``Event.as_replay()`` dicts (arrays included) numbered by ``seq``,
the agent's order of acknowledgement, or in columns (:class:`AcceptedColumns`: a run of vector
events kept as one matrix, handed out again as one, sliced, without a dict per event). The
inbox hands out only a gapless run starting at the seq after the last one committed; whenever it cannot vouch for that (after a restart, a
notification without events, a gap or reordering between ingest actors, an error, a forget
or rollback, a rejected event, a full inbox) :meth:`Inbox.take` answers None and the learner
reads the pending events from the store, as it always could. The store stays the truth;
the inbox is only a shortcut.

Examples
--------
>>> box = Inbox(max_events=100)
>>> box.take("a", 10) is None                     # nothing known yet: read the store
True
>>> box.committed("a", 4, complete=True)          # events up to seq 4 are applied
>>> box.put("a", [{"seq": 5}, {"seq": 6}]); [e["seq"] for e in box.take("a", 10)]
[5, 6]
>>> box.committed("a", 6, complete=True); box.take("a", 10)
[]
>>> box.put("a", [{"seq": 8}]); box.take("a", 10) is None   # seq 7 went missing: a gap
True
>>> box.put("b", [{"seq": 3}, {"seq": 4}]); box.unstarted("b")  # first events since start
True
>>> box.start("b", 3); [e["seq"] for e in box.take("b", 10)]    # the store's oldest pending
[3, 4]
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from workers.actors.handover import AcceptedColumns


class Inbox:
    """Per agent: events by seq, the next seq expected, and whether the store must be read."""

    def __init__(self, max_events: int) -> None:
        self._max = int(max_events)
        # per agent, per seq: the event's dict, or (its columns, its row)
        self._events: dict[str, dict[int, Any]] = {}
        self._next: dict[str, int] = {}
        self._stale: set[str] = set()
        self._count = 0
        self._lock = threading.Lock()

    def put(self, agent_id: str, events: Sequence[dict[str, Any]] | None) -> None:
        """Events accepted for ``agent_id`` (None: the agent has pending events not given)."""
        with self._lock:
            if not events:
                self._stale.add(agent_id)
                return
            if self._count + len(events) > self._max:  # bounded: drop, the store has them
                self._events.clear()
                self._stale.update(self._next)
                self._count = 0
                self._stale.add(agent_id)
                return
            box = self._events.setdefault(agent_id, {})
            first = self._next.get(agent_id, 0)  # once known, the box holds no seq below it
            if isinstance(events, AcceptedColumns):
                for i, s in enumerate(events.seqs):
                    if s >= first and s not in box:
                        box[s] = (events, i)
                        self._count += 1
                return
            for ev in events:
                s = int(ev["seq"])
                if s >= first and s not in box:
                    box[s] = ev
                    self._count += 1

    def take(self, agent_id: str, limit: int) -> Sequence[dict[str, Any]] | None:
        """Up to ``limit`` events from the next seq on, in order ([]: none pending), or None
        when the store must be read."""
        with self._lock:
            nxt = self._next.get(agent_id)
            if nxt is None or agent_id in self._stale:
                return None
            box = self._events.get(agent_id, {})
            if not box:
                return []
            out: list[Any] = []
            while len(out) < limit and nxt + len(out) in box:
                out.append(box[nxt + len(out)])
            return _assemble(out) if out else None  # events, but not the next one: a gap

    def unstarted(self, agent_id: str) -> bool:
        """True when the inbox holds events of ``agent_id`` but does not know where its pending
        events start (first events since start or a reset): :meth:`start` tells it."""
        with self._lock:
            return (agent_id not in self._next and agent_id not in self._stale
                    and bool(self._events.get(agent_id)))

    def start(self, agent_id: str, first_pending_seq: int | None) -> None:
        """The store's oldest pending seq of ``agent_id`` (None: none pending): takes then
        hand out the gapless run of held events from there (None again when it is missing)."""
        with self._lock:
            if agent_id in self._next or agent_id in self._stale or first_pending_seq is None:
                return  # known already (committed or marked stale meanwhile), or no answer
            self._next[agent_id] = int(first_pending_seq)
            self._drop_below(agent_id, self._next[agent_id])  # held before it was known

    def committed(self, agent_id: str, last_seq: int, complete: bool) -> None:
        """Events up to ``last_seq`` are applied; ``complete``: every pending event the store
        held up to then was in the batch (else the store is read again next time)."""
        with self._lock:
            prev = self._next.get(agent_id)
            box = self._events.get(agent_id)
            if box:  # the applied seqs leave the box: the run prev..last_seq, or by a scan
                if prev is not None and last_seq + 1 - prev <= len(box):
                    for s in range(prev, int(last_seq) + 1):
                        if box.pop(s, None) is not None:
                            self._count -= 1
                else:
                    self._drop_below(agent_id, int(last_seq) + 1)
            self._next[agent_id] = int(last_seq) + 1
            if complete:
                self._stale.discard(agent_id)
            else:
                self._stale.add(agent_id)

    def _drop_below(self, agent_id: str, nxt: int) -> None:
        box = self._events.get(agent_id, {})
        for s in [s for s in box if s < nxt]:
            del box[s]
            self._count -= 1

    def reset(self, agent_id: str) -> None:
        """Forget what is known of the agent: the next take reads the store."""
        with self._lock:
            self._count -= len(self._events.pop(agent_id, {}))
            self._next.pop(agent_id, None)
            self._stale.discard(agent_id)

    def __len__(self) -> int:
        with self._lock:
            return self._count


def _assemble(items: list[Any]) -> Sequence[dict[str, Any]]:
    """The taken events: one :class:`AcceptedColumns` when every one is a row of columns of one
    dtype and size (consecutive rows joined as slices), else their dicts."""
    parts: list[tuple[AcceptedColumns, int, int]] = []  # runs of consecutive rows
    c0, lo, hi = None, 0, 0
    for x in items:
        if type(x) is not tuple:
            break
        c, i = x
        if c is c0 and i == hi:
            hi += 1
            continue
        if c0 is not None:
            parts.append((c0, lo, hi))
        c0, lo, hi = c, i, i + 1
    else:
        assert c0 is not None
        parts.append((c0, lo, hi))
        first = parts[0][0].inputs
        if all(c.inputs.dtype == first.dtype and c.inputs.shape[1:] == first.shape[1:]
               for c, _, _ in parts):
            return AcceptedColumns.join(parts)
    return [x[0][x[1]] if type(x) is tuple else x for x in items]
