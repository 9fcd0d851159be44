"""Pydantic models that document the HTTP API (DESIGN §7) in the OpenAPI schema.

They are documentation only: the app parses every body itself (``workers.validation``), so it
controls each error message and status. :func:`request_body` makes the ``openapi_extra`` for a
route's body; :func:`install_schemas` adds the request models to ``components.schemas``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from workers.http.agent_schema import NONBLANK, AgentCreate, text_field

REF = "#/components/schemas/{model}"
MAXV = 2**53  # workers.validation.MAX_VERSION


# ---- requests -------------------------------------------------------------------------------

# an ISO-8601 time as the service reads it (datetime.fromisoformat), date and optional time
# and offset, years 0002-9998 (years 1 and 9999 exist only partly in UTC: see check_ts)
_DAY = (r"(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
        r"|02-(?:0[1-9]|1[0-9]|2[0-8]))")
TS_PATTERN = (r"^(?:000[2-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]"
              r"|999[0-8])-" + _DAY + r"(?:T(?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9]"
              r"(?:\.[0-9]{1,6})?)?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])?)?$")


class TenantCreate(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"name": "acme"}]})

    name: str = text_field(description="the tenant's name")


class Event(BaseModel):
    id: str | None = text_field(None, description="idempotency key, unique per agent")
    input: str | list[float] = Field(description='text (encoder "minilm") or a vector of dim '
                                     'finite numbers, not all zero (encoder "none")')
    target: str | None = Field(None, min_length=1, max_length=1000, pattern=NONBLANK,
                               description="the label or answer; required for classifier/recall")
    beta: float | None = Field(None, gt=0, le=1)
    ts: str | None = Field(None, pattern=TS_PATTERN, description="ISO-8601 timestamp (naive = "
                           "UTC); it must exist in UTC (not year 9999 at a negative offset)")
    speaker: str | None = Field(None, min_length=1, max_length=200, pattern=NONBLANK,
                                description="chat turns only")
    meta: dict[str, Any] | None = None


class EventBatch(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"events": [{"id": "e1", "input": [1.0, 0.0, 0.0], "target": "yes"}]}]})

    events: list[Event] = Field(min_length=1)


class PredictRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"inputs": [[1.0, 0.0, 0.0]], "top_k": 2}]})

    inputs: list[str | list[float]] = Field(min_length=1)
    version: int | None = Field(None, ge=0, le=MAXV, description="pin this version")
    min_version: int | None = Field(None, ge=0, le=MAXV, description="read-your-writes: wait for it")
    as_of: str | None = Field(None, pattern=TS_PATTERN,
                              description="ISO-8601: the last version at or before it")
    top_k: int | None = Field(None, ge=1, le=1000)
    wait_ms: int | None = Field(None, ge=0, le=60000, description="how long min_version waits")


class RollbackRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"version": 0}]})

    version: int = Field(ge=0, le=MAXV)


class ForgetRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"event_ids": ["e1"]}]})

    event_ids: list[Annotated[str, text_field()]] = Field(min_length=1)


class ForkRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"name": "copy", "version": 0}]})

    name: str = text_field()
    version: int | None = Field(None, ge=0, le=MAXV, description="default: the source's head")


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
