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

The methods callers use are also attributes of the repository itself (``repo.fork`` is
``repo.agents.fork``), listed in :meth:`Repository.__init__`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

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
from storage.repository.quality import Quality
from storage.repository.retention import Retention, RetentionReport
from storage.repository.service import ServiceQueries
from storage.repository.state import States
from storage.repository.tenants import Tenants, hash_key
from storage.repository.versions import Versions

__all__ = ["Repository", "unit_of_work", "ForgetResult", "Replay", "RetentionReport",
           "hash_key"]


class Repository:
    """Tenants, agents, events, versions, states, quality, forget, fork and retention.

    Parameters
    ----------
    session : sqlalchemy.orm.Session
        Owned by the caller, who commits or rolls back.
    """

    def __init__(self, session: Session) -> None:
        self.session = session
        self.core = core = Core(session)
        self.graph = graph = VersionGraph(session)
        self.tenants = Tenants(session)
        self.queries = ServiceQueries(session)
        self.quality = Quality(core)
        self.states = states = States(core, graph)
        self.events = events = Events(core, graph)
        self.event_pages = EventPages(core)
        self.versions = versions = Versions(core, graph, states)
        self.agents = Agents(core, graph, states, versions, events)
        self.erasure = Erasure(core, graph)
        self.forgetting = Forgetting(core, graph, events, states, versions, self.erasure)
        self.retention = Retention(core, graph)
        self.event_retention = EventRetention(core, graph)
        self._public_api()

    def _public_api(self) -> None:
        """The peers' methods callers use, as the repository's own attributes."""
        t, q = self.tenants, self.queries
        self.create_tenant, self.create_key, self.revoke_key = \
            t.create_tenant, t.create_key, t.revoke_key
        self.tenant_for_key, self.get_tenant, self.list_tenants = \
            t.tenant_for_key, t.get_tenant, t.list_tenants
        self.version_exists, self.version_status = q.version_exists, q.version_status
        self.agents_with_pending_events, self.all_agent_ids = \
            q.agents_with_pending_events, q.all_agent_ids
        self.applied_events, self.snapshot_due, self.totals, self.ping = \
            q.applied_events, q.snapshot_due, q.totals, q.ping
        self.record_quality = self.quality.record_quality
        self.quality_points = self.quality.quality_points
        s = self.states
        self.write_snapshot, self.get_version, self.load_state = \
            s.write_snapshot, s.get_version, s.load_state
        e = self.events
        self.append_events, self.pending_events, self.pending_count = \
            e.append_events, e.pending_events, e.pending_count
        self.events_by_ids, self.events_by_seqs, self.event_history = \
            e.events_by_ids, e.events_by_seqs, e.event_history
        self.reject_events = e.reject_events
        self.list_events = self.event_pages.list_events
        v = self.versions
        self.commit_version, self.labels_at, self.answers, self.rollback = \
            v.commit_version, v.labels_at, v.answers, v.rollback
        self.list_versions, self.version_as_of, self.pin_version, self.version_stats = \
            v.list_versions, v.version_as_of, v.pin_version, v.version_stats
        a = self.agents
        self.create_agent, self.get_agent, self.agent_identity, self.head_version = \
            a.create_agent, a.get_agent, a.agent_identity, a.head_version
        self.agents_by_ids, self.list_agents, self.fork, self.events_of = \
            a.agents_by_ids, a.list_agents, a.fork, a.events_of
        self.erase_forgotten = self.erasure.erase_forgotten
        self.forget, self.pruned_versions = self.forgetting.forget, self.forgetting.pruned_versions
        self.apply_retention = self.retention.apply_retention
        self.prune_events = self.event_retention.prune_events


@contextmanager
def unit_of_work(db: Database, write: bool = True) -> Iterator[Repository]:
    """A repository in one transaction, committed on success, rolled back on error.
    ``write=True`` takes SQLite's write lock at BEGIN (no stale-snapshot conflicts)."""
    with (db.write_session() if write else db.session()) as session:
        yield Repository(session)
