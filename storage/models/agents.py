"""Tenants, their API keys, agents (with their integer keys) and the guard's actions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Sequence,
    String,
    Text,
    false,
    select,
)
from sqlalchemy.orm import Mapped, mapped_column

from storage.models.columns import (
    ID_LEN,
    KIND_LEN,
    NAME_LEN,
    SHA_LEN,
    Base,
    BigId,
    VersionNum,
    utcnow,
)


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
    # the last seq applied (migration 0013): the agent's events after it that are neither
    # rejected nor forgotten are its pending ones (storage/repository/applied.py)
    applied_seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0",
                                             deferred=True)
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


#: the keys of new agents on PostgreSQL (SQLite takes the largest key + 1)
AGENT_KEYS = Sequence("agents_key_seq", metadata=Base.metadata)


def agent_key_of(agent_id: Any) -> Any:
    """The agent's integer key (``agents.key``, what ``events.agent_key`` holds) as a scalar
    subquery: ``Event.agent_key == agent_key_of(agent_id)`` selects the agent's events through
    the ``(agent_key, ...)`` indexes in one statement."""
    return select(Agent.key).where(Agent.id == agent_id).scalar_subquery()


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
