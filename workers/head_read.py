"""The agent's head version, read for a predict at the cost of one SQLite statement.

Every predict reads the head (the warm copy of :mod:`workers.head_cache` answers only for that
exact version). Through a SQLAlchemy connection the read is a pool checkout, ``BEGIN`` (the
engine emits it itself, ``storage.engine``), the ``SELECT`` and a ``ROLLBACK``: many times the
statement alone on SQLite. :class:`HeadReader` runs the same ``SELECT`` on a DBAPI connection it
keeps per calling thread, in autocommit (the engine's SQLite connections have no implicit
transaction), so each read sees the last committed head, as the transaction did.

Bounds and failure: at most ``max_threads`` connections (then :meth:`read` answers None and the
caller reads through SQLAlchemy, as for any other database than SQLite); a connection that
fails is closed and forgotten, and the read answers None, so the caller's SQLAlchemy read
raises the error the API maps (503 when the database is down). :meth:`close` closes them all.
"""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import Engine

_SQL = "SELECT head_version FROM agents WHERE id = ?"
MISSING = -1  # no such agent


class HeadReader:
    """Per-thread DBAPI reads of ``agents.head_version`` (SQLite engines only)."""

    def __init__(self, engine: Engine, max_threads: int = 4) -> None:
        self.engine = engine
        self.enabled = engine.dialect.name == "sqlite" and engine.url.database not in \
            (None, "", ":memory:")
        self.max_threads = max_threads
        self._local = threading.local()
        self._conns: list[Any] = []
        self._lock = threading.Lock()

    def read(self, agent_id: str) -> int | None:
        """The head of ``agent_id``, :data:`MISSING` if there is no such agent, or None when
        this reader cannot answer (not SQLite, too many threads, a failed connection)."""
        if not self.enabled:
            return None
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._open()
            if conn is None:
                return None
        try:
            cur = conn.cursor()
            try:
                cur.execute(_SQL, (agent_id,))
                row = cur.fetchone()
            finally:
                cur.close()
        except Exception:  # noqa: BLE001 - the caller's SQLAlchemy read reports it
            self._drop(conn)
            return None
        return MISSING if row is None else int(row[0])

    def _open(self) -> Any | None:
        with self._lock:
            if len(self._conns) >= self.max_threads:
                return None
            try:
                conn = self.engine.raw_connection()  # a pooled connection, held by this thread
            except Exception:  # noqa: BLE001
                return None
            self._conns.append(conn)
        self._local.conn = conn
        return conn

    def _drop(self, conn: Any) -> None:
        self._local.conn = None
        with self._lock:
            if conn in self._conns:
                self._conns.remove(conn)
        try:
            conn.invalidate()  # not back into the pool: it failed
        except Exception:  # noqa: BLE001
            pass

    def close(self) -> None:
        """Give every connection back (before the engine is disposed)."""
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                pass
