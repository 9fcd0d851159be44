"""Operations: ``/healthz`` (liveness), ``/readyz`` (readiness), ``/metrics`` (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse

from workers.http.routes.deps import Metrics, Service, call

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz(service: Service) -> JSONResponse:
    """Liveness: 200 while the process serves."""
    ok = bool(await call(service.healthy))
    return JSONResponse({"status": "ok" if ok else "unhealthy"}, status_code=200 if ok else 503)


@router.get("/readyz", responses={503: {"description": "not ready"}})
async def readyz(service: Service) -> JSONResponse:
    """Readiness: Ray, the database and serving are up (503 otherwise)."""
    state = dict(await call(service.ready))
    return JSONResponse(state, status_code=200 if state.get("ready") else 503)


@router.get("/metrics", response_class=PlainTextResponse)
async def prometheus(service: Service, metrics: Metrics) -> PlainTextResponse:
    """Prometheus text: the HTTP layer's metrics and the service's."""
    text = metrics.text() + await call(service.metrics_text)
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")
