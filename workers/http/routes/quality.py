"""HTTP routes of prequential quality (issue 18): ``GET /v1/agents/{id}/quality``.

``?window=W&limit=&before=`` → ``{"window": W, "points": [{"version", "created_at", "events",
"hits", "accuracy"}]}``: the versions a learner tested, newest first like ``/versions`` (paged by
``before``), each with its prequential accuracy over the last ``W`` events (whole versions, at
least ``W`` events where the stream has them; :mod:`storage.repository.quality`).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from workers.http import schemas as doc
from workers.http.request_models import QualityQuery, query_parameters
from workers.http.routes.deps import AUTH, Service, TenantId, call

__all__ = ["router"]

router = APIRouter(tags=["versions"])
PARAMS = query_parameters(QualityQuery)


@router.get("/v1/agents/{agent_id}/quality", openapi_extra={"security": AUTH, "parameters": PARAMS},
            responses={200: {"description": "the prequential accuracy curve"},
                       **doc.errors(401, 404, 422)})
async def quality(agent_id: str, request: Request, tenant: TenantId,
                  service: Service) -> JSONResponse:
    """Prequential accuracy over versions: each event predicted before it was learnt."""
    q = QualityQuery.model_validate(dict(request.query_params))
    return JSONResponse(await call(service.quality, tenant, agent_id, q.window, q.limit, q.before))
