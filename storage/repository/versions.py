"""Versions: the atomic commit (version row + deltas + snapshot + labels + events marked
applied + head moved + counters), rollback, listing, as-of and pins."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import func, select

from agent.memory.delta import Delta, LayerDelta, state_checksum
from storage.codec import Blob
from storage.errors import (
    CorruptData,
    ForgottenEvents,
    InputError,
    VersionConflict,
    VersionNotFound,
    VersionThinned,
)
from storage.models import Agent, Answer, Event, Snapshot, Version, as_utc, utcnow
from storage.repository._base import Core, check_checksum, check_int, chunks
from storage.repository.events import pending_terms
from storage.repository.graph import VersionGraph
from storage.repository.state import States, check_labels, check_state, encode_layer_delta

COMMIT_KINDS = ("delta", "snapshot", "rollback", "forget")
MAX_LIST = 10_000


def check_commit(kind: str, parent_version: int, checksum: str, delta: Delta | None,
                  snapshot: tuple[dict[str, np.ndarray], list[str]] | None,
                  state_of: int | None, event_seqs: Sequence[int], delta_norm: float | None,
                  ) -> tuple[list[tuple[str, LayerDelta, str, Blob]], list[int], float]:
    """The arguments of :meth:`Versions.commit_version` checked before anything is read or
    written: ``(encoded layer deltas, event seqs, delta norm)``; else :class:`InputError`."""
    if kind not in COMMIT_KINDS:
        raise InputError("kind", f"expected one of {list(COMMIT_KINDS)}, got {kind!r}")
    check_int(parent_version, "parent_version")
    check_checksum(checksum)
    encoded = []
    if delta is not None:
        if not isinstance(delta, Delta):
            raise InputError("delta", "expected a Delta")
        check_labels(list(delta.labels_added), "delta.labels_added")
        encoded = [encode_layer_delta(n, ld) for n, ld in delta.layers.items()]
    elif kind == "delta":
        raise InputError("delta", "a delta commit needs a delta")
    if snapshot is not None:
        layers, labels = check_state(*snapshot)
        got = state_checksum(layers, labels)
        if got != checksum:
            raise InputError("checksum", f"does not match the snapshot's state ({got[:16]}…)")
    elif kind in ("snapshot", "forget"):
        raise InputError("snapshot", f"a {kind} commit needs the full state")
    if kind == "rollback":
        if state_of is None:
            raise InputError("state_of", "a rollback needs the version it restores")
        if delta is not None or snapshot is not None:
            raise InputError("delta", "a rollback stores no delta or snapshot")
    elif state_of is not None:
        raise InputError("state_of", "only rollbacks have state_of")
    seqs = [check_int(s, f"event_seqs[{i}]", 1) for i, s in enumerate(event_seqs)]
    if len(set(seqs)) != len(seqs):
        raise InputError("event_seqs", "repeated seq numbers")
    if delta_norm is None:
        delta_norm = delta.norm() if delta is not None else 0.0
    if not math.isfinite(float(delta_norm)):
        raise InputError("delta_norm", "expected a finite number")
    return encoded, seqs, float(delta_norm)


class Versions:
    """Versions: the atomic commit, rollback, listing, as-of, pins and the agent's answers."""

    def __init__(self, core: Core, graph: VersionGraph, states: States) -> None:
        self.core = core
        self.graph = graph
        self.states = states
        self.session = core.session

    def commit_version(
        self, agent_id: str, parent_version: int, kind: str = "delta", *,
        delta: Delta | None = None,
        snapshot: tuple[dict[str, np.ndarray], list[str]] | None = None,
        event_seqs: Sequence[int] = (), checksum: str, delta_norm: float | None = None,
        state_of: int | None = None, created_at: datetime | None = None,
    ) -> Version:
        """Commit one version, all or nothing, on top of ``parent_version`` (the head).

        Parameters
        ----------
        kind : {"delta", "snapshot", "rollback", "forget"}
            ``delta`` needs ``delta``; ``snapshot``/``forget`` need ``snapshot``;
            ``rollback`` needs ``state_of``. A ``delta`` commit may carry a snapshot too.
        delta : Delta
            Stored as given (factor or dense form, dtype as given — cast it *before* the
            learner applies it, e.g. ``delta.astype("float16")``).
        snapshot : (layers, labels)
            The full state after this version (its checksum must equal ``checksum``).
        event_seqs : sequence of int
            The ``seq`` of the events this version applies: the oldest pending ones.
        checksum : str
            ``state_checksum(layers, labels)`` of the state after this version.

        Raises
        ------
        VersionConflict
            The head is not ``parent_version`` (another writer committed first). The
            caller's transaction must then be rolled back.
        InputError
            Bad arguments (nothing is written).
        """
        encoded, seqs, norm = check_commit(kind, parent_version, checksum, delta, snapshot,
                                            state_of, event_seqs, delta_norm)
        agent = self.core.lock_agent(agent_id)
        if agent.head_version != parent_version:
            raise VersionConflict(agent_id, parent_version, agent.head_version)
        new = agent.head_version + 1
        if state_of is not None:
            self._check_restored(agent_id, state_of, checksum)
        if seqs:
            self.check_next_pending(agent_id, seqs)
        with self.core.translate(agent_id, parent_version):
            version = self.insert_version(
                agent_id, new, parent_version, kind, checksum=checksum,
                delta_norm=norm, state_of=state_of, event_count=len(seqs),
                labels_added=list(delta.labels_added) if delta is not None else [],
                created_at=created_at)
            self._write_commit(agent, version, kind, delta, snapshot, encoded, seqs, state_of)
        return version

    def _check_restored(self, agent_id: str, state_of: int, checksum: str) -> None:
        """A rollback's ``state_of``: a loadable version whose checksum is ``checksum``."""
        row = self.states.get_version(agent_id, state_of) if isinstance(state_of, int) else None
        if row is None or row.checksum != checksum:
            raise InputError("checksum", f"a rollback has version {state_of}'s checksum")
        if row.status == "thinned":
            raise VersionThinned(agent_id, state_of)

    def _write_commit(self, agent: Agent, version: Version, kind: str, delta: Delta | None,
                      snapshot: tuple[dict[str, np.ndarray], list[str]] | None,
                      encoded: list[tuple[str, LayerDelta, str, Blob]], seqs: list[int],
                      state_of: int | None) -> None:
        """The rows of a checked commit after its version row: deltas, snapshot, the events
        marked applied, the head and counters moved, labels and answers."""
        agent_id, new = agent.id, version.version
        self.states.put_deltas(agent_id, new, encoded)
        if snapshot is not None:
            self.states.put_snapshot(agent_id, new, *snapshot)
            version.has_snapshot = True
        if seqs:  # the events are marked by the version's range (storage/repository/applied.py)
            version.first_seq, version.last_seq = min(seqs), max(seqs)
            agent.applied_seq = max(seqs)
        agent.head_version = new
        agent.events_applied += len(seqs)
        self._move_labels(agent, kind, delta, snapshot, state_of)
        self.record_answers(agent_id, new, version.labels_added +
                            (list(snapshot[1]) if snapshot is not None else []))
        self.session.flush()

    def _move_labels(self, agent: Agent, kind: str, delta: Delta | None,
                     snapshot: tuple[dict[str, np.ndarray], list[str]] | None,
                     state_of: int | None) -> None:
        """Keep ``agent.labels`` = the labels of the new head's state (what :meth:`labels_at`
        computes from the history); written only when they change."""
        if snapshot is not None:
            labels = list(snapshot[1])
        elif kind == "rollback" and state_of is not None:
            labels = self.labels_at(agent.id, state_of)
        elif delta is not None and delta.labels_added:
            labels = list(agent.labels) + list(delta.labels_added)
        else:
            return
        if labels != agent.labels:
            agent.labels = labels

    def labels_at(self, agent_id: str, version: int) -> list[str]:
        """The labels (answers) of the state at ``version``, without reading any array:
        the covering snapshot's labels plus those added by the deltas after it (the version
        rows back to that snapshot; the head's labels are ``Agent.labels``)."""
        vmap = self.graph.vmap_path(agent_id, version)
        self.graph.vinfo(agent_id, version, vmap)
        start, chain = self.states.plan(agent_id, vmap, version)
        labels = self.session.scalar(select(Snapshot.labels).where(
            Snapshot.agent_id == agent_id, Snapshot.version == start))
        if labels is None:
            raise CorruptData(f"agent {agent_id!r} version {start}", "snapshot missing")
        out = list(labels)
        if chain:
            added = self.states.labels_added(agent_id, chain)
            for v in chain:
                out.extend(added.get(v) or [])
        return out

    def check_next_pending(self, agent_id: str, seqs: list[int]) -> None:
        # the pending rows only: the (agent_key, seq) index after the agent's watermark
        rows = self.session.execute(select(Event.seq).where(
            *pending_terms(agent_id), Event.seq <= max(seqs))).scalars().all()
        if sorted(rows) != sorted(seqs):
            bad = sorted(set(seqs) - set(rows))
            raise InputError("event_seqs", f"unknown, applied or forgotten seqs {bad[:10]}" if bad
                             else "must be the oldest pending events (none may be skipped)")

    def insert_version(self, agent_id: str, number: int, parent: int | None, kind: str, *,
                       checksum: str, delta_norm: float = 0.0, state_of: int | None = None,
                       event_count: int = 0, labels_added: list[str] | None = None,
                       created_at: datetime | None = None) -> Version:
        row = Version(agent_id=agent_id, version=number, parent=parent, kind=kind,
                      state_of=state_of, created_at=created_at or utcnow(),
                      event_count=event_count, checksum=checksum, delta_norm=delta_norm,
                      labels_added=labels_added or [], has_snapshot=False, pinned=False,
                      status="ok")
        self.session.add(row)
        self.session.flush()
        return row

    def record_answers(self, agent_id: str, version: int, texts: Iterable[str]) -> None:
        """Add texts not yet in the agent's explicit memory, in order."""
        texts = list(dict.fromkeys(texts))
        if not texts:
            return
        shas = {t: hashlib.sha256(t.encode("utf-8")).hexdigest() for t in texts}
        known: set[str] = set()
        for part in chunks(list(shas.values())):
            known.update(self.session.scalars(select(Answer.text_sha256).where(
                Answer.agent_id == agent_id, Answer.text_sha256.in_(part))))
        # after the last position (a forget may have deleted answers: erase.py)
        pos = int(self.session.scalar(select(func.max(Answer.position) + 1).where(
            Answer.agent_id == agent_id)) or 0)
        for t in texts:
            if shas[t] not in known:
                self.session.add(Answer(agent_id=agent_id, position=pos, text=t,
                                        text_sha256=shas[t], first_version=version))
                pos += 1

    def answers(self, agent_id: str) -> list[Answer]:
        """The agent's explicit memory: every label/answer seen, by first appearance."""
        self.core.agent(agent_id)
        return list(self.session.scalars(select(Answer).where(Answer.agent_id == agent_id)
                                         .order_by(Answer.position)))

    # -- rollback ----------------------------------------------------------------------
    def rollback(self, agent_id: str, version: int, *,
                 created_at: datetime | None = None) -> Version:
        """A new version (kind ``rollback``) whose state is ``version``'s; the versions in
        between stay readable. Refused (:class:`ForgottenEvents`) when ``version``'s
        history holds events forgotten since."""
        agent = self.core.lock_agent(agent_id)
        vmap = self.graph.vmap(agent_id)
        info = self.graph.vinfo(agent_id, version, vmap)
        if info.status == "thinned":
            raise VersionThinned(agent_id, version)
        gone = self.graph.forgotten_in(agent_id, vmap, version)
        if gone:
            raise ForgottenEvents(agent_id, version, gone)
        return self.commit_version(agent_id, agent.head_version, "rollback", state_of=version,
                                   checksum=info.checksum, delta_norm=0.0,
                                   created_at=created_at)

    # -- reading -----------------------------------------------------------------------
    def list_versions(self, agent_id: str, limit: int | None = None,
                      before: int | None = None) -> list[Version]:
        """Versions newest first; ``before`` excludes that version and later ones."""
        self.core.agent(agent_id)
        q = select(Version).where(Version.agent_id == agent_id)
        if before is not None:
            q = q.where(Version.version < check_int(before, "before"))
        q = q.order_by(Version.version.desc())
        if limit is not None:
            q = q.limit(check_int(limit, "limit", 1, MAX_LIST))
        return list(self.session.scalars(q))

    def version_as_of(self, agent_id: str, ts: datetime) -> int:
        """The last version committed at or before ``ts`` (naive = UTC)."""
        self.core.agent(agent_id)
        if not isinstance(ts, datetime):
            raise InputError("as_of", "expected a datetime")
        ts = as_utc(ts, "as_of")
        v = self.session.scalar(select(func.max(Version.version)).where(
            Version.agent_id == agent_id, Version.created_at <= ts))
        if v is None:
            raise VersionNotFound(agent_id, ts.isoformat(), "as_of")
        if v == 0 and self.graph.deleted(agent_id, 1):  # the version horizon deleted the
            raise VersionThinned(agent_id, 1)  # versions after 0: which one held ts is not kept
        return int(v)

    def pin_version(self, agent_id: str, version: int, pinned: bool = True) -> Version:
        """Pin (or unpin) a version: retention never thins a pinned version."""
        row = self.states.get_version(agent_id, version)
        row.pinned = bool(pinned)
        self.session.flush()
        return row

    def version_stats(self, agent_id: str) -> dict[str, Any]:
        """Counts and stored bytes of the agent's versions, deltas and snapshots."""
        from storage.models import DeltaRow, Snapshot, SnapshotLayer

        s = self.session
        return {
            "versions": s.scalar(select(func.count()).select_from(Version).where(
                Version.agent_id == agent_id)),
            "delta_bytes": int(s.scalar(select(func.coalesce(func.sum(func.length(
                DeltaRow.data)), 0)).where(DeltaRow.agent_id == agent_id)) or 0),
            "snapshot_bytes": int(s.scalar(select(func.coalesce(func.sum(func.length(
                SnapshotLayer.data)), 0)).join(Snapshot, Snapshot.id == SnapshotLayer.snapshot_id)
                .where(Snapshot.agent_id == agent_id)) or 0),
        }
