"""``/v1/agents``: create an agent, list the tenant's agents, read one."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from workers.http import schemas as doc
from workers.http.routes.deps import AUTH, Service, TenantId, call, read_json
from workers.validation import check_agent_body

router = APIRouter(tags=["agents"])


@router.post("/v1/agents", status_code=201, openapi_extra={
    **doc.request_body(doc.AgentCreate), "security": AUTH},
    responses={201: {"model": doc.Agent}, **doc.errors(400, 401, 413, 422)})
async def create_agent(request: Request, tenant: TenantId, service: Service) -> JSONResponse:
    """Create an agent; omitted memory settings take the documented defaults."""
    name, config = check_agent_body(await read_json(request))
    return JSONResponse(await call(service.create_agent, tenant, name, config), status_code=201)


@router.get("/v1/agents", openapi_extra={"security": AUTH},
            responses={200: {"model": doc.AgentList}, **doc.errors(401)})
async def list_agents(tenant: TenantId, service: Service) -> JSONResponse:
    """The tenant's agents."""
    return JSONResponse({"agents": await call(service.list_agents, tenant)})


@router.get("/v1/agents/{agent_id}", openapi_extra={"security": AUTH},
            responses={200: {"model": doc.Agent}, **doc.errors(401, 404)})
async def get_agent(agent_id: str, tenant: TenantId, service: Service) -> JSONResponse:
    """One agent (404 when it is not the tenant's)."""
    return JSONResponse(await call(service.get_agent, tenant, agent_id))
