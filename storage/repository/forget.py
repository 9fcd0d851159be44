"""Forget: exact unlearning. Rebuild the head's state without some events, from the most
recent snapshot on the head's path whose history is a prefix of the new history (at worst
the agent's root empty state), replaying the remaining events in their original order, and
commit it as a new version (kind ``forget``, stored as a snapshot). Then erase: the events'
payloads and every stored array of a version whose state held them go (erase.py).

Rejected events are in no version's history, so a replay never sees them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import select, update

from agent.errors import check_text
from agent.memory.delta import state_checksum
from storage.errors import InputError, UnknownEvents, VersionThinned
from storage.models import EVENT_ID_LEN, Event, Version, agent_key_of
from storage.repository._base import Core, chunks
from storage.repository.erase import Erasure
from storage.repository.events import Events
from storage.repository.graph import VersionGraph, VInfo
from storage.repository.state import States
from storage.repository.versions import Versions

State = tuple[dict[str, np.ndarray], list[str]]
#: replay(start_layers, start_labels, events in order) -> (layers, labels). Each event is
#: ``Event.as_replay()``: its payload plus ``id`` and ``seq``.
Replay = Callable[[dict[str, np.ndarray], list[str], list[dict[str, Any]]], State]
MAX_FORGET = 100_000


@dataclass(frozen=True)
class ForgetResult:
    """``version``: the new version row; ``events_removed``: forgotten events that were in
    the head's state; ``pending_dropped``: forgotten events not applied yet (now never
    will be); ``from_version``: the agent and version the replay started from;
    ``events_replayed``: how many events were replayed."""

    version: Version
    events_removed: int
    pending_dropped: int
    from_version: tuple[str, int]
    events_replayed: int


def _check_ids(event_client_ids: Any) -> None:
    if not isinstance(event_client_ids, list) or not event_client_ids:
        raise InputError("event_ids", "expected a non-empty list of event ids")
    if len(event_client_ids) > MAX_FORGET:
        raise InputError("event_ids", f"at most {MAX_FORGET} ids")
    for i, cid in enumerate(event_client_ids):
        if not isinstance(cid, str) or not cid or len(cid) > EVENT_ID_LEN:
            raise InputError(f"event_ids[{i}]", "expected a non-empty string id")
        check_text(cid, f"event_ids[{i}]")


class Forgetting:
    """Forget: exact unlearning (module doc)."""

    def __init__(self, core: Core, graph: VersionGraph, events: Events, states: States,
                 versions: Versions, erasure: Erasure) -> None:
        self.core = core
        self.graph = graph
        self.events = events
        self.states = states
        self.versions = versions
        self.erasure = erasure
        self.session = core.session

    def forget(self, agent_id: str, event_client_ids: list[str], replay: Replay, *,
               created_at: datetime | None = None) -> ForgetResult:
        """Forget events by client id; see the module doc.

        Raises :class:`UnknownEvents` (naming every unknown id; nothing changes) and
        :class:`InputError` for a malformed id list. Forgotten events are marked and their
        payloads erased: they are never applied or replayed again, and versions still
        holding them are erased (no predict, rollback or fork; :mod:`.erase`).
        """
        _check_ids(event_client_ids)
        agent = self.core.lock_agent(agent_id)
        # (their seqs and marks: not their input blocks, up to 1 MiB each)
        rows = self.events.events_by_ids(agent_id, event_client_ids, inputs=False)
        unknown = set(event_client_ids) - {e.client_id for e in rows}
        if unknown:
            raise UnknownEvents(agent_id, unknown)
        head = agent.head_version
        new = head + 1
        vmap = self.graph.vmap(agent_id)
        marks = self.graph.event_marks(agent_id)
        drop = {e.seq for e in rows} | {s for g in marks[1].values() for s in g}
        hists = list(self.graph.histories(agent_id, vmap, head, marks))
        head_hist = hists[-1][1]
        kept = [s for s in head_hist if s not in drop]
        removed = sum(1 for s in head_hist if s in drop)
        start, start_len = self._start_point(agent_id, agent.root_agent_id, vmap, hists, kept,
                                             marks[0])
        layers, labels = self.states.load_state(*start)
        todo = self.events.events_by_seqs(agent_id, kept[start_len:])
        layers, labels = replay(layers, list(labels), [e.as_replay() for e in todo])
        checksum = state_checksum(layers, labels)
        pending = [e for e in rows if e.seq > agent.applied_seq and e.applied_version is None
                   and e.forgotten_version is None and not e.rejected]  # (applied.py)
        version = self.versions.commit_version(
            agent_id, head, "forget", snapshot=(layers, labels), checksum=checksum,
            delta_norm=0.0, created_at=created_at)
        version.event_count = removed
        # a forgotten event that was never applied leaves the counts as if it had never been
        # received, so received = applied + rejected + pending still holds (its id stays a
        # tombstone: sent again, it is a duplicate)
        agent.events_received -= len(pending)
        self._mark_forgotten(agent_id, rows, new)
        return ForgetResult(version, removed, len(pending), start, len(todo))

    def _start_point(self, agent_id: str, root_agent_id: str | None, vmap: dict[int, VInfo],
                     hists: list[tuple[int, list[int]]], kept: list[int],
                     applied: dict[int, list[int]]) -> tuple[tuple[str, int], int]:
        """``((agent, version) to replay from, how many of ``kept`` its state holds)``: the
        longest snapshot history on the head's path that is a prefix of ``kept``, at or after
        the last version on the path whose applied events event retention pruned (those
        events are in no row to replay; event_retention.py); else :class:`VersionThinned`."""
        start: tuple[str, int] = (root_agent_id or agent_id, 0)
        start_len = 0
        pruned = self.pruned_versions(agent_id, applied)
        lost = max((i for i, (v, _) in enumerate(hists) if v in pruned), default=-1)
        if lost >= 0:
            start = (agent_id, -1)
        for i, (v, hist) in enumerate(hists):
            if i >= lost and vmap[v].has_snapshot and vmap[v].status == "ok" \
                    and len(hist) >= start_len and kept[:len(hist)] == hist:
                start, start_len = (agent_id, v), len(hist)
        if start[1] < 0:
            raise VersionThinned(agent_id, hists[lost][0])
        if start[0] != agent_id:  # a fork's root: the source's empty state
            start_len = 0
        return start, start_len

    def _mark_forgotten(self, agent_id: str, rows: list[Event], new: int) -> None:
        """Mark the events forgotten by version ``new`` and erase what they left behind."""
        for part in chunks(sorted(e.seq for e in rows if e.forgotten_version is None)):
            self.session.execute(update(Event).where(Event.agent_key == agent_key_of(agent_id),
                                                     Event.seq.in_(part))
                                 .values(forgotten_version=new))
        self.session.flush()
        self.erasure.erase_forgotten(agent_id, [e.seq for e in rows])

    def pruned_versions(self, agent_id: str, applied: dict[int, list[int]]) -> set[int]:
        """Versions some of whose applied events event retention pruned: ``event_count``
        exceeds the rows still marked applied in them (``applied``: version -> seqs)."""
        counts = self.session.execute(select(Version.version, Version.event_count).where(
            Version.agent_id == agent_id, Version.kind.not_in(("forget", "rollback")),
            Version.event_count > 0)).all()
        return {v for v, n in counts if n > len(applied.get(v, ()))}
