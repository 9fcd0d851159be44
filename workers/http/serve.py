"""The HTTP app on Ray Serve (``DELTAMEM_HTTP_BACKEND=serve``): a FastAPI ingress deployment.

The app is built inside the Serve replica by a builder function; its service is a
:class:`LazyService` that, in whichever process it lands, builds a :class:`Runtime` attached
to the deployment's named actors (it starts none). Ray Serve places the proxy and the ingress
replicas on the cluster and restarts them when they die; the default backend (uvicorn in the
``deltamem serve`` process) answers with less latency on one small machine
(``python -m benchmarks.http_backends``).
"""

from __future__ import annotations

import threading
from typing import Any

from workers.settings import Settings


class LazyService:
    """A :class:`workers.contract.ServiceAPI` that attaches to the running actors on first use."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._rt: Any = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"_settings": self._settings}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["_settings"])  # type: ignore[misc]

    def _runtime(self) -> Any:
        with self._lock:
            if self._rt is None:
                from workers.service import Runtime

                rt = Runtime(self._settings)
                rt.attach_actors()
                self._rt = rt
            return self._rt

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._runtime(), name)


def build_replica_app(settings: Settings) -> Any:
    """The FastAPI app, built inside the Serve replica (a FastAPI app does not pickle)."""
    from workers.http.app import build_app

    return build_app(LazyService(settings), settings)


def deploy(settings: Settings) -> Any:
    """Start Serve on ``settings.host:port`` and run the ingress; returns the app handle."""
    from ray import serve

    def builder() -> Any:  # a plain function: Serve calls it on the replica to get the app
        return build_replica_app(settings)

    serve.start(http_options={"host": settings.host, "port": settings.port})
    ingress = serve.deployment(
        name="deltamem-http", num_replicas=1, max_ongoing_requests=64,
        ray_actor_options={"num_cpus": 0},
    )(serve.ingress(builder)(type("DeltamemHTTP", (), {})))
    return serve.run(ingress.bind(), name="deltamem", route_prefix="/")


def undeploy() -> None:
    from ray import serve

    try:
        serve.shutdown()
    except Exception:  # already down with Ray
        pass
