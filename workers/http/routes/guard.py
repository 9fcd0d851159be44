"""HTTP routes of the guard (issue 18 §3; workers/actors/guard.py).

- ``GET /v1/agents/{id}/guard`` → ``{"policy": {...}|null, "quarantined": bool, "actions":
  [{"id", "at", "action", "version", "reason"}]}`` (newest first);
- ``POST /v1/agents/{id}/release`` ``{"event_ids"?: [...]}`` → ``{"released": n, "version": head}``:
  lifts the quarantine and applies the held events in order (``event_ids``, when given, must list
  every held event: forget those to drop first).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from workers.http import schemas as doc
from workers.http.request_models import ReleaseRequest
from workers.http.routes.deps import AUTH, Service, TenantId, call, read_json

__all__ = ["router"]

router = APIRouter(tags=["versions"])


@router.get("/v1/agents/{agent_id}/guard", openapi_extra={"security": AUTH},
            responses={200: {"description": "the guard's policy, state and actions"},
                       **doc.errors(401, 404)})
async def guard(agent_id: str, tenant: TenantId, service: Service) -> JSONResponse:
    """The agent's guard: policy, whether new events are held, its actions (newest first)."""
    return JSONResponse(await call(service.guard, tenant, agent_id))


@router.post("/v1/agents/{agent_id}/release", openapi_extra={"security": AUTH},
             responses={200: {"description": "held events released"},
                        **doc.errors(400, 401, 404, 413, 422)})
async def release(agent_id: str, request: Request, tenant: TenantId,
                  service: Service) -> JSONResponse:
    """Lift the agent's quarantine and apply its held events."""
    raw = await request.body()
    body = ReleaseRequest.model_validate(await read_json(request)) if raw.strip() else None
    ids = body.event_ids if body is not None else None
    return JSONResponse(await call(service.release, tenant, agent_id, ids))
