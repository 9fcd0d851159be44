"""The repository: every read and write the workers make, over one caller-owned session.

>>> from storage.engine import Database
>>> from storage.repository import Repository, unit_of_work
>>> # with unit_of_work(db) as repo: repo.append_events(agent_id, [...])  (commits on exit)

Methods flush but never commit; :func:`unit_of_work` is the helper that does. After a
:class:`~storage.errors.VersionConflict` or a database error the caller must roll back.

:class:`Repository` composes one small class per aggregate over the same session, each given
the peers it calls at construction (public methods only; arrows point down this list):

- ``core`` (:class:`~._base.Core`): the agent row looked up and locked, errors translated;
  ``graph`` (:class:`~.graph.VersionGraph`): lineage and event history of a version;
- ``tenants``, ``queries`` (existence checks, recovery scans, totals), ``quality``;
- ``states``: snapshots and deltas stored, the state at a version rebuilt;
- ``events``: the event log (``event_pages``: listing by status);
- ``versions`` (on ``states``): the atomic commit, rollback, listing, pins, answers;
- ``agents`` (on ``states``, ``versions``, ``events``): create, look up, fork;
- ``erasure``; ``forgetting`` (on ``events``, ``states``, ``versions``, ``erasure``);
- ``retention`` and ``event_retention``.

Each peer is built on first use (a transaction pays only for the peers it uses). The methods
callers use are also the repository's own (``repo.fork`` is ``repo.agents.fork``: :class:`Via`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cached_property
from typing import Concatenate, Generic, ParamSpec, TypeVar

from sqlalchemy.orm import Session

from storage.engine import Database
from storage.repository._base import Core
from storage.repository.agents import Agents
from storage.repository.erase import Erasure
from storage.repository.event_retention import EventRetention
from storage.repository.event_status import EventPages
from storage.repository.events import Events
from storage.repository.forget import ForgetResult, Forgetting, Replay
from storage.repository.graph import VersionGraph
from storage.repository.horizon import VersionHorizon
from storage.repository.quality import Quality
from storage.repository.retention import Retention, RetentionReport
from storage.repository.service import ServiceQueries
from storage.repository.state import States
from storage.repository.tenants import Tenants, hash_key
from storage.repository.versions import Versions

__all__ = ["Repository", "unit_of_work", "ForgetResult", "Replay", "RetentionReport",
           "hash_key"]


P = ParamSpec("P")
R = TypeVar("R")
PeerT = TypeVar("PeerT")


class Via(Generic[PeerT, P, R]):
    """A peer's method as an attribute of :class:`Repository`: ``Via("agents", Agents.fork)``
    makes ``repo.fork`` the bound ``repo.agents.fork``, with its signature (for mypy too)."""

    def __init__(self, peer: str, method: Callable[Concatenate[PeerT, P], R]) -> None:
        self.peer, self.name = peer, method.__name__

    def __get__(self, repo: Repository, owner: type | None = None) -> Callable[P, R]:
        return getattr(getattr(repo, self.peer), self.name)  # type: ignore[no-any-return]


class Repository:
    """Tenants, agents, events, versions, states, quality, forget, fork and retention.

    Parameters
    ----------
    session : sqlalchemy.orm.Session
        Owned by the caller, who commits or rolls back.
    """

    def __init__(self, session: Session) -> None:
        self.session = session

    # -- the peers, each built on first use ------------------------------------------------
    @cached_property
    def core(self) -> Core:
        return Core(self.session)

    @cached_property
    def graph(self) -> VersionGraph:
        return VersionGraph(self.session)

    @cached_property
    def tenants(self) -> Tenants:
        return Tenants(self.session)

    @cached_property
    def queries(self) -> ServiceQueries:
        return ServiceQueries(self.session)

    @cached_property
    def quality(self) -> Quality:
        return Quality(self.core)

    @cached_property
    def states(self) -> States:
        return States(self.core, self.graph)

    @cached_property
    def events(self) -> Events:
        return Events(self.core, self.graph)

    @cached_property
    def event_pages(self) -> EventPages:
        return EventPages(self.core)

    @cached_property
    def versions(self) -> Versions:
        return Versions(self.core, self.graph, self.states)

    @cached_property
    def agents(self) -> Agents:
        return Agents(self.core, self.graph, self.states, self.versions, self.events)

    @cached_property
    def erasure(self) -> Erasure:
        return Erasure(self.core, self.graph)

    @cached_property
    def forgetting(self) -> Forgetting:
        return Forgetting(self.core, self.graph, self.events, self.states, self.versions,
                          self.erasure)

    @cached_property
    def retention(self) -> Retention:
        return Retention(self.core, self.graph)

    @cached_property
    def event_retention(self) -> EventRetention:
        return EventRetention(self.core, self.graph)

    @cached_property
    def horizon(self) -> VersionHorizon:
        return VersionHorizon(self.core, self.graph)

    # -- the methods callers use ----------------------------------------------------------
    create_tenant = Via("tenants", Tenants.create_tenant)
    create_key = Via("tenants", Tenants.create_key)
    revoke_key = Via("tenants", Tenants.revoke_key)
    tenant_for_key = Via("tenants", Tenants.tenant_for_key)
    get_tenant = Via("tenants", Tenants.get_tenant)
    list_tenants = Via("tenants", Tenants.list_tenants)
    version_exists = Via("queries", ServiceQueries.version_exists)
    version_status = Via("queries", ServiceQueries.version_status)
    agents_with_pending_events = Via("queries", ServiceQueries.agents_with_pending_events)
    all_agent_ids = Via("queries", ServiceQueries.all_agent_ids)
    applied_events = Via("queries", ServiceQueries.applied_events)
    snapshot_due = Via("queries", ServiceQueries.snapshot_due)
    totals = Via("queries", ServiceQueries.totals)
    ping = Via("queries", ServiceQueries.ping)
    record_quality = Via("quality", Quality.record_quality)
    quality_points = Via("quality", Quality.quality_points)
    tested_at = Via("quality", Quality.tested_at)
    write_snapshot = Via("states", States.write_snapshot)
    get_version = Via("states", States.get_version)
    load_state = Via("states", States.load_state)
    append_events = Via("events", Events.append_events)
    pending_events = Via("events", Events.pending_events)
    pending_count = Via("events", Events.pending_count)
    events_by_ids = Via("events", Events.events_by_ids)
    events_by_seqs = Via("events", Events.events_by_seqs)
    event_history = Via("events", Events.event_history)
    reject_events = Via("events", Events.reject_events)
    list_events = Via("event_pages", EventPages.list_events)
    commit_version = Via("versions", Versions.commit_version)
    labels_at = Via("versions", Versions.labels_at)
    answers = Via("versions", Versions.answers)
    rollback = Via("versions", Versions.rollback)
    list_versions = Via("versions", Versions.list_versions)
    version_as_of = Via("versions", Versions.version_as_of)
    pin_version = Via("versions", Versions.pin_version)
    version_stats = Via("versions", Versions.version_stats)
    create_agent = Via("agents", Agents.create_agent)
    get_agent = Via("agents", Agents.get_agent)
    agent_identity = Via("agents", Agents.agent_identity)
    head_version = Via("agents", Agents.head_version)
    agents_by_ids = Via("agents", Agents.agents_by_ids)
    list_agents = Via("agents", Agents.list_agents)
    fork = Via("agents", Agents.fork)
    events_of = Via("agents", Agents.events_of)
    erase_forgotten = Via("erasure", Erasure.erase_forgotten)
    forget = Via("forgetting", Forgetting.forget)
    pruned_versions = Via("forgetting", Forgetting.pruned_versions)
    apply_retention = Via("retention", Retention.apply_retention)
    prune_events = Via("event_retention", EventRetention.prune_events)
    fold_history = Via("horizon", VersionHorizon.fold_history)


@contextmanager
def unit_of_work(db: Database, write: bool = True) -> Iterator[Repository]:
    """A repository in one transaction, committed on success, rolled back on error.
    ``write=True`` takes SQLite's write lock at BEGIN (no stale-snapshot conflicts)."""
    with (db.write_session() if write else db.session()) as session:
        yield Repository(session)
