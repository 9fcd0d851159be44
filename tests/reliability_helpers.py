"""Helpers for the reliability tests: ``deltamem serve`` as a real subprocess (its own local Ray),
killed with SIGKILL together with every process it started; a throwaway PostgreSQL that can be
crashed and restarted; and the store-level checks every crash test ends with.

:class:`benchmarks.deployment.ServeProcess` runs the service in a session of its own and kills
every process of it (see there).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks.deployment import ADMIN_KEY, ServeProcess, free_port
from storage.engine import Database
from storage.repository import unit_of_work

__all__ = ["ADMIN_KEY", "ServeProcess", "PgServer", "tenant_key", "make_batches", "check_store"]


def tenant_key(url: str) -> str:
    r = httpx.post(f"{url}/v1/tenants", json={"name": "rel"},
                   headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=60)
    assert r.status_code == 201, r.text
    return r.json()["api_key"]


def make_batches(agent_ids: list[str], n_batches: int, size: int, dim: int,
                 seed: int = 0) -> list[tuple[str, list[dict[str, Any]]]]:
    """Interleaved (agent, batch) pairs of learnable vector events with unique ids."""
    from tests.workers_helpers import vector_events

    rng = np.random.default_rng(seed)
    streams = {a: vector_events(rng, n_batches * size, dim, 5, f"{a}-") for a in agent_ids}
    return [(a, streams[a][b * size:(b + 1) * size]) for b in range(n_batches) for a in agent_ids]


def check_store(database_url: str, agent_id: str, sent_ids: list[str]) -> dict[str, Any]:
    """Every event applied exactly once in the order sent; versions contiguous; each committed
    version rebuilds with its checksum (``load_state`` verifies it). Returns the head state."""
    db = Database(database_url)
    try:
        with unit_of_work(db, write=False) as repo:
            agent = repo.get_agent(agent_id)
            applied = [e.client_id for e, _ in repo.applied_events(agent_id)]
            assert applied == sent_ids, (
                f"{agent_id}: applied order differs from the order sent "
                f"({len(applied)} applied, {len(sent_ids)} sent, "
                f"{len(set(applied))} distinct)")
            assert agent.events_received == agent.events_applied == len(sent_ids)
            versions = sorted(repo.list_versions(agent_id), key=lambda v: v.version)
            assert [v.version for v in versions] == list(range(agent.head_version + 1))
            assert sum(v.event_count or 0 for v in versions if v.kind == "delta") \
                == agent.events_applied
            for v in versions:
                repo.load_state(agent_id, v.version)  # raises ChecksumMismatch on any drift
            layers, labels = repo.load_state(agent_id, agent.head_version)
            return {"layers": layers, "labels": labels, "versions": len(versions),
                    "head": agent.head_version}
    finally:
        db.dispose()


class PgServer:
    """A throwaway PostgreSQL 15 on loopback that a test may crash and restart.

    Unlike ``scripts/pg_test_server.sh`` (which trades durability for speed), commits are
    synchronous: an immediate restart must keep every committed transaction. ``fsync`` stays
    off (the machine does not crash here, only the server processes).
    """

    PGBIN = Path(os.environ.get("PGBIN", "/usr/lib/postgresql/15/bin"))

    def __init__(self) -> None:
        import shutil
        import tempfile

        if not (self.PGBIN / "initdb").exists() or shutil.which("runuser") is None:
            import pytest

            pytest.skip(f"PostgreSQL binaries (or runuser) not found in {self.PGBIN}")
        self.dir = Path(tempfile.mkdtemp(prefix="deltamem-pgrel."))  # readable by postgres
        self.port = free_port()
        self._as_pg = [] if _user() == "postgres" else ["runuser", "-u", "postgres", "--"]
        if self._as_pg:
            subprocess.run(["chown", "postgres", str(self.dir)], check=True)
        subprocess.run([*self._as_pg, str(self.PGBIN / "initdb"), "-D", str(self.dir / "data"),
                        "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale"],
                       check=True, capture_output=True)
        self.opts = (f"-h 127.0.0.1 -p {self.port} -k {self.dir} -c fsync=off "
                     "-c synchronous_commit=on -c max_connections=100")
        self._ctl("start")
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str) -> None:
        subprocess.run([*self._as_pg, str(self.PGBIN / "pg_ctl"), "-D", str(self.dir / "data"),
                        "-l", str(self.dir / "server.log"), "-w", "-t", "60", *args,
                        "-o", self.opts], check=True, capture_output=True)

    def restart_immediate(self) -> None:
        """``pg_ctl restart -m immediate``: every connection is cut, no clean shutdown."""
        self._ctl("restart", "-m", "immediate")

    def stop(self) -> None:
        subprocess.run([*self._as_pg, str(self.PGBIN / "pg_ctl"), "-D", str(self.dir / "data"),
                        "-m", "immediate", "stop"], check=False, capture_output=True)
        import shutil

        shutil.rmtree(self.dir, ignore_errors=True)


def _user() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name
