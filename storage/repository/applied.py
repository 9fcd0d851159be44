"""Which version applied an event, without a mark on the event's row (migration 0013).

A commit that applies events writes their seq range on its version row (``first_seq``,
``last_seq``: the smallest and largest seq it applied) and moves the agent's watermark
(``agents.applied_seq``, the last seq applied); it does not touch the event rows. Events are
applied oldest pending first and the pending ones are those after the watermark, so the ranges
of an agent's versions never overlap, and an event ``e`` was applied by

- ``e.applied_version`` when that is set (rows written before 0013, fork copies, and the
  version horizon's re-attribution, storage/repository/horizon.py), else
- the version ``v`` whose range holds ``e.seq``, unless ``e`` is rejected (never applied) or
  was forgotten before ``v`` (``forgotten_version < v``: forgotten while pending, so ``v``
  skipped it), else
- none: ``e`` is pending, rejected, or forgotten while pending.

:func:`applied_version` is that rule for one row; :class:`Ranges` reads the ranges it needs
with the ``(agent_id, last_seq)`` index: those of one page of seqs, or all of an agent's.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from storage.models import Agent, Event, Version


def applied_seq_of(agent_id: Any) -> Any:
    """The agent's watermark (``agents.applied_seq``) as a scalar subquery."""
    return select(Agent.applied_seq).where(Agent.id == agent_id).scalar_subquery()


def maybe_applied(agent_id: Any) -> Any:
    """A WHERE term true for every applied event of the agent and for few others (those
    forgotten while pending, which :func:`applied_version` then tells apart)."""
    return or_(Event.applied_version.is_not(None),
               and_(Event.seq <= applied_seq_of(agent_id), Event.rejected.is_not(True)))


class Ranges:
    """Seq ranges of an agent's versions, sorted by ``last_seq`` (ranges never overlap)."""

    def __init__(self, rows: Iterable[Any]) -> None:  # (last_seq, first_seq, version)
        rows = sorted(rows)
        self._last = [r[0] for r in rows]
        self._first = [r[1] for r in rows]
        self._version = [r[2] for r in rows]

    @classmethod
    def of_agent(cls, session: Session, agent_id: str) -> Ranges:
        """Every range of the agent's versions (reads its version rows that applied events)."""
        return cls(session.execute(select(Version.last_seq, Version.first_seq, Version.version)
                                   .where(Version.agent_id == agent_id,
                                          Version.last_seq.is_not(None))).all())

    @classmethod
    def of_seqs(cls, session: Session, agent_id: str, seqs: Iterable[int]) -> Ranges:
        """The ranges that may hold any of ``seqs``: at most one per seq from the smallest to
        the largest (each range holds at least one seq), one indexed read. Callers pass the
        seqs of a page of events, or what retention left of an agent's: a short span."""
        seqs = list(seqs)
        if not seqs:
            return cls([])
        lo, hi = min(seqs), max(seqs)
        return cls(session.execute(
            select(Version.last_seq, Version.first_seq, Version.version)
            .where(Version.agent_id == agent_id, Version.last_seq >= lo)
            .order_by(Version.last_seq).limit(hi - lo + 1)).all())

    @classmethod
    def of_rows(cls, session: Session, agent_id: str, rows: Iterable[Any]) -> Ranges:
        """:meth:`of_seqs` of the event rows (anything with ``seq``, ``applied_version`` and
        ``rejected``) whose version a range may say: no mark of their own, not rejected."""
        return cls.of_seqs(session, agent_id, [r.seq for r in rows
                                               if r.applied_version is None and not r.rejected])

    def version_at(self, seq: int) -> int | None:
        """The version whose range holds ``seq``, or None."""
        i = bisect_left(self._last, seq)
        if i < len(self._last) and self._first[i] <= seq:
            return self._version[i]
        return None

    def applied_version(self, seq: int, applied: int | None, forgotten: int | None,
                        rejected: bool | None) -> int | None:
        """The version that applied the event (module doc); the row's ``seq``,
        ``applied_version``, ``forgotten_version`` and ``rejected``."""
        if applied is not None:
            return applied
        if rejected:
            return None
        v = self.version_at(seq)
        if v is None or (forgotten is not None and forgotten < v):
            return None
        return v


def applied_versions(events: Iterable[Event], ranges: Ranges) -> dict[int, int]:
    """``seq -> version`` for those of ``events`` (of one agent) that were applied."""
    out: dict[int, int] = {}
    for e in events:
        v = ranges.applied_version(e.seq, e.applied_version, e.forgotten_version, e.rejected)
        if v is not None:
            out[e.seq] = v
    return out
