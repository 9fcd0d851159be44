"""The workers' handle on the store: one engine per process, one transaction per unit of work.

The caller owns the session (SQLAlchemy 2.0 style): ``with store.tx() as repo:`` opens a
transaction, yields a :class:`storage.repository.Repository` bound to it, commits on success
and rolls back on any exception. ``tx(write=False)`` is for reads (no SQLite write lock).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

from storage.engine import Database
from storage.repository import Repository, unit_of_work


class Store:
    def __init__(self, url: str) -> None:
        self.url = url
        self.db = Database(url)
        self.engine = self.db.engine

    @contextmanager
    def tx(self, write: bool = True) -> Iterator[Repository]:
        with unit_of_work(self.db, write=write) as repo:
            yield repo

    @contextmanager
    def background_tx(self) -> Iterator[Repository]:
        """A write transaction of background work done in a loop (snapshots, retention),
        followed on SQLite by a pause in which a writer waiting for the lock (an ingest
        commit) takes it (:meth:`storage.engine.Database.yield_write_lock`)."""
        with self.tx() as repo:
            yield repo
        self.db.yield_write_lock()

    def read(self) -> AbstractContextManager[Repository]:
        return self.tx(write=False)

    def close(self) -> None:
        self.db.dispose()
