"""The version horizon (opt-in, ``version_history_s``): the rows of versions older than it are
deleted, so an agent that streams for months keeps a bounded number of version rows.

Retention (retention.py) drops old deltas and thins versions, but keeps every version's row:
at a micro-batch a version, a streaming agent adds tens of thousands of rows a day. The horizon
moves the agent's *history root* up to the *covering snapshot* ``C``: the newest ``ok``
snapshot of a ``delta`` version on the head's path committed before the horizon. Then:

1. the events of ``C``'s state (its event history, graph.py) are re-attributed to ``C``
   (``applied_version = C``) and ``C.event_count`` counts them, so forget, erasure and event
   retention, which read histories from the root, see the same histories as before; the
   other events applied below ``C`` keep their version in ``applied_version`` (the seq ranges
   of the deleted rows go with them, applied.py);
2. ``C`` loses its source (``parent`` NULL): a version with no source is a root;
3. every version ``0 < v < C`` is marked ``thinned`` at once, then deleted (rows, deltas and
   snapshots) in bounded chunks, one short transaction each.

Version 0 (the empty state, where a forget's full replay starts) is kept. A deleted version
answers as a thinned one (410 ``version_thinned``: predict, rollback, fork, ``as_of`` a time
before ``C``), never as unknown: version numbers are dense, so a missing number below the
root was deleted here (``VersionGraph.missing``).

The root moves only when nothing kept needs what lies below ``C``: no pinned version and no
fork's base below it, and every version after ``C`` descends from ``C`` (a rollback to an
older version, or a branch it left, holds the root back until ``C`` passes it).

Cost: re-rooting rewrites one column of every event ``C``'s state holds; with event retention
on (``event_retention_s``) those are the few not pruned yet. Without it, events (2 KB each)
outgrow version rows (~0.4 KB per micro-batch) anyway.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update

from storage.models import Agent, Event, Version, agent_key_of
from storage.repository._base import Core, check_int, chunks, cutoff_before, delete_arrays
from storage.repository.graph import VersionGraph, VInfo

HORIZON_LIMIT = 2000  # versions deleted per call (one short transaction)


class VersionHorizon:
    """Versions older than the horizon, deleted (module doc)."""

    def __init__(self, core: Core, graph: VersionGraph) -> None:
        self.core = core
        self.graph = graph
        self.session = core.session

    def fold_history(self, agent_id: str, keep_s: float, now: datetime | None = None,
                     limit: int = HORIZON_LIMIT) -> tuple[int, bool]:
        """Move the history root up (when it can) and delete up to ``limit`` versions below
        it; returns ``(deleted, more)``, ``more`` saying versions are left for another call."""
        cutoff = cutoff_before(keep_s, now, "version_history_s")
        check_int(limit, "limit", 1)
        agent = self.core.lock_agent(agent_id)
        path = list(self.graph.walk(agent_id, agent.head_version))  # head back to the root
        root = path[-1].version  # 0 (create or fork) or the history root
        new = self._covering(agent_id, path, cutoff)
        if new is not None and self._movable(agent_id, new):
            self._reroot(agent_id, new, {i.version: i for i in path if i.version <= new})
            root = new
        return self._delete_below(agent_id, root, limit)

    def _covering(self, agent_id: str, path: list[VInfo], cutoff: datetime) -> int | None:
        """The newest ok snapshot of a delta version on the head's ``path`` (head to root)
        committed before ``cutoff``, if it is after the root."""
        old = set(self.session.scalars(select(Version.version).where(
            Version.agent_id == agent_id, Version.has_snapshot.is_(True),
            Version.status == "ok", Version.kind == "delta",
            Version.version > path[-1].version, Version.created_at < cutoff)))
        return next((i.version for i in path[:-1] if i.version in old), None)

    def _movable(self, agent_id: str, c: int) -> bool:
        """Nothing kept needs a version below ``c`` (module doc)."""
        pinned = self.session.scalar(select(func.count()).select_from(Version).where(
            Version.agent_id == agent_id, Version.pinned.is_(True), Version.version > 0,
            Version.version < c))
        forks = self.session.scalar(select(func.count()).select_from(Agent).where(
            Agent.base_agent_id == agent_id, Agent.base_version > 0, Agent.base_version < c))
        if pinned or forks:
            return False
        after = {r[0]: VInfo(*r) for r in self.session.execute(select(
            Version.version, Version.parent, Version.kind, Version.state_of,
            Version.has_snapshot, Version.status, Version.checksum).where(
            Version.agent_id == agent_id, Version.version > c))}
        descends: dict[int, bool] = {c: True}
        for v in sorted(after):
            src = after[v].source
            descends[v] = src is not None and descends.get(src, False)
            if not descends[v]:
                return False
        return True

    def _reroot(self, agent_id: str, c: int, vmap: dict[int, VInfo]) -> None:
        """Re-attribute ``c``'s event history to it and make it a root (module doc);
        ``vmap``: ``c``'s path back to the current root."""
        marks = self.graph.event_marks(agent_id)
        *_, (_, hist) = self.graph.histories(agent_id, vmap, c, marks)
        # the versions below c go, and with them their seq ranges (applied.py): their events
        # keep their version in applied_version, c's history is re-attributed to c
        held = set(hist)
        marked: dict[int, list[int]] = {c: hist}
        for v, seqs in marks[0].items():
            if v < c:
                marked.setdefault(v, []).extend(s for s in seqs if s not in held)
        for v, seqs in marked.items():
            for part in chunks(seqs):
                self.session.execute(update(Event).where(
                    Event.agent_key == agent_key_of(agent_id), Event.seq.in_(part),
                    Event.applied_version.is_distinct_from(v)).values(applied_version=v))
        self.session.execute(update(Version).where(
            Version.agent_id == agent_id, Version.version == c).values(
            parent=None, state_of=None, event_count=len(hist)))
        self.session.execute(update(Version).where(  # thinned until their rows go, a few
            Version.agent_id == agent_id, Version.version > 0, Version.version < c,  # calls on
            Version.status == "ok").values(status="thinned"))  # (a load stops here: 410)
        self.session.flush()

    def _delete_below(self, agent_id: str, root: int, limit: int) -> tuple[int, bool]:
        """Delete up to ``limit`` versions ``0 < v < root`` (deltas, snapshots, rows)."""
        if root <= 1:
            return 0, False
        todo: list[Any] = list(self.session.scalars(select(Version.version).where(
            Version.agent_id == agent_id, Version.version > 0, Version.version < root)
            .order_by(Version.version).limit(limit + 1)))
        todo, more = todo[:limit], len(todo) > limit
        for part in chunks(todo):
            delete_arrays(self.session, agent_id, part)
            self.session.execute(delete(Version).where(
                Version.agent_id == agent_id, Version.version.in_(part)))
        self.session.flush()
        return len(todo), more
