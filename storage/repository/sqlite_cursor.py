"""Statements on the DBAPI cursor of a session's SQLite transaction, for the hot write paths.

Through SQLAlchemy a statement pays for its events, compiled-cache lookup and result set-up
whatever it does: a group commit of one-event requests spent ~2 ms of its ~3 ms of Python
there, for five statements the library runs in a fraction of that. :class:`SqliteCursor`
runs them on the cursor of the connection the session's transaction holds (the caller still
owns the transaction: it began, commits and rolls back through the session), and raises
errors as SQLAlchemy would (``sqlalchemy.exc.OperationalError`` wrapping the sqlite3 one),
so :meth:`storage.repository._base.Core.translate` and the edge's error mapping see the same
exceptions. A savepoint taken on the cursor is released on it (the session does not know of
it); after an error the caller's rollback ends the transaction, savepoints and all.

>>> from sqlalchemy import create_engine
>>> from sqlalchemy.orm import Session
>>> with Session(create_engine("sqlite://")) as s:
...     cur = SqliteCursor(s)
...     _ = cur.execute("CREATE TABLE t (x INTEGER)")
...     cur.executemany("INSERT INTO t VALUES (?)", [(1,), (2,)])
...     cur.execute("SELECT sum(x) FROM t").fetchall()
2
[(3,)]
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.orm import Session


class SqliteCursor:
    """The DBAPI cursor of ``session``'s transaction (begun here if it was not)."""

    def __init__(self, session: Session) -> None:
        self._cur = session.connection().connection.dbapi_connection.cursor()  # type: ignore[union-attr]

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        try:
            return self._cur.execute(sql, params)
        except sqlite3.Error as exc:
            raise _wrapped(sql, params, exc) from exc

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        """Returns the rows changed (an ``INSERT OR IGNORE`` counts only those inserted)."""
        try:
            return int(self._cur.executemany(sql, rows).rowcount)
        except sqlite3.Error as exc:
            raise _wrapped(sql, (), exc) from exc


def _wrapped(sql: str, params: Any, exc: sqlite3.Error) -> StatementError:
    """The exception SQLAlchemy raises for ``exc`` (e.g. ``OperationalError``)."""
    return DBAPIError.instance(sql, params, exc, sqlite3.Error)
