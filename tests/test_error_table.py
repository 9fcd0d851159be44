"""The one exception → HTTP answer table (workers/http/errors.py), pinned type by type.

Each row raises an exception where the service layer raises it and checks the full answer
(status, code, message, field, extra) against the answer the API gave before the error paths
were merged into one table. A second test sends storage exceptions through a real Ray actor
and checks the caller catches the same exception type, with its fields.
"""

from __future__ import annotations

import pickle
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError

from agent.errors import InputError
from storage import errors as se
from workers.contract import ServiceError
from workers.http.errors import install_error_handlers
from workers.http.middleware import HttpMetrics
from workers.validation import TooMany

DB_DOWN = {"code": "database_unavailable",
           "message": "the database is unavailable (connection lost or refused); retry shortly"}

# (exception, status, error body, extra top-level keys)
ROWS: list[tuple[BaseException, int, dict[str, Any], dict[str, Any]]] = [
    (ServiceError(429, "backpressure", "slow down", None, {"retry_after_ms": 200}), 429,
     {"code": "backpressure", "message": "slow down"}, {"retry_after_ms": 200}),
    (ServiceError(409, "version_not_reached", "not yet", "min_version", {"head": 3}), 409,
     {"code": "version_not_reached", "message": "not yet", "field": "min_version"}, {"head": 3}),
    (InputError("inputs[0]", "expected 4 numbers"), 422,
     {"code": "invalid_input", "message": "expected 4 numbers", "field": "inputs[0]"}, {}),
    (TooMany("events", "at most 10 events"), 413,
     {"code": "too_many_events", "message": "at most 10 events", "field": "events"}, {}),
    (TooMany("inputs", "at most 10 inputs"), 413,
     {"code": "too_many_inputs", "message": "at most 10 inputs", "field": "inputs"}, {}),
    (se.AgentNotFound("a1"), 404,
     {"code": "not_found", "message": "agent not found", "field": "agent_id"}, {}),
    (se.VersionNotFound("a1", 7), 404,
     {"code": "unknown_version", "message": "agent 'a1' has no version 7", "field": "version"},
     {}),
    (se.VersionNotFound("a1", 7, "before"), 404,
     {"code": "unknown_version", "message": "agent 'a1' has no version 7", "field": "before"},
     {}),
    (se.UnknownEvents("a1", ["y", "x"]), 404,
     {"code": "unknown_events", "message": "unknown event ids: x, y", "field": "event_ids"},
     {"unknown_ids": ["x", "y"]}),
    (se.ForgottenEvents("a1", 2, ["e1"]), 409,
     {"code": "forgotten_events", "message": "agent 'a1' version 2 contains forgotten events "
      "['e1']", "field": "version"}, {}),
    (se.VersionThinned("a1", 2), 410,
     {"code": "version_thinned", "message": str(se.VersionThinned("a1", 2)), "field": "version"},
     {}),
    (se.VersionConflict("a1", 2, 3), 409,
     {"code": "version_conflict", "message": str(se.VersionConflict("a1", 2, 3))}, {}),
    (se.CorruptData("state", "bad bytes"), 500,
     {"code": "corrupt_data", "message": "corrupt_data: the store could not complete the request"},
     {}),
    (se.ChecksumMismatch("a1", 2, "0" * 64, "1" * 64), 500,
     {"code": "checksum_mismatch",
      "message": "checksum_mismatch: the store could not complete the request"}, {}),
    (se.StoreBusy("locked"), 503, DB_DOWN, {}),
    (OperationalError("SELECT 1", {}, Exception("connection refused")), 503, DB_DOWN, {}),
    (RuntimeError("boom"), 500,
     {"code": "internal", "message": "internal error; see the server log"}, {}),
]


def _client() -> TestClient:
    app = FastAPI()
    install_error_handlers(app, HttpMetrics())
    box: dict[str, BaseException] = {}

    def service_call() -> None:  # where a Runtime method raises
        raise box["exc"]

    @app.get("/raise")
    def route() -> None:
        service_call()

    client = TestClient(app, raise_server_exceptions=False)
    client.box = box  # type: ignore[attr-defined]
    return client


@pytest.mark.parametrize("exc,status,error,extra", ROWS, ids=[type(r[0]).__name__ for r in ROWS])
def test_each_exception_type_keeps_its_answer(exc, status, error, extra):
    client = _client()
    client.box["exc"] = exc  # type: ignore[attr-defined]
    r = client.get("/raise")
    assert r.status_code == status
    assert r.json() == {"error": error, **extra}
    if status == 503:
        assert r.headers.get("retry-after") == "1"


@pytest.mark.parametrize("exc", [r[0] for r in ROWS if not isinstance(r[0], OperationalError)],
                         ids=[type(r[0]).__name__ for r in ROWS
                              if not isinstance(r[0], OperationalError)])
def test_each_exception_survives_pickling(exc):
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is type(exc)
    assert str(back) == str(exc)
    assert vars(back) == vars(exc)


CROSSING = [se.VersionNotFound("a1", 7, "before"), se.UnknownEvents("a1", ["b", "a"]),
            se.ForgottenEvents("a1", 2, ["e1"]), se.AgentNotFound("a1"),
            ServiceError(429, "backpressure", "slow down", None, {"retry_after_ms": 200}),
            InputError("inputs[0]", "expected 4 numbers")]


def test_errors_raised_in_a_ray_actor_reach_the_caller_as_themselves(ray_cluster):
    import ray

    from workers.service import actor_result

    @ray.remote(num_cpus=0)
    class Raiser:
        def boom(self, exc: BaseException) -> None:
            raise exc

        def crash(self) -> None:
            raise RuntimeError("not a known error")

    actor = Raiser.remote()  # type: ignore[attr-defined]
    try:
        for exc in CROSSING:
            with pytest.raises(type(exc)) as caught:
                actor_result(actor.boom.remote(exc), 60)
            assert type(caught.value) is type(exc)
            assert vars(caught.value) == vars(exc) and str(caught.value) == str(exc)
        with pytest.raises(ray.exceptions.RayTaskError):  # unknown: Ray's own error, a 500
            actor_result(actor.crash.remote(), 60)
    finally:
        ray.kill(actor)
