"""Group commit of delta versions: many agents' micro-batches committed in one transaction with
a few Core statements for the whole group, instead of the ORM round trips of one
:meth:`Versions.commit_version` plus :meth:`Quality.record_quality` each.

:func:`prepare_delta` checks and encodes one batch's commit before any transaction is open (no
database work: it can run outside the write lock); :func:`commit_delta_group` writes a group
of them and stores exactly the rows that ``commit_version(kind="delta")`` followed by
``record_quality`` (when the batch was tested) would store for each, one agent after the other
(the reference the tests compare with): the version row with its quality totals and the seq
range of the events it applied, the delta rows, the head, the watermark and ``events_applied``
moved, the labels and answers a delta adds. It raises what ``commit_version`` raises (:class:`VersionConflict`,
:class:`InputError` for seqs that are not the oldest pending ones, :class:`AgentNotFound`);
the caller's transaction must then be rolled back (nothing of the group stays).

Statements per group: the agents locked (one no-op ``UPDATE`` on SQLite, one ``SELECT ... FOR
UPDATE`` in id order, which also reads each agent's last quality totals), one read that checks
every agent's events are its oldest pending ones (one range of the ``(agent_key, seq)`` index
each, the rows of this batch only; no event row is written: storage/repository/applied.py;
a batch that is not a run of consecutive seqs is read on its own), then one executemany each
for the version rows, the delta rows and the agents.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple, cast

from sqlalchemy import Table, and_, bindparam, func, insert, or_, select, update

from agent.memory.delta import Delta, LayerDelta
from storage.codec import Blob
from storage.errors import AgentNotFound, InputError, VersionConflict
from storage.models import Base, DeltaRow, Event, Version, utcnow
from storage.repository import Repository
from storage.repository.events import LIVE_TERMS, pending_terms
from storage.repository.versions import check_commit

_VERSIONS: Table = Base.metadata.tables[Version.__tablename__]
_DELTAS: Table = Base.metadata.tables[DeltaRow.__tablename__]
_AGENTS: Table = Base.metadata.tables["agents"]

_TOUCH = (update(_AGENTS).where(_AGENTS.c.id.in_(bindparam("ids", expanding=True)))
          .values(head_version=_AGENTS.c.head_version))


def _last_tested(col: Any) -> Any:
    """``col`` of the agent's version with the most events tested (its quality totals so far:
    what ``record_quality`` adds to), a scalar subquery of the locked agent's row."""
    return (select(col).where(_VERSIONS.c.agent_id == _AGENTS.c.id,
                              _VERSIONS.c.tested_total.is_not(None))
            .order_by(_VERSIONS.c.tested_total.desc()).limit(1).scalar_subquery())


_LOCK = (select(_AGENTS.c.id, _AGENTS.c.head_version, _AGENTS.c.labels, _AGENTS.c.applied_seq,
                _AGENTS.c.key, _last_tested(_VERSIONS.c.tested_total).label("tested"),
                _last_tested(_VERSIONS.c.hits_total).label("hits"))
         .where(_AGENTS.c.id.in_(bindparam("ids", expanding=True)))
         .order_by(_AGENTS.c.id).with_for_update())
# built once: pending_terms takes the agent id as a bound parameter here
_PENDING_UPTO = select(Event.seq).where(*pending_terms(cast(str, bindparam("aid"))),
                                        Event.seq <= bindparam("top"))
_RUNS_MAX = 32  # agents a statement of _pending_runs checks at most
_RUNS: dict[int, Any] = {}  # built once per number of agents (at most _RUNS_MAX)


def _pending_runs(n: int) -> Any:
    """Per agent of ``n`` (bound as ``k{i}``, ``lo{i}``, ``hi{i}``: its key, its watermark and
    the last seq of its batch) the count and least seq of its pending events up to ``hi{i}``,
    one row per agent that has any."""
    stmt = _RUNS.get(n)
    if stmt is None:
        ranges = [and_(Event.agent_key == bindparam(f"k{i}"), Event.seq > bindparam(f"lo{i}"),
                       Event.seq <= bindparam(f"hi{i}")) for i in range(n)]
        stmt = _RUNS[n] = (select(Event.agent_key, func.count(), func.min(Event.seq))
                           .where(or_(*ranges), *LIVE_TERMS).group_by(Event.agent_key))
    return stmt


_HEAD = (update(_AGENTS).where(_AGENTS.c.id == bindparam("aid"))
         .values(head_version=bindparam("v"), applied_seq=bindparam("top"),
                 events_applied=_AGENTS.c.events_applied + bindparam("n")))
_HEAD_LABELS = _HEAD.values(labels=bindparam("labels"))
_INSERT_VERSIONS = insert(_VERSIONS)
_INSERT_DELTAS = insert(_DELTAS)


class _Head(NamedTuple):
    """A locked agent's row as the group commit reads it (``_LOCK``)."""

    version: int
    labels: list[str]
    applied_seq: int  # the watermark
    key: int
    totals: tuple[int | None, int | None]  # tested and hits so far (None before any)


class DeltaCommit(NamedTuple):
    """One batch's delta commit, checked and encoded (:func:`prepare_delta`)."""

    agent_id: str
    parent: int
    checksum: str
    norm: float
    seqs: list[int]
    encoded: list[tuple[str, LayerDelta, str, Blob]]
    labels_added: list[str]
    hits: list[bool] | None  # test-then-train outcomes of the batch's events (None: untested)


class Committed(NamedTuple):
    """A version :func:`commit_delta_group` wrote (the fields the learner reads back)."""

    agent_id: str
    version: int
    checksum: str
    tested_total: int | None


def prepare_delta(agent_id: str, parent_version: int, delta: Delta, event_seqs: Sequence[int],
                  checksum: str, delta_norm: float | None = None,
                  hits: list[bool] | None = None) -> DeltaCommit:
    """Check and encode a delta commit as :meth:`Versions.commit_version` does (the same
    :class:`InputError`), without touching the database."""
    if not isinstance(agent_id, str):
        raise AgentNotFound(repr(agent_id))
    encoded, seqs, norm = check_commit("delta", parent_version, checksum, delta, None, None,
                                        event_seqs, delta_norm)
    if hits is not None and len(hits) > len(seqs):
        raise InputError("hits", f"{len(hits)} outcomes for {len(seqs)} events")
    return DeltaCommit(agent_id, parent_version, checksum, norm, seqs, encoded,
                       list(delta.labels_added), None if hits is None else list(hits))


def commit_delta_group(repo: Repository, commits: Sequence[DeltaCommit], *,
                       created_at: datetime | None = None) -> list[Committed]:
    """Commit ``commits`` (one per agent) in the caller's transaction; the versions, in order."""
    if not commits:
        return []
    ids = [c.agent_id for c in commits]
    if len(set(ids)) != len(ids):
        raise InputError("commits", "one commit per agent in a group")
    core, s = repo.core, repo.session
    wanted = sorted(ids)
    with core.translate(wanted[0]):
        # Core statements on the session's connection: the same SQL, parameters and results
        # without the ORM's per-statement work (none of these tables is mapped state here)
        conn = s.connection()
        if core.is_sqlite:  # take the write lock now: a no-op write
            conn.execute(_TOUCH, {"ids": wanted})
        heads = {r.id: _Head(r.head_version, list(r.labels or []), r.applied_seq, r.key,
                             (r.tested, r.hits)) for r in conn.execute(_LOCK, {"ids": wanted})}
    now = created_at or utcnow()
    versions: list[dict[str, Any]] = []
    deltas: list[dict[str, Any]] = []
    applied: list[tuple[str, list[int], int]] = []
    heads_moved: list[dict[str, Any]] = []
    labels_moved: list[dict[str, Any]] = []
    out: list[Committed] = []
    for c in commits:
        if c.agent_id not in heads:
            raise AgentNotFound(c.agent_id)
        h = heads[c.agent_id]
        if h.version != c.parent:
            raise VersionConflict(c.agent_id, c.parent, h.version)
        new = h.version + 1
        row = _version_row(c, new, now, h.totals)
        versions.append(row)
        deltas.extend({"agent_id": c.agent_id, "version": new, "layer": name, "form": form,
                       "gamma": float(ld.gamma), "d_v": ld.shape[0], "d_k": ld.shape[1],
                       "rank": None if ld.is_dense else ld.rank, "dtype": blob.dtype,
                       "data": blob.data, "sha256": blob.sha256}
                      for name, ld, form, blob in c.encoded)
        if c.seqs:
            applied.append((c.agent_id, c.seqs, new))
        move = {"aid": c.agent_id, "v": new, "n": len(c.seqs),
                "top": max(c.seqs) if c.seqs else h.applied_seq}
        grown = h.labels + c.labels_added
        if c.labels_added and grown != h.labels:
            labels_moved.append({**move, "labels": grown})
        else:
            heads_moved.append(move)
        out.append(Committed(c.agent_id, new, c.checksum, row["tested_total"]))
    with core.translate(wanted[0], commits[0].parent):
        conn.execute(_INSERT_VERSIONS, versions)
        if deltas:
            conn.execute(_INSERT_DELTAS, deltas)
        _check_group_pending(conn, [(a, heads[a].key, heads[a].applied_seq, seqs)
                                    for a, seqs, _ in applied])
        if heads_moved:
            conn.execute(_HEAD, heads_moved)
        if labels_moved:
            conn.execute(_HEAD_LABELS, labels_moved)
        for c, done in zip(commits, out, strict=True):
            if c.labels_added:
                repo.versions.record_answers(c.agent_id, done.version, c.labels_added)
        s.flush()
    return out


def _check_group_pending(conn: Any, runs: list[tuple[str, int, int, list[int]]]) -> None:
    """Per ``(agent id, agent key, watermark, seqs)`` of a group, the agent's pending events up
    to ``max(seqs)`` must be ``seqs`` exactly (the oldest pending ones, none skipped: what
    :meth:`Versions.check_next_pending` checks), else :class:`InputError` of the first failing
    one in the given order (the caller rolls back). The version's range marks them applied.

    A run of consecutive seqs ``lo..hi`` (the learner's common case) is checked by counting
    instead of reading the rows: the pending seqs up to ``hi`` are distinct integers, so if
    there are ``hi - lo + 1`` of them and the least is ``lo``, they are ``lo..hi``. The runs
    are counted together, one range of the ``(agent_key, seq)`` index each, :data:`_RUNS_MAX`
    agents a statement; a batch that is not a run, or whose count disagrees, is read row by
    row."""
    todo = [r for r in runs if _is_run(r[3])]
    counted: set[int] = set()  # agent keys whose run checked out
    for k in range(0, len(todo), _RUNS_MAX):
        part = todo[k:k + _RUNS_MAX]
        params: dict[str, int] = {}
        for i, (_, key, watermark, seqs) in enumerate(part):
            params.update({f"k{i}": key, f"lo{i}": watermark, f"hi{i}": max(seqs)})
        got = {key: (n, least) for key, n, least in conn.execute(_pending_runs(len(part)),
                                                                   params)}
        counted.update(r[1] for r in part if got.get(r[1]) == (len(r[3]), min(r[3])))
    for agent_id, key, _, seqs in runs:
        if key not in counted:
            _check_rows(conn, agent_id, seqs)


def _is_run(seqs: list[int]) -> bool:
    """Whether ``seqs`` are distinct and consecutive (in any order)."""
    return max(seqs) - min(seqs) + 1 == len(seqs) == len(set(seqs))


def _check_rows(conn: Any, agent_id: str, seqs: list[int]) -> None:
    """One batch of :func:`_check_group_pending`, by reading the pending seqs up to
    ``max(seqs)``."""
    got = sorted(conn.execute(_PENDING_UPTO, {"aid": agent_id, "top": max(seqs)})
                 .scalars().all())
    if got != sorted(seqs):
        bad = sorted(set(seqs) - set(got))
        raise InputError("event_seqs", f"unknown, applied or forgotten seqs {bad[:10]}" if bad
                         else "must be the oldest pending events (none may be skipped)")


def _version_row(c: DeltaCommit, new: int, now: datetime,
                 totals: tuple[int | None, int | None]) -> dict[str, Any]:
    """The ``versions`` row of ``c`` as ``insert_version`` + ``record_quality`` write it
    (``totals``: the agent's quality totals so far, None before any)."""
    hits = tested = hits_total = None
    if c.hits is not None:
        hits = int(sum(bool(x) for x in c.hits))
        tested = int(totals[0] or 0) + len(c.hits)
        hits_total = int(totals[1] or 0) + hits
    return {"agent_id": c.agent_id, "version": new, "parent": c.parent, "kind": "delta",
            "state_of": None, "created_at": now, "event_count": len(c.seqs),
            "first_seq": min(c.seqs) if c.seqs else None,
            "last_seq": max(c.seqs) if c.seqs else None,
            "checksum": c.checksum, "delta_norm": c.norm, "labels_added": c.labels_added,
            "has_snapshot": False, "pinned": False, "status": "ok", "hits": hits,
            "tested_total": tested, "hits_total": hits_total}
