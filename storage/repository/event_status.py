"""Listing an agent's events by status (``GET /v1/agents/{id}/events?status=``), a page at a
time in ``seq`` order. Each status is one indexed range read, never a scan of the history:
``rejected`` on ``ix_events_rejected (agent_key, seq) WHERE rejected``, ``pending`` on
``ix_events_pending (agent_key, seq) WHERE applied_version IS NULL`` (partial indexes: they hold
only those few rows), ``applied`` on ``uq_events_agent_seq (agent_key, seq)`` (almost every
event is applied)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from storage.errors import InputError
from storage.models import Event
from storage.repository._base import Core, check_int
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
                   Event.applied_version).where(Event.agent_id == agent_id)
        order: Any = Event.seq
        if after_seq is not None:
            q = q.where(Event.seq > check_int(after_seq, "after_seq"))
        if status == "rejected":
            q = q.where(Event.rejected.is_(True))
        elif status in ("pending", "held"):
            if status == "held" and not agent.quarantined:  # held: the guard's quarantine
                return [], None
            # the pending terms and order of pending_events: the few pending rows through
            # ix_events_pending, not a walk of every event the agent ever had
            q, order = q.where(*pending_terms(agent_id)[1:]), Event.seq + 0
        else:
            q = q.where(Event.applied_version.is_not(None))
        rows = self.session.execute(q.order_by(order).limit(limit)).all()
        out = [{"id": cid, "seq": seq, "status": status, "reason": reason,
                "received_at": at.isoformat(), "applied_version": av}
               for cid, seq, reason, at, av in rows]
        return out, (rows[-1][1] if len(rows) == limit else None)
