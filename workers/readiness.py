"""The database write probe behind ``/readyz``.

A database that answers reads but refuses writes (PostgreSQL with
``default_transaction_read_only``, a replica after a failover, a read-only SQLite file or
``PRAGMA query_only``) must make the service *not ready*, since ingest then fails. The probe
runs one write statement that matches no row (``UPDATE scheduler_lease ... WHERE 1 = 0``)
in a transaction that is rolled back: both databases refuse it exactly when they refuse
writes, and it changes nothing. Its result is cached for ``ttl_s`` (at most 1 s) so that a
load balancer polling ``/readyz`` costs one probe a second at most.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from sqlalchemy import text

PROBE_SQL = "UPDATE scheduler_lease SET holder = holder WHERE 1 = 0"


def probe_writes(engine: Any) -> str | None:
    """``None`` when ``engine``'s database accepts a write, else the reason (one line)."""
    try:
        with engine.connect() as conn:
            tx = conn.begin()
            try:
                conn.execute(text(PROBE_SQL))
            finally:
                tx.rollback()
        return None
    except Exception as e:  # noqa: BLE001 - readiness reports, never raises
        orig = getattr(e, "orig", None) or e
        first = (str(orig).strip().splitlines() or [""])[0]
        return f"{type(orig).__name__}: {first}"[:300]


class WriteProbe:
    """:func:`probe_writes` with its answer cached for ``ttl_s`` seconds (one probe at a time)."""

    def __init__(self, engine: Any, ttl_s: float = 1.0) -> None:
        self.engine = engine
        self.ttl_s = min(1.0, ttl_s)
        self._lock = threading.Lock()
        self._at = -1e18
        self._answer: str | None = None

    def __call__(self) -> str | None:
        with self._lock:
            now = time.monotonic()
            if now - self._at >= self.ttl_s:
                self._answer = probe_writes(self.engine)
                self._at = time.monotonic()
            return self._answer
