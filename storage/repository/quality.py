"""Prequential quality per version: each event is predicted before it is learnt (test-then-train).

A learner commit records, on its version row, ``hits`` (events of the version whose prediction
matched their target) and the agent's running totals ``tested_total`` / ``hits_total`` (the
previous tested version's plus this one's), so the running accuracy is ``hits_total /
tested_total`` and the accuracy over the last ``W`` events at version ``v`` is one indexed
lookup back: the latest version ``u`` with ``tested_total(u) ≤ tested_total(v) − W``, and
``(hits_total(v) − hits_total(u)) / (tested_total(v) − tested_total(u))`` (the window is whole
versions: at least ``W`` events, fewer only at the start). Versions no learner tested (create,
rollback, forget, fork) keep nulls; the totals carry on across them (predictions were made, a
rollback does not unmake them). Nothing here scans an agent's history.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from storage.models import Version
from storage.repository._base import Core, check_int
from storage.repository.versions import MAX_LIST

__all__ = ["Quality", "window_accuracy"]

MAX_WINDOW = 10_000_000


def window_accuracy(tested: int, hits: int, before: tuple[int, int] | None) -> float | None:
    """Accuracy of the events after ``before`` (its ``(tested_total, hits_total)``; None: all)."""
    t0, h0 = before or (0, 0)
    return (hits - h0) / (tested - t0) if tested > t0 else None


class Quality:
    """Test-then-train outcomes on version rows, and the accuracy curve read from them."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self.session = core.session

    def _last_tested(self, agent_id: str, below: int) -> Version | None:
        """The tested version with the largest running total below ``below``: one step down
        the ``(agent_id, tested_total)`` index. Totals grow with every tested version, so the
        largest total is the latest tested version; only a call for an older version (none in
        the service) takes the slower ordered search by version."""
        top = self.session.scalars(
            select(Version).where(Version.agent_id == agent_id, Version.tested_total.is_not(None))
            .order_by(Version.tested_total.desc()).limit(1)).first()
        if top is None or top.version < below:
            return top
        return self.session.scalars(
            select(Version).where(Version.agent_id == agent_id, Version.version < below,
                                  Version.tested_total.is_not(None))
            .order_by(Version.version.desc()).limit(1)).first()

    def record_quality(self, agent_id: str, version: int, hits: list[bool],
                       row: Version | None = None) -> Version:
        """Record the test-then-train outcome of ``version``'s events (in the commit's
        transaction); ``row``: its version row when the caller holds it (the commit that
        made it)."""
        if row is None:
            row = self.session.scalars(select(Version).where(
                Version.agent_id == agent_id, Version.version == version)).one()
        prev = self._last_tested(agent_id, version)
        n, h = len(hits), int(sum(bool(x) for x in hits))
        row.hits = h
        row.tested_total = (prev.tested_total or 0) + n if prev is not None else n
        row.hits_total = (prev.hits_total or 0) + h if prev is not None else h
        self.session.flush()
        return row

    def tested_at(self, agent_id: str, at_most: int) -> tuple[int, int, int] | None:
        """``(tested_total, hits_total, version)`` of the latest tested version with at most
        ``at_most`` events tested: one step down the ``(agent_id, tested_total)`` index (the
        start of a window that ends ``W`` events later)."""
        row = self.session.execute(
            select(Version.tested_total, Version.hits_total, Version.version).where(
                Version.agent_id == agent_id, Version.tested_total.is_not(None),
                Version.tested_total <= at_most).order_by(Version.tested_total.desc()).limit(1)).first()
        return None if row is None else (int(row[0] or 0), int(row[1] or 0), int(row[2]))

    def quality_points(self, agent_id: str, window: int, limit: int = 100,
                       before: int | None = None) -> list[dict[str, Any]]:
        """Tested versions newest first (``before`` excludes that version and later), each with
        its accuracy over the last ``window`` events (at version granularity)."""
        self.core.agent(agent_id)
        window = check_int(window, "window", 1, MAX_WINDOW)
        limit = check_int(limit, "limit", 1, MAX_LIST)
        q = select(Version).where(Version.agent_id == agent_id,
                                  Version.tested_total.is_not(None))
        if before is not None:
            q = q.where(Version.version < before)
        rows = list(self.session.scalars(q.order_by(Version.version.desc()).limit(limit)))
        out = []
        for r in rows:
            assert r.tested_total is not None and r.hits_total is not None
            base = self.tested_at(agent_id, r.tested_total - window)
            acc = window_accuracy(r.tested_total, r.hits_total,
                                  None if base is None else (base[0], base[1]))
            out.append({"version": r.version, "created_at": r.created_at,
                        "events": r.event_count, "hits": r.hits, "accuracy": acc})
        return out
