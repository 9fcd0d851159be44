"""Migrations: up/down/up round trips on SQLite and PostgreSQL, the migrated schema matches
the models, and the engine's SQLite pragmas are in force."""

from __future__ import annotations

import numpy as np
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from agent.memory.delta import state_checksum
from storage.engine import Database, make_engine
from storage.migrate import current, downgrade, head, upgrade
from storage.models import Base
from storage.repository import unit_of_work
from tests.db_fixtures import *  # noqa: F401,F403

TABLES = set(Base.metadata.tables)


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_up_down_up_round_trip(empty_db_url):
    assert current(empty_db_url) is None
    upgrade(empty_db_url)
    assert current(empty_db_url) == head()
    assert _tables(empty_db_url) == TABLES
    downgrade(empty_db_url, "base")
    assert current(empty_db_url) is None
    assert _tables(empty_db_url) == set()
    upgrade(empty_db_url)
    assert _tables(empty_db_url) == TABLES
    # the re-created schema works
    db = Database(empty_db_url)
    try:
        with unit_of_work(db) as repo:
            tenant, _ = repo.create_tenant("t")
            layers = {"S": np.zeros((0, 3))}
            repo.create_agent(tenant.id, "a", {}, layers, [], state_checksum(layers, []))
    finally:
        db.dispose()


def test_migrated_schema_matches_the_models(db_url):
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={
                "compare_type": True}), Base.metadata)
    finally:
        engine.dispose()
    assert diff == []


def test_sqlite_pragmas(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'p.db'}")
    try:
        with db.session() as s:
            assert s.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert s.execute(text("PRAGMA foreign_keys")).scalar() == 1
            assert s.execute(text("PRAGMA busy_timeout")).scalar() == 30000
            assert s.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
            assert s.execute(text("PRAGMA page_size")).scalar() == 32768  # a new file
    finally:
        db.dispose()


def test_foreign_keys_are_enforced(db):
    import pytest
    from sqlalchemy.exc import IntegrityError

    from storage.models import Version

    with pytest.raises(IntegrityError):
        with db.session() as s:
            s.add(Version(agent_id="ag_missing", version=0, parent=None, kind="create",
                          checksum="0" * 64))
            s.flush()
