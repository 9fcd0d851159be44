"""The schema, as typed SQLAlchemy 2.0 models (Alembic revisions are its only DDL source).

Append-only tables: ``versions``, ``deltas``, ``snapshots``/``snapshot_layers``, ``events``
(rows gain ``applied_version``/``forgotten_version``/``rejected`` marks but are never deleted;
a forget erases the payloads of the events it forgets) and
``answers``. Retention deletes ``deltas`` rows only, and marks the versions it thins; a forget
deletes the deltas and snapshots of the versions it erases (their states held a forgotten event).

Arrays are stored as raw bytes (``data``) + ``dtype`` + shape columns + ``sha256``
(see :mod:`storage.codec`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Double,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Sequence,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    select,
    text,
)
from sqlalchemy.ext.hybrid import Comparator, hybrid_property
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, object_session

from storage.codec import decode
from storage.deltaform import FORMS

ID_LEN = 40  # "ag_" / "tn_" + 32 hex digits
NAME_LEN = 200
EVENT_ID_LEN = 200
LAYER_LEN = 100
SHA_LEN = 64
KIND_LEN = 16
DTYPE_LEN = 8

VERSION_KINDS = ("create", "delta", "snapshot", "rollback", "forget", "fork")
VERSION_STATUSES = ("ok", "thinned", "erased")  # erased: its state held a forgotten event
DELTA_FORMS = FORMS  # how a delta is stored: storage/deltaform.py

# BIGINT primary keys autoincrement everywhere (SQLite needs INTEGER for its rowid alias).
BigId = BigInteger().with_variant(Integer, "sqlite")
# Version numbers: the API takes up to 2**53, so BIGINT (SQLite's INTEGER is 64-bit already).
VersionNum = BigInteger().with_variant(Integer, "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime, field: str = "timestamp", shown: str | None = None) -> datetime:
    """``value`` as an aware UTC datetime (naive = UTC); :class:`InputError` naming ``field``
    when that UTC time is outside what a ``datetime`` holds (e.g. year 9999 at -05:00).
    ``shown``: how the message quotes the value (default: its ISO form)."""
    from agent.errors import InputError

    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise InputError(field, f"the timestamp {shown or value.isoformat()} is outside the "
                         "range of UTC times (0001-01-01 to 9999-12-31)") from None


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps naive UTC text).

    Naive datetimes given to the store are taken as UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        value = as_utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class UTCMicros(TypeDecorator[datetime]):
    """Like :class:`UTCDateTime`, but kept on SQLite as integer microseconds since 1970 UTC
    (8 bytes instead of 26 characters of text); ``timestamptz`` on PostgreSQL (8 bytes)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Any) -> Any:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(BigInteger())
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Any) -> Any:
        if value is None:
            return None
        value = as_utc(value)
        return (value - _EPOCH) // _MICROSECOND if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return _EPOCH + timedelta(microseconds=int(value))
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


NAMING = {
    "ix": "ix_%(column_0_N_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON(), list[Any]: JSON()}


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(ID_LEN), primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LEN))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiKey(Base):
    """An API key, stored as the SHA-256 of the key (keys are 256-bit random strings)."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    key_hash: Mapped[str] = mapped_column(String(SHA_LEN), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class Agent(Base):
    """An agent. ``base_*``: the fork source; ``root_agent_id``: whose version 0 holds the
    empty state replays start from (the agent itself when NULL)."""

    __tablename__ = "agents"
    __table_args__ = (
        CheckConstraint("head_version >= 0", name="head_nonneg"),
        CheckConstraint("events_applied <= events_received", name="applied_le_received"),
        CheckConstraint("events_applied + events_rejected <= events_received",
                        name="counts_le_received"),
        Index("ix_agents_tenant_name", "tenant_id", "name"),
        Index("uq_agents_key", "key", unique=True),
    )

    id: Mapped[str] = mapped_column(String(ID_LEN), primary_key=True)
    # an internal integer surrogate of ``id`` (migration 0011): what the events table and its
    # indexes hold instead of the id string (storage/repository/_base.py ``new_agent_key``);
    # deferred like the agent_json group (loaded where asked for: the locked agent row)
    key: Mapped[int] = mapped_column(BigInteger, deferred=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(NAME_LEN))
    config: Mapped[dict[str, Any]]
    head_version: Mapped[int] = mapped_column(VersionNum, default=0)
    events_received: Mapped[int] = mapped_column(BigInteger, default=0)
    events_applied: Mapped[int] = mapped_column(BigInteger, default=0)
    # events_rejected, labels and quarantined are one deferred group (AGENT_JSON): loaded
    # together, in one read, where asked for (the agent JSON), so code that reads agents of an
    # older schema never asks for them
    events_rejected: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0",
                                                 deferred=True, deferred_group="agent_json")
    next_seq: Mapped[int] = mapped_column(BigInteger, default=1)
    base_agent_id: Mapped[str | None] = mapped_column(ForeignKey("agents.id"), default=None)
    base_version: Mapped[int | None] = mapped_column(VersionNum, default=None)
    root_agent_id: Mapped[str | None] = mapped_column(ForeignKey("agents.id"), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # the labels (answers) of the head's state, moved by every commit (migration 0008), so no
    # request reads the version history
    labels: Mapped[list[Any]] = mapped_column(JSON, default=list, server_default="[]",
                                              deferred=True, deferred_group="agent_json")
    # the guard (or an operator) stopped applying new events: they stay pending ("held")
    quarantined: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false(),
                                              deferred=True, deferred_group="agent_json")

    @property
    def pending(self) -> int:
        """Accepted events neither applied nor rejected yet (held ones while quarantined)."""
        return self.events_received - self.events_applied - self.events_rejected

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "tenant_id": self.tenant_id, "name": self.name,
                "config": self.config, "head_version": self.head_version,
                "events_received": self.events_received, "events_applied": self.events_applied,
                "base": None if self.base_agent_id is None else
                {"agent_id": self.base_agent_id, "version": self.base_version},
                "created_at": self.created_at}


class Version(Base):
    """One committed version. ``state_of`` is set on rollbacks (the version whose state it
    has); ``has_snapshot`` when a full state is stored for it; ``status`` is ``thinned``
    once retention dropped deltas it needs."""

    __tablename__ = "versions"
    __table_args__ = (
        UniqueConstraint("agent_id", "version", name="uq_versions_agent_version"),
        Index("ix_versions_agent_created", "agent_id", "created_at"),
        Index("ix_versions_agent_tested", "agent_id", "tested_total"),
        CheckConstraint("version >= 0", name="version_nonneg"),
        CheckConstraint("parent IS NULL OR parent < version", name="parent_before"),
        CheckConstraint("state_of IS NULL OR state_of < version", name="state_of_before"),
        CheckConstraint(f"kind IN {VERSION_KINDS}", name="kind_known"),
        CheckConstraint(f"status IN {VERSION_STATUSES}", name="status_known"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(VersionNum)
    parent: Mapped[int | None] = mapped_column(VersionNum)
    kind: Mapped[str] = mapped_column(String(KIND_LEN))
    state_of: Mapped[int | None] = mapped_column(VersionNum, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    event_count: Mapped[int] = mapped_column(Integer, default=0)
    checksum: Mapped[str] = mapped_column(String(SHA_LEN))
    delta_norm: Mapped[float] = mapped_column(Double, default=0.0)
    labels_added: Mapped[list[Any]] = mapped_column(default=list)
    has_snapshot: Mapped[bool] = mapped_column(Boolean, default=False)
    pinned: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(KIND_LEN), default="ok")
    # prequential quality (storage/repository/quality.py): hits among this version's events,
    # each predicted before it was learnt, and the agent's running totals up to this version
    hits: Mapped[int | None] = mapped_column(Integer, default=None)
    tested_total: Mapped[int | None] = mapped_column(BigInteger, default=None)
    hits_total: Mapped[int | None] = mapped_column(BigInteger, default=None)

    def as_dict(self) -> dict[str, Any]:
        """The row as DESIGN §7 lists it (plus state_of, pinned, snapshot, status)."""
        return {"version": self.version, "parent": self.parent, "kind": self.kind,
                "created_at": self.created_at, "events": self.event_count,
                "checksum": self.checksum, "delta_norm": self.delta_norm,
                "state_of": self.state_of, "pinned": self.pinned,
                "snapshot": self.has_snapshot, "status": self.status}



class DeltaRow(Base):
    """One layer's delta of one version: factors (``data`` = A then E), dense, or factors
    stored as A alone, ``neg`` (E = −A) or ``shift`` (E = [0 | I]), or ``rows`` appended:
    :mod:`storage.deltaform`."""

    __tablename__ = "deltas"
    __table_args__ = (
        UniqueConstraint("agent_id", "version", "layer", name="uq_deltas_agent_version_layer"),
        ForeignKeyConstraint(["agent_id", "version"], ["versions.agent_id", "versions.version"],
                             ondelete="CASCADE", name="fk_deltas_version"),
        CheckConstraint(f"form IN {DELTA_FORMS}", name="form_known"),
        CheckConstraint("form = 'dense' OR rank IS NOT NULL", name="factors_have_rank"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    agent_id: Mapped[str] = mapped_column(String(ID_LEN))
    version: Mapped[int] = mapped_column(VersionNum)
    layer: Mapped[str] = mapped_column(String(LAYER_LEN))
    form: Mapped[str] = mapped_column(String(KIND_LEN))
    gamma: Mapped[float] = mapped_column(Double)
    d_v: Mapped[int] = mapped_column(Integer)
    d_k: Mapped[int] = mapped_column(Integer)
    rank: Mapped[int | None] = mapped_column(Integer)
    dtype: Mapped[str] = mapped_column(String(DTYPE_LEN))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    sha256: Mapped[str] = mapped_column(String(SHA_LEN))


class Snapshot(Base):
    """The full state at one version: labels here, arrays in :class:`SnapshotLayer`."""

    __tablename__ = "snapshots"
    __table_args__ = (
        UniqueConstraint("agent_id", "version", name="uq_snapshots_agent_version"),
        ForeignKeyConstraint(["agent_id", "version"], ["versions.agent_id", "versions.version"],
                             ondelete="CASCADE", name="fk_snapshots_version"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    agent_id: Mapped[str] = mapped_column(String(ID_LEN))
    version: Mapped[int] = mapped_column(VersionNum)
    labels: Mapped[list[Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SnapshotLayer(Base):
    __tablename__ = "snapshot_layers"
    __table_args__ = (UniqueConstraint("snapshot_id", "layer", name="uq_snapshot_layers"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    snapshot_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"),
        ForeignKey("snapshots.id", ondelete="CASCADE"))
    layer: Mapped[str] = mapped_column(String(LAYER_LEN))
    dtype: Mapped[str] = mapped_column(String(DTYPE_LEN))
    d_v: Mapped[int] = mapped_column(Integer)
    d_k: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    sha256: Mapped[str] = mapped_column(String(SHA_LEN))


#: the keys of new agents on PostgreSQL (SQLite takes the largest key + 1)
AGENT_KEYS = Sequence("agents_key_seq", metadata=Base.metadata)


def agent_key_of(agent_id: Any) -> Any:
    """The agent's integer key (``agents.key``, what ``events.agent_key`` holds) as a scalar
    subquery: ``Event.agent_key == agent_key_of(agent_id)`` selects the agent's events through
    the ``(agent_key, ...)`` indexes in one statement."""
    return select(Agent.key).where(Agent.id == agent_id).scalar_subquery()


class _ByAgentId(Comparator[int]):
    """``Event.agent_id == id`` and ``Event.agent_id.in_(ids)`` in queries: the agent's events
    by their ``agent_key`` (an indexed comparison, no join)."""

    def __eq__(self, other: Any) -> Any:  # type: ignore[override]
        return self.__clause_element__() == agent_key_of(other)

    def in_(self, other: Any) -> Any:
        key: Any = self.__clause_element__()
        return key.in_(select(Agent.key).where(Agent.id.in_(other)))


class Event(Base):
    """An accepted event. ``agent_key``: its agent's :attr:`Agent.key` (an integer: the
    table and its two unique indexes hold it for every event, migration 0011); ``seq``: the
    per-agent order of acknowledgement (apply order); ``origin_event_id``: the source row of
    an event a fork inherited; ``received_at``: integer microseconds on SQLite
    (:class:`UTCMicros`).

    ``input_*``: the event's key input as raw bytes (:mod:`storage.codec`, one array of
    ``input_dim`` numbers): a vector input itself (then ``payload`` has no ``"input"``), or the
    encoder's embedding of a text input (the text stays in ``payload``), so learning, forget and
    rebuild neither parse JSON floats nor re-encode. NULL for events without one (chat turns,
    erased payloads)."""

    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("agent_key", "client_id", name="uq_events_agent_client_id"),
        UniqueConstraint("agent_key", "seq", name="uq_events_agent_seq"),
        # partial: only the rows the pending and rejected lookups find (migration 0010)
        Index("ix_events_pending", "agent_key", "seq",
              sqlite_where=text("applied_version IS NULL"),
              postgresql_where=text("applied_version IS NULL")),
        Index("ix_events_rejected", "agent_key", "seq", sqlite_where=text("rejected IS 1"),
              postgresql_where=text("rejected IS true")),
        # the rows forks inherited (deleting a pruned event checks its FK by this index)
        Index("ix_events_origin_event_id", "origin_event_id",
              sqlite_where=text("origin_event_id IS NOT NULL"),
              postgresql_where=text("origin_event_id IS NOT NULL")),
        CheckConstraint("seq >= 1", name="seq_pos"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    agent_key: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("agents.key", ondelete="CASCADE"))
    client_id: Mapped[str] = mapped_column(String(EVENT_ID_LEN))
    seq: Mapped[int] = mapped_column(BigInteger)
    payload: Mapped[dict[str, Any]]
    received_at: Mapped[datetime] = mapped_column(UTCMicros(), default=utcnow)
    applied_version: Mapped[int | None] = mapped_column(VersionNum, default=None)
    forgotten_version: Mapped[int | None] = mapped_column(VersionNum, default=None)
    # rejected: the learner could not apply it (a non-finite result; reason says why): it
    # is never applied or replayed. Erased by forget: payload {} (id and seq stay).
    rejected: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    reject_reason: Mapped[str | None] = mapped_column(Text, default=None)
    origin_event_id: Mapped[int | None] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), ForeignKey("events.id"), default=None)
    input_data: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    input_dtype: Mapped[str | None] = mapped_column(String(DTYPE_LEN), default=None)
    input_dim: Mapped[int | None] = mapped_column(Integer, default=None)
    input_sha256: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)  # 32 bytes

    @hybrid_property
    def agent_id(self) -> str:
        """The public id of the event's agent (one primary-key read of ``agents``); in queries
        ``Event.agent_id == id`` compares ``agent_key`` with that agent's key."""
        session = object_session(self)
        if session is None:
            raise AttributeError("agent_id: the event is not in a session")
        return str(session.scalar(select(Agent.id).where(Agent.key == self.agent_key)))

    @agent_id.inplace.comparator
    @classmethod
    def _agent_id_comparator(cls) -> Comparator[str]:
        return cast(Comparator[str], _ByAgentId(cls.agent_key))

    def as_replay(self) -> dict[str, Any]:
        """The event as replay functions receive it: the payload plus ``id`` and ``seq``; a
        stored input array (checksum verified) as ``"input"`` (a vector, or the embedding of
        the payload's text, which is then kept as ``"text"``)."""
        arr = None if self.input_data is None else decode(
            self.input_data, str(self.input_dtype), [(int(self.input_dim or 0),)],
            bytes(self.input_sha256 or b"").hex(), f"event {self.client_id} input")[0]
        return replay_dict(self.payload, self.client_id, self.seq, arr)


def replay_dict(payload: dict[str, Any], client_id: str, seq: int, arr: Any) -> dict[str, Any]:
    """An event as replay functions receive it (``Event.as_replay``): the payload plus ``id``
    and ``seq``; a stored input array ``arr`` (when not None) as ``"input"``, the payload's
    text input, if any, then kept as ``"text"`` (``arr`` is its embedding)."""
    out = {**payload, "id": client_id, "seq": seq}
    if arr is not None:
        if "input" in out:
            out["text"] = out["input"]
        out["input"] = arr
    return out


class Answer(Base):
    """Explicit memory: every label/answer text an agent has seen, in order of first
    appearance (``position``) and the version that first added it."""

    __tablename__ = "answers"
    __table_args__ = (
        UniqueConstraint("agent_id", "position", name="uq_answers_agent_position"),
        UniqueConstraint("agent_id", "text_sha256", name="uq_answers_agent_text"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    text_sha256: Mapped[str] = mapped_column(String(SHA_LEN))
    first_version: Mapped[int] = mapped_column(VersionNum)


class GuardAction(Base):
    """One action of an agent's guard (alert, quarantine, rollback) or an operator's release,
    with its reason and the version it made or acted on (workers/actors/guard.py)."""

    __tablename__ = "guard_actions"
    __table_args__ = (Index("ix_guard_actions_agent", "agent_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    action: Mapped[str] = mapped_column(String(KIND_LEN))
    version: Mapped[int | None] = mapped_column(VersionNum, default=None)
    reason: Mapped[str] = mapped_column(Text)


class SchedulerJob(Base):
    """APScheduler's job table (``workers.actors.scheduler.JsonJobStore``): the job state is JSON
    bytes, never a pickle. Column names and types are the ones APScheduler's store expects."""

    __tablename__ = "scheduler_jobs"

    id: Mapped[str] = mapped_column(String(191), primary_key=True)
    next_run_time: Mapped[float | None] = mapped_column(Double, index=True, default=None)
    job_state: Mapped[bytes] = mapped_column(LargeBinary)


class SchedulerLease(Base):
    """The one scheduler that acts for a deployment holds this lease until ``expires_at``."""

    __tablename__ = "scheduler_lease"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    holder: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=False))
