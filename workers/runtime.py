"""Start and stop a deployment: Ray, the actors, the scheduler and the HTTP server.

``start(settings)`` brings everything up and returns a :class:`RunningService`; its
``service`` implements :class:`workers.contract.ServiceAPI` over the actors and the store.
``serve_forever(settings)`` is ``deltamem serve``: start, block until SIGTERM/SIGINT, stop.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from dataclasses import dataclass
from typing import Any

from workers.gc_tuning import settle_gc
from workers.http_server import HttpServer
from workers.http_workers import HttpWorkers
from workers.service import Runtime
from workers.settings import Settings

log = logging.getLogger("deltamem.runtime")


def _init_ray(s: Settings) -> bool:
    """Start (or join) Ray on loopback with a bounded object store. True if we started it."""
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if s.ray_address:
        ray.init(address=s.ray_address, namespace=s.ray_namespace, log_to_driver=False)
    else:
        # address="local": always start our own; with None, Ray joins any other local
        # cluster it finds (another deployment's GCS on this machine, ray_current_cluster)
        ray.init(address="local", **local_ray_options(s))
    return True


def local_ray_options(s: Settings) -> dict[str, Any]:
    """``ray.init`` options of a cluster the service starts itself (the tests' one too)."""
    return {"num_cpus": s.ray_num_cpus, "object_store_memory": s.ray_object_store_mb * 2**20,
            "include_dashboard": False, "namespace": s.ray_namespace,
            "_node_ip_address": "127.0.0.1", "log_to_driver": False,
            "configure_logging": False,
            "_system_config": {"max_direct_call_object_size": s.ray_inline_kb * 1024}}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


@dataclass
class RunningService:
    settings: Settings
    service: Runtime
    url: str
    _http: HttpServer | None
    _scheduler: Any
    _owns_ray: bool
    http_workers: HttpWorkers | None = None  # the other HTTP processes (settings.http_workers)

    def stop(self) -> None:
        if self.http_workers is not None:
            self.http_workers.stop()
        if self._http is not None:
            self._http.stop()
        if self.settings.http_backend == "serve":
            from workers.http.serve import undeploy

            undeploy()
        if self._scheduler is not None:
            self._scheduler.shutdown()
        self.service.shutdown()
        if self._owns_ray:
            import ray

            ray.shutdown()

    def __enter__(self) -> RunningService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start(settings: Settings | None = None, http: bool = True) -> RunningService:
    """Bring a deployment up: database schema, Ray + actors, scheduler, HTTP."""
    from storage.migrate import upgrade

    s = settings or Settings()
    upgrade(s.database_url)
    sock = HttpServer.bind(s.host, s.port) if http and s.http_backend != "serve" else None
    try:
        return _start_on(s, http, sock)
    except BaseException:
        if sock is not None:
            sock.close()
        raise


def _start_on(s: Settings, http: bool, sock: socket.socket | None) -> RunningService:
    owns_ray = _init_ray(s)
    service = Runtime(s)
    service.start_actors()
    scheduler = None
    if s.scheduler_enabled:
        from workers.actors.scheduler import start_scheduler

        scheduler = start_scheduler(s, service)
    server = None
    url = f"http://{s.host}:{s.port}"
    if http and s.http_backend == "serve":
        from workers.http.serve import deploy

        deploy(s)
    elif sock is not None:
        from workers.http.app import build_app

        server = HttpServer(build_app(service, s), sock)
        try:
            server.start()
        except Exception:
            if scheduler is not None:
                scheduler.shutdown()
            service.shutdown()
            raise
        url = f"http://{s.host}:{sock.getsockname()[1]}"
    running = RunningService(s, service, url, server, scheduler, owns_ray)
    if server is not None and s.http_workers > 1:
        try:
            running.http_workers = HttpWorkers(s, server.sock, s.http_workers - 1)
        except BaseException:
            running.stop()
            raise
    return running


def serve_forever(settings: Settings | None = None) -> int:
    """``deltamem serve``: run in the foreground until SIGTERM or SIGINT, then stop it all."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    s = settings or Settings()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    running = start(s)
    for sig in (signal.SIGTERM, signal.SIGINT):  # again: ray.init installed its own handler
        signal.signal(sig, lambda *_: stop.set())
    settle_gc()  # the HTTP process lives as long as the actors (workers/gc_tuning.py)
    log.info("deltamem serving on %s (database %s)", running.url, _redact(s.database_url))
    print(f"deltamem serving on {running.url}", flush=True)
    try:
        stop.wait()
    finally:
        log.info("stopping")
        running.stop()
    return 0


def _redact(url: str) -> str:
    """A database URL without its password, for logs."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"
    return url
