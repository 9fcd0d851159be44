"""A deployment as a user runs it: ``deltamem serve`` in a subprocess, with its own local Ray.

The service runs in a new session (``start_new_session=True``), so the serve process, Ray's GCS,
raylet, dashboard and every worker it forks share one session id. :meth:`ServeProcess.processes`
finds all of them (plus anything whose command line names the Ray session directory of that
serve process: Ray names it ``session_<date>_<pid of the driver>``), for the load generator's
memory figures and for :meth:`ServeProcess.kill_all` (SIGKILL to every one, until none is left).
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
import psutil

ADMIN_KEY = "reliability-admin"
RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled",
           "RAY_USAGE_STATS_ENABLED": "0", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def free_port() -> int:
    from workers.runtime import free_port as _free

    return _free()


class ServeProcess:
    """``deltamem serve`` in a subprocess of its own session, on ``database_url``."""

    def __init__(self, database_url: str, log_path: Path, admin_key: str = ADMIN_KEY,
                 **settings: Any) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, **RAY_ENV, "DELTAMEM_DATABASE_URL": database_url,
               "DELTAMEM_PORT": str(self.port), "DELTAMEM_HOST": "127.0.0.1",
               "DELTAMEM_ADMIN_KEY": admin_key,
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
                raise RuntimeError(f"deltamem serve exited ({self.proc.returncode}):\n"
                                   + self.log_tail())
            try:
                if httpx.get(f"{self.url}/readyz", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"deltamem serve not ready after {timeout}s:\n{self.log_tail()}")

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
                raise RuntimeError(f"processes survived SIGKILL: {[p.pid for p in procs]}")
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



def rss_by_process(procs: list[psutil.Process]) -> dict[int, tuple[str, int]]:
    """``pid -> (short name, resident bytes)`` of the live processes among ``procs``."""
    out: dict[int, tuple[str, int]] = {}
    for p in procs:
        try:
            cmd = p.cmdline()
            name = p.name()
            if cmd and cmd[0].startswith("ray::"):
                name = cmd[0].split(".")[0]  # ray::IngestActor.ingest -> ray::IngestActor
            elif name.startswith("python"):
                script = next((Path(c).name for c in cmd[1:] if c.endswith(".py")
                               or c.endswith("/deltamem")), None)
                name = script or name
            out[p.pid] = (name[:24], p.memory_info().rss)
        except psutil.Error:
            continue
    return out
