"""Every route of DESIGN §7 through real HTTP against a running service: status and JSON shape."""

from __future__ import annotations

import pytest

from tests.service_fixtures import ADMIN_KEY, DIM, auth, counts, vec_events, wait_applied

AGENT_KEYS = {"id", "name", "kind", "encoder", "dim", "memory", "head_version", "events_received",
              "events_applied", "labels"}


def test_create_tenant(raw):
    r = raw.post("/v1/tenants", json={"name": "acme"}, headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert r.status_code == 201
    body = r.json()
    assert set(body) == {"id", "name", "api_key"} and body["name"] == "acme" and body["api_key"]
    r = raw.get("/v1/agents", headers={"Authorization": f"Bearer {body['api_key']}"})
    assert r.status_code == 200 and r.json() == {"agents": []}


def test_create_list_get_agent(raw, tenant_a):
    body = {"name": "vecs", "kind": "classifier", "encoder": "none", "dim": DIM,
            "memory": {"rule": "rls", "ridge": 0.5}}
    r = raw.post("/v1/agents", json=body, headers=auth(tenant_a))
    assert r.status_code == 201, r.text
    agent = r.json()
    assert set(agent) >= AGENT_KEYS
    assert (agent["kind"], agent["encoder"], agent["dim"], agent["head_version"]) == \
        ("classifier", "none", DIM, 0)
    assert agent["memory"]["rule"] == "rls" and agent["memory"]["ridge"] == 0.5
    assert agent["memory"]["beta"] == 0.5  # omitted settings take the documented defaults
    assert (agent["events_received"], agent["events_applied"], agent["labels"]) == (0, 0, [])

    listed = raw.get("/v1/agents", headers=auth(tenant_a))
    assert listed.status_code == 200 and set(listed.json()) == {"agents"}
    assert agent["id"] in [a["id"] for a in listed.json()["agents"]]
    got = raw.get(f"/v1/agents/{agent['id']}", headers=auth(tenant_a))
    assert got.status_code == 200 and got.json() == agent


def test_ingest_json_and_ndjson_then_predict(raw, tenant_a, new_vector_agent):
    agent = new_vector_agent()
    events = vec_events(12)
    r = raw.post(f"/v1/agents/{agent.id}/events", json={"events": events[:8]}, headers=auth(tenant_a))
    assert r.status_code == 202, r.text
    assert r.json() == {"accepted": 8, "duplicates": 0, "rejected": []}

    import json

    ndjson = "\n".join(json.dumps(e) for e in events[6:]) + "\n"  # 2 duplicates, 4 new
    r = raw.post(f"/v1/agents/{agent.id}/events", content=ndjson.encode(),
                 headers={**auth(tenant_a), "Content-Type": "application/x-ndjson"})
    assert r.status_code == 202, r.text
    assert r.json() == {"accepted": 4, "duplicates": 2, "rejected": []}

    a = wait_applied(tenant_a, agent.id, 12)
    assert a.events_received == 12 and sorted(a.labels) == [f"L{k}" for k in range(DIM)]

    r = raw.post(f"/v1/agents/{agent.id}/predict",
                 json={"inputs": [e["input"] for e in events[:4]], "top_k": 2,
                       "min_version": a.head_version}, headers=auth(tenant_a))
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["version"] >= a.head_version and len(out["predictions"]) == 4
    for p, e in zip(out["predictions"], events[:4], strict=False):
        assert p["label"] == e["target"] and isinstance(p["score"], float)
        assert len(p["top"]) == 2 and p["top"][0][0] == p["label"]


def test_duplicates_inside_one_batch_count_once(tenant_a, new_vector_agent):
    agent = new_vector_agent()
    ev = vec_events(1)[0]
    res = tenant_a.ingest(agent.id, [ev, dict(ev), dict(ev, target="L3")])
    assert (res.accepted, res.duplicates, res.rejected) == (1, 2, [])
    assert wait_applied(tenant_a, agent.id, 1).events_received == 1


def test_predict_without_labels_answers_null(tenant_a, new_vector_agent):
    agent = new_vector_agent()
    res = tenant_a.predict(agent.id, [[1.0, 0.0, 0.0, 0.0]])
    assert res.version == 0
    assert (res.predictions[0].label, res.predictions[0].score) == (None, 0)


def test_versions_paging(raw, tenant_a, new_vector_agent):
    agent = new_vector_agent()
    for i in range(3):  # three separate batches: at least one new version each
        tenant_a.ingest(agent.id, vec_events(2, prefix=f"b{i}-"))
        wait_applied(tenant_a, agent.id, 2 * (i + 1))
    r = raw.get(f"/v1/agents/{agent.id}/versions", headers=auth(tenant_a))
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"head", "versions"}
    nums = [v["version"] for v in body["versions"]]
    assert nums == sorted(nums, reverse=True) and nums[-1] == 0 and body["head"] == nums[0]
    for v in body["versions"]:
        assert set(v) >= {"version", "parent", "kind", "created_at", "events", "checksum", "delta_norm"}
    assert body["versions"][-1]["kind"] == "create"
    r = raw.get(f"/v1/agents/{agent.id}/versions", params={"limit": 2, "before": nums[0]},
                headers=auth(tenant_a))
    assert r.status_code == 200
    assert [v["version"] for v in r.json()["versions"]] == nums[1:3]


def test_rollback_restores_answers(raw, tenant_a, new_vector_agent):
    agent = new_vector_agent()
    probe = [3.0, 0.0, 0.0, 0.0]
    tenant_a.ingest(agent.id, [{"id": "a", "input": probe, "target": "first", "beta": 1.0}])
    v1 = wait_applied(tenant_a, agent.id, 1).head_version
    tenant_a.ingest(agent.id, [{"id": "b", "input": probe, "target": "second", "beta": 1.0}])
    v2 = wait_applied(tenant_a, agent.id, 2).head_version
    assert tenant_a.predict(agent.id, [probe], min_version=v2).predictions[0].label == "second"

    r = raw.post(f"/v1/agents/{agent.id}/rollback", json={"version": v1}, headers=auth(tenant_a))
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"version", "kind", "state_of", "checksum"}
    assert body["kind"] == "rollback" and body["state_of"] == v1 and body["version"] > v2
    res = tenant_a.predict(agent.id, [probe], min_version=body["version"])
    assert res.predictions[0].label == "first"
    assert tenant_a.predict(agent.id, [probe], version=v2).predictions[0].label == "second"
    history = {v.version: v for v in tenant_a.versions(agent.id).versions}
    assert history[v1].checksum == body["checksum"]


def test_forget_removes_an_event(raw, tenant_a, new_vector_agent):
    agent = new_vector_agent()
    probe = [0.0, 3.0, 0.0, 0.0]
    tenant_a.ingest(agent.id, [{"id": "keep", "input": probe, "target": "kept", "beta": 1.0},
                               {"id": "drop", "input": probe, "target": "dropped", "beta": 1.0}])
    head = wait_applied(tenant_a, agent.id, 2).head_version
    assert tenant_a.predict(agent.id, [probe], min_version=head).predictions[0].label == "dropped"
    r = raw.post(f"/v1/agents/{agent.id}/forget", json={"event_ids": ["drop"]}, headers=auth(tenant_a))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["kind"] == "forget" and body["events_removed"] == 1 and body["version"] > head
    res = tenant_a.predict(agent.id, [probe], min_version=body["version"])
    assert res.predictions[0].label == "kept"
    assert tenant_a.get_agent(agent.id).events_applied == 2  # never goes down


def test_fork(raw, tenant_a, new_vector_agent):
    agent = new_vector_agent()
    tenant_a.ingest(agent.id, vec_events(8))
    head = wait_applied(tenant_a, agent.id, 8).head_version
    r = raw.post(f"/v1/agents/{agent.id}/fork", json={"name": "child", "version": head},
                 headers=auth(tenant_a))
    assert r.status_code == 201, r.text
    child = r.json()
    assert set(child) >= AGENT_KEYS and child["name"] == "child" and child["id"] != agent.id
    probes = [e["input"] for e in vec_events(4)]
    want = tenant_a.predict(agent.id, probes, version=head)
    got = tenant_a.predict(child["id"], probes)
    assert [p.label for p in got.predictions] == [p.label for p in want.predictions]


def test_operations_routes(raw, tenant_a):
    r = raw.get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    r = raw.get("/readyz")
    assert r.status_code == 200 and r.json()["ready"] is True
    tenant_a.list_agents()
    r = raw.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert 'deltamem_http_requests_total{method="GET",route="/v1/agents",status="200"}' in r.text
    assert "deltamem_http_request_duration_seconds_bucket" in r.text
    raw.get("/v1/agents")  # no key: counted as an error by status and code
    r = raw.get("/metrics")
    assert 'deltamem_http_errors_total{code="unauthorized",status="401"}' in r.text


def test_client_ndjson_and_typed_results(tenant_a, new_vector_agent):
    agent = new_vector_agent()
    res = tenant_a.ingest_ndjson(agent.id, vec_events(3) + [{"input": [0, 0, 0, 0], "target": "z"}],
                                 partial=True)
    assert (res.accepted, res.duplicates) == (3, 0)
    assert [(r.index, r.line) for r in res.rejected] == [(3, 4)]
    a = wait_applied(tenant_a, agent.id, 3)
    assert a.events_applied == 3 and a.head_version >= 1
    vl = tenant_a.versions(agent.id, limit=1)
    assert vl.head == a.head_version and [v.version for v in vl.versions] == [a.head_version]


def test_openapi_documents_every_route(raw):
    spec = raw.get("/openapi.json").json()
    paths = spec["paths"]
    for path, method in [("/v1/tenants", "post"), ("/v1/agents", "post"), ("/v1/agents", "get"),
                         ("/v1/agents/{agent_id}", "get"), ("/v1/agents/{agent_id}/events", "post"),
                         ("/v1/agents/{agent_id}/predict", "post"),
                         ("/v1/agents/{agent_id}/versions", "get"),
                         ("/v1/agents/{agent_id}/rollback", "post"),
                         ("/v1/agents/{agent_id}/forget", "post"),
                         ("/v1/agents/{agent_id}/fork", "post"), ("/healthz", "get"),
                         ("/readyz", "get"), ("/metrics", "get")]:
        assert method in paths[path], (method, path)
    ingest = paths["/v1/agents/{agent_id}/events"]["post"]
    assert set(ingest["requestBody"]["content"]) == {"application/json", "application/x-ndjson"}
    assert "EventBatch" in spec["components"]["schemas"]
    assert "HTTPValidationError" not in spec["components"]["schemas"]


@pytest.mark.parametrize("kind", ["recall"])
def test_recall_agent_answers_stored_text(tenant_a, new_vector_agent, kind):
    agent = new_vector_agent(kind=kind)
    tenant_a.ingest(agent.id, [{"id": "q1", "input": [1, 0, 0, 0], "target": "Lisbon"},
                               {"id": "q2", "input": [0, 0, 1, 0], "target": "Porto"}])
    head = wait_applied(tenant_a, agent.id, 2).head_version
    res = tenant_a.predict(agent.id, [[1, 0, 0, 0], [0, 0, 1, 0]], min_version=head)
    assert [p.label for p in res.predictions] == ["Lisbon", "Porto"]
    assert counts(tenant_a, agent.id)[1] == 2
