"""Versions, their deltas and snapshots, and the answers (labels) an agent has seen."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Double,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from storage.models.columns import (
    DELTA_FORMS,
    DTYPE_LEN,
    ID_LEN,
    KIND_LEN,
    LAYER_LEN,
    SHA_LEN,
    VERSION_KINDS,
    VERSION_STATUSES,
    Base,
    BigId,
    VersionNum,
    utcnow,
)


class Version(Base):
    """One committed version. ``state_of`` is set on rollbacks (the version whose state it
    has); ``has_snapshot`` when a full state is stored for it; ``status`` is ``thinned``
    once retention dropped deltas it needs."""

    __tablename__ = "versions"
    __table_args__ = (
        UniqueConstraint("agent_id", "version", name="uq_versions_agent_version"),
        Index("ix_versions_agent_created", "agent_id", "created_at"),
        Index("ix_versions_agent_tested", "agent_id", "tested_total"),
        Index("ix_versions_agent_last_seq", "agent_id", "last_seq"),
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
    # the seqs of the events this version applied lie in first_seq..last_seq (migration 0013;
    # storage/repository/applied.py): NULL when it applied none
    first_seq: Mapped[int | None] = mapped_column(BigInteger, default=None)
    last_seq: Mapped[int | None] = mapped_column(BigInteger, default=None)
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
