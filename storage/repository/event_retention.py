"""Event retention (opt-in, ``event_retention_s``): delete old events a snapshot covers.

An event is pruned (its row, payload and input bytes deleted) when it was received before the
cutoff and is either in the history of the *covering snapshot* (the newest ``ok`` snapshot
version on the head's path committed before the cutoff), or rejected or forgotten with a
``seq`` at most the last one that snapshot holds. Pending (and held) events are never pruned,
nor events applied on a branch the head's path left (a rollback can still come back to them).

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

from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, or_, select, update

from storage.errors import InputError
from storage.models import Agent, Event, Version, utcnow
from storage.repository._base import check_int, chunks
from storage.repository.forget import ForgetMixin

PRUNE_LIMIT = 2000


class EventRetentionMixin(ForgetMixin):
    def prune_events(self, agent_id: str, keep_s: float, now: datetime | None = None,
                     limit: int = PRUNE_LIMIT) -> tuple[int, bool]:
        """Delete up to ``limit`` of the agent's prunable events (module doc); returns
        ``(deleted, more)`` where ``more`` says prunable events are left for another call."""
        if isinstance(keep_s, bool) or not isinstance(keep_s, (int, float)) or not keep_s >= 0:
            raise InputError("event_retention_s", "expected a number of seconds >= 0")
        check_int(limit, "limit", 1)
        agent = self._lock_agent(agent_id)
        cutoff = (now or utcnow()) - timedelta(seconds=float(keep_s))
        if cutoff.tzinfo is None:
            cutoff = cutoff.replace(tzinfo=UTC)
        old_snaps = set(self.session.scalars(select(Version.version).where(
            Version.agent_id == agent_id, Version.has_snapshot.is_(True),
            Version.status == "ok", Version.created_at < cutoff)))
        if not old_snaps:
            return 0, False
        vmap = self._vmap(agent_id)
        covered: list[int] | None = None
        for v, hist in self._histories(agent_id, vmap, agent.head_version):
            if v in old_snaps:
                covered = hist  # the newest one on the path wins (root first)
        if not covered:
            return 0, False
        upto = max(covered)
        held = set(covered)
        rows = self.session.execute(select(Event.id, Event.seq, Event.applied_version,
                                           Event.forgotten_version, Event.rejected).where(
            Event.agent_id == agent_id, Event.seq <= upto, Event.received_at < cutoff,
            or_(Event.applied_version.is_not(None), Event.forgotten_version.is_not(None),
                Event.rejected.is_(True))).order_by(Event.seq)).all()
        ids = [i for i, seq, av, fv, rej in rows
               if (av is not None and fv is None and seq in held) or fv is not None or rej]
        todo, more = ids[:limit], len(ids) > limit
        # rows that point here belong to the agent's direct forks (there is no index on
        # origin_event_id: the agent_id term keeps the update on the forks' rows)
        forks = list(self.session.scalars(select(Agent.id).where(
            Agent.base_agent_id == agent_id)))
        for part in chunks(todo):
            if forks:
                self.session.execute(update(Event).where(
                    Event.agent_id.in_(forks), Event.origin_event_id.in_(part))
                    .values(origin_event_id=None))
            self.session.execute(delete(Event).where(Event.id.in_(part)))
        self.session.flush()
        return len(todo), more
