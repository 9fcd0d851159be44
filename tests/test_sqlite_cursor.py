"""Statements on a session's SQLite cursor (storage/repository/sqlite_cursor.py) raise what the
same statements raise through SQLAlchemy, so the repository's error translation holds."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError

from storage.engine import Database
from storage.errors import StoreBusy
from storage.repository import unit_of_work
from storage.repository.sqlite_cursor import SqliteCursor


@pytest.fixture()
def sqlite_db(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'c.db'}")
    with db.engine.begin() as c:
        c.execute(text("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)"))
    yield db
    db.dispose()


def test_errors_are_sqlalchemys_and_the_transaction_is_the_sessions(sqlite_db):
    for sql, params, kind in [("INSERT INTO nowhere VALUES (?)", (1,), OperationalError),
                              ("INSERT INTO t VALUES (?, ?)", (1, "b"), IntegrityError)]:
        with pytest.raises(kind) as got, unit_of_work(sqlite_db) as repo:
            cur = SqliteCursor(repo.session)
            cur.execute("INSERT INTO t VALUES (?, ?)", (1, "a"))
            cur.execute(sql, params)
        assert isinstance(got.value.orig, sqlite3.Error)
        with unit_of_work(sqlite_db, write=False) as repo:  # rolled back with the session
            assert repo.session.execute(text("SELECT count(*) FROM t")).scalar() == 0
    with unit_of_work(sqlite_db) as repo:
        cur = SqliteCursor(repo.session)
        assert cur.executemany("INSERT INTO t VALUES (?, ?)", [(1, "a"), (2, "b")]) == 2
        assert cur.executemany("INSERT OR IGNORE INTO t VALUES (?, ?)", [(2, "c"), (3, "d")]) == 1
    with unit_of_work(sqlite_db, write=False) as repo:  # committed with the session
        assert repo.session.execute(text("SELECT v FROM t ORDER BY k")).scalars().all() == \
            ["a", "b", "d"]


def test_a_lock_held_elsewhere_is_translated_as_through_sqlalchemy(sqlite_db):
    other = sqlite3.connect(sqlite_db.engine.url.database, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreBusy), unit_of_work(sqlite_db, write=False) as repo:
            raw = repo.session.connection().connection.dbapi_connection
            raw.execute("PRAGMA busy_timeout=50")
            with repo.core.translate("ag_x"):
                SqliteCursor(repo.session).execute("INSERT INTO t VALUES (?, ?)", (9, "z"))
    finally:
        other.execute("ROLLBACK")
        other.close()
