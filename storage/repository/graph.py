"""The version graph: lineage, rebuild path and event history of a version (read only).

Every version has a *source* it derives from: ``delta`` and ``snapshot`` versions their
``parent``; ``rollback`` versions their ``state_of``; ``forget`` versions their ``parent``
(for the event history; their state is a stored snapshot). ``create`` and ``fork`` versions
are roots, and so is the *history root* of an agent whose older versions the version horizon
deleted (storage/repository/horizon.py): a version with no source (a snapshot when it was
made; a later forget may erase it, and it stays the root). A version's
*event history* is, walking from the root along sources:

- create/fork: the events applied in it (a fork's inherited events; none for create);
- a history root: the events of its state (the horizon re-attributed them to it);
- delta/snapshot: history(parent) + the events it applied (in ``seq`` order);
- rollback: history(state_of);
- forget: history(parent) minus the events it forgot.

Events are always applied oldest pending first, so every history is in ``seq`` order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from storage.errors import CorruptData, VersionNotFound, VersionThinned
from storage.models import Event, Version, agent_key_of
from storage.repository.applied import Ranges, maybe_applied

#: (version → seqs applied in it, in order; version → seqs forgotten by it)
Marks = tuple[dict[int, list[int]], dict[int, set[int]]]


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

    @property
    def is_root(self) -> bool:
        """create and fork versions, and a history root (a snapshot the version horizon
        left without a source, which a forget may have erased since)."""
        return self.kind in ("create", "fork") or self.source is None


class VersionGraph:
    """Reads of the version graph over the caller's session."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def vmap(self, agent_id: str, upto: int | None = None) -> dict[int, VInfo]:
        """Every version of the agent (up to ``upto``) by number."""
        q = select(Version.version, Version.parent, Version.kind, Version.state_of,
                   Version.has_snapshot, Version.status, Version.checksum).where(
            Version.agent_id == agent_id)
        if upto is not None:
            q = q.where(Version.version <= upto)
        return {r[0]: VInfo(*r) for r in self.session.execute(q)}

    def vmap_path(self, agent_id: str, version: Any, window: int = 256) -> dict[int, VInfo]:
        """The rows :meth:`storage.repository.state.States.plan` walks for ``version``: back
        along sources to the nearest snapshot, read in indexed ranges of ``window`` versions,
        so the cost follows the snapshot interval, not the length of the history (a version
        missing here is one the walk would find missing in the full map as well)."""
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
            if info.has_snapshot or info.is_root or src is None or src >= cur:
                return vmap
            cur = src

    def walk(self, agent_id: str, start: int, window: int = 256) -> Iterator[VInfo]:
        """``start``'s row, then each source's back to the root, reading the versions in
        indexed ranges of ``window`` numbers (:class:`CorruptData` on a broken link)."""
        infos: dict[int, VInfo] = {}
        cur = start
        while True:
            if cur not in infos:
                infos.update((r[0], VInfo(*r)) for r in self.session.execute(select(
                    Version.version, Version.parent, Version.kind, Version.state_of,
                    Version.has_snapshot, Version.status, Version.checksum).where(
                    Version.agent_id == agent_id,
                    Version.version.between(max(0, cur - window + 1), cur))))
            info = infos.get(cur)
            if info is None:
                raise CorruptData(f"agent {agent_id!r} version {cur}", "missing on a path")
            yield info
            if info.is_root:  # create, fork, or the history root (horizon.py)
                return
            src = info.source
            if src is None or src >= cur:
                raise CorruptData(f"agent {agent_id!r} version {cur}",
                                  f"{info.kind} version with bad source {src!r}")
            cur = src

    def vinfo(self, agent_id: str, version: Any, vmap: dict[int, VInfo],
              field: str = "version") -> VInfo:
        """``vmap[version]``, else :meth:`missing`'s error naming ``field``."""
        if isinstance(version, bool) or not isinstance(version, int) or version not in vmap:
            raise self.missing(agent_id, version, field)
        return vmap[version]

    def missing(self, agent_id: str, version: Any, field: str = "version") -> Exception:
        """The error for a version with no row: :class:`VersionThinned` when the version
        horizon deleted it (below the agent's history root), else :class:`VersionNotFound`."""
        if self.deleted(agent_id, version):
            return VersionThinned(agent_id, version)
        return VersionNotFound(agent_id, version, field)

    def deleted(self, agent_id: str, version: Any) -> bool:
        """Whether ``version`` (one with no row) was deleted by the version horizon: version
        numbers are dense, so a number between 0 and the history root was."""
        return isinstance(version, int) and not isinstance(version, bool) \
            and 0 < version < self.history_start(agent_id)

    def history_start(self, agent_id: str) -> int:
        """The oldest version after version 0 that has a row: 1, or the history root once
        the version horizon deleted the versions before it (one indexed read)."""
        v = self.session.scalar(select(func.min(Version.version)).where(
            Version.agent_id == agent_id, Version.version > 0))
        return 1 if v is None else int(v)

    @staticmethod
    def path(agent_id: str, vmap: dict[int, VInfo], version: int) -> list[int]:
        """Versions from ``version`` back to its root (create/fork) along sources."""
        path = [version]
        cur = vmap[version]
        while not cur.is_root:
            src = cur.source
            if src is None or src not in vmap or src >= cur.version:
                raise CorruptData(f"agent {agent_id!r} version {cur.version}",
                                  f"{cur.kind} version with bad source {src!r}")
            path.append(src)
            cur = vmap[src]
        return path

    def event_marks(self, agent_id: str) -> Marks:
        """(version → seqs applied in it, in order; version → seqs forgotten by it): every
        event row but the pending ones, and the agent's version ranges (applied.py)."""
        applied: dict[int, list[int]] = {}
        forgotten: dict[int, set[int]] = {}
        ranges = Ranges.of_agent(self.session, agent_id)
        rows = self.session.execute(
            select(Event.seq, Event.applied_version, Event.forgotten_version, Event.rejected)
            .where(Event.agent_key == agent_key_of(agent_id))
            .where(maybe_applied(agent_id) | Event.forgotten_version.is_not(None))
            .order_by(Event.seq))
        for seq, av, fv, rejected in rows:
            v = ranges.applied_version(seq, av, fv, rejected)
            if v is not None:
                applied.setdefault(v, []).append(seq)
            if fv is not None:
                forgotten.setdefault(fv, set()).add(seq)
        return applied, forgotten

    def histories(self, agent_id: str, vmap: dict[int, VInfo], version: int,
                  marks: Marks | None = None) -> Iterator[tuple[int, list[int]]]:
        """(v, history(v)) for every v on ``version``'s path, root first. The lists are
        fresh copies."""
        applied, forgotten = marks or self.event_marks(agent_id)
        hist: list[int] = []
        for v in reversed(self.path(agent_id, vmap, version)):
            info = vmap[v]
            if info.is_root:
                hist = list(applied.get(v, []))
            elif info.kind == "forget":
                gone = forgotten.get(v, set())
                hist = [s for s in hist if s not in gone] + applied.get(v, [])
            elif info.kind != "rollback":
                hist = hist + applied.get(v, [])
            yield v, list(hist)

    def history(self, agent_id: str, vmap: dict[int, VInfo], version: int) -> list[int]:
        """The seqs of ``version``'s event history, in order."""
        *_, (_, hist) = self.histories(agent_id, vmap, version)
        return hist

    def forgotten_in(self, agent_id: str, vmap: dict[int, VInfo], version: int) -> list[str]:
        """Client ids of forgotten events that ``version``'s history still contains."""
        gone = dict(self.session.execute(
            select(Event.seq, Event.client_id).where(Event.agent_key == agent_key_of(agent_id),
                                                     Event.forgotten_version.is_not(None))).all())
        if not gone:
            return []
        return [gone[s] for s in self.history(agent_id, vmap, version) if s in gone]
