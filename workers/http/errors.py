"""Error answers of the HTTP app: every 4xx/5xx has the body ``{"error": {"code", "message",
"field"?}}`` (plus ``rejected`` for a rejected batch), never FastAPI's ``{"detail": ...}``.

Examples
--------
>>> error_body(404, "not_found", "agent not found", "agent_id")
{'error': {'code': 'not_found', 'message': 'agent not found', 'field': 'agent_id'}}
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from agent.errors import InputError
from storage import errors as se
from workers.contract import ServiceError
from workers.http.middleware import HttpMetrics
from workers.validation import TooMany

log = logging.getLogger("deltamem.http")

HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
              405: "method_not_allowed", 406: "not_acceptable", 409: "conflict",
              413: "payload_too_large", 415: "unsupported_media_type", 422: "invalid_input",
              429: "too_many_requests", 500: "internal", 503: "unavailable"}

DB_DOWN = "the database is unavailable (connection lost or refused); retry shortly"


def error_body(status: int, code: str, message: str, field: str | None = None,
               extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON error body."""
    return ServiceError(status, code, message, field, extra).body()


def _unknown_events(e: se.UnknownEvents) -> ServiceError:
    return ServiceError(404, "unknown_events", f"unknown event ids: {', '.join(e.ids)}",
                        "event_ids", {"unknown_ids": list(e.ids)})


def _too_many(e: TooMany) -> ServiceError:
    code = "too_many_events" if e.field == "events" else "too_many_inputs"
    return ServiceError(413, code, e.message, e.field)


def _invalid_body(e: ValidationError | RequestValidationError) -> ServiceError:
    """A request model's first error (fields in their order; FastAPI's own checks of path
    parameters alike): 422 ``invalid_input`` naming the field, or 413 when a list is over its
    limit (error type ``too_many``)."""
    errs = e.errors(include_url=False) if isinstance(e, ValidationError) else list(e.errors())
    first = errs[0] if errs else {"loc": (), "msg": "invalid request", "type": ""}
    field = _loc_field(tuple(first.get("loc", ())))
    if first.get("type") == "too_many":
        return _too_many(TooMany(field, str(first.get("msg"))))
    if first.get("type") == "extra_forbidden":
        return ServiceError(422, "invalid_input", "unknown field (not in the request's schema)", field)
    return ServiceError(422, "invalid_input", str(first.get("msg")), field)


def _store_failed(e: se.StorageError) -> ServiceError:
    return ServiceError(500, e.code, f"{e.code}: the store could not complete the request")


# THE table: each exception type → its answer, the first matching row wins (subclasses first).
ERRORS: list[tuple[type[BaseException], Callable[[Any], ServiceError]]] = [
    (ServiceError, lambda e: e),
    (TooMany, _too_many),
    (ValidationError, _invalid_body),
    (InputError, lambda e: ServiceError(422, "invalid_input", e.message, e.field)),
    (se.UnknownEvents, _unknown_events),
    (se.VersionNotFound, lambda e: ServiceError(404, "unknown_version", str(e), e.field)),
    (se.AgentNotFound, lambda e: ServiceError(404, "not_found", "agent not found", "agent_id")),
    (se.NotFound, lambda e: ServiceError(404, e.code, str(e), getattr(e, "field", None))),
    (se.ForgottenEvents, lambda e: ServiceError(409, "forgotten_events", str(e), e.field)),
    (se.VersionThinned, lambda e: ServiceError(410, "version_thinned", str(e), e.field)),
    (se.VersionConflict, lambda e: ServiceError(409, "version_conflict", str(e))),
    (se.StoreBusy, lambda e: ServiceError(503, "database_unavailable", DB_DOWN)),
    (se.StorageError, _store_failed),
]


def database_unavailable(exc: BaseException) -> bool:
    """True for errors that mean "the database cannot be reached right now" (a restart, a
    cut connection, a locked SQLite file): the client should retry, so they answer 503."""
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

    return isinstance(exc, (OperationalError, InterfaceError, se.StoreBusy)) or (
        isinstance(exc, DBAPIError) and bool(exc.connection_invalidated))


def error_answer(exc: BaseException) -> ServiceError | None:
    """The answer for ``exc`` from :data:`ERRORS` (or 503 when the database is unreachable);
    None: not a known error (a 500)."""
    for cls, answer in ERRORS:
        if isinstance(exc, cls):
            return answer(exc)
    if database_unavailable(exc):
        return ServiceError(503, "database_unavailable", DB_DOWN)
    return None


def _loc_field(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [p for p in loc if p not in ("body", "query", "path", "header")]
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "body"


def install_error_handlers(app: FastAPI, metrics: HttpMetrics) -> None:
    """Route every exception to an answer in the error format, counting it by code."""

    def answer(e: ServiceError) -> JSONResponse:
        metrics.error(e.status, e.code)
        headers = {"WWW-Authenticate": "Bearer"} if e.status == 401 else \
            {"Retry-After": "1"} if e.status == 503 else None
        return JSONResponse(e.body(), status_code=e.status, headers=headers)

    async def known_error(request: Request, e: Exception) -> JSONResponse:
        err = error_answer(e)
        if err is None:
            return await internal_error(request, e)
        if err.status >= 500:
            log.error("%s on %s %s: %s", err.code, request.method, request.url.path, e)
        return answer(err)

    for cls in (ServiceError, InputError, ValidationError, se.StorageError):
        app.add_exception_handler(cls, known_error)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, e: RequestValidationError) -> JSONResponse:
        return answer(_invalid_body(e))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        code = HTTP_CODES.get(e.status_code, "error")
        message = e.detail if isinstance(e.detail, str) else code.replace("_", " ")
        if e.status_code == 404:
            message = f"no route {request.method} {request.url.path}"
        resp = answer(ServiceError(e.status_code, code, message))
        if e.headers:
            resp.headers.update(e.headers)
        return resp

    @app.exception_handler(Exception)
    async def internal_error(request: Request, e: Exception) -> JSONResponse:
        err = error_answer(e)
        if err is not None:  # e.g. PostgreSQL restarting: retry, not a server bug
            log.warning("%s on %s %s: %s", err.code, request.method, request.url.path,
                        type(e).__name__)
            return answer(err)
        log.exception("internal error on %s %s", request.method, request.url.path)
        metrics.error(500, "internal")
        return JSONResponse(error_body(500, "internal", "internal error; see the server log"),
                            status_code=500)
