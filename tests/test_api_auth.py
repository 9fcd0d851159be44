"""Authentication and tenant isolation through real HTTP: no key, a wrong key, another tenant."""

from __future__ import annotations

import pytest

from tests.service_fixtures import ADMIN_KEY, auth, counts, vec_events, wait_applied

ROUTES = [  # (method, path template, body)
    ("GET", "/v1/agents/{id}", None),
    ("POST", "/v1/agents/{id}/events", {"events": [{"id": "x", "input": [1, 0, 0, 0], "target": "a"}]}),
    ("POST", "/v1/agents/{id}/predict", {"inputs": [[1, 0, 0, 0]]}),
    ("GET", "/v1/agents/{id}/versions", None),
    ("POST", "/v1/agents/{id}/rollback", {"version": 0}),
    ("POST", "/v1/agents/{id}/forget", {"event_ids": ["e0"]}),
    ("POST", "/v1/agents/{id}/fork", {"name": "stolen"}),
]


@pytest.fixture(scope="module")
def victim(tenant_a):
    agent = tenant_a.create_agent("victim", kind="classifier", encoder="none", dim=4)
    tenant_a.ingest(agent.id, vec_events(4))
    wait_applied(tenant_a, agent.id, 4)
    return agent


def _send(raw, method, path, body, headers):
    return raw.request(method, path, json=body, headers=headers)


@pytest.mark.parametrize("method, path, body", ROUTES + [("GET", "/v1/agents", None),
                                                         ("POST", "/v1/agents", {"name": "x"})])
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer not-a-key"},
                                     {"Authorization": "Basic dXNlcjpwYXNz"},
                                     {"Authorization": "Bearer"}],
                         ids=["none", "unknown", "basic", "empty"])
def test_missing_or_unknown_key_is_401(raw, tenant_a, victim, method, path, body, headers):
    before = counts(tenant_a, victim.id)
    r = _send(raw, method, path.format(id=victim.id), body, headers)
    assert r.status_code == 401, r.text
    err = r.json()["error"]
    assert err["code"] == "unauthorized" and err["field"] == "authorization"
    assert "not-a-key" not in r.text
    assert r.headers.get("www-authenticate") == "Bearer"
    assert counts(tenant_a, victim.id) == before


@pytest.mark.parametrize("method, path, body", ROUTES)
def test_another_tenants_agent_is_404(raw, tenant_a, tenant_b, victim, method, path, body):
    before = counts(tenant_a, victim.id)
    r = _send(raw, method, path.format(id=victim.id), body, auth(tenant_b))
    assert r.status_code == 404, r.text
    assert r.json()["error"]["code"] in ("not_found", "unknown_agent")
    unknown = _send(raw, method, path.format(id="no-such-agent"), body, auth(tenant_b))
    assert unknown.status_code == 404
    # existence does not leak: the answer for another tenant's agent looks like an unknown one
    assert r.json()["error"]["code"] == unknown.json()["error"]["code"]
    assert counts(tenant_a, victim.id) == before


def test_listing_shows_only_own_agents(tenant_a, tenant_b, victim):
    assert victim.id in [a.id for a in tenant_a.list_agents()]
    assert victim.id not in [a.id for a in tenant_b.list_agents()]


def test_tenant_creation_needs_the_admin_key(raw, tenant_a):
    assert raw.post("/v1/tenants", json={"name": "t"}).status_code == 401
    r = raw.post("/v1/tenants", json={"name": "t"}, headers=auth(tenant_a))
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    r = raw.post("/v1/tenants", json={"name": "t"}, headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 403
    r = raw.post("/v1/tenants", json={"name": ""}, headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "name"


def test_keys_are_tenant_specific(admin, raw):
    t1, t2 = admin.create_tenant("k1"), admin.create_tenant("k2")
    assert t1.api_key != t2.api_key and t1.id != t2.id
    h1 = {"Authorization": f"Bearer {t1.api_key}"}
    made = raw.post("/v1/agents", json={"name": "mine", "encoder": "none", "dim": 2}, headers=h1)
    assert made.status_code == 201
    h2 = {"Authorization": f"Bearer {t2.api_key}"}
    assert raw.get(f"/v1/agents/{made.json()['id']}", headers=h2).status_code == 404
    assert raw.get(f"/v1/agents/{made.json()['id']}", headers=h1).status_code == 200
