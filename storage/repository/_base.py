"""Shared plumbing of the repository's peer classes: :class:`Core` (the caller's session,
the agent row looked up and locked, database errors translated) and small argument checks.
The version graph is :mod:`storage.repository.graph`."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Table, bindparam, delete, func, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, undefer

from storage.errors import (
    AgentNotFound,
    InputError,
    StoreBusy,
    VersionConflict,
)
from storage.models import AGENT_KEYS, Agent, DeltaRow, Snapshot, utcnow

SQLITE_BUSY_SNAPSHOT = 517
CHUNK = 500
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


# Built once (they run on every write): SQLite's write lock taken by a no-op write of the
# agent row (Core: no ORM synchronisation to do), then the row itself, locked and refreshed.
_AGENTS: Table = Agent.metadata.tables[Agent.__tablename__]
_TOUCH_AGENT = (update(_AGENTS).where(_AGENTS.c.id == bindparam("agent_id"))
                .values(head_version=_AGENTS.c.head_version))
_LOCK_AGENT = (select(Agent).options(undefer(Agent.key))
               .where(Agent.id == bindparam("agent_id")).with_for_update()
               .execution_options(populate_existing=True))


def new_agent_key(session: Session) -> int:
    """The key of an agent about to be inserted: the next value of ``agents_key_seq`` on
    PostgreSQL; on SQLite (one writer at a time) the largest key + 1 (one read of the
    ``uq_agents_key`` index)."""
    if session.get_bind().dialect.name == "sqlite":
        return int(session.scalar(select(func.coalesce(func.max(Agent.key), 0) + 1)) or 1)
    return int(session.scalar(select(AGENT_KEYS.next_value())) or 0)


def cutoff_before(keep_s: Any, now: datetime | None, field: str) -> datetime:
    """``now`` (default: the current time, naive = UTC) less ``keep_s`` seconds, checked
    (a number >= 0, else :class:`InputError` naming ``field``): what retention keeps is newer.
    """
    if isinstance(keep_s, bool) or not isinstance(keep_s, (int, float)) or not keep_s >= 0:
        raise InputError(field, "expected a number of seconds >= 0")
    cutoff = (now or utcnow()) - timedelta(seconds=float(keep_s))
    return cutoff if cutoff.tzinfo is not None else cutoff.replace(tzinfo=UTC)


def delete_arrays(session: Session, agent_id: str, versions: Sequence[int]) -> None:
    """Delete the deltas and snapshots of ``versions`` (one chunk); snapshot layers go with
    their snapshot (ON DELETE CASCADE)."""
    session.execute(delete(DeltaRow).where(DeltaRow.agent_id == agent_id,
                                           DeltaRow.version.in_(versions)))
    session.execute(delete(Snapshot).where(Snapshot.agent_id == agent_id,
                                           Snapshot.version.in_(versions)))


def chunks(seq: Sequence[Any], n: int = CHUNK) -> Iterator[Sequence[Any]]:
    for i in range(0, len(seq), n):
        yield seq[i:i + n]


def check_checksum(value: Any, field: str = "checksum") -> str:
    if not isinstance(value, str) or not _HEX64.match(value):
        raise InputError(field, "expected a SHA-256 hex digest (64 lowercase hex digits)")
    return value


def check_int(value: Any, field: str, lo: int = 0, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or (
            hi is not None and value > hi):
        rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise InputError(field, f"expected an integer {rng}, got {value!r}")
    return value


class Core:
    """The caller's session (methods flush but never commit) and the agent row."""

    def __init__(self, session: Session) -> None:
        self.session = session

    @property
    def is_sqlite(self) -> bool:
        return self.session.get_bind().dialect.name == "sqlite"

    def agent(self, agent_id: str, tenant_id: str | None = None) -> Agent:
        """The agent; :class:`AgentNotFound` if unknown or owned by another tenant."""
        if not isinstance(agent_id, str):
            raise AgentNotFound(repr(agent_id))
        agent = self.session.get(Agent, agent_id)
        if agent is None or (tenant_id is not None and agent.tenant_id != tenant_id):
            raise AgentNotFound(agent_id)
        return agent

    def lock_agent(self, agent_id: str) -> Agent:
        """The agent row, locked for this transaction (row lock on PostgreSQL; SQLite's
        database write lock), with fresh values."""
        if not isinstance(agent_id, str):
            raise AgentNotFound(repr(agent_id))
        params = {"agent_id": agent_id}
        with self.translate(agent_id):
            if self.is_sqlite:  # take the write lock now: a no-op write
                self.session.execute(_TOUCH_AGENT, params)
            agent = self.session.execute(_LOCK_AGENT, params).scalar_one_or_none()
        if agent is None:
            raise AgentNotFound(agent_id)
        return agent

    @contextmanager
    def translate(self, agent_id: str, expected: int | None = None) -> Iterator[None]:
        """Database errors that mean "someone else wrote first" → VersionConflict; a lock
        held past the busy timeout → StoreBusy. The caller must roll back after either."""
        try:
            yield
        except OperationalError as exc:
            code = getattr(exc.orig, "sqlite_errorcode", None)
            if code == SQLITE_BUSY_SNAPSHOT:
                raise VersionConflict(agent_id, expected, None) from exc
            if isinstance(exc.orig, sqlite3.OperationalError) and "locked" in str(exc.orig):
                raise StoreBusy(f"database locked while writing agent {agent_id!r}") from exc
            if getattr(exc.orig, "sqlstate", None) in ("40001", "40P01"):
                raise VersionConflict(agent_id, expected, None) from exc
            raise
        except IntegrityError as exc:
            if "uq_versions_agent_version" in str(exc.orig) or "versions.agent_id" in str(exc.orig):
                raise VersionConflict(agent_id, expected, None) from exc
            raise
