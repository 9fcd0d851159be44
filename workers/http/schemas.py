"""The OpenAPI document's models (DESIGN §7): the request bodies and the answers.

The request bodies are the validating models of :mod:`workers.http.request_models` (the routes
parse with them), the create-agent body :mod:`workers.http.agent_schema` (``agent.config`` is
the rule) and the ingest batch :class:`EventBatch` below, which documents what
:mod:`workers.validation` checks event by event (one NumPy pass over the vectors). The answers
are documentation: the service builds them. :func:`request_body` makes the ``openapi_extra``
for a route's body; :func:`install_schemas` adds the request models to ``components.schemas``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

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


# ---- answers --------------------------------------------------------------------------------

class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = None


class Rejected(BaseModel):
    index: int
    line: int | None = None
    error: str


class ErrorBody(BaseModel):
    error: ErrorDetail
    rejected: list[Rejected] | None = None


class Tenant(BaseModel):
    id: str
    name: str
    api_key: str = Field(description="shown once; stored hashed")


class Agent(BaseModel):
    id: str
    name: str
    kind: str
    encoder: str
    dim: int
    memory: dict[str, Any]
    head_version: int
    events_received: int
    events_applied: int
    events_rejected: int = Field(description="accepted events the learner could not apply "
                                 "(GET /v1/agents/{id}/events?status=rejected lists them)")
    events_held: int = Field(0, description="accepted events a quarantine holds (POST /release)")
    guard: dict[str, Any] | None = Field(None, description="the guard policy in force (null: none)")
    labels: list[str]


class AgentList(BaseModel):
    agents: list[Agent]


class IngestResult(BaseModel):
    accepted: int
    duplicates: int
    rejected: list[Rejected]


class Prediction(BaseModel):
    label: str | None = None
    score: float | None = None
    top: list[tuple[str, float]] | None = None
    text: str | None = Field(None, description="chat agents: the reply")


class PredictResult(BaseModel):
    version: int
    predictions: list[Prediction]


class VersionRow(BaseModel):
    version: int
    parent: int | None
    kind: str
    created_at: str
    events: int
    checksum: str
    delta_norm: float | None
    hits: int | None = Field(None, description="events of this version predicted right before "
                             "they were learnt (null: not tested)")
    accuracy: float | None = Field(None, description="running prequential accuracy up to it")


class VersionList(BaseModel):
    head: int
    versions: list[VersionRow]


class RollbackResult(BaseModel):
    version: int
    kind: Literal["rollback"]
    state_of: int
    checksum: str


class ForgetResult(BaseModel):
    version: int
    kind: Literal["forget"]
    events_removed: int


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
