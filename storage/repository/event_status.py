"""Listing an agent's events by status (``GET /v1/agents/{id}/events?status=``), a page at a
time in ``seq`` order. Each status is one indexed range read, never a scan of the history:
``rejected`` on ``ix_events_rejected (agent_key, seq) WHERE rejected`` (a partial index: it
holds only those few rows), ``pending`` on ``uq_events_agent_seq (agent_key, seq)`` after the
agent's watermark, ``applied`` on the same index up to it (almost every event is applied);
each page's applied versions come from the seq ranges of the versions (applied.py), one more
indexed read."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from storage.errors import InputError
from storage.models import Event
from storage.repository._base import Core, check_int
from storage.repository.applied import Ranges, maybe_applied
from storage.repository.events import pending_terms

EVENT_STATUSES = ("rejected", "pending", "applied", "held")  # held: pending while quarantined
MAX_EVENT_PAGE = 1000


class EventPages:
    """Pages of an agent's events by status."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self.session = core.session

    def list_events(self, agent_id: str, status: str, limit: int = 100,
                    after_seq: int | None = None) -> tuple[list[dict[str, Any]], int | None]:
        """``(events, next_after_seq)``: up to ``limit`` events of ``status`` with ``seq >
        after_seq``, oldest first, as ``{"id", "seq", "status", "reason", "received_at",
        "applied_version"}``; ``next_after_seq`` is the last seq when the page is full."""
        agent = self.core.agent(agent_id)
        if status not in EVENT_STATUSES:
            raise InputError("status", f"expected one of {list(EVENT_STATUSES)}, got {status!r}")
        limit = check_int(limit, "limit", 1, MAX_EVENT_PAGE)
        q = select(Event.client_id, Event.seq, Event.reject_reason, Event.received_at,
                   Event.applied_version, Event.forgotten_version, Event.rejected).where(
            Event.agent_id == agent_id)
        if after_seq is not None:
            q = q.where(Event.seq > check_int(after_seq, "after_seq"))
        if status == "rejected":
            q = q.where(Event.rejected.is_(True))
        elif status in ("pending", "held"):
            if status == "held" and not agent.quarantined:  # held: the guard's quarantine
                return [], None
            q = q.where(*pending_terms(agent_id)[1:])
        else:  # then those forgotten while pending are left out below
            q = q.where(maybe_applied(agent_id))
        rows = self.session.execute(q.order_by(Event.seq).limit(limit)).all()
        # (pending, held and rejected events were applied by no version: no range to read)
        ranges = Ranges.of_rows(self.session, agent_id, rows if status == "applied" else [])
        out = []
        for cid, seq, reason, at, av, fv, rejected in rows:
            av = ranges.applied_version(seq, av, fv, rejected)
            if status != "applied" or av is not None:
                out.append({"id": cid, "seq": seq, "status": status, "reason": reason,
                            "received_at": at.isoformat(), "applied_version": av})
        return out, (rows[-1][1] if len(rows) == limit else None)
