"""The version history of an agent: list it, roll back to a version, fork a new agent from one."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from workers.http import schemas as doc
from workers.http.routes.deps import AUTH, Service, TenantId, call, read_json
from workers.validation import MAX_VERSION, check_fork, check_rollback, parse_query_int

router = APIRouter(tags=["versions"])
MAX_VERSION_PAGE = 10_000

PAGE_PARAMS = [
    {"name": "limit", "in": "query", "required": False,
     "schema": {"type": "integer", "minimum": 1, "maximum": MAX_VERSION_PAGE},
     "description": "at most this many versions, newest first"},
    {"name": "before", "in": "query", "required": False,
     "schema": {"type": "integer", "minimum": 0, "maximum": MAX_VERSION},
     "description": "only versions below this one (paging)"}]


@router.get("/v1/agents/{agent_id}/versions", openapi_extra={
    "security": AUTH, "parameters": PAGE_PARAMS},
    responses={200: {"model": doc.VersionList}, **doc.errors(401, 404, 422)})
async def versions(agent_id: str, request: Request, tenant: TenantId,
                   service: Service) -> JSONResponse:
    """The version history, newest first."""
    q = request.query_params
    limit = parse_query_int(q.get("limit"), "limit", 1, MAX_VERSION_PAGE)
    before = parse_query_int(q.get("before"), "before", 0, MAX_VERSION)
    return JSONResponse(await call(service.versions, tenant, agent_id, limit, before))


@router.post("/v1/agents/{agent_id}/rollback", openapi_extra={
    **doc.request_body(doc.RollbackRequest), "security": AUTH},
    responses={200: {"model": doc.RollbackResult}, **doc.errors(400, 401, 404, 413, 422)})
async def rollback(agent_id: str, request: Request, tenant: TenantId,
                   service: Service) -> JSONResponse:
    """Make a new version whose state equals ``version``'s."""
    version = check_rollback(await read_json(request))
    return JSONResponse(await call(service.rollback, tenant, agent_id, version))


@router.post("/v1/agents/{agent_id}/fork", status_code=201, openapi_extra={
    **doc.request_body(doc.ForkRequest), "security": AUTH},
    responses={201: {"model": doc.Agent}, **doc.errors(400, 401, 404, 413, 422)})
async def fork(agent_id: str, request: Request, tenant: TenantId,
               service: Service) -> JSONResponse:
    """A new agent whose state is this one's at ``version`` (default: head)."""
    name, version = check_fork(await read_json(request))
    return JSONResponse(await call(service.fork, tenant, agent_id, version, name), status_code=201)
