"""Error answers of the HTTP app: every 4xx/5xx has the body ``{"error": {"code", "message",
"field"?}}`` (plus ``rejected`` for a rejected batch), never FastAPI's ``{"detail": ...}``.

Examples
--------
>>> error_body(404, "not_found", "agent not found", "agent_id")
{'error': {'code': 'not_found', 'message': 'agent not found', 'field': 'agent_id'}}
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from agent.errors import InputError
from storage.errors import NotFound, StorageError
from workers.contract import ServiceError
from workers.http_middleware import HttpMetrics
from workers.validation import TooMany

log = logging.getLogger("deltamem.http")

HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
              405: "method_not_allowed", 406: "not_acceptable", 409: "conflict",
              413: "payload_too_large", 415: "unsupported_media_type", 422: "invalid_input",
              429: "too_many_requests", 500: "internal", 503: "unavailable"}


def error_body(status: int, code: str, message: str, field: str | None = None,
               extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON error body."""
    return ServiceError(status, code, message, field, extra).body()


STORAGE_STATUS = {"VersionConflict": 409, "ForgottenEvents": 409, "VersionThinned": 410,
                  "StoreBusy": 503}


def storage_service_error(e: StorageError) -> ServiceError:
    """A store error that reached the HTTP layer → its answer (404 for anything not found)."""
    status = 404 if isinstance(e, NotFound) else 500
    for cls in type(e).__mro__:
        status = STORAGE_STATUS.get(cls.__name__, status)
    extra = {"ids": list(e.ids)} if hasattr(e, "ids") else None
    message = str(e) if status < 500 else f"{e.code}: the store could not complete the request"
    return ServiceError(status, getattr(e, "code", "storage_error"), message,
                        getattr(e, "field", None), extra)


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
        headers = {"WWW-Authenticate": "Bearer"} if e.status == 401 else None
        return JSONResponse(e.body(), status_code=e.status, headers=headers)

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, e: ServiceError) -> JSONResponse:
        return answer(e)

    @app.exception_handler(InputError)
    async def input_error(request: Request, e: InputError) -> JSONResponse:
        if isinstance(e, TooMany):
            code = "too_many_events" if e.field == "events" else "too_many_inputs"
            return answer(ServiceError(413, code, e.message, e.field))
        return answer(ServiceError(422, "invalid_input", e.message, e.field))

    @app.exception_handler(StorageError)
    async def storage_error(request: Request, e: StorageError) -> JSONResponse:
        err = storage_service_error(e)
        if err.status >= 500:
            log.error("store error on %s %s: %s", request.method, request.url.path, e)
        resp = answer(err)
        if err.status == 503:
            resp.headers["Retry-After"] = "1"
        return resp

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, e: RequestValidationError) -> JSONResponse:
        errs = e.errors()
        first = errs[0] if errs else {"loc": ("body",), "msg": "invalid request"}
        return answer(ServiceError(422, "invalid_input", str(first.get("msg")),
                                   _loc_field(tuple(first.get("loc", ())))))

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
        from workers.contract import database_unavailable

        if database_unavailable(e):  # e.g. PostgreSQL restarting: retry, not a server bug
            log.warning("database unavailable on %s %s: %s", request.method, request.url.path,
                        type(e).__name__)
            resp = answer(ServiceError(503, "database_unavailable", "the database is "
                                       "unavailable (connection lost or refused); retry shortly"))
            resp.headers["Retry-After"] = "1"
            return resp
        log.exception("internal error on %s %s", request.method, request.url.path)
        metrics.error(500, "internal")
        return JSONResponse(error_body(500, "internal", "internal error; see the server log"),
                            status_code=500)
