"""More HTTP server processes beside ``deltamem serve``'s own (setting ``http_workers``).

One Python interpreter answers at most one request at a time: on the request path the HTTP
process spends ~0.6 ms of CPU on a one-input predict and ~1.5 ms on a one-event ingest, so one
process caps what several clients get however many cores are free
(``benchmarks.request_path``). With ``http_workers = N`` the serve process spawns N - 1 more
processes (``python -m workers.http_workers``, the settings on their stdin) that accept on the
same listening socket (passed to them as a file descriptor; the kernel hands each new
connection to whichever process is waiting in ``accept``). Each joins the deployment's Ray
cluster as a driver, attaches to its named actors (:meth:`workers.service.Runtime.attach_actors`,
as a Ray Serve replica does: it starts none and stops none) and runs the same app with its own
bounded caches (agent configs, keys, head states: each process's are invalidated as the first
one's are). The scheduler and the actors stay with the serve process.

A worker exits when told (SIGTERM, from :meth:`HttpWorkers.stop`: it stops serving, then leaves
Ray) or at once when the serve process is gone (the kernel kills it: ``PR_SET_PDEATHSIG``), so
no orphan keeps the port. That signal follows the thread that started the worker: start the
service from a thread that lives as long as it (``deltamem serve`` uses its main thread).
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

from workers.settings import Settings


def _settings_json(s: Settings) -> str:
    """The settings with their secrets (the worker checks the admin key too): written to the
    worker's stdin, never to its command line or environment."""
    data: dict[str, Any] = s.model_dump(mode="json")
    for k in ("admin_key", "api_key"):
        v = getattr(s, k)
        data[k] = None if v is None else v.get_secret_value()
    return json.dumps(data)


def _worker_main(fd: int, address: str, parent: int) -> None:
    """A worker process: join Ray, attach to the actors, serve the socket ``fd`` until told to
    stop; "ready" on stdout once it answers."""
    import ray

    from workers.gc_tuning import settle_gc
    from workers.http.app import build_app
    from workers.http_server import HttpServer
    from workers.service import Runtime

    _die_with(parent)
    s = Settings.model_validate(json.loads(sys.stdin.readline()))
    sock = socket.socket(fileno=fd)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    ray.init(address=address, namespace=s.ray_namespace, log_to_driver=False,
             configure_logging=False)
    for sig in (signal.SIGTERM, signal.SIGINT):  # ray.init installed its own handlers
        signal.signal(sig, lambda *_: stop.set())
    rt = Runtime(s)
    rt.attach_actors()
    server = HttpServer(build_app(rt, s), sock)
    server.start()
    settle_gc()  # workers/gc_tuning.py, as the serve process does
    print("ready", flush=True)
    stop.wait()
    server.stop()
    rt.shutdown()
    ray.shutdown()


def _die_with(parent: int) -> None:
    """End this process when the serve process ``parent`` is gone (killed: no SIGTERM came),
    whatever the main thread is doing: the kernel sends SIGKILL (Linux ``PR_SET_PDEATHSIG``;
    ``ray.init`` can block in C holding the GIL, where no Python thread would run), elsewhere
    a thread polls the parent."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(1, signal.SIGKILL, 0, 0, 0) == 0:  # PR_SET_PDEATHSIG
            if os.getppid() != parent:  # it died before the prctl
                os._exit(0)
            return
    except (OSError, AttributeError):
        pass

    def poll() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=poll, daemon=True).start()


class HttpWorkers:
    """``n`` worker processes serving ``sock`` beside this one (started at once)."""

    def __init__(self, s: Settings, sock: socket.socket, n: int, timeout: float = 120.0) -> None:
        import ray

        address = ray.get_runtime_context().gcs_address
        fd = sock.fileno()
        self._procs: list[subprocess.Popen[bytes]] = []
        try:
            for _ in range(n):
                p = subprocess.Popen([sys.executable, "-m", "workers.http_workers", str(fd), address,
                                      str(os.getpid())],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     pass_fds=(fd,))
                self._procs.append(p)
                assert p.stdin is not None
                p.stdin.write(_settings_json(s).encode() + b"\n")
                p.stdin.close()
            deadline = time.monotonic() + timeout
            for p in self._procs:
                assert p.stdout is not None
                line = b""
                while not line:
                    if p.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"an HTTP worker did not start (exit code {p.poll()})")
                    if select.select([p.stdout], [], [], 0.1)[0]:
                        line = p.stdout.readline()
                        if not line:  # closed: it exited
                            p.wait(5)
                p.stdout.close()
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 15.0) -> None:
        for p in self._procs:
            if p.poll() is None:
                p.terminate()  # SIGTERM: the worker stops its server and leaves Ray
        deadline = time.monotonic() + timeout
        for p in self._procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


if __name__ == "__main__":
    _worker_main(int(sys.argv[1]), sys.argv[2], int(sys.argv[3]))
