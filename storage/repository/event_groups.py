"""Group commit of the event log: many ingest requests (for one or many agents) appended in one
transaction, so they share one commit (one fsync) and a few statements instead of a few each.

:func:`append_groups` gives every request the answer :meth:`EventsMixin.append_events` would
give it had the requests been appended one at a time in the given order (the reference the
tests compare with): an id already stored, or sent earlier in the same request or in an
earlier request of the group, is a duplicate; accepted events get the agent's next ``seq``
numbers, dense, in request order. A request that is invalid, or names an unknown agent, gets
its error and writes nothing; the others are appended.

Statements per group, whatever the number of requests: one ``SELECT ... FOR UPDATE`` of the
agents' rows (in id order, so two groups never deadlock), one indexed lookup of the stored ids
per 500, one ``INSERT`` executed over all rows, one ``UPDATE`` of the agents' counters.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, tuple_, update

from storage.errors import AgentNotFound, InputError
from storage.models import utcnow
from storage.repository._base import chunks
from storage.repository.events import (
    _AGENTS,
    _EVENTS,
    _INSERTS,
    MAX_BATCH,
    AcceptedEvent,
    EventsMixin,
    _payload,
)

Result = tuple[list[AcceptedEvent], list[str]]

_LOCK = (select(_AGENTS.c.id, _AGENTS.c.next_seq, _AGENTS.c.events_received)
         .where(_AGENTS.c.id.in_(bindparam("ids", expanding=True)))
         .order_by(_AGENTS.c.id).with_for_update())
_COUNT = (update(_AGENTS).where(_AGENTS.c.id == bindparam("aid"))
          .values(next_seq=bindparam("next_seq"), events_received=bindparam("received")))


def _parse(events: Any) -> list[tuple[Any, ...]]:
    if not isinstance(events, list):
        raise InputError("events", "expected a list")
    if len(events) > MAX_BATCH:
        raise InputError("events", f"at most {MAX_BATCH} events per batch")
    return [_payload(ev, i) for i, ev in enumerate(events)]


def append_groups(repo: EventsMixin, requests: Sequence[tuple[str, list[dict[str, Any]]]], *,
                  received_at: datetime | None = None) -> list[Result | Exception]:
    """Append ``[(agent id, events)]`` in one transaction (the caller's); returns, per request
    in order, ``(accepted, duplicate ids)`` as :meth:`EventsMixin.append_events` gives them, or
    the :class:`InputError` / :class:`AgentNotFound` of that request (nothing of it written).

    The agents' rows stay locked until the caller's transaction ends.
    """
    parsed: list[list[tuple[Any, ...]] | Exception] = []
    for agent_id, events in requests:
        try:
            if not isinstance(agent_id, str):
                raise AgentNotFound(repr(agent_id))
            parsed.append(_parse(events))
        except (InputError, AgentNotFound) as exc:
            parsed.append(exc)
    wanted = sorted({a for (a, _), p in zip(requests, parsed, strict=True)
                     if not isinstance(p, Exception)})
    if not wanted:
        return list(parsed)  # type: ignore[arg-type]
    s = repo.session
    with repo._translate(wanted[0]):
        heads = {r.id: [r.next_seq, r.events_received] for r in s.execute(_LOCK, {"ids": wanted})}
    ids = sorted({(a, p[0]) for (a, _), ps in zip(requests, parsed, strict=True)
                  if not isinstance(ps, Exception) and a in heads for p in ps if p[0] is not None})
    stored: set[tuple[str, str]] = set()
    for part in chunks(ids):
        stored.update((r[0], r[1]) for r in s.execute(select(_EVENTS.c.agent_id, _EVENTS.c.client_id)
                                                       .where(tuple_(_EVENTS.c.agent_id,
                                                                     _EVENTS.c.client_id).in_(part))))
    now = received_at or utcnow()
    seen: set[tuple[str, str]] = set()
    rows: list[dict[str, Any]] = []
    out: list[Result | Exception] = []
    for (agent_id, _), ps in zip(requests, parsed, strict=True):
        if isinstance(ps, Exception):
            out.append(ps)
            continue
        if agent_id not in heads:
            out.append(AgentNotFound(agent_id))
            continue
        head = heads[agent_id]
        accepted: list[AcceptedEvent] = []
        duplicates: list[str] = []
        for cid, payload, text, columns, *rest in ps:
            if cid is not None and ((agent_id, cid) in stored or (agent_id, cid) in seen):
                duplicates.append(cid)
                continue
            cid = cid or "ev_" + uuid.uuid4().hex
            seen.add((agent_id, cid))
            accepted.append(AcceptedEvent(cid, head[0], payload, now, *rest))
            rows.append({"agent_id": agent_id, "client_id": cid, "seq": head[0],
                         "payload_json": text, "received_at": now, **columns})
            head[0] += 1
            head[1] += 1
        out.append((accepted, duplicates))
    if rows:
        stmt = _INSERTS.get(s.get_bind().dialect.name, _INSERTS[""])
        moved = sorted({r["agent_id"] for r in rows})
        with repo._translate(moved[0]):
            s.execute(stmt, rows)
            s.execute(_COUNT, [{"aid": a, "next_seq": heads[a][0], "received": heads[a][1]}
                               for a in moved])
    return out
