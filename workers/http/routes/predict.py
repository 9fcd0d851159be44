"""``POST /v1/agents/{id}/predict``: answer inputs at the head, a pinned ``version``, ``as_of`` a
time, or once ``min_version`` exists (read-your-writes)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from workers.http import schemas as doc
from workers.http.routes.deps import AUTH, Config, Service, TenantId, call, read_json
from workers.validation import check_predict

router = APIRouter(tags=["predict"])


@router.post("/v1/agents/{agent_id}/predict", openapi_extra={
    **doc.request_body(doc.PredictRequest), "security": AUTH},
    responses={200: {"model": doc.PredictResult}, **doc.errors(400, 401, 404, 409, 413, 422)})
async def predict(agent_id: str, request: Request, tenant: TenantId, service: Service,
                  settings: Config) -> JSONResponse:
    """Answer inputs at the head, a pinned ``version``, ``as_of`` a time, or ``min_version``."""
    agent = await call(service.agent_config, tenant, agent_id)
    args = check_predict(await read_json(request), agent, settings)
    inputs = args.pop("inputs")
    return JSONResponse(await call(service.predict, tenant, agent_id, inputs, **args))
