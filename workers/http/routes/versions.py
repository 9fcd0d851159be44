"""The version history of an agent: list it, roll back to a version, fork a new agent from one."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from workers.http import schemas as doc
from workers.http.request_models import (
    ForkRequest,
    RollbackRequest,
    VersionsQuery,
    query_parameters,
)
from workers.http.routes.deps import AUTH, Service, TenantId, call, read_json

router = APIRouter(tags=["versions"])

PAGE_PARAMS = query_parameters(VersionsQuery)


@router.get("/v1/agents/{agent_id}/versions", openapi_extra={
    "security": AUTH, "parameters": PAGE_PARAMS},
    responses={200: {"model": doc.VersionList}, **doc.errors(401, 404, 422)})
async def versions(agent_id: str, request: Request, tenant: TenantId,
                   service: Service) -> JSONResponse:
    """The version history, newest first."""
    q = VersionsQuery.model_validate(dict(request.query_params))
    return JSONResponse(await call(service.versions, tenant, agent_id, q.limit, q.before))


@router.post("/v1/agents/{agent_id}/rollback", openapi_extra={
    **doc.request_body(doc.RollbackRequest), "security": AUTH},
    responses={200: {"model": doc.RollbackResult}, **doc.errors(400, 401, 404, 413, 422)})
async def rollback(agent_id: str, request: Request, tenant: TenantId,
                   service: Service) -> JSONResponse:
    """Make a new version whose state equals ``version``'s."""
    body = RollbackRequest.model_validate(await read_json(request))
    return JSONResponse(await call(service.rollback, tenant, agent_id, body.version))


@router.post("/v1/agents/{agent_id}/fork", status_code=201, openapi_extra={
    **doc.request_body(doc.ForkRequest), "security": AUTH},
    responses={201: {"model": doc.Agent}, **doc.errors(400, 401, 404, 413, 422)})
async def fork(agent_id: str, request: Request, tenant: TenantId,
               service: Service) -> JSONResponse:
    """A new agent whose state is this one's at ``version`` (default: head)."""
    body = ForkRequest.model_validate(await read_json(request))
    return JSONResponse(await call(service.fork, tenant, agent_id, body.version, body.name),
                        status_code=201)
