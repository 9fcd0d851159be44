"""HTTP routes of prequential quality (issue 18): ``GET /v1/agents/{id}/quality``.

``?window=W&limit=&before=`` → ``{"window": W, "points": [{"version", "created_at", "events",
"hits", "accuracy"}]}``: the versions a learner tested, newest first like ``/versions`` (paged by
``before``), each with its prequential accuracy over the last ``W`` events (whole versions, at
least ``W`` events where the stream has them; :mod:`storage.repository.quality`).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from storage.repository.quality import MAX_WINDOW
from workers.http import schemas as doc
from workers.http.routes.deps import AUTH, Service, TenantId, call
from workers.validation import MAX_VERSION, parse_query_int

__all__ = ["router", "DEFAULT_WINDOW", "DEFAULT_POINTS"]

DEFAULT_WINDOW = 500
DEFAULT_POINTS = 100
MAX_POINTS = 10_000
router = APIRouter(tags=["versions"])
PARAMS = [
    {"name": "window", "in": "query", "required": False,
     "schema": {"type": "integer", "minimum": 1, "maximum": MAX_WINDOW},
     "description": f"events per accuracy point (default {DEFAULT_WINDOW})"},
    {"name": "limit", "in": "query", "required": False,
     "schema": {"type": "integer", "minimum": 1, "maximum": MAX_POINTS},
     "description": f"at most this many points (default {DEFAULT_POINTS}), newest first"},
    {"name": "before", "in": "query", "required": False,
     "schema": {"type": "integer", "minimum": 0, "maximum": MAX_VERSION},
     "description": "only versions below this one (paging)"}]


@router.get("/v1/agents/{agent_id}/quality", openapi_extra={"security": AUTH, "parameters": PARAMS},
            responses={200: {"description": "the prequential accuracy curve"},
                       **doc.errors(401, 404, 422)})
async def quality(agent_id: str, request: Request, tenant: TenantId,
                  service: Service) -> JSONResponse:
    """Prequential accuracy over versions: each event predicted before it was learnt."""
    q = request.query_params
    window = parse_query_int(q.get("window"), "window", 1, MAX_WINDOW) or DEFAULT_WINDOW
    limit = parse_query_int(q.get("limit"), "limit", 1, MAX_POINTS) or DEFAULT_POINTS
    before = parse_query_int(q.get("before"), "before", 0, MAX_VERSION)
    return JSONResponse(await call(service.quality, tenant, agent_id, window, limit, before))
