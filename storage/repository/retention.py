"""Retention: drop old deltas once snapshots make them unnecessary.

A version must stay loadable when it is recent (committed within the window), pinned, the
head, or has a snapshot. The deltas those versions need (their paths back to the nearest
snapshot) are kept. Any other delta is dropped when it is older than the window and some
later snapshot on a path through it covers it; versions that can no longer be rebuilt are
marked ``thinned`` (listed, but loading them raises :class:`VersionThinned`). Pinned versions
are never thinned.

Snapshots are kept too, unless ``snapshot_spacing_s`` is given: then a snapshot older than the
window is deleted (and its version thinned) when no recent, pinned or head version builds on
it, it is not the newest snapshot before the window on the head's path (event retention and
forget start there), and an older kept snapshot lies in the same ``snapshot_spacing_s`` slot
of time: thinner points after the window, so an agent's snapshots stop growing with its age.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update

from storage.errors import InputError
from storage.models import DeltaRow, Snapshot, Version
from storage.repository._base import Core, chunks, cutoff_before
from storage.repository.graph import VersionGraph, VInfo


@dataclass(frozen=True)
class RetentionReport:
    dropped: list[int]  # versions whose deltas were deleted
    thinned: list[int]  # versions that can no longer be loaded
    bytes_freed: int
    snapshots_dropped: tuple[int, ...] = ()  # versions whose snapshot was deleted


def _check_seconds(keep_window_s: Any, snapshot_spacing_s: Any) -> None:
    for name, val in (("keep_window_s", keep_window_s), ("snapshot_spacing_s",
                                                          snapshot_spacing_s)):
        if val is None and name == "snapshot_spacing_s":
            continue
        if isinstance(val, bool) or not isinstance(val, (int, float)) or not val >= 0 \
                or (name == "snapshot_spacing_s" and not val > 0):
            raise InputError(name, "expected a number of seconds >= 0 (spacing: > 0)")


class Retention:
    """Old deltas (and, with a spacing, snapshots) dropped (module doc)."""

    #: read every version, not only the ok ones (the reference tests compare against)
    full_map = False

    def __init__(self, core: Core, graph: VersionGraph) -> None:
        self.core = core
        self.graph = graph
        self.session = core.session

    def apply_retention(self, agent_id: str, keep_window_s: float,
                        now: datetime | None = None,
                        snapshot_spacing_s: float | None = None) -> RetentionReport:
        """Thin the agent's history (see the module doc); returns what was dropped."""
        _check_seconds(keep_window_s, snapshot_spacing_s)
        agent = self.core.lock_agent(agent_id)
        cutoff = cutoff_before(keep_window_s, now, "keep_window_s")
        vmap, rows = self._versions(agent_id)
        created = {v: c for v, c, _ in rows}
        pinned = {v for v, _, p in rows if p}
        head = agent.head_version

        def kept_anyway(v: int) -> bool:
            return created[v] >= cutoff or v in pinned or v == head

        snaps = {v for v, info in vmap.items() if info.has_snapshot and info.status == "ok"}
        drop_snaps = (self._old_snapshots(vmap, snaps, created, cutoff, head, kept_anyway,
                                          snapshot_spacing_s) if snapshot_spacing_s else set())
        snaps -= drop_snaps
        drop = self._old_deltas(vmap, snaps, created, cutoff, pinned, kept_anyway)
        if not drop and not drop_snaps:
            return RetentionReport([], [], 0)
        thinned = self._unloadable(vmap, snaps, set(drop), drop_snaps)
        freed = self._delete(agent_id, drop, drop_snaps, thinned)
        return RetentionReport(drop, thinned, freed, tuple(sorted(drop_snaps)))

    def _versions(self, agent_id: str) -> tuple[dict[int, VInfo], list[Any]]:
        """``(vmap, [(version, created_at, pinned)])``: the ``ok`` versions (what can be kept,
        dropped or thinned; with ``full_map``, every version), and a map that reads any other
        version when a walk along sources reaches it, in indexed ranges of 256 numbers: the
        thinned past of a streaming agent grows with its age, its ``ok`` versions do not."""
        q = select(Version.version, Version.parent, Version.kind, Version.state_of,
                   Version.has_snapshot, Version.status, Version.checksum,
                   Version.created_at, Version.pinned).where(Version.agent_id == agent_id)
        rows = self.session.execute(q if self.full_map else q.where(Version.status == "ok"))
        vmap = _LazyVersions(self.graph, agent_id)
        out = []
        for r in rows:
            vmap[r[0]] = VInfo(*r[:7])
            out.append((r[0], r[7], r[8]))
        return vmap, out

    @staticmethod
    def _old_deltas(vmap: dict[int, VInfo], snaps: set[int], created: dict[int, datetime],
                    cutoff: datetime, pinned: set[int],
                    kept_anyway: Callable[[int], bool]) -> list[int]:
        """Delta versions older than the window that no kept version's path needs and a later
        snapshot on a path through them covers."""

        def walk(v: int, marked: set[int]) -> None:  # mark v's path until a snapshot
            while v not in marked:
                marked.add(v)
                info = vmap[v]
                if v in snaps or info.source is None:
                    return
                v = info.source

        needed: set[int] = set()
        for v, info in list(vmap.items()):
            if info.status == "ok" and (kept_anyway(v) or v in snaps):
                walk(v, needed)
        candidates = [v for v, info in list(vmap.items())
                      if info.kind == "delta" and info.status == "ok" and v not in snaps
                      and v not in pinned and v not in needed and created[v] < cutoff]
        if not candidates:
            return []
        lo = min(candidates)  # sources only go down: no walk below it reaches a candidate
        covered: set[int] = set()
        for v in snaps:
            cur: int | None = vmap[v].source
            while cur is not None and cur >= lo and cur not in covered:
                covered.add(cur)
                cur = vmap[cur].source
        return sorted(v for v in candidates if v in covered)

    @staticmethod
    def _unloadable(vmap: dict[int, VInfo], snaps: set[int], dropped: set[int],
                    drop_snaps: set[int]) -> list[int]:
        """The ``ok`` versions that can no longer be rebuilt once ``dropped`` deltas and
        ``drop_snaps`` snapshots are gone."""
        loadable: dict[int, bool] = {}  # a version not in vmap is not ok: not loadable
        for v in sorted(vmap):
            info = vmap[v]
            src = info.source
            loadable[v] = info.status == "ok" and (
                v in snaps or (v not in dropped and v not in drop_snaps and src is not None
                               and loadable.get(src, False)))
        return sorted(v for v in vmap if vmap[v].status == "ok" and not loadable[v])

    def _delete(self, agent_id: str, drop: list[int], drop_snaps: set[int],
                thinned: list[int]) -> int:
        """Delete the deltas and snapshots, mark the thinned versions; returns delta bytes
        freed."""
        freed = 0
        for part in chunks(drop):
            freed += int(sum(len(d) for d in self.session.scalars(select(DeltaRow.data).where(
                DeltaRow.agent_id == agent_id, DeltaRow.version.in_(part)))))
            self.session.execute(delete(DeltaRow).where(
                DeltaRow.agent_id == agent_id, DeltaRow.version.in_(part)))
        for part in chunks(sorted(drop_snaps)):  # their layers go with them (ON DELETE CASCADE)
            self.session.execute(delete(Snapshot).where(
                Snapshot.agent_id == agent_id, Snapshot.version.in_(part)))
            self.session.execute(update(Version).where(
                Version.agent_id == agent_id, Version.version.in_(part))
                .values(has_snapshot=False))
        for part in chunks(thinned):
            self.session.execute(update(Version).where(
                Version.agent_id == agent_id, Version.version.in_(part)).values(status="thinned"))
        self.session.flush()
        return freed

    @staticmethod
    def _old_snapshots(vmap: dict, snaps: set[int], created: dict, cutoff: datetime, head: int,
                       kept_anyway: Callable[[int], bool], spacing_s: float) -> set[int]:
        """Snapshots older than the window that nothing needs and a kept one's slot covers."""
        base: set[int] = set()  # the snapshots recent, pinned and head versions build on
        for v, info in list(vmap.items()):
            if info.status == "ok" and kept_anyway(v):
                cur: int | None = v
                while cur is not None and cur not in snaps:
                    cur = vmap[cur].source
                if cur is not None:
                    base.add(cur)
        cur = head  # the newest snapshot before the window on the head's path
        while cur is not None and not (cur in snaps and created[cur] < cutoff):
            cur = vmap[cur].source
        if cur is not None:
            base.add(cur)
        drop: set[int] = set()
        slots: set[int] = set()
        for v in sorted(snaps):
            if created[v] >= cutoff or v in base or kept_anyway(v):
                continue
            slot = int(created[v].timestamp() // spacing_s)
            # roots stay: version 0 (the empty state, where replays start) and the history
            # root the version horizon left (the walks from the head end there: horizon.py)
            if slot in slots and not vmap[v].is_root:
                drop.add(v)
            else:
                slots.add(slot)
        return drop


class _LazyVersions(dict[int, VInfo]):
    """Versions by number; one not held yet is read with its 255 predecessors."""

    def __init__(self, graph: VersionGraph, agent_id: str) -> None:
        super().__init__()
        self.graph, self.agent_id = graph, agent_id

    def __missing__(self, version: int) -> VInfo:
        for r in self.graph.session.execute(select(
                Version.version, Version.parent, Version.kind, Version.state_of,
                Version.has_snapshot, Version.status, Version.checksum).where(
                Version.agent_id == self.agent_id,
                Version.version.between(version - 255, version))):
            self.setdefault(r[0], VInfo(*r))
        if version not in self:
            raise KeyError(version)
        return self[version]
