"""The event log: one row per accepted event; the inputs of the events stored together in one
block of raw bytes (:class:`EventInputs`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

import numpy as np
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
    select,
    text,
)
from sqlalchemy.ext.hybrid import Comparator, hybrid_property
from sqlalchemy.orm import Mapped, mapped_column, object_session, relationship

from storage.codec import decode
from storage.errors import CorruptData
from storage.models.agents import Agent, agent_key_of
from storage.models.columns import (
    CODEC_LEN,
    DTYPE_LEN,
    EVENT_ID_LEN,
    Base,
    BigId,
    UTCMicros,
    VersionNum,
    utcnow,
)
from storage.planes import decode_block


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

    The event's key input (a vector input itself, then ``payload`` has no ``"input"``; or the
    encoder's embedding of a text input, the text staying in ``payload``) is row
    ``input_row`` of the block ``input_block_id`` (:class:`EventInputs`, migration 0012), so
    learning, forget and rebuild neither parse JSON floats nor re-encode. Rows written before
    0012 hold it in ``input_*`` instead (raw bytes of one array of ``input_dim`` numbers,
    :mod:`storage.codec`). Both NULL for events without one (chat turns, erased payloads)."""

    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("agent_key", "client_id", name="uq_events_agent_client_id"),
        UniqueConstraint("agent_key", "seq", name="uq_events_agent_seq"),
        # partial: only the rows the rejected lookup finds (migration 0010); the pending ones
        # are those after the agent's applied_seq (migration 0013)
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
    # set only where no version's seq range says it (storage/repository/applied.py): rows
    # written before migration 0013, fork copies, the version horizon's re-attribution
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
    # no FK (an FK would need an index on every event for the blocks' deletes): the
    # repository deletes a block only once no event in its seq range refers to it
    input_block_id: Mapped[int | None] = mapped_column(BigInteger().with_variant(
        Integer, "sqlite"), default=None)
    input_row: Mapped[int | None] = mapped_column(Integer, default=None)
    # loaded with the events (one IN query per load): callers replay events after their
    # session has ended
    input_block: Mapped[EventInputs | None] = relationship(
        primaryjoin="foreign(Event.input_block_id) == EventInputs.id", viewonly=True,
        lazy="selectin")

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
        what = f"event {self.client_id} input"
        arr = None
        if self.input_block_id is not None:
            block = self.input_block
            if block is None:
                raise CorruptData(what, f"its block {self.input_block_id} is missing")
            arr = block.matrix(what)[int(self.input_row or 0)].copy()  # (dim,)
        elif self.input_data is not None:
            arr = decode(self.input_data, str(self.input_dtype), [(int(self.input_dim or 0),)],
                         bytes(self.input_sha256 or b"").hex(), what)[0]
        return replay_dict(self.payload, self.client_id, self.seq, arr)


class EventInputs(Base):
    """The inputs of events stored together (migration 0012): one agent's events of one
    group commit whose inputs have one dtype and size, as one ``(rows, dim)`` array of raw
    bytes (:mod:`storage.codec`), so a request's events cost one blob, not one each.

    ``first_seq``..``last_seq``: the range of ``seq`` of the agent's events that refer to a
    row of it (``Event.input_block_id``/``input_row``); a block is deleted once none is left
    there (event retention, forget). An erased event's row is zeroed (forget erases)."""

    __tablename__ = "event_inputs"
    __table_args__ = (Index("ix_event_inputs_agent_seq", "agent_key", "first_seq"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    agent_key: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("agents.key", ondelete="CASCADE"))
    first_seq: Mapped[int] = mapped_column(BigInteger)
    last_seq: Mapped[int] = mapped_column(BigInteger)
    rows: Mapped[int] = mapped_column(Integer)
    dtype: Mapped[str] = mapped_column(String(DTYPE_LEN))
    dim: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    sha256: Mapped[bytes] = mapped_column(LargeBinary)  # 32 bytes, of ``data`` as stored
    # how ``data`` holds the array (migration 0014): None raw, else storage/planes.py
    codec: Mapped[str | None] = mapped_column(String(CODEC_LEN), default=None)

    def matrix(self, what: str) -> np.ndarray:
        """The block's ``(rows, dim)`` array, checksum verified; decoded once per stored
        content (kept with the object, keyed by its checksum: an erasure changes it)."""
        cached = self.__dict__.get("_matrix")
        if cached is None or cached[0] != self.sha256:
            m = decode_block(self.data, self.codec, self.dtype, self.rows, self.dim,
                             self.sha256, what)
            m.flags.writeable = False
            cached = self.__dict__["_matrix"] = (self.sha256, m)
        return cached[1]


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
