"""Helpers for the reliability tests: ``deltamem serve`` as a real subprocess (its own local Ray),
killed with SIGKILL together with every process it started; a throwaway PostgreSQL that can be
crashed and restarted; and the store-level checks every crash test ends with.

The service runs in a new session (``start_new_session=True``), so the serve process, Ray's GCS,
raylet, dashboard and every worker it forks share one session id; :meth:`ServeProcess.kill_all`
SIGKILLs all of them, plus anything whose command line names the Ray session directory of that
serve process (Ray names it ``session_<date>_<pid of the driver>``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil

from storage.engine import Database
from storage.repository import unit_of_work

ADMIN_KEY = "reliability-admin"
RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled",
           "RAY_USAGE_STATS_ENABLED": "0", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def free_port() -> int:
    from workers.runtime import free_port as _free

    return _free()


class ServeProcess:
    """``deltamem serve`` in a subprocess of its own session, on ``database_url``."""

    def __init__(self, database_url: str, log_path: Path, **settings: Any) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, **RAY_ENV, "DELTAMEM_DATABASE_URL": database_url,
               "DELTAMEM_PORT": str(self.port), "DELTAMEM_HOST": "127.0.0.1",
               "DELTAMEM_ADMIN_KEY": ADMIN_KEY,
               "DELTAMEM_RAY_NAMESPACE": f"rel-{uuid.uuid4().hex[:8]}"}
        env.pop("RAY_ADDRESS", None)
        env.update({f"DELTAMEM_{k.upper()}": str(v) for k, v in settings.items()})
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 (closed in kill_all/stop)
        exe = Path(sys.executable).with_name("deltamem")
        self.proc = subprocess.Popen([str(exe), "serve"], env=env, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.sid = self.proc.pid

    def wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"deltamem serve exited ({self.proc.returncode}):\n"
                                     + self.log_tail())
            try:
                if httpx.get(f"{self.url}/readyz", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"deltamem serve not ready after {timeout}s:\n{self.log_tail()}")

    def log_tail(self, n: int = 4000) -> str:
        return self.log_path.read_bytes()[-n:].decode(errors="replace")

    def processes(self) -> list[psutil.Process]:
        """Every live process of this service: its session, its tree, its Ray session."""
        mark = f"_{self.proc.pid}"
        found: dict[int, psutil.Process] = {}
        for p in psutil.process_iter(["pid", "cmdline"]):
            try:
                if p.pid == os.getpid():
                    continue
                in_session = os.getsid(p.pid) == self.sid
                cmd = " ".join(p.info["cmdline"] or [])
                in_ray_session = "session_" in cmd and any(
                    part.startswith("session_") and part.endswith(mark)
                    for part in cmd.replace("=", "/").split("/"))
                if in_session or in_ray_session:
                    found[p.pid] = p
            except (psutil.Error, ProcessLookupError, PermissionError):
                continue
        try:
            for c in psutil.Process(self.proc.pid).children(recursive=True):
                found.setdefault(c.pid, c)
        except psutil.Error:
            pass
        return [p for p in found.values() if _alive(p)]

    def kill_all(self, timeout: float = 20.0) -> int:
        """SIGKILL every process of the service until none is left; returns how many died."""
        killed: set[int] = set()
        deadline = time.monotonic() + timeout
        while True:
            procs = self.processes()
            if self.proc.poll() is None:
                procs.append(psutil.Process(self.proc.pid))
            if not procs:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"processes survived SIGKILL: {[p.pid for p in procs]}")
            for p in procs:
                try:
                    p.kill()
                    killed.add(p.pid)
                except psutil.Error:
                    pass
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            time.sleep(0.1)
        self.proc.wait(timeout=10)
        self._log.close()
        return len(killed)

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM (a clean stop), then SIGKILL whatever is left."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill_all()


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


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
            applied = [e.client_id for e in repo.applied_events(agent_id)]
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
