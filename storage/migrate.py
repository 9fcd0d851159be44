"""Run the Alembic migrations of the installed package (``deltamem db upgrade/downgrade``).

No ``alembic.ini`` is needed: the configuration is built here, pointing at the
``migrations`` package. ``migrations/alembic.ini`` exists too, for the ``alembic`` CLI.

Examples
--------
>>> upgrade("sqlite://")  # doctest: +SKIP
"""

from __future__ import annotations

import os

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

import migrations
from storage.engine import make_engine, normalize_url

__all__ = ["alembic_config", "upgrade", "downgrade", "current", "head"]


def alembic_config(url: str) -> Config:
    """An Alembic config for ``url`` (passed as an attribute, so ``%`` needs no escaping)."""
    cfg = Config()
    cfg.set_main_option("script_location", os.path.dirname(os.path.abspath(migrations.__file__)))
    cfg.attributes["url"] = normalize_url(url)
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at ``url`` up to ``revision``."""
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    """Migrate the database at ``url`` down to ``revision`` (``base`` drops everything)."""
    command.downgrade(alembic_config(url), revision)


def head() -> str:
    """The newest revision id."""
    rev = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert rev is not None
    return rev


def current(url: str) -> str | None:
    """The revision the database at ``url`` is at (None: not migrated)."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()
