"""``/v1/agents/{id}/events``: ingest a batch (JSON, NDJSON or Arrow) and list events by status.

An ingest batch is checked whole before anything is stored: invalid events reject the batch
(422 ``invalid_events`` with the ``rejected`` list) unless ``?partial=true`` accepts the valid
ones (:mod:`workers.http.event_batch`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from storage.repository.event_block import EventBlock
from workers.contract import ServiceError
from workers.http import schemas as doc
from workers.http.arrow import MalformedArrow, arrow_events, is_arrow
from workers.http.event_batch import remap_rejected, split_events
from workers.http.ndjson import MalformedJSON, is_json, is_ndjson, parse_ndjson
from workers.http.request_models import EventsQuery, IngestBatch, IngestQuery, query_parameters
from workers.http.routes.deps import AUTH, Config, Service, TenantId, call, read_json
from workers.settings import Settings
from workers.validation import check_event_count

router = APIRouter(tags=["events"])
Items = list[tuple[int | None, Any, str | None]]  # (NDJSON line, raw event, parse error)
# (index in the request of each valid event, the checked events: dicts, or vectors in columns)
Valid = tuple[list[int], list[dict[str, Any]] | EventBlock]


async def read_events(request: Request, settings: Settings) -> Items:
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
    body = IngestBatch.model_validate(await read_json(request), context={"settings": settings})
    return [(None, ev, None) for ev in body.events]


async def read_arrow(request: Request, agent: dict[str, Any], settings: Settings
                     ) -> tuple[Valid, list[dict[str, Any]], str | None, Items]:
    """An Arrow IPC ingest body checked as :func:`split_events` checks JSON events (400 when
    the stream is unreadable or a column has the wrong type); the last item stands for the
    rows (no line numbers)."""
    body = await request.body()
    try:
        rows, events, rejected, first, n = await run_in_threadpool(arrow_events, body, agent,
                                                                   settings)
    except MalformedArrow as e:
        raise ServiceError(400, "malformed_arrow", f"malformed Arrow body: {e}", e.field) from None
    return (rows, events), rejected, first, [(None, None, None)] * n


async def store_valid(service: Service, tenant: str, agent_id: str, valid: Valid, items: Items,
                      partial: bool) -> dict[str, Any]:
    """Ingest the valid events; the service's ``rejected`` indices mapped back to the request's."""
    index_of, events = valid
    lines = [line for line, _, _ in items]
    try:  # on the loop when nothing on the way blocks, else in a thread
        out = await service.ingest_on_loop(tenant, agent_id, events, partial)
        if out is None:
            out = await call(service.ingest, tenant, agent_id, events, partial)
    except ServiceError as e:
        if "rejected" in e.extra:
            e.extra["rejected"] = remap_rejected(e.extra["rejected"], index_of, lines)
        raise
    return {"accepted": int(out.get("accepted", 0)), "duplicates": int(out.get("duplicates", 0)),
            "rejected": remap_rejected(out.get("rejected") or [], index_of, lines)}


PARTIAL = query_parameters(IngestQuery)


@router.post("/v1/agents/{agent_id}/events", status_code=202, openapi_extra={
    **doc.request_body(doc.EventBatch, ndjson=True), "security": AUTH, "parameters": PARTIAL},
    responses={202: {"model": doc.IngestResult}, **doc.errors(400, 401, 404, 413, 415, 422, 429)})
async def ingest(agent_id: str, request: Request, tenant: TenantId, service: Service,
                 settings: Config) -> JSONResponse:
    """Stream events (JSON ``{"events": [...]}``, NDJSON (one event a line) or an Arrow IPC
    stream (one event a row, :mod:`workers.http.arrow`))."""
    partial = IngestQuery.model_validate(dict(request.query_params)).partial
    # the agent's config without a thread hop when the service holds it (as predict does)
    hit = service.cached_config(tenant, agent_id)
    agent = hit if hit is not None else await call(service.agent_config, tenant, agent_id)
    if is_arrow(request.headers.get("content-type")):
        valid, rejected, first_field, items = await read_arrow(request, agent, settings)
    else:
        items = await read_events(request, settings)
        checked, rejected, first_field = split_events(items, agent, settings)
        valid = ([i for i, _ in checked], [ev for _, ev in checked])
    if rejected and not partial:
        raise ServiceError(422, "invalid_events",
                           f"{len(rejected)} of {len(items)} events are invalid, so none was "
                           f"accepted (send ?partial=true to accept the valid ones); first: "
                           f"{rejected[0]['error']}", first_field, {"rejected": rejected})
    result: dict[str, Any] = {"accepted": 0, "duplicates": 0, "rejected": []}
    if valid[0]:
        result = await store_valid(service, tenant, agent_id, valid, items, partial)
    result["rejected"] = sorted(rejected + result["rejected"], key=lambda r: r["index"])
    return JSONResponse(result, status_code=202)


LIST_PARAMS = query_parameters(EventsQuery)


@router.get("/v1/agents/{agent_id}/events", openapi_extra={
    "security": AUTH, "parameters": LIST_PARAMS},
    responses={200: {"description": "a page of events"}, **doc.errors(401, 404, 422)})
async def list_events(agent_id: str, request: Request, tenant: TenantId,
                      service: Service) -> JSONResponse:
    """The agent's events with a status, by seq (rejected ones with their reason)."""
    q = EventsQuery.model_validate(dict(request.query_params))
    return JSONResponse(await call(service.events, tenant, agent_id, q.status, q.limit,
                                   q.after_seq))
