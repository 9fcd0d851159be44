"""ASGI middleware of the HTTP app: the body-size limit, ``Allow``, the per-app HTTP metrics.

All are plain ASGI callables, so they see every request, including the ones no route
matches, and none buffers a body.

- :class:`BodyLimit` answers 413 before reading a body whose ``Content-Length`` is over the
  limit, and stops a chunked (or lying) body as soon as the bytes received pass it.
- :class:`AllowedMethods` answers a method the path does not take with 405 and ``OPTIONS``
  with 204, both with an ``Allow`` header listing every method of the path. It matches the
  routes only for ``OPTIONS`` and when the app answers 405, not on every request.
- :class:`HttpMetrics` holds a per-app ``CollectorRegistry`` (no module globals, so two apps in
  one process do not collide): requests by method, route template and status; errors by status
  and error code; and a latency histogram by method and route template.
"""

from __future__ import annotations

import json
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

Scope = dict[str, Any]
Message = dict[str, Any]

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class HttpMetrics:
    """The HTTP layer's Prometheus metrics, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("deltamem_http_requests", "HTTP requests answered",
                                ["method", "route", "status"], registry=self.registry)
        self.errors = Counter("deltamem_http_errors", "HTTP error answers by status and error code",
                              ["status", "code"], registry=self.registry)
        self.latency = Histogram("deltamem_http_request_duration_seconds",
                                 "Time from request to the start of the answer",
                                 ["method", "route"], buckets=LATENCY_BUCKETS,
                                 registry=self.registry)

    def __reduce__(self) -> tuple[type[HttpMetrics], tuple[()]]:
        """Pickled (e.g. shipped to a Ray Serve replica) as a fresh, empty set of metrics."""
        return (HttpMetrics, ())

    def error(self, status: int, code: str) -> None:
        """Count one error answer."""
        self.errors.labels(str(status), code).inc()

    def text(self) -> str:
        """Prometheus text exposition of these metrics."""
        return generate_latest(self.registry).decode("utf-8")


def _route_of(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


class MetricsMiddleware:
    """Count every HTTP request and time it, labelled by the matched route's template."""

    def __init__(self, app: Any, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                self.metrics.latency.labels(scope["method"], _route_of(scope)).observe(
                    time.perf_counter() - t0)
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.requests.labels(scope["method"], _route_of(scope), str(status["code"])).inc()


class BodyTooLarge(Exception):
    """Raised from ``receive`` once a streamed body passes the limit."""


class BodyLimit:
    """Answer 413 to a body over ``max_bytes``, before reading it when its length is declared."""

    def __init__(self, app: Any, max_bytes: int, metrics: HttpMetrics | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.metrics = metrics

    async def _reject(self, send: Any, status: int, code: str, message: str) -> None:
        if self.metrics is not None:
            self.metrics.error(status, code)
        body = json.dumps({"error": {"code": code, "message": message, "field": "body"}}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    def _too_large(self, n: int | None = None) -> str:
        got = f"{n} bytes" if n is not None else "the body"
        return (f"request body too large: {got} is over the limit of {self.max_bytes} bytes "
                f"(DELTAMEM_MAX_BODY_BYTES)")

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = None
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await self._reject(send, 400, "bad_request", "Content-Length is not an integer")
                    return
                if declared < 0:
                    await self._reject(send, 400, "bad_request", "Content-Length is negative")
                    return
        if declared is not None and declared > self.max_bytes:
            await self._reject(send, 413, "payload_too_large", self._too_large(declared))
            return

        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge()
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._reject(send, 413, "payload_too_large", self._too_large())


class AllowedMethods:
    """Answer a method a path does not take with 405 and an ``Allow`` header listing *every*
    method of that path (Starlette lists only the first matching route's: ``GET`` and
    ``POST /v1/agents`` are two routes), and ``OPTIONS`` with 204 and the same ``Allow``.

    Other requests pass straight through: the routes are matched (a scan of the route list)
    only when the request is ``OPTIONS`` or the app's answer starts with 405, which it then
    replaces (the app's error handler has counted that 405 already)."""

    def __init__(self, app: Any, routes: list[Any], metrics: HttpMetrics | None = None) -> None:
        self.app = app
        self.routes = routes  # the app's route list (routes added later are seen too)
        self.metrics = metrics

    def allowed(self, scope: Scope) -> set[str] | None:
        """The methods of the path when ``scope``'s method is not one of them, else None."""
        from starlette.routing import Match

        methods: set[str] = set()
        for route in self.routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return None
            if match is Match.PARTIAL:
                methods |= set(getattr(route, "methods", None) or ())
        return methods or None

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS":
            methods = self.allowed(scope)
            if methods is not None:
                await self._answer(scope, methods, send)
                return
            await self.app(scope, receive, send)
            return
        replaced = False

        async def send_or_replace(message: Message) -> None:
            nonlocal replaced
            if replaced:  # the body of the app's own 405, dropped
                return
            if message["type"] == "http.response.start" and message["status"] == 405:
                methods = self.allowed(scope)
                if methods is not None:
                    replaced = True
                    await self._answer(scope, methods, send)
                    return
            await send(message)

        await self.app(scope, receive, send_or_replace)

    @staticmethod
    async def _answer(scope: Scope, methods: set[str], send: Any) -> None:
        allow = ", ".join(sorted(methods | {"OPTIONS"})).encode()
        if scope["method"] == "OPTIONS":
            await send({"type": "http.response.start", "status": 204,
                        "headers": [(b"allow", allow), (b"content-length", b"0")]})
            await send({"type": "http.response.body", "body": b""})
            return
        body = json.dumps({"error": {
            "code": "method_not_allowed", "field": "method",
            "message": f"{scope['method']} is not a method of {scope['path']}; "
                       f"allowed: {allow.decode()}"}}).encode()
        await send({"type": "http.response.start", "status": 405,
                    "headers": [(b"allow", allow), (b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
