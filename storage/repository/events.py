"""The event log: idempotent append (on the client's event id), pending events in the
order the service acknowledged them (``seq``), and lookups."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from storage import jsoncodec
from storage.errors import InputError
from storage.models import EVENT_ID_LEN, Event, utcnow
from storage.repository._base import RepoBase, check_int, chunks

MAX_BATCH = 100_000


def _payload(ev: Any, i: int) -> tuple[str | None, dict[str, Any]]:
    field = f"events[{i}]"
    if not isinstance(ev, dict):
        raise InputError(field, "expected an object")
    cid = ev.get("id")
    if cid is not None:
        if not isinstance(cid, str) or not cid.strip():
            raise InputError(f"{field}.id", "expected a non-empty string")
        if len(cid) > EVENT_ID_LEN:
            raise InputError(f"{field}.id", f"at most {EVENT_ID_LEN} characters")
    payload = {k: (v.isoformat() if isinstance(v, datetime) else v)
               for k, v in ev.items() if k != "id"}
    try:
        jsoncodec.dumps(payload)
    except (TypeError, ValueError) as exc:
        raise InputError(field, f"not storable as JSON: {exc}") from exc
    return cid, payload


class EventsMixin(RepoBase):
    def append_events(self, agent_id: str, events: list[dict[str, Any]], *,
                      received_at: datetime | None = None) -> tuple[list[Event], list[str]]:
        """Append events; returns ``(accepted rows, duplicate ids)``.

        An event without ``id`` gets ``ev_<uuid4 hex>``. An id already stored for the agent,
        or repeated inside the batch, is a duplicate (the first occurrence counts). Accepted
        events get consecutive ``seq`` numbers in batch order. Any invalid event raises
        :class:`InputError` naming it (``events[i]...``) before anything is written.
        """
        if not isinstance(events, list):
            raise InputError("events", "expected a list")
        if len(events) > MAX_BATCH:
            raise InputError("events", f"at most {MAX_BATCH} events per batch")
        parsed = [_payload(ev, i) for i, ev in enumerate(events)]
        agent = self._lock_agent(agent_id)
        ids = [cid for cid, _ in parsed if cid is not None]
        existing: set[str] = set()
        for part in chunks(sorted(set(ids))):
            existing.update(self.session.scalars(select(Event.client_id).where(
                Event.agent_id == agent_id, Event.client_id.in_(part))))
        now = received_at or utcnow()
        accepted: list[Event] = []
        duplicates: list[str] = []
        seen: set[str] = set()
        seq = agent.next_seq
        for cid, payload in parsed:
            if cid is not None and (cid in existing or cid in seen):
                duplicates.append(cid)
                continue
            cid = cid or "ev_" + uuid.uuid4().hex
            seen.add(cid)
            accepted.append(Event(agent_id=agent_id, client_id=cid, seq=seq, payload=payload,
                                  received_at=now))
            seq += 1
        if accepted:
            self.session.add_all(accepted)
            agent.next_seq = seq
            agent.events_received += len(accepted)
            with self._translate(agent_id):
                self.session.flush()
        return accepted, duplicates

    def pending_events(self, agent_id: str, limit: int | None = None) -> list[Event]:
        """Events not yet applied (nor forgotten), oldest ``seq`` first."""
        q = (select(Event).where(Event.agent_id == agent_id, Event.applied_version.is_(None),
                                 Event.forgotten_version.is_(None)).order_by(Event.seq))
        if limit is not None:
            q = q.limit(check_int(limit, "limit", 1))
        return list(self.session.scalars(q))

    def pending_count(self, agent_id: str) -> int:
        return int(self.session.scalar(select(func.count()).select_from(Event).where(
            Event.agent_id == agent_id, Event.applied_version.is_(None),
            Event.forgotten_version.is_(None))) or 0)

    def events_by_ids(self, agent_id: str, client_ids: list[str]) -> list[Event]:
        """The agent's events with these client ids (unknown ids are left out), by seq."""
        out: list[Event] = []
        for part in chunks(sorted(set(client_ids))):
            out.extend(self.session.scalars(select(Event).where(
                Event.agent_id == agent_id, Event.client_id.in_(part))))
        return sorted(out, key=lambda e: e.seq)

    def events_by_seqs(self, agent_id: str, seqs: list[int]) -> list[Event]:
        out: list[Event] = []
        for part in chunks(sorted(set(seqs))):
            out.extend(self.session.scalars(select(Event).where(
                Event.agent_id == agent_id, Event.seq.in_(part))))
        return sorted(out, key=lambda e: e.seq)

    def event_history(self, agent_id: str, version: int) -> list[Event]:
        """The events whose effect is in ``version``'s state, in apply order."""
        vmap = self._vmap(agent_id)
        self._vinfo(agent_id, version, vmap)
        return self.events_by_seqs(agent_id, self._history(agent_id, vmap, version))
