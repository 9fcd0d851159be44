"""The OpenAPI document's models (DESIGN §7): the request bodies and the answers.

The request bodies are the validating models of :mod:`workers.http.request_models` (the routes
parse with them), the create-agent body :mod:`workers.http.agent_schema` (``agent.config`` is
the rule) and the ingest batch :class:`EventBatch` below, which documents what
``request_models.IngestBatch`` (the list) and :mod:`workers.validation` (each event, against the
agent, one NumPy pass over the vectors) accept. The answers
are :mod:`client.schema`'s, the one definition the client parses with (and the service
builds the agent JSON with). :func:`request_body` makes the ``openapi_extra``
for a route's body; :func:`install_schemas` adds the request models to ``components.schemas``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from client.schema import (
    Agent,
    AgentList,
    ForgetResult,
    IngestResult,
    PredictResult,
    Rejected,
    RollbackResult,
    Tenant,
    VersionList,
)
from workers.http.agent_schema import NONBLANK, AgentCreate, text_field
from workers.http.request_models import (
    TS_PATTERN,
    ForgetRequest,
    ForkRequest,
    PredictRequest,
    RollbackRequest,
    TenantCreate,
)
from workers.validation import MAX_ID_CHARS, MAX_SPEAKER_CHARS, MAX_TARGET_CHARS

__all__ = ["Agent", "AgentCreate", "AgentList", "ErrorBody", "EventBatch", "ForgetRequest",
           "ForgetResult", "ForkRequest", "IngestResult", "PredictRequest", "PredictResult",
           "RollbackRequest", "RollbackResult", "Tenant", "TenantCreate", "VersionList",
           "errors", "install_schemas", "request_body"]

REF = "#/components/schemas/{model}"


# ---- requests (the validating models: workers.http.request_models) -------------------------

class Event(BaseModel):
    id: str | None = text_field(None, MAX_ID_CHARS, description="idempotency key, unique per agent")
    input: str | list[float] = Field(description='text (encoder "minilm") or a vector of dim '
                                     'finite numbers, not all zero (encoder "none")')
    target: str | None = Field(None, min_length=1, max_length=MAX_TARGET_CHARS, pattern=NONBLANK,
                               description="the label or answer; required for classifier/recall")
    beta: float | None = Field(None, gt=0, le=1)
    ts: str | None = Field(None, pattern=TS_PATTERN, description="ISO-8601 timestamp (naive = "
                           "UTC); it must exist in UTC (not year 9999 at a negative offset)")
    speaker: str | None = Field(None, min_length=1, max_length=MAX_SPEAKER_CHARS, pattern=NONBLANK,
                                description="chat turns only")
    meta: dict[str, Any] | None = None


class EventBatch(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"events": [{"id": "e1", "input": [1.0, 0.0, 0.0], "target": "yes"}]}]})

    events: list[Event] = Field(min_length=1)


REQUEST_MODELS: list[type[BaseModel]] = [TenantCreate, AgentCreate, EventBatch, PredictRequest,
                                         RollbackRequest, ForgetRequest, ForkRequest]


# ---- answers (the models the client parses with and the service builds with: client.schema) --

class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail
    rejected: list[Rejected] | None = None


# ---- helpers --------------------------------------------------------------------------------

def request_body(model: type[BaseModel], ndjson: bool = False) -> dict[str, Any]:
    """``openapi_extra`` documenting a JSON (and optionally NDJSON) request body."""
    content: dict[str, Any] = {"application/json": {"schema": {"$ref": REF.format(model=model.__name__)}}}
    if ndjson:
        content["application/x-ndjson"] = {"schema": {"type": "string", "description":
                                           "one event object per line (lines counted from 1)"}}
    return {"requestBody": {"required": True, "content": content}}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries for the given error statuses, all with :class:`ErrorBody`."""
    return {s: {"model": ErrorBody, "description": "error"} for s in statuses}


def install_schemas(openapi: dict[str, Any], settings: Any = None) -> dict[str, Any]:
    """Add the request models (and what they reference) to ``components.schemas``, then the
    statuses, limits and links of :func:`workers.http.openapi.finish`."""
    from workers.http.openapi import finish

    _, top = models_json_schema([(m, "validation") for m in REQUEST_MODELS], ref_template=REF)
    schemas = openapi.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in top.get("$defs", {}).items():
        schemas.setdefault(name, schema)
    # FastAPI documents its own {"detail": ...} 422 for path parameters; the app never sends it
    for path in openapi.get("paths", {}).values():
        for op in path.values():
            resp = op.get("responses", {}).get("422")
            if resp and "HTTPValidationError" in str(resp):
                op["responses"]["422"] = {"description": "error", "content": {"application/json": {
                    "schema": {"$ref": REF.format(model="ErrorBody")}}}}
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    openapi["components"]["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "description": "a tenant API key "
                   "(or, for POST /v1/tenants, the admin key)"}}
    return finish(openapi, settings)
