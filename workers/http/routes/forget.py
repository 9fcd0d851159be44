"""``POST /v1/agents/{id}/forget``: rebuild without the given events, as a new version (exact
unlearning)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from workers.http import schemas as doc
from workers.http.request_models import ForgetRequest
from workers.http.routes.deps import AUTH, Service, TenantId, call, read_json

router = APIRouter(tags=["versions"])


@router.post("/v1/agents/{agent_id}/forget", openapi_extra={
    **doc.request_body(doc.ForgetRequest), "security": AUTH},
    responses={200: {"model": doc.ForgetResult}, **doc.errors(400, 401, 404, 413, 422)})
async def forget(agent_id: str, request: Request, tenant: TenantId,
                 service: Service) -> JSONResponse:
    """Rebuild without the given events, as a new version (exact unlearning)."""
    ids = ForgetRequest.model_validate(await read_json(request)).event_ids
    return JSONResponse(await call(service.forget, tenant, agent_id, ids))
