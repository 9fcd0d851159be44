"""The contract between the HTTP/CLI layer and the Ray runtime.

The HTTP app (``workers.app``) parses and checks request bodies, authenticates, and calls a
:class:`ServiceAPI`; the runtime (``workers.runtime``) implements it over the Ray actors and
the store. Every method returns plain JSON-ready dicts exactly as DESIGN §7 shows them, or
raises :class:`ServiceError`, which the app turns into ``{"error": {...}}`` with its status.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol


class ServiceError(Exception):
    """An error with an HTTP status, a code, a message and the field it concerns.

    ``extra`` is merged into the error body's top level (e.g. ``{"rejected": [...]}``
    or ``{"head": 7}`` for a 409).
    """

    def __init__(self, status: int, code: str, message: str, field: str | None = None,
                 extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            err["field"] = self.field
        return {"error": err, **self.extra}


def not_found(what: str, field: str | None = None) -> ServiceError:
    return ServiceError(404, "not_found", f"{what} not found", field)


class ServiceAPI(Protocol):
    """What the HTTP app calls. ``tenant_id`` comes from the authenticated key."""

    # tenants and keys
    def create_tenant(self, name: str) -> dict[str, Any]: ...  # {"id","name","api_key"}
    def authenticate(self, api_key: str) -> str | None: ...  # tenant id, or None

    # agents
    def create_agent(self, tenant_id: str, name: str, config: dict[str, Any]) -> dict[str, Any]: ...
    def list_agents(self, tenant_id: str) -> list[dict[str, Any]]: ...
    def get_agent(self, tenant_id: str, agent_id: str) -> dict[str, Any]: ...
    # the agent's settings and id, what request checks need (no counters, no labels; cheap)
    def agent_config(self, tenant_id: str, agent_id: str) -> dict[str, Any]: ...

    # events: each event is {"id"?: str, "input": str | list[float], "target"?: str,
    # "beta"?: float, "ts"?: datetime, "speaker"?: str} already schema-checked by the app;
    # agent-specific checks (dims, encoder kind, finite values) happen here and come back
    # as rejected entries {"index", "error"} (422 unless partial).
    def ingest(self, tenant_id: str, agent_id: str, events: list[dict[str, Any]],
               partial: bool) -> dict[str, Any]: ...  # {"accepted","duplicates","rejected"}

    def predict(self, tenant_id: str, agent_id: str, inputs: list[Any], *,
                version: int | None = None, min_version: int | None = None,
                as_of: datetime | None = None, top_k: int | None = None,
                wait_ms: int | None = None) -> dict[str, Any]: ...

    def events(self, tenant_id: str, agent_id: str, status: str, limit: int | None,
               after_seq: int | None) -> dict[str, Any]: ...  # {"events", "next_after_seq"}

    # versions
    def versions(self, tenant_id: str, agent_id: str, limit: int | None,
                 before: int | None) -> dict[str, Any]: ...
    def rollback(self, tenant_id: str, agent_id: str, version: int) -> dict[str, Any]: ...
    def forget(self, tenant_id: str, agent_id: str, event_ids: list[str]) -> dict[str, Any]: ...
    def fork(self, tenant_id: str, agent_id: str, version: int | None,
             name: str) -> dict[str, Any]: ...

    # operations
    def healthy(self) -> bool: ...
    def ready(self) -> dict[str, Any]: ...  # {"ready": bool, "ray":..., "database":..., "serving":...}
    def metrics_text(self) -> str: ...  # Prometheus text exposition


def error_dict(exc: BaseException) -> dict[str, Any] | None:
    """A known error raised inside an actor, as a plain dict that crosses Ray safely
    (store exceptions have constructors Ray cannot rebuild). None: not a known error."""
    from agent.errors import InputError
    from storage import errors as se

    def out(status: int, code: str, message: str, field: str | None = None,
            **extra: Any) -> dict[str, Any]:
        return {"error": {"status": status, "code": code, "message": message, "field": field,
                          "extra": extra}}

    if isinstance(exc, ServiceError):
        return out(exc.status, exc.code, exc.message, exc.field, **exc.extra)
    if isinstance(exc, se.UnknownEvents):
        ids = sorted(getattr(exc, "ids", []))
        return out(404, "unknown_events", f"unknown event ids: {', '.join(ids)}", "event_ids",
                   unknown_ids=ids)
    if isinstance(exc, se.VersionNotFound):
        return out(404, "unknown_version", str(exc), getattr(exc, "field", "version"))
    if isinstance(exc, se.AgentNotFound):
        return out(404, "not_found", "agent not found", "agent_id")
    if isinstance(exc, se.ForgottenEvents):
        return out(409, "forgotten_events", str(exc), "version")
    if isinstance(exc, se.VersionThinned):
        return out(410, "version_thinned", str(exc), "version")
    if isinstance(exc, InputError):  # storage's InputError subclasses agent's
        return out(422, "invalid_input", exc.message, exc.field)
    if database_unavailable(exc):
        return out(503, "database_unavailable",
                   "the database is unavailable (connection lost or refused); retry shortly")
    return None


def database_unavailable(exc: BaseException) -> bool:
    """True for errors that mean "the database cannot be reached right now" (a restart, a
    cut connection, a locked SQLite file): the client should retry, so they answer 503."""
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

    from storage.errors import StoreBusy

    return isinstance(exc, (OperationalError, InterfaceError, StoreBusy)) or (
        isinstance(exc, DBAPIError) and bool(exc.connection_invalidated))


def returning_errors(fn: Any) -> Any:
    """Decorator for actor methods: known errors come back as :func:`error_dict` values."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            d = error_dict(exc)
            if d is None:
                raise
            return d

    return wrapper
