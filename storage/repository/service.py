"""Small reads the workers need: existence checks, recovery scans,
snapshot scheduling, deployment totals."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from storage.models import Agent, Event, Snapshot, Version, agent_key_of
from storage.repository.applied import Ranges, applied_versions, maybe_applied
from storage.repository.graph import VersionGraph


class ServiceQueries:
    """Reads across agents and small checks for the workers."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def version_exists(self, agent_id: str, version: int) -> bool:
        return self.session.scalar(select(func.count()).select_from(Version).where(
            Version.agent_id == agent_id, Version.version == version)) == 1

    def version_status(self, agent_id: str, version: int) -> str | None:
        """``ok``, ``thinned`` (also when the version horizon deleted its row) or ``erased``
        (held a forgotten event); None if unknown."""
        status = self.session.scalar(select(Version.status).where(
            Version.agent_id == agent_id, Version.version == version))
        if status is None and VersionGraph(self.session).deleted(agent_id, version):
            return "thinned"
        return status

    def agents_with_pending_events(self) -> list[str]:
        """Agents that have acknowledged events not yet applied (a learner's recovery scan)."""
        return list(self.session.scalars(select(Agent.id).where(
            Agent.events_received > Agent.events_applied + Agent.events_rejected)))

    def all_agent_ids(self) -> list[str]:
        return list(self.session.scalars(select(Agent.id).order_by(Agent.id)))

    def applied_events(self, agent_id: str) -> list[tuple[Event, int]]:
        """Every applied event of the agent with the version that applied it, in ``seq``
        order (storage/repository/applied.py)."""
        rows = list(self.session.scalars(select(Event).where(
            Event.agent_key == agent_key_of(agent_id), maybe_applied(agent_id))
            .order_by(Event.seq)))
        marks = applied_versions(rows, Ranges.of_rows(self.session, agent_id, rows))
        return [(e, marks[e.seq]) for e in rows if e.seq in marks]

    def snapshot_due(self, agent_id: str, version: int, every_versions: int,
                     every_s: float, now: datetime | None = None) -> bool:
        """Whether ``version`` should get a snapshot: ``every_versions`` versions or
        ``every_s`` seconds (with at least one new version) since the newest snapshot."""
        last = self.session.execute(
            select(Snapshot.version, Snapshot.created_at).where(Snapshot.agent_id == agent_id)
            .order_by(Snapshot.version.desc()).limit(1)).first()
        if last is None:
            return True
        if last.version >= version:
            return False
        if version - last.version >= every_versions:
            return True
        now = now or datetime.now(UTC)
        created = last.created_at if last.created_at.tzinfo else \
            last.created_at.replace(tzinfo=UTC)
        return (now - created).total_seconds() >= every_s

    def totals(self) -> dict[str, Any]:
        row = self.session.execute(select(
            func.count(Agent.id), func.coalesce(func.sum(Agent.events_received), 0),
            func.coalesce(func.sum(Agent.events_applied), 0),
            func.coalesce(func.sum(Agent.events_rejected), 0),
            # versions committed: 0..head per agent (numbers are dense); counting rows would
            # read every version and go down when the version horizon deletes some
            func.coalesce(func.sum(Agent.head_version + 1), 0))).one()
        return {"agents": int(row[0]), "events_received": int(row[1]),
                "events_applied": int(row[2]), "events_rejected": int(row[3]),
                "versions": int(row[4])}

    def ping(self) -> bool:
        return self.session.execute(text("SELECT 1")).scalar() == 1
