"""``POST /v1/tenants`` (admin key): create a tenant; the answer shows its API key once."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from workers.http import schemas as doc
from workers.http.request_models import TenantCreate
from workers.http.routes.deps import AUTH, AdminKey, Service, call, read_json

router = APIRouter(tags=["tenants"])


@router.post("/v1/tenants", status_code=201, dependencies=[AdminKey], openapi_extra={
    **doc.request_body(doc.TenantCreate), "security": AUTH},
    responses={201: {"model": doc.Tenant}, **doc.errors(400, 401, 403, 413, 422)})
async def create_tenant(request: Request, service: Service) -> JSONResponse:
    """Create a tenant (admin key). The answer shows its API key once."""
    name = TenantCreate.model_validate(await read_json(request)).name
    return JSONResponse(await call(service.create_tenant, name), status_code=201)
