"""Retention: drop old deltas once snapshots make them unnecessary.

A version must stay loadable when it is recent (committed within the window), pinned, the
head, or has a snapshot. The deltas those versions need (their paths back to the nearest
snapshot) are kept. Any other delta is dropped when it is older than the window and some
later snapshot on a path through it covers it; versions that can no longer be rebuilt are
marked ``thinned`` (listed, but loading them raises :class:`VersionThinned`). Snapshot and
pinned versions are never thinned.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select, update

from storage.errors import InputError
from storage.models import DeltaRow, Version, utcnow
from storage.repository._base import chunks
from storage.repository.forget import ForgetMixin


@dataclass(frozen=True)
class RetentionReport:
    dropped: list[int]  # versions whose deltas were deleted
    thinned: list[int]  # versions that can no longer be loaded
    bytes_freed: int


class RetentionMixin(ForgetMixin):
    def apply_retention(self, agent_id: str, keep_window_s: float,
                        now: datetime | None = None) -> RetentionReport:
        """Thin the agent's history (see the module doc); returns what was dropped."""
        if isinstance(keep_window_s, bool) or not isinstance(keep_window_s, (int, float)) \
                or not keep_window_s >= 0:
            raise InputError("keep_window_s", "expected a number of seconds >= 0")
        agent = self._lock_agent(agent_id)
        cutoff = (now or utcnow()) - timedelta(seconds=float(keep_window_s))
        rows = self.session.execute(select(
            Version.version, Version.created_at, Version.pinned).where(
            Version.agent_id == agent_id)).all()
        vmap = self._vmap(agent_id)
        created = {v: c for v, c, _ in rows}
        pinned = {v for v, _, p in rows if p}
        if cutoff.tzinfo is None:
            cutoff = cutoff.replace(tzinfo=UTC)

        def walk(v: int, marked: set[int]) -> None:  # mark v's path until a snapshot
            while v not in marked:
                marked.add(v)
                info = vmap[v]
                if info.has_snapshot or info.source is None:
                    return
                v = info.source

        needed: set[int] = set()
        for v, info in vmap.items():
            if (info.status == "ok" and (created[v] >= cutoff or v in pinned
                                         or v == agent.head_version or info.has_snapshot)):
                walk(v, needed)
        covered: set[int] = set()
        for info in vmap.values():
            if info.has_snapshot and info.source is not None:
                cur: int | None = info.source
                while cur is not None and cur not in covered:
                    covered.add(cur)
                    cur = vmap[cur].source
        drop = sorted(v for v, info in vmap.items()
                      if info.kind == "delta" and info.status == "ok" and not info.has_snapshot
                      and v not in pinned and v not in needed and v in covered
                      and created[v] < cutoff)
        if not drop:
            return RetentionReport([], [], 0)
        dropped = set(drop)
        loadable: dict[int, bool] = {}
        for v in sorted(vmap):
            info = vmap[v]
            src = info.source
            loadable[v] = info.status == "ok" and (
                info.has_snapshot or (v not in dropped and src is not None
                                      and loadable.get(src, False)))
        thinned = sorted(v for v in vmap if vmap[v].status == "ok" and not loadable[v])
        freed = 0
        for part in chunks(drop):
            freed += int(sum(len(d) for d in self.session.scalars(select(DeltaRow.data).where(
                DeltaRow.agent_id == agent_id, DeltaRow.version.in_(part)))))
            self.session.execute(delete(DeltaRow).where(
                DeltaRow.agent_id == agent_id, DeltaRow.version.in_(part)))
        for part in chunks(thinned):
            self.session.execute(update(Version).where(
                Version.agent_id == agent_id, Version.version.in_(part)).values(status="thinned"))
        self.session.flush()
        return RetentionReport(drop, thinned, freed)
