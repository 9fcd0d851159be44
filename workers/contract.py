"""The contract between the HTTP/CLI layer and the Ray runtime.

The HTTP app (``workers.http.app``) parses and checks request bodies, authenticates, and calls a
:class:`ServiceAPI`; the runtime (``workers.runtime``) implements it over the Ray actors and
the store. Every method returns plain JSON-ready dicts exactly as DESIGN §7 shows them, or
raises: a :class:`ServiceError`, a store error (``storage.errors``) or an
:class:`agent.errors.InputError`, raised here or inside an actor (they cross Ray as
themselves). ``workers.http.errors.ERRORS``, the one table, turns each into ``{"error": {...}}``.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from agent.errors import PicklableError

if TYPE_CHECKING:
    from ray import ObjectRef

    from storage.repository.event_block import EventBlock


class RemoteMethod(Protocol):
    """``handle.method`` of a Ray actor: ``.remote(...)`` runs it and gives an ``ObjectRef``."""

    def remote(self, *args: Any, **kwargs: Any) -> ObjectRef[Any]: ...


class ActorRef(Protocol):
    """A Ray actor handle (``ray.actor.ActorHandle``) as the workers call it: every attribute is
    a :class:`RemoteMethod`. Ray types ``ActorHandle.__getattr__`` as ``Never``, which would make
    mypy skip the code after every call; a handle from ``ray.get_actor`` or ``.remote()`` fits."""

    def __getattr__(self, name: str) -> RemoteMethod: ...


class ServiceError(PicklableError):
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
    # as rejected entries {"index", "error"} (422 unless partial). Vector events may come in
    # columns instead (an EventBlock, storage/repository/event_block.py).
    def ingest(self, tenant_id: str, agent_id: str, events: list[dict[str, Any]] | EventBlock,
               partial: bool) -> dict[str, Any]: ...  # {"accepted","duplicates","rejected"}

    def predict(self, tenant_id: str, agent_id: str, inputs: list[Any], *,
                version: int | None = None, min_version: int | None = None,
                as_of: datetime | None = None, top_k: int | None = None,
                wait_ms: int | None = None) -> dict[str, Any]: ...

    # the same two answers when this process holds them without waiting (the app calls these
    # on the event loop): None means "ask agent_config / predict" (in a thread)
    def cached_config(self, tenant_id: str, agent_id: str) -> dict[str, Any] | None: ...
    # ingest's answer awaited on the loop (no worker thread), None: ask ingest (in a thread)
    async def ingest_on_loop(self, tenant_id: str, agent_id: str,
                             events: list[dict[str, Any]] | EventBlock,
                             partial: bool) -> dict[str, Any] | None: ...
    def predict_cached(self, tenant_id: str, agent_id: str, inputs: Any, *,
                       version: int | None = None, min_version: int | None = None,
                       as_of: datetime | None = None, top_k: int | None = None,
                       wait_ms: int | None = None) -> dict[str, Any] | None: ...

    def events(self, tenant_id: str, agent_id: str, status: str, limit: int | None,
               after_seq: int | None) -> dict[str, Any]: ...  # {"events", "next_after_seq"}

    # versions
    def versions(self, tenant_id: str, agent_id: str, limit: int | None,
                 before: int | None) -> dict[str, Any]: ...
    def rollback(self, tenant_id: str, agent_id: str, version: int) -> dict[str, Any]: ...
    def forget(self, tenant_id: str, agent_id: str, event_ids: list[str]) -> dict[str, Any]: ...
    def fork(self, tenant_id: str, agent_id: str, version: int | None,
             name: str) -> dict[str, Any]: ...

    def quality(self, tenant_id: str, agent_id: str, window: int, limit: int,
                before: int | None) -> dict[str, Any]: ...  # {"window", "points"}

    # the guard (workers/actors/guard.py)
    def guard(self, tenant_id: str, agent_id: str) -> dict[str, Any]: ...
    def release(self, tenant_id: str, agent_id: str,
                event_ids: list[str] | None) -> dict[str, Any]: ...  # {"released", "version"}

    # operations
    def healthy(self) -> bool: ...
    def ready(self) -> dict[str, Any]: ...  # {"ready": bool, "ray":..., "database":..., "serving":...}
    def metrics_text(self) -> str: ...  # Prometheus text exposition
