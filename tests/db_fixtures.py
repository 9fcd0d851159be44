"""Database fixtures for the storage tests: every test runs on SQLite and on PostgreSQL.

PostgreSQL comes from ``DELTAMEM_TEST_POSTGRES_URL`` (start one with
``eval "$(scripts/pg_test_server.sh)"``); tests on it are marked ``postgres`` and skip
cleanly when the variable is unset. The schema is always built by ``alembic upgrade head``
(once per session into a template, then copied per test: a file copy on SQLite,
``CREATE DATABASE ... TEMPLATE`` on PostgreSQL).

Use from a test module or conftest.py::

    from tests.db_fixtures import *  # noqa: F401,F403
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from storage.engine import Database, normalize_url
from storage.migrate import upgrade

__all__ = ["db_url", "empty_db_url", "db", "sqlite_template_path", "pg_template_name",
           "new_pg_database", "drop_pg_database", "pg_admin_url", "PG_ENV"]

PG_ENV = "DELTAMEM_TEST_POSTGRES_URL"
BACKENDS = [pytest.param("sqlite", id="sqlite"),
            pytest.param("postgres", id="postgres", marks=pytest.mark.postgres)]


def pg_admin_url() -> str:
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(f"{PG_ENV} not set (start one with scripts/pg_test_server.sh)")
    return normalize_url(url)


def _pg_exec(admin_url: str, sql: str) -> None:
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as c:
            c.execute(text(sql))
    finally:
        engine.dispose()


def new_pg_database(template: str | None = None) -> str:
    """A fresh, uniquely named PostgreSQL database; returns its URL."""
    admin = pg_admin_url()
    name = "dmtest_" + uuid.uuid4().hex[:12]
    _pg_exec(admin, f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    return make_url(admin).set(database=name).render_as_string(hide_password=False)


def drop_pg_database(url: str) -> None:
    name = make_url(url).database
    _pg_exec(pg_admin_url(), f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def sqlite_template_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("dbtemplate") / "template.db"
    upgrade(f"sqlite:///{path}")
    return str(path)


@pytest.fixture(scope="session")
def pg_template_name() -> Iterator[str]:
    url = new_pg_database()
    upgrade(url)
    name = make_url(url).database
    yield name
    drop_pg_database(url)


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """The URL of a fresh database at ``alembic upgrade head``, on each backend."""
    if request.param == "sqlite":
        path = tmp_path / "store.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template_path"), path)
        yield f"sqlite:///{path}"
    else:
        url = new_pg_database(request.getfixturevalue("pg_template_name"))
        yield url
        drop_pg_database(url)


@pytest.fixture(params=BACKENDS)
def empty_db_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """The URL of a fresh, empty (unmigrated) database, on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
    else:
        url = new_pg_database()
        yield url
        drop_pg_database(url)


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    """A :class:`Database` on a fresh migrated database (both backends)."""
    database = Database(db_url)
    yield database
    database.dispose()



def commit_learning(db: Database, config, X, y, batch: int, delta_dtype: str | None = None):
    """A new agent of ``config`` in ``db`` learning ``(X, y)`` in micro-batches of ``batch``,
    each committed as a version through the repository; returns ``(agent id, checksum of
    every version)`` as the learner computed them."""
    from agent.model import MemoryAgent
    from storage.repository import unit_of_work

    agent = MemoryAgent(config)
    sums = [agent.checksum()]
    with unit_of_work(db) as repo:
        tenant, _ = repo.create_tenant("t")
        row = repo.create_agent(tenant.id, "a", config.to_dict(), *agent.state, sums[0])
        for v, s in enumerate(range(0, len(y), batch), start=1):
            delta = agent.learn_many(X[s:s + batch], y[s:s + batch], delta_dtype=delta_dtype)
            sums.append(agent.checksum())
            repo.commit_version(row.id, v - 1, "delta", delta=delta, checksum=sums[-1])
    return row.id, sums


@contextmanager
def downgraded(url: str, commit, revision: str) -> Iterator[tuple[Database, str, list[str]]]:
    """Migrate ``url`` to head, ``commit(db)`` an agent's versions (``(agent id, checksums)``),
    downgrade to ``revision`` and yield ``(db, agent id, checksums)`` for checks there; then
    upgrade to head again and assert every version still rebuilds to its checksum."""
    from agent.memory.delta import state_checksum
    from storage.migrate import downgrade
    from storage.repository import unit_of_work

    upgrade(url)
    db = Database(url)
    try:
        agent_id, sums = commit(db)
        db.dispose()
        downgrade(url, revision)
        db = Database(url)
        yield db, agent_id, sums
        db.dispose()
        upgrade(url)
        db = Database(url)
        with unit_of_work(db, write=False) as repo:
            for v, want in enumerate(sums):
                assert state_checksum(*repo.load_state(agent_id, v)) == want
    finally:
        db.dispose()
