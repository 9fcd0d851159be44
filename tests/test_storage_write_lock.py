"""SQLite's write lock as :mod:`storage.engine` takes it (``BEGIN IMMEDIATE`` retried at short,
even intervals instead of SQLite's busy handler, which waits up to 100 ms between tries and so
lets newcomers overtake a writer that has waited long): every writer of several threads and
processes commits, a waiting writer tries again within milliseconds, and a lock held past the
busy timeout still ends in SQLAlchemy's ``OperationalError`` ("database is locked") with the
connection's busy timeout restored."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import OperationalError

from storage import engine as engine_mod
from storage.engine import Database

WRITER = """
import sys
from sqlalchemy import text
from storage.engine import Database
db = Database(sys.argv[1])
for _ in range(int(sys.argv[2])):
    with db.write_session() as s:
        n = s.execute(text("SELECT n FROM counter")).scalar_one()
        s.execute(text("UPDATE counter SET n = :n"), {"n": n + 1})
db.dispose()
"""


def _db(tmp_path) -> tuple[Database, str]:
    url = f"sqlite:///{tmp_path / 'lock.db'}"
    db = Database(url)
    with db.write_session() as s:
        s.execute(text("CREATE TABLE counter (n INTEGER)"))
        s.execute(text("INSERT INTO counter VALUES (0)"))
    return db, url


def _hold(path: str, seconds: float, held: threading.Event) -> None:
    """Hold the write lock of ``path`` for ``seconds`` from a plain connection."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    held.set()
    time.sleep(seconds)
    conn.execute("COMMIT")
    conn.close()


def test_writers_of_threads_and_processes_all_commit(tmp_path):
    db, url = _db(tmp_path)
    try:
        procs = [subprocess.Popen([sys.executable, "-c", WRITER, url, "40"]) for _ in range(2)]

        def bump() -> None:
            for _ in range(40):
                with db.write_session() as s:  # read then write: lost updates if not locked
                    n = s.execute(text("SELECT n FROM counter")).scalar_one()
                    s.execute(text("UPDATE counter SET n = :n"), {"n": n + 1})

        threads = [threading.Thread(target=bump) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all(p.wait(timeout=120) == 0 for p in procs)
        with db.session() as s:
            assert s.execute(text("SELECT n FROM counter")).scalar_one() == 5 * 40
    finally:
        db.dispose()


def test_a_waiting_writer_tries_again_within_milliseconds(tmp_path):
    db, _ = _db(tmp_path)
    tries: list[float] = []
    event.listen(db.engine, "connect", lambda dbapi, _rec: dbapi.set_trace_callback(
        lambda sql: tries.append(time.monotonic()) if sql == "BEGIN IMMEDIATE" else None))
    db.dispose()  # connections from here on carry the trace callback
    held = threading.Event()
    holder = threading.Thread(target=_hold, args=(str(tmp_path / "lock.db"), 0.5, held))
    holder.start()
    held.wait()
    try:
        t0 = time.monotonic()
        with db.write_session() as s:
            s.execute(text("UPDATE counter SET n = n + 1"))
        waited = time.monotonic() - t0
    finally:
        holder.join()
        db.dispose()
    # SQLite's busy handler: one BEGIN, retried inside SQLite (every 100 ms after 0.3 s)
    assert waited >= 0.3 and len(tries) >= 10, (waited, len(tries))


def test_a_lock_held_past_the_busy_timeout_is_an_operational_error(tmp_path, monkeypatch):
    monkeypatch.setattr(engine_mod, "SQLITE_BUSY_TIMEOUT_MS", 200)
    db, _ = _db(tmp_path)
    held = threading.Event()
    holder = threading.Thread(target=_hold, args=(str(tmp_path / "lock.db"), 1.5, held))
    holder.start()
    held.wait()
    try:
        with pytest.raises(OperationalError, match="locked"):
            with db.write_session() as s:
                s.execute(text("UPDATE counter SET n = n + 1"))
        holder.join()
        with db.write_session() as s:  # the lock is free again: the same pool works
            s.execute(text("UPDATE counter SET n = n + 1"))
            assert s.execute(text("PRAGMA busy_timeout")).scalar_one() == 200
    finally:
        holder.join()
        db.dispose()
