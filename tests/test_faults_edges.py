"""Fault classes 2, 5 and 6 of issue 15 against a real running service (Ray actors, uvicorn),
on SQLite and on PostgreSQL.

- Class 2: a timestamp that has no UTC equivalent (year 9999 at a negative offset, year 1 at a
  positive one) is a 422 naming the field, in every place a timestamp enters: ``as_of``,
  ``events[i].ts`` as JSON, NDJSON and Arrow (string and timestamp columns); the request
  changes nothing and the connection stays usable. The extreme times that do exist in UTC are
  accepted.
- Class 5: ``/readyz`` probes writes: a database that answers reads but refuses writes
  (PostgreSQL ``default_transaction_read_only``; SQLite ``PRAGMA query_only``) makes it 503
  with a JSON reason, and it is 200 again once writes work.
- Class 6: what ``/openapi.json`` says matches what the service does (see the tests at the end;
  ``test_schemathesis.py`` fuzzes the whole document).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import make_url

from tests.db_fixtures import pg_admin_url
from tests.faults_helpers import BACKENDS, database, deployment
from tests.workers_helpers import wait_for

DIM = 3
NO_UTC = ["9999-12-31T23:59:59-05:00", "9999-12-31T20:00:00-04:00", "0001-01-01T00:00:00+05:00",
          "0001-01-01T04:59:59+05:00"]
EXTREME_OK = ["9999-12-31T23:59:59+05:00", "0001-01-01T00:00:00-05:00", "9999-12-31T23:59:59Z",
              "0001-01-01T00:00:00"]


class Service:
    def __init__(self, running: Any, backend: str) -> None:
        self.running = running
        self.backend = backend
        self.http = httpx.Client(base_url=running.url, timeout=60)
        r = self.http.post("/v1/tenants", json={"name": "edges"},
                           headers={"Authorization": "Bearer adm"})
        assert r.status_code == 201, r.text
        self.h = {"Authorization": f"Bearer {r.json()['api_key']}"}
        self.agent = self.new_agent()
        self.post("events", {"events": [{"id": "seed", "input": [1, 0, 0], "target": "a"}]})
        self.wait_idle()

    def new_agent(self, **body: Any) -> str:
        r = self.http.post("/v1/agents", headers=self.h, json={
            "name": "e", "encoder": "none", "dim": DIM, **body})
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    def post(self, route: str, body: Any, agent: str | None = None, **kw: Any) -> httpx.Response:
        if "content" in kw:
            return self.http.post(f"/v1/agents/{agent or self.agent}/{route}", headers={
                **self.h, **kw.pop("headers", {})}, **kw)
        return self.http.post(f"/v1/agents/{agent or self.agent}/{route}", headers=self.h,
                              json=body, **kw)

    def state(self) -> tuple[int, int, int]:
        a = self.http.get(f"/v1/agents/{self.agent}", headers=self.h).json()
        return a["head_version"], a["events_received"], a["events_applied"]

    def wait_idle(self) -> None:
        wait_for(lambda: self.state()[1] == self.state()[2], what="events applied")


@pytest.fixture(scope="module", params=BACKENDS)
def svc(request, ray_cluster, tmp_path_factory) -> Iterator[Service]:
    with database(request.param, tmp_path_factory.mktemp("edges")) as url, \
            deployment(url, http=True) as running:
        s = Service(running, request.param)
        yield s
        s.http.close()


def assert_error(r: httpx.Response, status: int, field: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body["error"]) >= {"code", "message", "field"} and "detail" not in body, body
    assert body["error"]["field"] == field, body
    return body


# ---- class 2: timestamps without a UTC equivalent -----------------------------------------

@pytest.mark.parametrize("ts", NO_UTC)
def test_as_of_without_utc_equivalent_is_422(svc, ts):
    r = svc.post("predict", {"inputs": [[1, 0, 0]], "as_of": ts})
    body = assert_error(r, 422, "as_of")
    assert ts in body["error"]["message"]
    assert svc.http.get("/healthz").status_code == 200  # the same connection still serves


@pytest.mark.parametrize("ts", EXTREME_OK)
def test_extreme_timestamps_that_exist_in_utc_are_accepted(svc, ts):
    r = svc.post("predict", {"inputs": [[1, 0, 0]], "as_of": ts})
    if ts.startswith("9999"):
        assert r.status_code == 200 and r.json()["predictions"][0]["label"] == "a", r.text
    else:  # nothing was committed in year 1: the as_of names no version
        assert_error(r, 404, "as_of")
    r = svc.post("events", {"events": [{"input": [0, 1, 0], "target": "b", "ts": ts}]})
    assert r.status_code == 202 and r.json()["accepted"] == 1, r.text
    svc.wait_idle()


@pytest.mark.parametrize("ts", NO_UTC)
@pytest.mark.parametrize("fmt", ["json", "ndjson", "arrow-text", "arrow-timestamp"])
def test_event_ts_without_utc_equivalent_is_422_and_changes_nothing(svc, ts, fmt):
    before = svc.state()
    events = [{"id": f"ok-{fmt}-{ts}", "input": [1, 1, 0], "target": "a"},
              {"id": f"bad-{fmt}-{ts}", "input": [0, 1, 1], "target": "b", "ts": ts}]
    if fmt == "json":
        r = svc.post("events", {"events": events})
    elif fmt == "ndjson":
        r = svc.post("events", None, content="\n".join(json.dumps(e) for e in events).encode(),
                     headers={"Content-Type": "application/x-ndjson"})
    else:
        r = svc.post("events", None, content=_arrow(events, ts, fmt == "arrow-timestamp"),
                     headers={"Content-Type": "application/vnd.apache.arrow.stream"})
    body = assert_error(r, 422, "events[1].ts")
    assert [x["index"] for x in body["rejected"]] == [1]
    assert svc.state() == before
    r = svc.post("events", {"events": events}, params={"partial": "true"})
    assert r.status_code == 202 and r.json()["accepted"] == 1, r.text
    svc.wait_idle()


def _arrow(events: list[dict[str, Any]], ts: str, typed: bool) -> bytes:
    import pyarrow as pa
    import pyarrow.ipc as ipc

    stamps: list[Any] = [None, ts]
    ts_type: Any = pa.string()
    if typed:  # the same instant as a timestamp column in the offset's zone: its UTC value is
        # out of Python's range on one side, so it is built from the raw microseconds
        when = datetime.fromisoformat(ts)
        off = when.utcoffset() or timedelta(0)
        naive_utc_us = (when.replace(tzinfo=None) - datetime(1970, 1, 1)) - off
        stamps = [None, naive_utc_us // timedelta(microseconds=1)]
        hours = int(off.total_seconds() // 3600)
        ts_type = pa.timestamp("us", tz=f"{'+' if hours >= 0 else '-'}{abs(hours):02d}:00")
    table = pa.table({"id": [e["id"] for e in events],
                      "input": pa.array([e["input"] for e in events], pa.list_(pa.float64(), DIM)),
                      "target": [e["target"] for e in events],
                      "ts": pa.array(stamps, ts_type)})
    sink = io.BytesIO()
    with ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue()


def test_repository_as_of_without_utc_equivalent_names_the_field(svc):
    from agent.errors import InputError

    far = datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-5)))
    with svc.running.service.store.read() as repo, pytest.raises(InputError) as e:
        repo.version_as_of(svc.agent, far)
    assert e.value.field == "as_of"
    with svc.running.service.store.read() as repo:  # the extreme that exists still works
        assert repo.version_as_of(svc.agent, datetime(9999, 12, 31, tzinfo=UTC)) >= 1


# ---- class 5: /readyz probes writes -------------------------------------------------------

def _refuse_writes_sqlite(svc: Service, on: bool) -> None:
    engine = svc.running.service.store.engine

    def query_only(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute("PRAGMA query_only = 1")

    if on:
        event.listen(engine, "connect", query_only)
        svc._query_only = query_only  # type: ignore[attr-defined]
    else:
        event.remove(engine, "connect", svc._query_only)  # type: ignore[attr-defined]
    engine.dispose()  # the pool's connections reopen with (or without) the pragma


def _refuse_writes_postgres(svc: Service, on: bool) -> None:
    name = make_url(svc.running.settings.database_url).database
    admin = create_engine(pg_admin_url(), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as c:
            setting = "SET default_transaction_read_only = on" if on else \
                "RESET default_transaction_read_only"
            c.execute(text(f'ALTER DATABASE "{name}" {setting}'))
            # a session keeps the setting it started with: end them (the pools reconnect)
            c.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           "WHERE datname = :d AND pid <> pg_backend_pid()"), {"d": name})
    finally:
        admin.dispose()


def test_readyz_is_503_while_the_database_refuses_writes(svc):
    refuse = _refuse_writes_sqlite if svc.backend == "sqlite" else _refuse_writes_postgres
    r = svc.http.get("/readyz")
    assert r.status_code == 200 and r.json()["ready"] is True, r.text
    refuse(svc, True)
    try:
        wait_for(lambda: svc.http.get("/readyz").status_code == 503, timeout=30,
                 what="readyz 503 on a read-only database")
        body = svc.http.get("/readyz").json()
        assert body["ready"] is False and body["database"] is True, body
        assert body["database_writable"] is False and "refuses writes" in body["reason"], body
        assert "read" in body["database_error"].lower(), body  # read-only / readonly
    finally:
        refuse(svc, False)
    wait_for(lambda: svc.http.get("/readyz").status_code == 200, timeout=30,
             what="readyz 200 once writes work again")
    r = svc.post("events", {"events": [{"input": [0, 0, 1], "target": "c"}]})
    assert r.status_code == 202, r.text
    svc.wait_idle()


# ---- class 6: the OpenAPI document says what the service does -------------------------------

def _agent_schema(svc: Service) -> Any:
    import jsonschema

    doc = svc.http.get("/openapi.json").json()
    return jsonschema.Draft202012Validator({**doc, "$ref": "#/components/schemas/AgentCreate"})


AGENT_BODIES = [  # (body, accepted): the service and the document must agree on each
    ({"name": "a"}, False),  # encoder defaults to "none", which needs dim
    ({"name": "a", "dim": 3}, True),
    ({"name": "a", "dim": 3.0}, True),  # an integral float is an integer (JSON Schema)
    ({"name": "a", "encoder": "minilm", "dim": 3}, False),
    ({"name": " ", "dim": 3}, False),
    ({"name": "\x85", "dim": 3}, False),  # blank for the service (str.strip), not for ECMA \s
    ({"name": "a\x00", "dim": 3}, False),  # PostgreSQL cannot store NUL
    ({"name": "a", "dim": 3, "memory": {"rule": ""}}, False),
    ({"name": "a", "dim": 3, "memory": {"rule": None}}, True),
    ({"name": "a", "dim": 3, "memory": {"rule": "softmax", "replay": 3}}, True),
    ({"name": "a", "kind": "recall", "dim": 3, "memory": {"replay": 3}}, False),
    ({"name": "a", "kind": "recall", "dim": 3, "memory": {"rule": "softmax"}}, False),
    ({"name": "a", "dim": 3, "memory": {"colour": 1}}, False),
    ({"name": "a", "dim": 3, "input_scale": [1, 2, 3]}, True),
    ({"name": "a", "dim": 65536}, True),  # the maxima the fuzzer's hook caps (CI time)
    ({"name": "a", "dim": 65537}, False),
    ({"name": "a", "dim": 2, "memory": {"rule": "delta", "lift_dim": 65536}}, True),
    ({"name": "a", "dim": 2, "memory": {"rule": "delta", "lift_dim": 65537}}, False),
    ({"name": "a", "dim": 5000, "memory": {"rule": "rls"}}, False),  # P would be 5000²
    ({"name": "a", "dim": 5000, "memory": {"rule": "rls", "lift_dim": 8}}, True),
    ({"name": "a", "dim": 2, "memory": {"rule": "rls", "lift_dim": 4097}}, False),
    ({"name": "a", "dim": 2, "guard": {"window": 10.0, "action": "rollback"}}, True),
    ({"name": "a", "dim": 2, "guard": {"window": 9}}, False),
    ({"name": "a", "dim": 2, "guard": {"drop": 0.2, "colour": 1}}, False),
    ({"name": "a", "dim": 2, "guard": {"sample": 0, "action": "rollback"}}, True),
    ({"name": "a", "dim": 2, "guard": {"sample": 364.0}}, True),  # integral floats are integers
    ({"name": "a", "dim": 2, "guard": {"sample": 364.5}}, False),
    ({"name": "a", "dim": 2, "guard": {"sample": None}}, True),
    ({"name": "a", "dim": 2, "guard": {"sample": 10001}}, False),
    ({"name": "a", "dim": 2, "guard": {"sample": -1}}, False),
    ({"name": "a", "dim": 2, "guard": {"z": 0, "action": "rollback"}}, True),
    ({"name": "a", "dim": 2, "guard": {"z": 10.5}}, False),
    ({"name": "a", "dim": 2, "guard": {"z": None}}, True),
]


@pytest.mark.parametrize("body,accepted", AGENT_BODIES, ids=[str(i) for i in range(len(AGENT_BODIES))])
def test_agent_bodies_accepted_exactly_when_the_document_says(svc, body, accepted):
    valid = _agent_schema(svc).is_valid(body)
    r = svc.http.post("/v1/agents", headers=svc.h, json=body)
    assert valid == accepted, f"the document says {valid} for {body}"
    assert (r.status_code == 201) == accepted, r.text
    if not accepted:
        assert_error(r, 422, r.json()["error"]["field"])


def test_integral_floats_are_integers_everywhere(svc):
    assert svc.post("predict", {"inputs": [[1, 0, 0]], "version": 1.0, "top_k": 1.0,
                                "min_version": 0.0, "wait_ms": 10.0}).status_code == 200
    r = svc.http.get(f"/v1/agents/{svc.agent}/versions", headers=svc.h,
                     params={"limit": "1.0", "before": "2e0"})
    assert r.status_code == 200 and [v["version"] for v in r.json()["versions"]] == [1], r.text
    r = svc.post("fork", {"name": "f", "version": 0.0})
    assert r.status_code == 201, r.text
    assert_error(svc.post("rollback", {"version": 0.5}), 422, "version")
    r = svc.http.get(f"/v1/agents/{svc.agent}/versions", headers=svc.h, params={"limit": "1.5"})
    assert_error(r, 422, "limit")


@pytest.mark.parametrize("route,param", [("versions", "limit"), ("versions", "before"),
                                         ("events", "partial")])
def test_empty_query_parameters_are_refused(svc, route, param):
    if route == "events":
        r = svc.http.post(f"/v1/agents/{svc.agent}/events?{param}=", headers=svc.h,
                          json={"events": [{"input": [1, 0, 0], "target": "a"}]})
    else:
        r = svc.http.get(f"/v1/agents/{svc.agent}/{route}?{param}=", headers=svc.h)
    assert_error(r, 422, param)


@pytest.mark.parametrize("path,methods", [("/v1/agents", "GET, OPTIONS, POST"),
                                          ("/v1/agents/{id}", "GET, OPTIONS"),
                                          ("/v1/agents/{id}/events", "GET, OPTIONS, POST")])
def test_options_and_405_list_every_method_of_the_path(svc, path, methods):
    path = path.replace("{id}", svc.agent)
    doc = svc.http.get("/openapi.json").json()["paths"]
    documented = {m.upper() for m in doc[path.replace(svc.agent, "{agent_id}")]}
    r = svc.http.options(path)
    assert r.status_code == 204 and r.headers["allow"] == methods, r.headers
    assert set(methods.split(", ")) - {"OPTIONS"} == documented
    r = svc.http.request("DELETE", path, headers=svc.h)
    assert r.status_code == 405 and r.headers["allow"] == methods
    assert_error(r, 405, "method")


def _raw(svc: Service, request: bytes) -> tuple[int, dict[str, Any]]:
    import socket

    host, port = httpx.URL(svc.running.url).host, httpx.URL(svc.running.url).port
    with socket.create_connection((host, port), timeout=30) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower(), data[:300]
    return int(head.split()[1]), json.loads(body)


def test_unparseable_requests_get_json_errors(svc):
    status, body = _raw(svc, b"GET /v1/agents?x=" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 414 and body["error"]["code"] == "uri_too_long", body
    status, body = _raw(svc, b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
    assert status == 400 and body["error"]["field"] == "request", body
    assert svc.http.get("/healthz").status_code == 200


def test_unparseable_requests_get_json_errors_on_h11_too():
    """Where httptools is missing uvicorn parses with h11: the same JSON 400."""
    import socket
    import threading
    import time

    import uvicorn

    from workers.http.protocol import JsonErrorsH11Protocol
    from workers.runtime import free_port

    async def app(scope: Any, receive: Any, send: Any) -> None:  # never reached here
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off",
                                          http=JsonErrorsH11Protocol, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.02)
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.sendall(b"GET /x HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400") and b"application/json" in head, data
        assert json.loads(body)["error"]["code"] == "malformed_request"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
