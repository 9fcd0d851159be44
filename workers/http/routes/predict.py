"""``POST /v1/agents/{id}/predict``: answer inputs at the head, a pinned ``version``, ``as_of`` a
time, or once ``min_version`` exists (read-your-writes)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from workers.http import schemas as doc
from workers.http.request_models import PredictRequest
from workers.http.routes.deps import AUTH, Config, Service, TenantId, call, read_json

router = APIRouter(tags=["predict"])


@router.post("/v1/agents/{agent_id}/predict", openapi_extra={
    **doc.request_body(doc.PredictRequest), "security": AUTH},
    responses={200: {"model": doc.PredictResult}, **doc.errors(400, 401, 404, 409, 413, 422)})
async def predict(agent_id: str, request: Request, tenant: TenantId, service: Service,
                  settings: Config) -> JSONResponse:
    """Answer inputs at the head, a pinned ``version``, ``as_of`` a time, or ``min_version``."""
    # no thread hop when the service holds what is needed (issue 16): the agent's config and,
    # at the head, its state (workers/head_cache.py); else the blocking calls run in a thread
    # (and a text agent's texts are encoded there, never on the loop: workers/text_head.py)
    hit = service.cached_config(tenant, agent_id)
    agent = hit if hit is not None else await call(service.agent_config, tenant, agent_id)
    body = PredictRequest.model_validate(await read_json(request), context={"settings": settings})
    args = body.service_args(agent, settings)
    inputs = args.pop("inputs")
    out = service.predict_cached(tenant, agent_id, inputs, **args)
    if out is None:
        out = await call(service.predict, tenant, agent_id, inputs, **args)
    return JSONResponse(out)
