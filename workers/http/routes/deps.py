"""What every route takes: the service, the settings, the authenticated tenant, the JSON body.

``build_app`` keeps the service, settings, :class:`~workers.http.auth.Auth` and metrics on
``app.state``; the routers (one module per resource, each a module-level ``APIRouter``) reach
them through the dependencies below, so a route names what it needs in its signature:

- ``TenantId``: the tenant of the request's bearer key (401 when missing or unknown), checked
  before the handler reads a byte of the body;
- ``AdminKey``: passes only with the admin key (401 without a key, 403 with another);
- ``Service``, ``Config`` (the :class:`~workers.settings.Settings`), ``Metrics``.

Dependencies are ``async`` (a plain ``def`` dependency would cost a thread hop per request).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from workers.contract import ServiceAPI, ServiceError
from workers.http.middleware import HttpMetrics
from workers.http.ndjson import MalformedJSON, is_json, loads_strict
from workers.settings import Settings

AUTH: list[dict[str, list[str]]] = [{"bearer": []}]  # openapi_extra "security" of tenant routes
T = TypeVar("T")


async def _service(request: Request) -> ServiceAPI:
    return request.app.state.service  # type: ignore[no-any-return]


async def _settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


async def _metrics(request: Request) -> HttpMetrics:
    return request.app.state.metrics  # type: ignore[no-any-return]


async def _tenant(request: Request) -> str:
    return await request.app.state.auth.tenant(request)  # type: ignore[no-any-return]


async def _admin(request: Request) -> None:
    request.app.state.auth.admin(request)


Service = Annotated[ServiceAPI, Depends(_service)]
Config = Annotated[Settings, Depends(_settings)]
Metrics = Annotated[HttpMetrics, Depends(_metrics)]
TenantId = Annotated[str, Depends(_tenant)]
AdminKey = Depends(_admin)  # dependencies=[AdminKey]


async def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` in a worker thread: a blocking service call never stalls the loop."""
    return await run_in_threadpool(fn, *args, **kwargs)


async def read_json(request: Request) -> Any:
    """The request body as strict JSON (400 when malformed, 415 when not JSON)."""
    ctype = request.headers.get("content-type")
    if not is_json(ctype):
        raise ServiceError(415, "unsupported_media_type",
                           f"expected Content-Type application/json, got {ctype!r}", "content-type")
    try:
        return loads_strict(await request.body())
    except MalformedJSON as e:
        raise ServiceError(400, "malformed_json", f"malformed JSON body: {e}", "body") from None
