"""Engines and sessions for SQLite (embedded default) and PostgreSQL.

SQLite connections get WAL journaling, enforced foreign keys, a busy timeout,
``synchronous=FULL`` (an acknowledged event survives a power cut, not only a killed
process), 32 KiB pages in a new database file (:data:`SQLITE_PAGE_SIZE`) and
``secure_delete=ON`` (deleted content is overwritten with zeros; with
:meth:`Database.checkpoint` after a forget, erased bytes leave the files). pysqlite's own
transaction handling is switched off and SQLAlchemy emits
``BEGIN`` itself, so SAVEPOINTs work; a session made by :meth:`Database.write_session`
starts with ``BEGIN IMMEDIATE`` on SQLite (takes the write lock up front, so a transaction
that reads first and writes later never fails on a stale snapshot).

Examples
--------
>>> db = Database("sqlite://")
>>> with db.session() as s:
...     s.execute(text("select 1")).scalar_one()
1
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from storage import jsoncodec

__all__ = ["Database", "make_engine", "normalize_url", "text"]

SQLITE_BUSY_TIMEOUT_MS = 30_000
# An event row (a 384-d float32 input is 1,536 bytes; about 1,665 with the rest of the row)
# fits twice in a 4 KiB page with a third of it unused, nine times in 16 KiB (10 % unused),
# nineteen in 32 KiB (4 %): ``python -m benchmarks.storage_breakdown --page-size N``. Set
# before the first table is created; an existing file keeps its page size (WAL mode cannot
# change it).
SQLITE_PAGE_SIZE = 32_768
# a writer waiting for SQLite's write lock tries again after 0.5 ms, then every 2 ms at most
SQLITE_WRITE_POLL_S = (0.0005, 0.002)
# background work pauses this long between its write transactions (Database.yield_write_lock)
SQLITE_YIELD_S = 2 * SQLITE_WRITE_POLL_S[1]


def normalize_url(url: str) -> str:
    """Accept ``postgresql://`` / ``postgres://`` and use the psycopg 3 driver."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    u = make_url(url)
    if u.get_backend_name() == "postgresql" and u.get_driver_name() in ("psycopg2", "postgresql"):
        if "+" not in u.drivername:
            u = u.set(drivername="postgresql+psycopg")
    return u.render_as_string(hide_password=False)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any, memory: bool, synchronous: str) -> None:
    dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (see _sqlite_begin)
    cur = dbapi_conn.cursor()
    if not memory:
        cur.execute(f"PRAGMA page_size={SQLITE_PAGE_SIZE}")  # a no-op once the file has tables
        cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cur.execute(f"PRAGMA synchronous={synchronous}")
    cur.execute("PRAGMA secure_delete=ON")  # deleted bytes are zeroed (forget erases)
    cur.close()


def _begin_immediate(conn: Any) -> None:
    """``BEGIN IMMEDIATE``, waiting for the write lock in short, even steps.

    SQLite's own busy handler sleeps longer the longer a connection has waited (1, 2, 5, ...
    up to 100 ms between tries), so under steady contention a writer that has waited a while
    keeps losing the lock to newcomers, and waits many times the holds ahead of it (the
    soak's ingest tail, ``deltamem bench soak``). Here every waiter tries again
    within :data:`SQLITE_WRITE_POLL_S` until the busy timeout; then one last ``BEGIN`` through
    SQLAlchemy raises the usual ``OperationalError`` ("database is locked")."""
    raw = conn.connection.dbapi_connection
    raw.execute("PRAGMA busy_timeout=0")
    try:
        deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
        pause = SQLITE_WRITE_POLL_S[0]
        while time.monotonic() < deadline:
            try:
                raw.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
            time.sleep(pause)
            pause = min(SQLITE_WRITE_POLL_S[1], pause * 2)
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    finally:
        raw.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")


def _sqlite_begin(conn: Any) -> None:
    mode = conn.get_execution_options().get("sqlite_begin", "")
    if mode == "IMMEDIATE":
        _begin_immediate(conn)
        return
    conn.exec_driver_sql(f"BEGIN {mode}".strip())


def make_engine(url: str, *, sqlite_synchronous: str = "FULL", echo: bool = False,
                **kwargs: Any) -> Engine:
    """An engine for ``url`` with the pragmas/driver this store needs."""
    url = normalize_url(url)
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        memory = u.database in (None, "", ":memory:")
        if not memory:
            os.makedirs(os.path.dirname(os.path.abspath(str(u.database))) or ".", exist_ok=True)
        connect_args = kwargs.pop("connect_args", {})
        connect_args.setdefault("timeout", SQLITE_BUSY_TIMEOUT_MS / 1000)
        connect_args.setdefault("check_same_thread", False)
        engine = create_engine(url, echo=echo, connect_args=connect_args,
                               json_serializer=jsoncodec.dumps,
                               json_deserializer=jsoncodec.loads, **kwargs)
        event.listen(engine, "connect",
                     lambda c, r: _sqlite_pragmas(c, r, memory, sqlite_synchronous))
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, echo=echo, json_serializer=jsoncodec.dumps,
                         json_deserializer=jsoncodec.loads, **kwargs)


class Database:
    """An engine plus session factories. The caller owns each session's transaction.

    Parameters
    ----------
    url : str
        ``sqlite:///path.db`` or ``postgresql://user@host:port/db``.
    """

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = normalize_url(url)
        self.engine = make_engine(self.url, **engine_kwargs)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self.Session = sessionmaker(self.engine, expire_on_commit=False)
        write_engine = (self.engine.execution_options(sqlite_begin="IMMEDIATE")
                        if self.is_sqlite else self.engine)
        self.WriteSession = sessionmaker(write_engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on error."""
        with self.Session.begin() as s:
            yield s

    @contextmanager
    def write_session(self) -> Iterator[Session]:
        """Like :meth:`session`, but takes SQLite's write lock at BEGIN."""
        with self.WriteSession.begin() as s:
            yield s

    def yield_write_lock(self) -> None:
        """SQLite: pause long enough for a writer polling for the write lock (every
        :data:`SQLITE_WRITE_POLL_S` at most, :func:`_begin_immediate`) to take it. Background
        loops of write transactions (snapshots, retention) call this between two of theirs:
        a loop that begins its next transaction microseconds after a commit otherwise holds
        an ingest commit back for the whole loop. PostgreSQL (row locks): nothing."""
        if self.is_sqlite:
            time.sleep(SQLITE_YIELD_S)

    def ping(self) -> bool:
        try:
            with self.engine.connect() as c:
                c.execute(text("select 1"))
            return True
        except Exception:  # noqa: BLE001 - readiness probe
            return False

    def checkpoint(self, tries: int = 3) -> bool:
        """SQLite: copy the WAL into the database file and truncate it to zero bytes, so
        pages that held erased rows leave the WAL too (after a forget). Retries while a
        reader holds an old snapshot; True when the WAL is empty. PostgreSQL: nothing to do
        (True)."""
        if not self.is_sqlite:
            return True
        for i in range(tries):
            with self.engine.connect() as c:
                busy = c.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()[0]
            if busy == 0:  # every frame copied back and the WAL truncated
                return True
            time.sleep(min(0.2, 0.01 * (i + 1)))
        return False

    def dispose(self) -> None:
        self.engine.dispose()
