"""The repository: every read and write the workers make, over one caller-owned session.

>>> from storage.engine import Database
>>> from storage.repository import Repository, unit_of_work
>>> # with unit_of_work(db) as repo: repo.append_events(agent_id, [...])  (commits on exit)

Methods flush but never commit; :func:`unit_of_work` is the helper that does. After a
:class:`~storage.errors.VersionConflict` or a database error the caller must roll back.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from storage.engine import Database
from storage.repository.event_retention import EventRetentionMixin
from storage.repository.event_status import EventStatusMixin
from storage.repository.events import EventsMixin
from storage.repository.forget import ForgetResult, Replay
from storage.repository.retention import RetentionMixin, RetentionReport
from storage.repository.service import ServiceQueriesMixin
from storage.repository.tenants import TenantsMixin, hash_key

__all__ = ["Repository", "unit_of_work", "ForgetResult", "Replay", "RetentionReport",
           "hash_key"]


class Repository(ServiceQueriesMixin, RetentionMixin, EventRetentionMixin, EventsMixin,
                 EventStatusMixin, TenantsMixin):
    """Tenants, agents, events, versions, states, forget, fork and retention.

    Parameters
    ----------
    session : sqlalchemy.orm.Session
        Owned by the caller, who commits or rolls back.
    """


@contextmanager
def unit_of_work(db: Database, write: bool = True) -> Iterator[Repository]:
    """A repository in one transaction, committed on success, rolled back on error.
    ``write=True`` takes SQLite's write lock at BEGIN (no stale-snapshot conflicts)."""
    with (db.write_session() if write else db.session()) as session:
        yield Repository(session)
