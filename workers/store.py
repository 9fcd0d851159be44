"""The workers' handle on the store: one engine per process, one transaction per unit of work.

The caller owns the session (SQLAlchemy 2.0 style): ``with store.tx() as repo:`` opens a
transaction, yields a :class:`storage.repository.Repository` bound to it, commits on success
and rolls back on any exception.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from storage.engine import make_engine, make_sessionmaker
from storage.repository import Repository


class Store:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._sessions = make_sessionmaker(self.engine)

    @contextmanager
    def tx(self) -> Iterator[Repository]:
        with self._sessions() as session, session.begin():
            yield Repository(session)

    def close(self) -> None:
        self.engine.dispose()
