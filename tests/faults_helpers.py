"""Helpers for the fault-injection tests: a real deployment (Ray actors, the store migrated by
Alembic, optionally uvicorn and the APScheduler scheduler) on SQLite or PostgreSQL.

PostgreSQL runs come from ``DELTAMEM_TEST_POSTGRES_URL`` (a fresh database per deployment,
dropped afterwards); without it those parameters skip, like every other postgres test.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.db_fixtures import drop_pg_database, new_pg_database
from workers.runtime import RunningService, free_port, start
from workers.settings import Settings

BACKENDS = [pytest.param("sqlite", id="sqlite"),
            pytest.param("postgres", id="postgres", marks=pytest.mark.postgres)]


@contextmanager
def database(backend: str, tmp: Path) -> Iterator[str]:
    """The URL of a fresh, empty database on ``backend`` (the service migrates it)."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp / f'faults-{uuid.uuid4().hex[:6]}.db'}"
        return
    url = new_pg_database()
    try:
        yield url
    finally:
        drop_pg_database(url)


@contextmanager
def deployment(url: str, http: bool = False, **overrides: Any) -> Iterator[RunningService]:
    """A running service on ``url``; the scheduler is off unless ``scheduler_enabled=True``."""
    kw: dict[str, Any] = {"scheduler_enabled": False, "batch_max_ms": 5.0, "admin_key": "adm",
                          "port": free_port(), **overrides}
    s = Settings(database_url=url, ray_namespace=f"f-{uuid.uuid4().hex[:8]}", **kw)
    running = start(s, http=http)
    try:
        yield running
    finally:
        running.stop()
