"""The client's mapping of error answers and transport failures to DeltamemError."""

from __future__ import annotations

import socket

import httpx
import pytest

from client import Client, DeltamemError


def test_error_body_maps_to_fields():
    body = {"error": {"code": "invalid_events", "message": "bad", "field": "events[0].input"},
            "rejected": [{"index": 0, "error": "bad"}]}
    e = DeltamemError.from_response(httpx.Response(422, json=body))
    assert (e.status, e.code, e.message, e.field) == (422, "invalid_events", "bad", "events[0].input")
    assert e.body["rejected"][0]["index"] == 0
    assert str(e) == "events[0].input: bad"


def test_non_conforming_bodies_still_map():
    e = DeltamemError.from_response(httpx.Response(502, text="<html>bad gateway</html>"))
    assert e.status == 502 and e.code == "http_502" and "bad gateway" in e.message
    e = DeltamemError.from_response(httpx.Response(500, json={"detail": "x"}))
    assert e.code == "http_500" and "detail" in e.message and e.field is None


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_service_is_status_zero():
    with Client(f"http://127.0.0.1:{_closed_port()}", api_key="k", timeout=2) as c:
        with pytest.raises(DeltamemError) as e:
            c.list_agents()
    assert e.value.status == 0 and e.value.code == "unreachable"


def test_missing_keys_are_named_before_any_request():
    with Client("http://127.0.0.1:1") as c:
        with pytest.raises(DeltamemError) as e:
            c.get_agent("a")
        assert e.value.field == "api_key"
        with pytest.raises(DeltamemError) as e:
            c.create_tenant("t")
        assert e.value.field == "admin_key"


def test_agent_ids_are_quoted_into_paths():
    c = Client("http://127.0.0.1:1", api_key="k")
    assert c._agent_path("a/b c", "/events") == "/v1/agents/a%2Fb%20c/events"
    c.close()
