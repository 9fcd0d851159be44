"""The request bodies and query strings of DESIGN §7 as strict Pydantic models: THE validation of
what a request may hold, and what ``/openapi.json`` documents (``workers.http.schemas``).

What needs the agent (a vector's dimension, text or vector inputs, the label policy) is checked
in one place after the model, :mod:`workers.validation`; so are the events of an ingest batch
(one NumPy pass over the vectors, issue 16). Rules the models keep:

- ``strict``: no string for a number, no ``true`` for an integer; an integral float (``1.0``)
  is that integer, as JSON Schema counts it (:data:`INTEGRAL`);
- every string kept or echoed is non-blank valid Unicode text, no lone surrogate, no NUL
  (:data:`TEXT`, :func:`agent.errors.check_text`); timestamps are read as the service reads them
  (:func:`workers.validation.check_ts`);
- unknown fields are ignored (the API never refused them); limits are the constants of
  :mod:`workers.validation`, and the limits that are settings (inputs per predict, the longest
  ``wait_ms``) come from the validation context ``{"settings": Settings}``.

A :class:`pydantic.ValidationError` becomes the 422 ``invalid_input`` answer naming the field
(``event_ids[1]``) at the edge, ``workers.http.errors``.

Examples
--------
>>> RollbackRequest.model_validate({"version": 2.0}).version
2
>>> ForgetRequest.model_validate({"event_ids": ["a", "b", "a"]}).event_ids
['a', 'b']
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import PydanticCustomError

from agent.errors import InputError, check_text
from storage.repository.event_status import EVENT_STATUSES, MAX_EVENT_PAGE
from storage.repository.quality import MAX_WINDOW
from workers.http.agent_schema import NONBLANK
from workers.settings import Settings
from workers.validation import (
    MAX_ID_CHARS,
    MAX_NAME_CHARS,
    MAX_TOP_K,
    MAX_VERSION,
    check_inputs,
    check_ts,
)

MAX_VERSION_PAGE = 10_000  # versions per page
DEFAULT_WINDOW = 500  # events per prequential accuracy point
DEFAULT_POINTS = 100
MAX_POINTS = 10_000

# an ISO-8601 time as the service reads it (datetime.fromisoformat), date and optional time
# and offset, years 0002-9998 (years 1 and 9999 exist only partly in UTC: see check_ts); the
# document states it, check_ts decides
_DAY = (r"(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
        r"|02-(?:0[1-9]|1[0-9]|2[0-8]))")
TS_PATTERN = (r"^(?:000[2-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]"
              r"|999[0-8])-" + _DAY + r"(?:T(?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9]"
              r"(?:\.[0-9]{1,6})?)?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])?)?$")


def _err(message: str, kind: str = "invalid_input") -> PydanticCustomError:
    """A validation error whose message is ``message`` as it is (no template)."""
    return PydanticCustomError(kind, "{message}", {"message": message})


def _invalid(e: InputError) -> PydanticCustomError:
    return _err(e.message)


def _integral(v: Any) -> Any:
    """``4.0`` → ``4`` (JSON Schema counts it an integer); anything else as sent."""
    return int(v) if isinstance(v, float) and v.is_integer() else v


def _text(v: str) -> str:
    if not v.strip():
        raise _err("expected a non-empty string")
    try:
        return check_text(v, "")
    except InputError as e:
        raise _invalid(e) from None


def _ts(v: Any) -> datetime:
    try:
        return check_ts(v, "")
    except InputError as e:
        raise _invalid(e) from None


INTEGRAL = BeforeValidator(_integral)  # 4.0 is the integer 4
Version = Annotated[int, Field(ge=0, le=MAX_VERSION), INTEGRAL]
TopK = Annotated[int, Field(ge=1, le=MAX_TOP_K), INTEGRAL]
# (the longest wait is a setting: PredictRequest checks it, workers.http.openapi documents it)
WaitMs = Annotated[int, Field(ge=0), WithJsonSchema({"type": "integer", "minimum": 0,
                                                     "maximum": 60000}), INTEGRAL]


TEXT = AfterValidator(_text)  # non-blank valid Unicode text (the length: the Field)
Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME_CHARS), TEXT,
                 WithJsonSchema({"type": "string", "minLength": 1, "maxLength": MAX_NAME_CHARS,
                                 "pattern": NONBLANK})]
EventId = Annotated[str, Field(min_length=1, max_length=MAX_ID_CHARS), TEXT,
                    WithJsonSchema({"type": "string", "minLength": 1, "maxLength": MAX_ID_CHARS,
                                    "pattern": NONBLANK})]
Timestamp = Annotated[datetime, WithJsonSchema({"type": "string", "pattern": TS_PATTERN}),
                      BeforeValidator(_ts)]


class Body(BaseModel):
    """A JSON request body: strict types; an unknown field is a 422 naming it (a misspelt
    ``top_k`` must not be silently dropped)."""

    model_config = ConfigDict(strict=True, extra="forbid")


class TenantCreate(Body):
    model_config = ConfigDict(json_schema_extra={"examples": [{"name": "acme"}]})

    name: Name = Field(description="the tenant's name")


class RollbackRequest(Body):
    model_config = ConfigDict(json_schema_extra={"examples": [{"version": 0}]})

    version: Version


def _unique(ids: list[str]) -> list[str]:
    return list(dict.fromkeys(ids))


class ForgetRequest(Body):
    model_config = ConfigDict(json_schema_extra={"examples": [{"event_ids": ["e1"]}]})

    event_ids: Annotated[list[EventId], Field(min_length=1), AfterValidator(_unique)]


class ReleaseRequest(Body):
    """``{}`` (every held event) or ``{"event_ids": [...]}`` listing every held event."""

    event_ids: Annotated[list[EventId], Field(min_length=1), AfterValidator(_unique)] | None = None


class ForkRequest(Body):
    model_config = ConfigDict(json_schema_extra={"examples": [{"name": "copy", "version": 0}]})

    name: Name
    version: Version | None = Field(None, description="default: the source's head")


class IngestBatch(Body):
    """``{"events": [...]}``: the list's length is checked here (at most the setting
    ``max_events_per_request``: 413 ``too_many_events``); each event is checked against the agent
    by :func:`workers.validation.check_event` (one NumPy pass per vector, issue 16), so the
    items are taken as they are. The document states the body as ``workers.http.schemas.EventBatch``
    (each event's fields as check_event reads them)."""

    events: Annotated[list[Any], Field(min_length=1)]

    @field_validator("events")
    @classmethod
    def _not_too_many(cls, v: list[Any], info: ValidationInfo) -> list[Any]:
        settings = (info.context or {}).get("settings")
        if settings is not None and len(v) > settings.max_events_per_request:
            raise _err(f"{len(v)} events in one request, at most "
                       f"{settings.max_events_per_request} (DELTAMEM_MAX_EVENTS_PER_REQUEST)",
                       "too_many")
        return v


class PredictRequest(Body):
    # the inputs themselves are checked against the agent: workers.validation.check_inputs

    model_config = ConfigDict(json_schema_extra={"examples": [{"inputs": [[1.0, 0.0, 0.0]],
                                                               "top_k": 2}]})

    inputs: Annotated[list[Any], Field(min_length=1), WithJsonSchema(
        {"type": "array", "minItems": 1,
         "items": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "number"}}]}})]
    version: Version | None = Field(None, description="pin this version")
    min_version: Version | None = Field(None, description="read-your-writes: wait for it")
    as_of: Timestamp | None = Field(None, description="ISO-8601: the last version at or before it")
    top_k: TopK | None = None
    wait_ms: WaitMs | None = Field(
        None, description="how long min_version waits")

    def service_args(self, agent: dict[str, Any], settings: Settings) -> dict[str, Any]:
        """Keyword arguments for ``ServiceAPI.predict`` (plus ``inputs``, checked for ``agent``)."""
        wait = settings.default_wait_ms if self.wait_ms is None else self.wait_ms
        return {"inputs": check_inputs(self.inputs, agent, settings), "version": self.version,
                "min_version": self.min_version, "as_of": self.as_of, "top_k": self.top_k,
                "wait_ms": wait}

    @field_validator("inputs")
    @classmethod
    def _not_too_many(cls, v: list[Any], info: ValidationInfo) -> list[Any]:
        settings = (info.context or {}).get("settings")
        if settings is not None and len(v) > settings.max_predict_inputs:
            raise _err(f"{len(v)} inputs in one request, at most {settings.max_predict_inputs} "
                       "(DELTAMEM_MAX_PREDICT_INPUTS)", "too_many")
        return v

    @field_validator("wait_ms")
    @classmethod
    def _wait_bound(cls, v: int | None, info: ValidationInfo) -> int | None:
        settings = (info.context or {}).get("settings")
        if v is not None and settings is not None and v > settings.max_wait_ms:
            raise _err(f"expected an integer <= {settings.max_wait_ms}, got {v}")
        return v


# ---- query strings --------------------------------------------------------------------------

BOOL_WORDS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def _integral_decimal(raw: str) -> int | None:
    """The integer a decimal literal like ``10``, ``10.0`` or ``1e2`` spells, else None.

    >>> _integral_decimal("1e2"), _integral_decimal("10.0"), _integral_decimal("1.5")
    (100, 10, None)
    """
    from decimal import Decimal, InvalidOperation

    raw = raw.strip()
    try:
        return int(raw)
    except ValueError:
        pass
    if len(raw) > 100 or not all(c in "0123456789+-.eE" for c in raw):
        return None  # (no NaN, Infinity or a huge exponent)
    try:
        d = Decimal(raw)
    except InvalidOperation:
        return None
    if not d.is_finite() or abs(d.adjusted()) > 30 or d != d.to_integral_value():
        return None
    return int(d)


def _query_int(raw: Any) -> Any:
    if not isinstance(raw, str):
        return raw
    if not raw.strip():
        raise _err("expected an integer, got an empty value")
    v = _integral_decimal(raw)
    if v is None:
        raise _err(f"expected an integer, got {raw!r}")
    return v


def _query_bool(raw: Any) -> Any:
    if isinstance(raw, str):
        if raw not in BOOL_WORDS:
            raise _err(f"expected true or false, got {raw!r}")
        return BOOL_WORDS[raw]
    return raw


QUERY_INT = BeforeValidator(_query_int)  # "10", "10.0", "1e2" (JSON Schema's integers)
QueryVersion = Annotated[int, Field(ge=0, le=MAX_VERSION), QUERY_INT]
VersionPage = Annotated[int, Field(ge=1, le=MAX_VERSION_PAGE), QUERY_INT]
EventPage = Annotated[int, Field(ge=1, le=MAX_EVENT_PAGE), QUERY_INT]
Window = Annotated[int, Field(ge=1, le=MAX_WINDOW), QUERY_INT]
PointPage = Annotated[int, Field(ge=1, le=MAX_POINTS), QUERY_INT]
QueryBool = Annotated[bool, BeforeValidator(_query_bool)]


class Query(BaseModel):
    """A query string (``dict(request.query_params)``): unknown parameters are ignored."""

    model_config = ConfigDict(strict=True, extra="ignore")


class IngestQuery(Query):
    partial: Annotated[QueryBool, WithJsonSchema({"type": "string", "enum": sorted(BOOL_WORDS)})] = Field(
        False, description="accept the valid events and list the invalid ones instead of "
                           "rejecting all")


class VersionsQuery(Query):
    limit: VersionPage | None = Field(None, description="at most this many versions, newest first")
    before: QueryVersion | None = Field(None, description="only versions below this one (paging)")


def _status(v: str) -> str:
    if v not in EVENT_STATUSES:
        raise _err(f"expected one of {list(EVENT_STATUSES)}, got {v!r}")
    return v


class EventsQuery(Query):
    status: Annotated[str, AfterValidator(_status), WithJsonSchema(
        {"type": "string", "enum": list(EVENT_STATUSES)})] = Field(
        description="which events: rejected (with the reason), pending or applied")
    limit: EventPage | None = Field(None, description="at most this many events (default 100), "
                                    "oldest first")
    after_seq: QueryVersion | None = Field(None, description="only events after this seq "
                                           "(paging: next_after_seq)")


class QualityQuery(Query):
    window: Window = Field(DEFAULT_WINDOW, description="events per accuracy point (default "
                           f"{DEFAULT_WINDOW})")
    limit: PointPage = Field(DEFAULT_POINTS, description=f"at most this many points (default "
                             f"{DEFAULT_POINTS}), newest first")
    before: QueryVersion | None = Field(None, description="only versions below this one (paging)")


def query_parameters(model: type[Query]) -> list[dict[str, Any]]:
    """The OpenAPI ``parameters`` of a query model: name, required, schema (the optional
    fields' ``null`` left out: a query parameter is absent or a value), description."""
    doc = model.model_json_schema()
    required = set(doc.get("required", []))
    out = []
    for name, prop in doc["properties"].items():
        alts = [a for a in prop.get("anyOf", [prop]) if a.get("type") != "null"]
        schema = {k: v for k, v in alts[0].items() if k not in ("title", "description", "default")}
        if isinstance(prop.get("default"), bool):  # (numbers' defaults: in the description)
            schema["default"] = str(prop["default"]).lower()
        out.append({"name": name, "in": "query", "required": name in required,
                    "schema": schema, "description": prop["description"]})
    return out
