"""Auth is a dependency of every /v1 route (workers/http/routes/deps.py), resolved before the
handler reads the body or the query: a request without a valid key is 401 (403 for the admin
route) whatever it holds."""

from __future__ import annotations

import pytest
from fastapi.routing import APIRoute

from tests.service_fixtures import ADMIN_KEY
from workers.http.app import ROUTERS
from workers.http.routes import deps

AUTH_DEPS = {deps._tenant, deps._admin}


def _v1_routes() -> list[APIRoute]:
    return [r for router in ROUTERS for r in router.routes
            if isinstance(r, APIRoute) and r.path.startswith("/v1/")]


def _calls(dependant) -> set:
    out = {dependant.call}
    for d in dependant.dependencies:
        out |= _calls(d)
    return out


def test_every_v1_route_depends_on_a_key():
    routes = _v1_routes()
    assert len(routes) >= 14  # tenants, agents x3, events x2, predict, versions x3, forget, ...
    missing = [f"{sorted(r.methods)} {r.path}" for r in routes if not _calls(r.dependant) & AUTH_DEPS]
    assert missing == []
    assert all(deps._admin in _calls(r.dependant) for r in routes if r.path == "/v1/tenants")


@pytest.mark.parametrize("route", [(sorted(r.methods)[0], r.path) for r in _v1_routes()],
                         ids=lambda r: f"{r[0]} {r[1]}")
def test_no_key_is_401_before_the_body_and_query_are_read(raw, route):
    method, path = route
    r = raw.request(method, path.replace("{agent_id}", "a1") + "?limit=x&partial=maybe",
                    content=b"{not json", headers={"Content-Type": "application/json",
                                                   "Authorization": "Bearer not-a-key"})
    assert r.status_code == (403 if path == "/v1/tenants" else 401), r.text  # (403: not the admin key)
    assert r.json()["error"]["field"] == "authorization"


def test_the_admin_key_route_refuses_a_malformed_body_only_after_the_key(raw):
    r = raw.post("/v1/tenants", content=b"{not json", headers={
        "Content-Type": "application/json", "Authorization": f"Bearer {ADMIN_KEY}"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "malformed_json", r.text
