"""The HTTP API of DESIGN §7 as a FastAPI app over a :class:`~workers.contract.ServiceAPI`.

``build_app`` composes: one ``APIRouter`` per resource (``workers.http.routes``: tenants, agents,
events, predict, versions, forget, quality, guard, operations, and the console), the middleware
(``workers.http.middleware``) and the error handlers that give every error answer the form
``{"error": {"code", "message", "field"?}}`` (``workers.http.errors``). The routes reach the
service, settings and bearer-key :class:`~workers.http.auth.Auth` through dependencies
(``workers.http.routes.deps``); they call the service in a worker thread so a blocking call never
stalls the event loop, unless it answers without blocking (a held config or head, a vector
ingest awaited on the loop: ``ServiceAPI.cached_config``, ``predict_cached``, ``ingest_on_loop``). ``/openapi.json`` documents each body (``workers.http.schemas``).
``workers.runtime`` serves ``build_app(service, settings)`` with uvicorn (or Ray Serve); the tests
drive it over real HTTP.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi

from workers.contract import ServiceAPI
from workers.http import console
from workers.http import schemas as doc
from workers.http.auth import Auth
from workers.http.errors import install_error_handlers
from workers.http.middleware import AllowedMethods, BodyLimit, HttpMetrics, MetricsMiddleware
from workers.http.routes import (
    agents,
    events,
    forget,
    guard,
    operations,
    predict,
    quality,
    tenants,
    versions,
)
from workers.settings import Settings

ROUTERS: tuple[APIRouter, ...] = (
    tenants.router, agents.router, events.router, predict.router, versions.router, forget.router,
    operations.router, quality.router, guard.router, console.router)


def build_app(service: ServiceAPI, settings: Settings) -> FastAPI:
    """The FastAPI app serving DESIGN §7 over ``service`` with the limits of ``settings``."""
    metrics = HttpMetrics()
    app = FastAPI(title="deltamem", version="1.0.0",
                  description="Online continual learning on versioned delta-rule memory.")
    app.state.service = service
    app.state.settings = settings
    app.state.auth = Auth(service, settings)
    app.state.metrics = metrics
    install_error_handlers(app, metrics)
    # the routes themselves (app.routes holds one entry per included router): AllowedMethods
    # lists every method of a path across them
    routes = [*app.router.routes, *(route for router in ROUTERS for route in router.routes)]
    app.add_middleware(AllowedMethods, routes=routes, metrics=metrics)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes, metrics=metrics)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    for router in ROUTERS:
        app.include_router(router)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version,
                                 description=app.description, routes=app.routes)
            app.openapi_schema = doc.install_schemas(schema, settings)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
