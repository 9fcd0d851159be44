"""The HTTP API of DESIGN §7 as a FastAPI app over a :class:`~workers.contract.ServiceAPI`.

The app authenticates (``Authorization: Bearer <key>``), parses and checks every body itself
(``workers.validation``, ``workers.http.ndjson``), and calls the service in a worker thread so a
blocking call never stalls the event loop. Every error answer has the form
``{"error": {"code", "message", "field"?}}`` (``workers.http.errors``); the OpenAPI schema at
``/openapi.json`` documents each body (``workers.http.schemas``). ``workers.runtime`` serves
``build_app(service, settings)`` with uvicorn (or Ray Serve); the tests drive it over real HTTP.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool

from agent.errors import InputError
from storage.repository.event_status import EVENT_STATUSES, MAX_EVENT_PAGE
from workers.contract import ServiceAPI, ServiceError
from workers.http import schemas as doc
from workers.http.arrow import MalformedArrow, arrow_events, is_arrow
from workers.http.auth import Auth
from workers.http.console import mount_console
from workers.http.errors import install_error_handlers
from workers.http.event_batch import remap_rejected, split_events
from workers.http.middleware import AllowedMethods, BodyLimit, HttpMetrics, MetricsMiddleware
from workers.http.ndjson import MalformedJSON, is_json, is_ndjson, loads_strict, parse_ndjson
from workers.http.routes.guard import add_guard_routes
from workers.http.routes.quality import add_quality_routes
from workers.settings import Settings
from workers.validation import (
    BOOL_WORDS,
    MAX_VERSION,
    check_agent_body,
    check_event_count,
    check_events_list,
    check_forget,
    check_fork,
    check_name_body,
    check_predict,
    check_rollback,
    parse_bool,
    parse_query_int,
)

AUTH: list[dict[str, list[str]]] = [{"bearer": []}]


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"parameters": [{"name": name, "in": "query", "required": False,
                            "schema": schema, "description": description}]}


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


async def read_events(request: Request, settings: Settings) -> list[tuple[int | None, Any, str | None]]:
    """The events of an ingest body as ``(line, raw event, parse error)``; JSON or NDJSON."""
    ctype = request.headers.get("content-type")
    if is_ndjson(ctype):
        try:
            lines = parse_ndjson(await request.body())
        except MalformedJSON as e:
            raise ServiceError(400, "malformed_json", f"malformed NDJSON body: {e}", "body") from None
        check_event_count(len(lines), settings)
        return [(ln.line, ln.value, ln.error) for ln in lines]
    if not is_json(ctype):
        raise ServiceError(415, "unsupported_media_type", "expected Content-Type application/json, "
                           "application/x-ndjson or application/vnd.apache.arrow.stream, got "
                           f"{ctype!r}", "content-type")
    events = check_events_list(await read_json(request), settings)
    return [(None, ev, None) for ev in events]


async def read_arrow(request: Request, agent: dict[str, Any], settings: Settings
                     ) -> tuple[list[tuple[int, dict[str, Any]]], list[dict[str, Any]], str | None,
                                list[tuple[int | None, Any, str | None]]]:
    """An Arrow IPC ingest body checked as :func:`split_events` checks JSON events (400 when
    the stream is unreadable or a column has the wrong type); the last item stands for the
    rows (no line numbers)."""
    body = await request.body()
    try:
        valid, rejected, first, n = await run_in_threadpool(arrow_events, body, agent, settings)
    except MalformedArrow as e:
        raise ServiceError(400, "malformed_arrow", f"malformed Arrow body: {e}", e.field) from None
    return valid, rejected, first, [(None, None, None)] * n


def build_app(service: ServiceAPI, settings: Settings) -> FastAPI:
    """The FastAPI app serving DESIGN §7 over ``service`` with the limits of ``settings``."""
    metrics = HttpMetrics()
    auth = Auth(service, settings)
    app = FastAPI(title="deltamem", version="1.0.0",
                  description="Online continual learning on versioned delta-rule memory.")
    install_error_handlers(app, metrics)
    app.add_middleware(AllowedMethods, routes=app.router.routes, metrics=metrics)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes, metrics=metrics)
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    async def call(fn: Any, *args: Any, **kwargs: Any) -> Any:
        return await run_in_threadpool(fn, *args, **kwargs)

    # ---- tenants and agents ---------------------------------------------------------------

    @app.post("/v1/tenants", status_code=201, tags=["tenants"], openapi_extra={
        **doc.request_body(doc.TenantCreate), "security": AUTH},
        responses={201: {"model": doc.Tenant}, **doc.errors(400, 401, 403, 413, 422)})
    async def create_tenant(request: Request) -> JSONResponse:
        """Create a tenant (admin key). The answer shows its API key once."""
        auth.admin(request)
        name = check_name_body(await read_json(request))
        return JSONResponse(await call(service.create_tenant, name), status_code=201)

    @app.post("/v1/agents", status_code=201, tags=["agents"], openapi_extra={
        **doc.request_body(doc.AgentCreate), "security": AUTH},
        responses={201: {"model": doc.Agent}, **doc.errors(400, 401, 413, 422)})
    async def create_agent(request: Request) -> JSONResponse:
        """Create an agent; omitted memory settings take the documented defaults."""
        tenant = await auth.tenant(request)
        name, config = check_agent_body(await read_json(request))
        return JSONResponse(await call(service.create_agent, tenant, name, config), status_code=201)

    @app.get("/v1/agents", tags=["agents"], openapi_extra={"security": AUTH},
             responses={200: {"model": doc.AgentList}, **doc.errors(401)})
    async def list_agents(request: Request) -> JSONResponse:
        """The tenant's agents."""
        tenant = await auth.tenant(request)
        return JSONResponse({"agents": await call(service.list_agents, tenant)})

    @app.get("/v1/agents/{agent_id}", tags=["agents"], openapi_extra={"security": AUTH},
             responses={200: {"model": doc.Agent}, **doc.errors(401, 404)})
    async def get_agent(agent_id: str, request: Request) -> JSONResponse:
        """One agent (404 when it is not the tenant's)."""
        tenant = await auth.tenant(request)
        return JSONResponse(await call(service.get_agent, tenant, agent_id))

    # ---- events and predictions -----------------------------------------------------------

    @app.post("/v1/agents/{agent_id}/events", status_code=202, tags=["events"], openapi_extra={
        **doc.request_body(doc.EventBatch, ndjson=True), "security": AUTH,
        **_query("partial", {"type": "string", "enum": sorted(BOOL_WORDS), "default": "false"},
                 "accept the valid events and list the invalid ones instead of rejecting all")},
        responses={202: {"model": doc.IngestResult}, **doc.errors(400, 401, 404, 413, 415, 422, 429)})
    async def ingest(agent_id: str, request: Request) -> JSONResponse:
        """Stream events (JSON ``{"events": [...]}``, NDJSON (one event a line) or an Arrow IPC
        stream (one event a row, :mod:`workers.http.arrow`))."""
        tenant = await auth.tenant(request)
        partial = parse_bool(request.query_params.get("partial"), "partial")
        agent = await call(service.agent_config, tenant, agent_id)
        if is_arrow(request.headers.get("content-type")):
            valid, rejected, first_field, items = await read_arrow(request, agent, settings)
        else:
            items = await read_events(request, settings)
            valid, rejected, first_field = split_events(items, agent, settings)
        if rejected and not partial:
            raise ServiceError(422, "invalid_events",
                               f"{len(rejected)} of {len(items)} events are invalid, so none was "
                               f"accepted (send ?partial=true to accept the valid ones); first: "
                               f"{rejected[0]['error']}", first_field, {"rejected": rejected})
        result: dict[str, Any] = {"accepted": 0, "duplicates": 0, "rejected": []}
        if valid:
            index_of = [i for i, _ in valid]
            lines = [line for line, _, _ in items]
            try:
                out = await call(service.ingest, tenant, agent_id, [ev for _, ev in valid], partial)
            except ServiceError as e:
                if "rejected" in e.extra:
                    e.extra["rejected"] = remap_rejected(e.extra["rejected"], index_of, lines)
                raise
            result = {"accepted": int(out.get("accepted", 0)),
                      "duplicates": int(out.get("duplicates", 0)),
                      "rejected": remap_rejected(out.get("rejected") or [], index_of, lines)}
        result["rejected"] = sorted(rejected + result["rejected"], key=lambda r: r["index"])
        return JSONResponse(result, status_code=202)

    @app.post("/v1/agents/{agent_id}/predict", tags=["predict"], openapi_extra={
        **doc.request_body(doc.PredictRequest), "security": AUTH},
        responses={200: {"model": doc.PredictResult}, **doc.errors(400, 401, 404, 409, 413, 422)})
    async def predict(agent_id: str, request: Request) -> JSONResponse:
        """Answer inputs at the head, a pinned ``version``, ``as_of`` a time, or ``min_version``."""
        tenant = await auth.tenant(request)
        agent = await call(service.agent_config, tenant, agent_id)
        args = check_predict(await read_json(request), agent, settings)
        inputs = args.pop("inputs")
        return JSONResponse(await call(service.predict, tenant, agent_id, inputs, **args))

    @app.get("/v1/agents/{agent_id}/events", tags=["events"], openapi_extra={
        "security": AUTH,
        "parameters": [
            {"name": "status", "in": "query", "required": True,
             "schema": {"type": "string", "enum": list(EVENT_STATUSES)},
             "description": "which events: rejected (with the reason), pending or applied"},
            {"name": "limit", "in": "query", "required": False,
             "schema": {"type": "integer", "minimum": 1, "maximum": MAX_EVENT_PAGE},
             "description": "at most this many events (default 100), oldest first"},
            {"name": "after_seq", "in": "query", "required": False,
             "schema": {"type": "integer", "minimum": 0, "maximum": MAX_VERSION},
             "description": "only events after this seq (paging: next_after_seq)"}]},
        responses={200: {"description": "a page of events"}, **doc.errors(401, 404, 422)})
    async def list_events(agent_id: str, request: Request) -> JSONResponse:
        """The agent's events with a status, by seq (rejected ones with their reason)."""
        tenant = await auth.tenant(request)
        status = request.query_params.get("status")
        if status not in EVENT_STATUSES:
            raise InputError("status", f"expected one of {list(EVENT_STATUSES)}, got {status!r}")
        limit = parse_query_int(request.query_params.get("limit"), "limit", 1, MAX_EVENT_PAGE)
        after = parse_query_int(request.query_params.get("after_seq"), "after_seq", 0,
                                MAX_VERSION)
        return JSONResponse(await call(service.events, tenant, agent_id, status, limit, after))

    # ---- versions -------------------------------------------------------------------------

    @app.get("/v1/agents/{agent_id}/versions", tags=["versions"], openapi_extra={
        "security": AUTH,
        "parameters": [
            {"name": "limit", "in": "query", "required": False,
             "schema": {"type": "integer", "minimum": 1, "maximum": 10000},
             "description": "at most this many versions, newest first"},
            {"name": "before", "in": "query", "required": False,
             "schema": {"type": "integer", "minimum": 0, "maximum": MAX_VERSION},
             "description": "only versions below this one (paging)"}]},
        responses={200: {"model": doc.VersionList}, **doc.errors(401, 404, 422)})
    async def versions(agent_id: str, request: Request) -> JSONResponse:
        """The version history, newest first."""
        tenant = await auth.tenant(request)
        limit = parse_query_int(request.query_params.get("limit"), "limit", 1, 10_000)
        before = parse_query_int(request.query_params.get("before"), "before", 0, MAX_VERSION)
        return JSONResponse(await call(service.versions, tenant, agent_id, limit, before))

    @app.post("/v1/agents/{agent_id}/rollback", tags=["versions"], openapi_extra={
        **doc.request_body(doc.RollbackRequest), "security": AUTH},
        responses={200: {"model": doc.RollbackResult}, **doc.errors(400, 401, 404, 413, 422)})
    async def rollback(agent_id: str, request: Request) -> JSONResponse:
        """Make a new version whose state equals ``version``'s."""
        tenant = await auth.tenant(request)
        version = check_rollback(await read_json(request))
        return JSONResponse(await call(service.rollback, tenant, agent_id, version))

    @app.post("/v1/agents/{agent_id}/forget", tags=["versions"], openapi_extra={
        **doc.request_body(doc.ForgetRequest), "security": AUTH},
        responses={200: {"model": doc.ForgetResult}, **doc.errors(400, 401, 404, 413, 422)})
    async def forget(agent_id: str, request: Request) -> JSONResponse:
        """Rebuild without the given events, as a new version (exact unlearning)."""
        tenant = await auth.tenant(request)
        ids = check_forget(await read_json(request))
        return JSONResponse(await call(service.forget, tenant, agent_id, ids))

    @app.post("/v1/agents/{agent_id}/fork", status_code=201, tags=["versions"], openapi_extra={
        **doc.request_body(doc.ForkRequest), "security": AUTH},
        responses={201: {"model": doc.Agent}, **doc.errors(400, 401, 404, 413, 422)})
    async def fork(agent_id: str, request: Request) -> JSONResponse:
        """A new agent whose state is this one's at ``version`` (default: head)."""
        tenant = await auth.tenant(request)
        name, version = check_fork(await read_json(request))
        return JSONResponse(await call(service.fork, tenant, agent_id, version, name), status_code=201)

    # ---- operations -----------------------------------------------------------------------

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> JSONResponse:
        """Liveness: 200 while the process serves."""
        ok = bool(await call(service.healthy))
        return JSONResponse({"status": "ok" if ok else "unhealthy"}, status_code=200 if ok else 503)

    @app.get("/readyz", tags=["operations"], responses={503: {"description": "not ready"}})
    async def readyz() -> JSONResponse:
        """Readiness: Ray, the database and serving are up (503 otherwise)."""
        state = dict(await call(service.ready))
        return JSONResponse(state, status_code=200 if state.get("ready") else 503)

    @app.get("/metrics", tags=["operations"], response_class=PlainTextResponse)
    async def prometheus() -> PlainTextResponse:
        """Prometheus text: the HTTP layer's metrics and the service's."""
        text = metrics.text() + await call(service.metrics_text)
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    add_quality_routes(app, service, auth, call)  # GET /quality (workers/http/routes/quality.py)
    add_guard_routes(app, service, auth, call, read_json)  # /guard, /release (workers/http/routes/guard.py)
    mount_console(app)  # the web console: static files, the page sends the key itself

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version,
                                 description=app.description, routes=app.routes)
            app.openapi_schema = doc.install_schemas(schema, settings)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
