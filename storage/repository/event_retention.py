"""Event retention (opt-in, ``event_retention_s``): delete old events a snapshot covers.

An event is pruned (its row and payload deleted, its input's block once no event refers to
it) when it was received before the cutoff and is either in the history of the *covering
snapshot* (the newest ``ok`` snapshot version on the head's path committed before the cutoff),
or rejected or forgotten with a ``seq`` at most the last one that snapshot holds. Pending (and
held) events are never pruned, nor events applied on a branch the head's path left (a rollback
can still come back to them), unless the version horizon deleted the version they were applied
in.

After pruning, a pruned id is unknown: ``forget`` answers 404 for it and a re-sent id is a new
event (the duplicate window is the event retention). Versions, predict and rollback use
snapshots and deltas, not events. ``forget`` stays exact: a version whose applied events were
pruned is seen by its ``event_count`` exceeding its remaining rows, and ``forget`` starts at a
snapshot at or after the last such version on the head's path (:mod:`.forget`); rows a fork
inherited lose their ``origin_event_id`` link (they hold their own copy of the event).

Work per call is bounded (``limit`` rows): the scheduled job calls it in short transactions
until nothing is left, so the write lock is never held long.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, or_, select, update

from storage.models import Agent, Event, Version, agent_key_of, as_utc
from storage.repository._base import Core, check_int, chunks, cutoff_before
from storage.repository.applied import Ranges, maybe_applied
from storage.repository.event_inputs import block_refs, drop_unreferenced
from storage.repository.graph import VersionGraph

PRUNE_LIMIT = 2000


class EventRetention:
    """Old events a snapshot covers, deleted (module doc)."""

    def __init__(self, core: Core, graph: VersionGraph) -> None:
        self.core = core
        self.graph = graph
        self.session = core.session

    def prune_events(self, agent_id: str, keep_s: float, now: datetime | None = None,
                     limit: int = PRUNE_LIMIT) -> tuple[int, bool]:
        """Delete up to ``limit`` of the agent's prunable events (module doc); returns
        ``(deleted, more)`` where ``more`` says prunable events are left for another call."""
        cutoff = cutoff_before(keep_s, now, "event_retention_s")
        check_int(limit, "limit", 1)
        agent = self.core.lock_agent(agent_id)
        old_snaps = set(self.session.scalars(select(Version.version).where(
            Version.agent_id == agent_id, Version.has_snapshot.is_(True),
            Version.status == "ok", Version.created_at < cutoff)))
        if not old_snaps:
            return 0, False
        ids = self._prunable(agent_id, agent.head_version, old_snaps, cutoff)
        todo, more = ids[:limit], len(ids) > limit
        # rows that point here belong to the agent's direct forks (there is no index on
        # origin_event_id: the agent_key term keeps the update on the forks' rows)
        forks = list(self.session.scalars(select(Agent.key).where(
            Agent.base_agent_id == agent_id)))
        blocks = block_refs(self.session, todo)
        for part in chunks(todo):
            if forks:
                self.session.execute(update(Event).where(
                    Event.agent_key.in_(forks), Event.origin_event_id.in_(part))
                    .values(origin_event_id=None))
            self.session.execute(delete(Event).where(Event.id.in_(part)))
        drop_unreferenced(self.session, blocks)  # the input blocks no event refers to now
        self.session.flush()
        return len(todo), more

    def _prunable(self, agent_id: str, head: int, old_snaps: set[int],
                  cutoff: datetime) -> list[int]:
        """The ids of the prunable events (module doc), oldest first, reading the versions
        between the head and the covering snapshot and down to the oldest version an
        unpruned event was applied in (not the whole version history: it grows with the
        agent's age, while what retention leaves of the events does not).

        An event is in the covering snapshot ``S``'s history (storage/repository/graph.py)
        exactly when it was applied in ``S`` or a version on ``S``'s path back to its root,
        and not forgotten by a forget version on that path."""
        read = self.session.execute(select(
            Event.id, Event.seq, Event.applied_version, Event.forgotten_version,
            Event.rejected, Event.received_at).where(
            Event.agent_key == agent_key_of(agent_id),
            or_(maybe_applied(agent_id), Event.forgotten_version.is_not(None),
                Event.rejected.is_(True))).order_by(Event.seq)).all()
        # the version that applied each (applied.py): the ranges of the seqs read, no more
        ranges = Ranges.of_rows(self.session, agent_id, read)
        rows = [(i, seq, ranges.applied_version(seq, av, fv, rej), fv, rej, at)
                for i, seq, av, fv, rej, at in read]
        # applied in a version the version horizon deleted: not in any state that is left
        # (the root's own history was re-attributed to the root), so nothing can need it
        start = self.graph.history_start(agent_id)
        dead = [i for i, _, av, _, _, at in rows
                if av is not None and 0 < av < start and as_utc(at) < cutoff]
        prunable = {*dead, *self._covered(agent_id, head, old_snaps, cutoff, rows)}
        return [r[0] for r in rows if r[0] in prunable]  # (rows are in seq order)

    def _covered(self, agent_id: str, head: int, old_snaps: set[int], cutoff: datetime,
                 rows: Sequence[Any]) -> list[int]:
        """The prunable events ``rows`` holds that the covering snapshot holds or that are
        rejected or forgotten at or before its last event."""
        walk = (i.version for i in self.graph.walk(agent_id, head))  # read on lazily
        snap = next((v for v in walk if v in old_snaps), None)
        if snap is None:
            return []
        applied = [r[2] for r in rows if r[2] is not None and r[2] <= snap]
        if not applied:
            return []
        lo, path = min(applied), {snap}
        for v in walk:  # on from the snapshot, down to the oldest version an event is in
            if v < lo:
                break
            path.add(v)

        def held(av: int | None, fv: int | None) -> bool:
            return av in path and fv not in path

        covered = [seq for _, seq, av, fv, _, _ in rows if held(av, fv)]
        if not covered:
            return []
        upto = max(covered)
        return [i for i, seq, av, fv, rej, at in rows
                if seq <= upto and as_utc(at) < cutoff
                and ((fv is None and held(av, fv)) or fv is not None or rej)]
