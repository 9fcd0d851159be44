"""Scratch databases and a fresh agent for the storage benchmarks.

``scratch_databases`` yields a migrated SQLite file and, when a PostgreSQL URL is given, a
scratch database created in it (dropped afterwards). Shared by :mod:`benchmarks.storage`,
:mod:`benchmarks.storage_append` and :mod:`benchmarks.bench_service`.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator

import numpy as np
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from agent.memory.delta import state_checksum
from storage.engine import Database, normalize_url
from storage.migrate import upgrade
from storage.repository import unit_of_work

D = 384
LABELS = 150


def new_agent(db: Database, d: int = D, labels: int = LABELS):
    """A tenant and an agent with a zero ``S`` of ``labels`` x ``d``: (agent id, layers, names)."""
    with unit_of_work(db) as repo:
        tenant, _ = repo.create_tenant("bench")
        layers = {"S": np.zeros((labels, d))}
        names = [f"l{i}" for i in range(labels)]
        agent = repo.create_agent(tenant.id, "bench", {}, layers, names,
                                  state_checksum(layers, names))
        return agent.id, layers, names


def scratch_databases(pg: str | None) -> Iterator[tuple[str, str]]:
    """(backend name, URL) of a migrated SQLite file, then of a scratch PostgreSQL database."""
    tmp = tempfile.mkdtemp()
    url = f"sqlite:///{tmp}/bench.db"
    upgrade(url)
    yield "sqlite", url
    if pg:
        admin = normalize_url(pg)
        name = "dmbench_" + uuid.uuid4().hex[:8]
        eng = create_engine(admin, isolation_level="AUTOCOMMIT")
        with eng.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(admin).set(database=name).render_as_string(hide_password=False)
        upgrade(url)
        try:
            yield "postgresql", url
        finally:
            with eng.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            eng.dispose()
