"""Shared plumbing of the repository: the session, agent locking, error translation, and
the version graph (lineage, state plan and event history of a version).

The version graph
-----------------
Every version has a *source* it derives from: ``delta`` and ``snapshot`` versions their
``parent``; ``rollback`` versions their ``state_of``; ``forget`` versions their ``parent``
(for the event history; their state is a stored snapshot). ``create`` and ``fork`` versions
are roots. A version's *event history* is, walking from the root along sources:

- create/fork: the events applied in it (a fork's inherited events; none for create);
- delta/snapshot: history(parent) + the events it applied (in ``seq`` order);
- rollback: history(state_of);
- forget: history(parent) minus the events it forgot.

Events are always applied oldest pending first, so every history is in ``seq`` order.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from storage.errors import (
    AgentNotFound,
    CorruptData,
    InputError,
    StoreBusy,
    VersionConflict,
    VersionNotFound,
)
from storage.models import Agent, Event, Version

SQLITE_BUSY_SNAPSHOT = 517
CHUNK = 500
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


# Built once (they run on every write): SQLite's write lock taken by a no-op write of the
# agent row (Core: no ORM synchronisation to do), then the row itself, locked and refreshed.
_AGENTS: Table = Agent.metadata.tables[Agent.__tablename__]
_TOUCH_AGENT = (update(_AGENTS).where(_AGENTS.c.id == bindparam("agent_id"))
                .values(head_version=_AGENTS.c.head_version))
_LOCK_AGENT = (select(Agent).where(Agent.id == bindparam("agent_id")).with_for_update()
               .execution_options(populate_existing=True))


@dataclass(frozen=True)
class VInfo:
    """What the graph walks need of a version row."""

    version: int
    parent: int | None
    kind: str
    state_of: int | None
    has_snapshot: bool
    status: str
    checksum: str

    @property
    def source(self) -> int | None:
        return self.state_of if self.kind == "rollback" else self.parent


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


class RepoBase:
    """Holds the caller's session. Methods flush but never commit."""

    def __init__(self, session: Session) -> None:
        self.session = session

    # -- agents and locking ------------------------------------------------------------
    @property
    def _is_sqlite(self) -> bool:
        return self.session.get_bind().dialect.name == "sqlite"

    def _agent(self, agent_id: str, tenant_id: str | None = None) -> Agent:
        if not isinstance(agent_id, str):
            raise AgentNotFound(repr(agent_id))
        agent = self.session.get(Agent, agent_id)
        if agent is None or (tenant_id is not None and agent.tenant_id != tenant_id):
            raise AgentNotFound(agent_id)
        return agent

    def _lock_agent(self, agent_id: str) -> Agent:
        """The agent row, locked for this transaction (row lock on PostgreSQL; SQLite's
        database write lock), with fresh values."""
        if not isinstance(agent_id, str):
            raise AgentNotFound(repr(agent_id))
        params = {"agent_id": agent_id}
        with self._translate(agent_id):
            if self._is_sqlite:  # take the write lock now: a no-op write
                self.session.execute(_TOUCH_AGENT, params)
            agent = self.session.execute(_LOCK_AGENT, params).scalar_one_or_none()
        if agent is None:
            raise AgentNotFound(agent_id)
        return agent

    @contextmanager
    def _translate(self, agent_id: str, expected: int | None = None) -> Iterator[None]:
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

    # -- the version graph -------------------------------------------------------------
    def _vmap(self, agent_id: str, upto: int | None = None) -> dict[int, VInfo]:
        q = select(Version.version, Version.parent, Version.kind, Version.state_of,
                   Version.has_snapshot, Version.status, Version.checksum).where(
            Version.agent_id == agent_id)
        if upto is not None:
            q = q.where(Version.version <= upto)
        return {r[0]: VInfo(*r) for r in self.session.execute(q)}

    def _vmap_path(self, agent_id: str, version: Any, window: int = 256) -> dict[int, VInfo]:
        """The rows :meth:`StateMixin._plan` walks for ``version``: back along sources to the
        nearest snapshot, read in indexed ranges of ``window`` versions, so the cost follows
        the snapshot interval, not the length of the history (a version missing here is one
        the walk would find missing in the full map as well)."""
        vmap: dict[int, VInfo] = {}
        if isinstance(version, bool) or not isinstance(version, int):
            return vmap
        cur = version
        while True:
            if cur not in vmap:
                q = select(Version.version, Version.parent, Version.kind, Version.state_of,
                           Version.has_snapshot, Version.status, Version.checksum).where(
                    Version.agent_id == agent_id,
                    Version.version.between(max(0, cur - window + 1), cur))
                vmap.update((r[0], VInfo(*r)) for r in self.session.execute(q))
                if cur not in vmap:
                    return vmap
            info = vmap[cur]
            src = info.source
            if info.has_snapshot or info.kind in ("create", "fork") or src is None or src >= cur:
                return vmap
            cur = src

    def _vinfo(self, agent_id: str, version: Any, vmap: dict[int, VInfo],
               field: str = "version") -> VInfo:
        if isinstance(version, bool) or not isinstance(version, int) or version not in vmap:
            raise VersionNotFound(agent_id, version, field)
        return vmap[version]

    @staticmethod
    def _path(agent_id: str, vmap: dict[int, VInfo], version: int) -> list[int]:
        """Versions from ``version`` back to its root (create/fork) along sources."""
        path = [version]
        cur = vmap[version]
        while cur.kind not in ("create", "fork"):
            src = cur.source
            if src is None or src not in vmap or src >= cur.version:
                raise CorruptData(f"agent {agent_id!r} version {cur.version}",
                                  f"{cur.kind} version with bad source {src!r}")
            path.append(src)
            cur = vmap[src]
        return path

    def _event_marks(self, agent_id: str) -> tuple[dict[int, list[int]], dict[int, set[int]]]:
        """(version → seqs applied in it, in order; version → seqs forgotten by it)."""
        applied: dict[int, list[int]] = {}
        forgotten: dict[int, set[int]] = {}
        rows = self.session.execute(
            select(Event.seq, Event.applied_version, Event.forgotten_version)
            .where(Event.agent_id == agent_id)
            .where((Event.applied_version.is_not(None)) | (Event.forgotten_version.is_not(None)))
            .order_by(Event.seq))
        for seq, av, fv in rows:
            if av is not None:
                applied.setdefault(av, []).append(seq)
            if fv is not None:
                forgotten.setdefault(fv, set()).add(seq)
        return applied, forgotten

    def _histories(self, agent_id: str, vmap: dict[int, VInfo], version: int,
                   marks: tuple[dict[int, list[int]], dict[int, set[int]]] | None = None,
                   ) -> Iterator[tuple[int, list[int]]]:
        """(v, history(v)) for every v on ``version``'s path, root first. The lists are
        fresh copies."""
        applied, forgotten = marks or self._event_marks(agent_id)
        hist: list[int] = []
        for v in reversed(self._path(agent_id, vmap, version)):
            info = vmap[v]
            if info.kind in ("create", "fork"):
                hist = list(applied.get(v, []))
            elif info.kind == "forget":
                gone = forgotten.get(v, set())
                hist = [s for s in hist if s not in gone] + applied.get(v, [])
            elif info.kind != "rollback":
                hist = hist + applied.get(v, [])
            yield v, list(hist)

    def _history(self, agent_id: str, vmap: dict[int, VInfo], version: int) -> list[int]:
        *_, (_, hist) = self._histories(agent_id, vmap, version)
        return hist

    def _forgotten_in(self, agent_id: str, vmap: dict[int, VInfo], version: int) -> list[str]:
        """Client ids of forgotten events that ``version``'s history still contains."""
        gone = dict(self.session.execute(
            select(Event.seq, Event.client_id).where(Event.agent_id == agent_id,
                                                     Event.forgotten_version.is_not(None))).all())
        if not gone:
            return []
        return [gone[s] for s in self._history(agent_id, vmap, version) if s in gone]
