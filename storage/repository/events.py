"""The event log: idempotent append (on the client's event id), pending events in the
order the service acknowledged them (``seq``), and lookups.

The append path is the ingest hot path, so it writes with one Core ``INSERT`` executed over
all accepted rows (an executemany), not one ORM object per event: no identity-map or
unit-of-work bookkeeping per row, and each payload is JSON-encoded once: the text made while
validating it (:func:`storage.jsoncodec.dumps`) is the text stored, byte for byte what the
``JSON`` column writes on the engines of :mod:`storage.engine`, whose JSON serializer is
that same function.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, overload

import numpy as np
from sqlalchemy import (
    JSON,
    CursorResult,
    Insert,
    Table,
    Text,
    bindparam,
    cast,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.orm import lazyload
from sqlalchemy.orm.attributes import set_committed_value

from agent.errors import check_text
from storage import jsoncodec
from storage.codec import encode
from storage.errors import InputError
from storage.models import (
    EVENT_ID_LEN,
    Agent,
    Base,
    Event,
    UTCMicros,
    agent_key_of,
    replay_dict,
    utcnow,
)
from storage.repository._base import Core, check_int, chunks
from storage.repository.applied import applied_seq_of
from storage.repository.event_inputs import pack_inputs
from storage.repository.graph import VersionGraph

MAX_BATCH = 100_000
MAX_REASON = 2000

_EVENTS: Table = Base.metadata.tables[Event.__tablename__]
_AGENTS: Table = Base.metadata.tables[Agent.__tablename__]
_NO_INPUT: dict[str, Any] = {"input_block_id": None, "input_row": None}


@dataclass(frozen=True, slots=True)
class AcceptedEvent:
    """An event :meth:`Events.append_events` stored, as written.

    Attributes
    ----------
    client_id : str
        The client's event id, or the generated ``ev_<uuid4 hex>``.
    seq : int
        The agent's order of acknowledgement (the apply order).
    payload : dict
        The stored payload: the event without ``id``, datetimes as ISO 8601 text.
    received_at : datetime
        When the batch was received (the same for every event of a batch).
    """

    client_id: str
    seq: int
    payload: dict[str, Any]
    received_at: datetime
    input: Any = None  # the stored input array (a vector, or a text's embedding), if any

    def as_replay(self) -> dict[str, Any]:
        """What ``Event.as_replay()`` gives for this event once it is read back from the
        store (the same numbers, the same dtype): what the learner is notified with."""
        return replay_dict(self.payload, self.client_id, self.seq, self.input)


class AcceptedRun(Sequence[AcceptedEvent]):
    """Events of one request stored in one run of seqs (:mod:`storage.repository.event_columns`),
    in columns: the sequence of the :class:`AcceptedEvent` they are, built only when read one
    by one (``inputs``: the ``(n, d)`` stored input rows, one dtype)."""

    __slots__ = ("seqs", "ids", "payloads", "received_at", "inputs")

    def __init__(self, seqs: range, ids: list[str], payloads: list[dict[str, Any]],
                 received_at: datetime, inputs: np.ndarray) -> None:
        self.seqs, self.ids, self.payloads = seqs, ids, payloads
        self.received_at, self.inputs = received_at, inputs  # inputs: (n, d)

    def __len__(self) -> int:
        return len(self.seqs)

    @overload
    def __getitem__(self, i: int) -> AcceptedEvent: ...

    @overload
    def __getitem__(self, i: slice) -> list[AcceptedEvent]: ...

    def __getitem__(self, i: int | slice) -> AcceptedEvent | list[AcceptedEvent]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return AcceptedEvent(self.ids[i], self.seqs[i], self.payloads[i], self.received_at,
                             self.inputs[i])


# the values of an event row insert, the payload bound as already-encoded JSON text and cast
# to JSON (PostgreSQL's ``json`` keeps its input text verbatim; SQLite: _SQLITE_INSERT); the
# input as a row of a block (storage/repository/event_inputs.py)
INSERT_VALUES: dict[str, Any] = {
    "agent_key": bindparam("agent_key"), "client_id": bindparam("client_id"),
    "seq": bindparam("seq"), "received_at": bindparam("received_at"),
    "payload": cast(bindparam("payload_json", type_=Text()), JSON()),
    **{name: bindparam(name) for name in _NO_INPUT}}


_NOT_PAYLOAD = ("id", "embedding")
_INSERT: Insert = insert(_EVENTS).values(**INSERT_VALUES)
# SQLite keeps JSON as text: the same insert as DBAPI tuples, the payload's text bound as is
# (``rejected`` as the Core insert's column default writes it)
_SQLITE_INSERT = ("INSERT INTO events (agent_key, client_id, seq, received_at, payload, "
                  "input_block_id, input_row, rejected) VALUES (?, ?, ?, ?, ?, ?, ?, 0)")
# (a row whose id or seq is taken is skipped: the group commit inserts as if every id were new)
SQLITE_INSERT_OR_IGNORE = _SQLITE_INSERT.replace("INSERT", "INSERT OR IGNORE", 1)
_MICROS = UTCMicros()
_COUNT_ACCEPTED = (update(_AGENTS).where(_AGENTS.c.id == bindparam("agent_id"))
                   .values(next_seq=bindparam("next_seq"),
                           events_received=bindparam("events_received")))
_STORED_IDS = select(_EVENTS.c.client_id).where(
    _EVENTS.c.agent_key == bindparam("agent_key"),
    _EVENTS.c.client_id.in_(bindparam("ids", expanding=True)))


def stored_input(arr: Any, field: str) -> np.ndarray | None:
    """An input array (a vector, or a text's embedding) as it is stored and reads back: 1-d,
    one little-endian float dtype (:mod:`storage.codec`'s rule), finite; None for None."""
    if arr is None:
        return None
    a = np.asarray(arr).reshape(-1)
    if a.dtype.str not in ("<f4", "<f8"):  # the general path (and its errors): storage.codec
        blob = encode([a], field)
        return np.frombuffer(blob.data, dtype=np.dtype(blob.dtype))
    if not np.isfinite(a).all():
        raise InputError(field, "has NaN or Inf values")
    return a


def check_event_id(cid: Any, field: str) -> str | None:
    """The client's event id of ``events[i]`` (``field``), checked; None when not given."""
    if cid is not None:
        if not isinstance(cid, str) or not cid.strip():
            raise InputError(f"{field}.id", "expected a non-empty string")
        if len(cid) > EVENT_ID_LEN:
            raise InputError(f"{field}.id", f"at most {EVENT_ID_LEN} characters")
        check_text(cid, f"{field}.id")  # (the payload's text is checked by its JSON encoding)
    return cid


def stored_payload(ev: dict[str, Any], field: str) -> tuple[dict[str, Any], str]:
    """``(payload, its JSON text)`` of event ``ev`` (``field``: ``events[i]``): everything but
    its id and arrays (stored in the input columns), datetimes as ISO 8601 text; InputError
    naming ``field`` when JSON cannot hold it."""
    payload = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in ev.items()
               if k not in _NOT_PAYLOAD and not isinstance(v, np.ndarray)}
    try:
        return payload, jsoncodec.dumps(payload)
    except (TypeError, ValueError) as exc:
        raise InputError(field, f"not storable as JSON: {exc}") from exc


def _payload(ev: Any, i: int) -> tuple[str | None, dict[str, Any], str, Any]:
    """``(client id or None, payload, payload as JSON text, stored input array or None)`` of
    ``events[i]``.

    An array ``input`` (a vector) is stored as the event's input instead of in the payload;
    an ``embedding`` array beside a text ``input`` is too (the text stays in the payload).
    """
    field = f"events[{i}]"
    if not isinstance(ev, dict):
        raise InputError(field, "expected an object")
    cid = check_event_id(ev.get("id"), field)
    arr = ev.get("input")
    arr = arr if isinstance(arr, np.ndarray) else ev.get("embedding")
    payload, text = stored_payload(ev, field)
    return cid, payload, text, stored_input(arr, f"{field}.input")


def insert_rows(session: Any, rows: list[dict[str, Any]], *, or_ignore: bool = False) -> int:
    """Insert event rows (dicts of :data:`INSERT_VALUES`'s parameters but the input's block
    and row, plus ``input``: the stored input array or None, ``received_at`` a datetime,
    ``seq`` final), their inputs first as blocks (:func:`event_inputs.pack_inputs`). On
    SQLite one ``executemany`` of tuples on the DBAPI cursor, the same column values the Core
    statement writes (its per-row parameter processing cost twice the insert itself, by
    cProfile of a group commit); elsewhere the Core statement. Returns the rows inserted;
    ``or_ignore`` (SQLite): a row whose id or seq is taken is skipped, not an error."""
    if not rows:
        return 0
    pack_inputs(session, rows)
    dialect = session.get_bind().dialect
    if dialect.name != "sqlite":
        assert not or_ignore, "or_ignore is SQLite's"
        session.execute(_INSERT, rows)
        return len(rows)
    stamps: dict[Any, Any] = {}  # a group's rows share one receipt time
    for r in rows:
        if r["received_at"] not in stamps:
            stamps[r["received_at"]] = _MICROS.process_bind_param(r["received_at"], dialect)
    sql = SQLITE_INSERT_OR_IGNORE if or_ignore else _SQLITE_INSERT
    return int(session.connection().exec_driver_sql(sql, [
        (r["agent_key"], r["client_id"], r["seq"], stamps[r["received_at"]], r["payload_json"],
         r["input_block_id"], r["input_row"]) for r in rows]).rowcount)


# the WHERE terms of an event still to learn, whoever's: neither forgotten nor rejected
LIVE_TERMS = (Event.forgotten_version.is_(None), Event.rejected.is_not(True))


def pending_terms(agent_id: str) -> tuple[Any, ...]:
    """The WHERE terms of an agent's pending events: after its watermark, neither forgotten nor
    rejected (storage/repository/applied.py), one range of the ``(agent_key, seq)`` index."""
    return (Event.agent_key == agent_key_of(agent_id), Event.seq > applied_seq_of(agent_id),
            *LIVE_TERMS)


class Events:
    """The event log: append, pending events, lookups and rejections."""

    def __init__(self, core: Core, graph: VersionGraph) -> None:
        self.core = core
        self.graph = graph
        self.session = core.session

    def append_events(self, agent_id: str, events: list[dict[str, Any]], *,
                      received_at: datetime | None = None,
                      ) -> tuple[list[AcceptedEvent], list[str]]:
        """Append events; returns ``(accepted events, duplicate ids)``.

        Parameters
        ----------
        agent_id : str
            The agent; its row is locked for the rest of the caller's transaction.
        events : list of dict
            Event objects; ``id`` (optional) is the client's event id, the rest is the
            payload (datetimes are stored as ISO 8601 text).
        received_at : datetime, optional
            The batch's receipt time (default: now, UTC).

        Returns
        -------
        accepted : list of AcceptedEvent
            The stored events in ``seq`` order (rows are written, not loaded: no row ids).
        duplicates : list of str
            The ids skipped as duplicates, in batch order.

        Notes
        -----
        An event without ``id`` gets ``ev_<uuid4 hex>``. An id already stored for the agent,
        or repeated inside the batch, is a duplicate (the first occurrence counts). Accepted
        events get consecutive ``seq`` numbers in batch order, and the agent's ``next_seq``
        and ``events_received`` move in the same transaction. Any invalid event raises
        :class:`InputError` naming it (``events[i]...``) before anything is written.
        """
        if not isinstance(events, list):
            raise InputError("events", "expected a list")
        if len(events) > MAX_BATCH:
            raise InputError("events", f"at most {MAX_BATCH} events per batch")
        parsed = [_payload(ev, i) for i, ev in enumerate(events)]
        agent = self.core.lock_agent(agent_id)
        existing = self.stored_client_ids(agent.key,
                                          [p[0] for p in parsed if p[0] is not None])
        now = received_at or utcnow()
        accepted: list[AcceptedEvent] = []
        rows: list[dict[str, Any]] = []
        duplicates: list[str] = []
        seen: set[str] = set()
        seq = agent.next_seq
        for cid, payload, text, arr in parsed:
            if cid is not None and (cid in existing or cid in seen):
                duplicates.append(cid)
                continue
            cid = cid or "ev_" + uuid.uuid4().hex
            seen.add(cid)
            accepted.append(AcceptedEvent(cid, seq, payload, now, arr))
            rows.append({"agent_key": agent.key, "client_id": cid, "seq": seq,
                         "payload_json": text, "received_at": now, "input": arr})
            seq += 1
        if rows:
            self._write_accepted(agent, rows, seq)
        return accepted, duplicates

    def _write_accepted(self, agent: Agent, rows: list[dict[str, Any]], next_seq: int) -> None:
        """Insert the accepted rows (one executemany) and move the locked agent's counters."""
        agent_id = agent.id
        received = agent.events_received + len(rows)
        with self.core.translate(agent_id):
            insert_rows(self.session, rows)
            self.session.execute(_COUNT_ACCEPTED, {"agent_id": agent_id, "next_seq": next_seq,
                                                   "events_received": received})
        # the locked agent object now matches its row (without a pending change)
        set_committed_value(agent, "next_seq", next_seq)
        set_committed_value(agent, "events_received", received)

    def stored_client_ids(self, agent_key: int, ids: list[str]) -> set[str]:
        """Those of ``ids`` the agent (by its key) already has (one indexed ``IN`` query per
        chunk)."""
        found: set[str] = set()
        sqlite = self.session.get_bind().dialect.name == "sqlite"
        for part in chunks(sorted(set(ids))):
            if sqlite:  # the same query on the DBAPI cursor: SQLAlchemy's expanding IN
                # compiled and bound 1,000 parameters at 4 µs an id, ten times the lookup
                marks = ",".join("?" * len(part))
                found.update(r[0] for r in self.session.connection().exec_driver_sql(
                    f"SELECT client_id FROM events WHERE agent_key = ? AND client_id IN ({marks})",
                    (agent_key, *part)))
            else:
                found.update(self.session.scalars(_STORED_IDS, {"agent_key": agent_key,
                                                                "ids": list(part)}))
        return found

    def pending_events(self, agent_id: str, limit: int | None = None) -> list[Event]:
        """Events not yet applied (nor forgotten, nor rejected), oldest ``seq`` first."""
        q = select(Event).where(*pending_terms(agent_id)).order_by(Event.seq)
        if limit is not None:
            q = q.limit(check_int(limit, "limit", 1))
        return list(self.session.scalars(q))

    def pending_count(self, agent_id: str) -> int:
        return int(self.session.scalar(select(func.count()).select_from(Event).where(
            *pending_terms(agent_id))) or 0)

    def events_by_ids(self, agent_id: str, client_ids: list[str], *,
                      inputs: bool = True) -> list[Event]:
        """The agent's events with these client ids (unknown ids are left out), by seq;
        ``inputs=False``: their input blocks not loaded with them (only if asked for)."""
        out: list[Event] = []
        q = select(Event) if inputs else select(Event).options(lazyload(Event.input_block))
        for part in chunks(sorted(set(client_ids))):
            out.extend(self.session.scalars(q.where(
                Event.agent_key == agent_key_of(agent_id), Event.client_id.in_(part))))
        return sorted(out, key=lambda e: e.seq)

    def events_by_seqs(self, agent_id: str, seqs: list[int]) -> list[Event]:
        out: list[Event] = []
        for part in chunks(sorted(set(seqs))):
            out.extend(self.session.scalars(select(Event).where(
                Event.agent_key == agent_key_of(agent_id), Event.seq.in_(part))))
        return sorted(out, key=lambda e: e.seq)

    def event_history(self, agent_id: str, version: int) -> list[Event]:
        """The events whose effect is in ``version``'s state, in apply order."""
        vmap = self.graph.vmap(agent_id)
        self.graph.vinfo(agent_id, version, vmap)
        return self.events_by_seqs(agent_id, self.graph.history(agent_id, vmap, version))

    # -- rejected events (the learner isolates them; storage/repository/events_status.py lists)
    def reject_events(self, agent_id: str, rejected: list[tuple[int, str]]) -> int:
        """Mark pending events ``(seq, reason)`` rejected: never applied or replayed. Counts
        them in ``agents.events_rejected``; events no longer pending are left alone. Returns
        how many were marked."""
        agent = self.core.lock_agent(agent_id)
        n = 0
        for seq, reason in rejected:
            check_int(seq, "seq", 1)
            done = self.session.execute(update(Event).where(
                *pending_terms(agent_id), Event.seq == seq).values(
                rejected=True, reject_reason=str(reason)[:MAX_REASON]))
            assert isinstance(done, CursorResult)  # an UPDATE's result: it has a rowcount
            n += done.rowcount or 0
        agent.events_rejected += n
        self.session.flush()
        return n
