"""Every class of bad input gets its 4xx with the error format, and changes nothing (DESIGN §6)."""

from __future__ import annotations

import json

import pytest

from tests.service_fixtures import ADMIN_KEY, LIMITS, auth, counts, vec_events, wait_applied

GOOD = [1.0, 0.0, 0.0, 0.0]


@pytest.fixture(scope="module")
def agent(tenant_a):
    """A vector classifier with some history, so 'unchanged' is checked on a non-trivial state."""
    a = tenant_a.create_agent("bad-input", kind="classifier", encoder="none", dim=4)
    tenant_a.ingest(a.id, vec_events(6))
    wait_applied(tenant_a, a.id, 6)
    return a


def post(raw, client, path, *, body=None, content=None, ctype=None, params=None):
    headers = dict(auth(client))
    if ctype:
        headers["Content-Type"] = ctype
    if body is not None:
        content = json.dumps(body).encode()
        headers.setdefault("Content-Type", "application/json")
    return raw.post(path, content=content, headers=headers, params=params)


def assert_error(r, status, field=None, code=None):
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body["error"]) <= {"code", "message", "field"} and body["error"]["message"]
    if field is not None:
        assert body["error"].get("field") == field, body
    if code is not None:
        assert body["error"]["code"] == code, body
    return body


EVENT_CASES = [  # (event, field named by the error)
    ({"input": [1, 2, 3], "target": "a"}, "events[0].input"),                  # wrong dimension
    ({"input": [1, 2, 3, 4, 5], "target": "a"}, "events[0].input"),
    ({"input": [0, 0, 0, 0], "target": "a"}, "events[0].input"),               # zero vector
    ({"input": [1, 0, "x", 0], "target": "a"}, "events[0].input[2]"),          # wrong types
    ({"input": [1, 0, True, 0], "target": "a"}, "events[0].input[2]"),
    ({"input": "text", "target": "a"}, "events[0].input"),
    ({"input": [1, 0, 0, 0]}, "events[0].target"),                             # missing target
    ({"input": [1, 0, 0, 0], "target": 5}, "events[0].target"),
    ({"input": [1, 0, 0, 0], "target": "a", "beta": 0}, "events[0].beta"),
    ({"input": [1, 0, 0, 0], "target": "a", "beta": 2}, "events[0].beta"),
    ({"input": [1, 0, 0, 0], "target": "a", "ts": "not a time"}, "events[0].ts"),
    ({"input": [1, 0, 0, 0], "target": "a", "id": 12}, "events[0].id"),
    ({"target": "a"}, "events[0].input"),
    ("just a string", "events[0]"),
]


@pytest.mark.parametrize("event, field", EVENT_CASES)
def test_invalid_event_rejects_the_whole_batch(raw, tenant_a, agent, event, field):
    before = counts(tenant_a, agent.id)
    good = {"id": "would-be-new", "input": GOOD, "target": "L0"}
    r = post(raw, tenant_a, f"/v1/agents/{agent.id}/events", body={"events": [event, good]})
    body = assert_error(r, 422, field, "invalid_events")
    assert [x["index"] for x in body["rejected"]] == [0]
    assert counts(tenant_a, agent.id) == before


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_nan_and_inf_are_rejected(raw, tenant_a, agent, literal):
    before = counts(tenant_a, agent.id)
    text = f'{{"events": [{{"input": [1, {literal}, 0, 0], "target": "a"}}]}}'
    r = post(raw, tenant_a, f"/v1/agents/{agent.id}/events", content=text.encode(),
             ctype="application/json")
    assert r.status_code in (400, 422), r.text
    assert "error" in r.json()
    line = f'{{"input": [1, {literal}, 0, 0], "target": "a"}}\n'
    r = post(raw, tenant_a, f"/v1/agents/{agent.id}/events", content=line.encode(),
             ctype="application/x-ndjson")
    body = assert_error(r, 422)
    assert body["rejected"][0]["line"] == 1
    r = post(raw, tenant_a, f"/v1/agents/{agent.id}/predict",
             content=(f'{{"inputs": [[1, {literal}, 0, 0]]}}').encode(), ctype="application/json")
    assert r.status_code in (400, 422)
    assert counts(tenant_a, agent.id) == before


def test_malformed_ndjson_lines_are_named_by_line(raw, tenant_a, agent):
    before = counts(tenant_a, agent.id)
    lines = [json.dumps({"id": "n1", "input": GOOD, "target": "L0"}), "",
             '{"id": "n2", "input": [1, 0', json.dumps({"id": "n3", "input": [0, 0, 0, 0], "target": "x"}),
             json.dumps({"id": "n4", "input": GOOD, "target": "L0"})]
    data = "\n".join(lines).encode()
    r = post(raw, tenant_a, f"/v1/agents/{agent.id}/events", content=data, ctype="application/x-ndjson")
    body = assert_error(r, 422, code="invalid_events")
    assert [(x["index"], x["line"]) for x in body["rejected"]] == [(1, 3), (2, 4)]
    assert "line 3" in body["rejected"][0]["error"]
    assert counts(tenant_a, agent.id) == before
    # partial=true: the valid lines are accepted, the invalid ones listed
    r = post(raw, tenant_a, f"/v1/agents/{agent.id}/events", content=data,
             ctype="application/x-ndjson", params={"partial": "true"})
    assert r.status_code == 202, r.text
    out = r.json()
    assert (out["accepted"], out["duplicates"]) == (2, 0)
    assert [(x["index"], x["line"]) for x in out["rejected"]] == [(1, 3), (2, 4)]
    assert wait_applied(tenant_a, agent.id, before[2] + 2).events_received == before[1] + 2


@pytest.mark.parametrize("content, ctype", [(b"{", "application/json"), (b"", "application/json"),
                                            (b"[1, 2]", "application/json"),
                                            (b'{"events": "x"}', "application/json"),
                                            (b"\xff\xfe\x00", "application/json"),
                                            (b"", "application/x-ndjson"),
                                            (b"hello", "text/plain")])
def test_malformed_or_empty_bodies(raw, tenant_a, agent, content, ctype):
    before = counts(tenant_a, agent.id)
    r = post(raw, tenant_a, f"/v1/agents/{agent.id}/events", content=content, ctype=ctype)
    assert r.status_code in (400, 415, 422), r.text
    assert set(r.json()) >= {"error"} and "detail" not in r.json()
    assert counts(tenant_a, agent.id) == before


def test_empty_event_list(raw, tenant_a, agent):
    r = post(raw, tenant_a, f"/v1/agents/{agent.id}/events", body={"events": []})
    assert_error(r, 422, "events")


def test_oversized_bodies_get_413(raw, tenant_a, agent):
    before = counts(tenant_a, agent.id)
    big = json.dumps({"events": [{"input": GOOD, "target": "x" * 900}] * 100}).encode()
    assert len(big) > LIMITS["max_body_bytes"]
    r = post(raw, tenant_a, f"/v1/agents/{agent.id}/events", content=big, ctype="application/json")
    assert_error(r, 413, "body", "payload_too_large")

    def chunks():  # no Content-Length: the limit is counted while streaming
        for i in range(0, len(big), 4096):
            yield big[i:i + 4096]

    r = raw.post(f"/v1/agents/{agent.id}/events", content=chunks(),
                 headers={**auth(tenant_a), "Content-Type": "application/json"})
    assert_error(r, 413, "body", "payload_too_large")
    assert counts(tenant_a, agent.id) == before


def test_too_many_events_or_inputs_get_413(raw, tenant_a, agent):
    before = counts(tenant_a, agent.id)
    n = LIMITS["max_events_per_request"] + 1
    r = post(raw, tenant_a, f"/v1/agents/{agent.id}/events",
             body={"events": vec_events(n, prefix="many")})
    assert_error(r, 413, "events", "too_many_events")
    r = post(raw, tenant_a, f"/v1/agents/{agent.id}/predict",
             body={"inputs": [GOOD] * (LIMITS["max_predict_inputs"] + 1)})
    assert_error(r, 413, "inputs")
    assert counts(tenant_a, agent.id) == before


@pytest.mark.parametrize("body, field", [
    ({}, "inputs"), ({"inputs": []}, "inputs"), ({"inputs": [[1, 0]]}, "inputs[0]"),
    ({"inputs": [[0, 0, 0, 0]]}, "inputs[0]"), ({"inputs": [GOOD], "version": -1}, "version"),
    ({"inputs": [GOOD], "version": "3"}, "version"), ({"inputs": [GOOD], "top_k": 0}, "top_k"),
    ({"inputs": [GOOD], "as_of": "later"}, "as_of"), ({"inputs": [GOOD], "wait_ms": -5}, "wait_ms"),
    ({"inputs": [GOOD], "topk": 2}, "topk"),  # an unknown field is named, not dropped
])
def test_bad_predict_bodies(raw, tenant_a, agent, body, field):
    r = post(raw, tenant_a, f"/v1/agents/{agent.id}/predict", body=body)
    assert_error(r, 422, field)


def test_unknown_agent_and_version(raw, tenant_a, agent):
    before = counts(tenant_a, agent.id)
    assert_error(raw.get("/v1/agents/nope", headers=auth(tenant_a)), 404)
    r = post(raw, tenant_a, "/v1/agents/nope/events", body={"events": vec_events(1)})
    assert_error(r, 404)
    far = before[0] + 1000
    assert_error(post(raw, tenant_a, f"/v1/agents/{agent.id}/rollback", body={"version": far}), 404)
    assert_error(post(raw, tenant_a, f"/v1/agents/{agent.id}/predict",
                      body={"inputs": [GOOD], "version": far}), 404)
    assert_error(post(raw, tenant_a, f"/v1/agents/{agent.id}/fork",
                      body={"name": "f", "version": far}), 404)
    assert counts(tenant_a, agent.id) == before


def test_forget_unknown_ids_is_404_naming_them(raw, tenant_a, agent):
    before = counts(tenant_a, agent.id)
    r = post(raw, tenant_a, f"/v1/agents/{agent.id}/forget", body={"event_ids": ["e0", "ghost-1"]})
    body = assert_error(r, 404)
    assert "ghost-1" in json.dumps(body)
    assert counts(tenant_a, agent.id) == before


def test_min_version_not_reached_is_409_with_head(raw, tenant_a, agent):
    head = tenant_a.get_agent(agent.id).head_version
    r = post(raw, tenant_a, f"/v1/agents/{agent.id}/predict",
             body={"inputs": [GOOD], "min_version": head + 50, "wait_ms": 200})
    assert r.status_code == 409, r.text
    assert r.json()["head"] == head and r.json()["error"]["code"]


@pytest.mark.parametrize("path, body, field", [
    ("rollback", {}, "version"), ("rollback", {"version": -1}, "version"),
    ("rollback", {"version": 1.5}, "version"), ("forget", {"event_ids": []}, "event_ids"),
    ("forget", {"event_ids": "e0"}, "event_ids"), ("forget", {"event_ids": [3]}, "event_ids[0]"),
    ("fork", {}, "name"), ("fork", {"name": ""}, "name"), ("fork", {"name": "f", "version": -1}, "version"),
    ("rollback", {"version": 0, "to": 1}, "to"), ("forget", {"event_ids": ["e0"], "all": True}, "all"),
])
def test_bad_version_bodies(raw, tenant_a, agent, path, body, field):
    before = counts(tenant_a, agent.id)
    n_agents = len(tenant_a.list_agents())
    assert_error(post(raw, tenant_a, f"/v1/agents/{agent.id}/{path}", body=body), 422, field)
    assert counts(tenant_a, agent.id) == before and len(tenant_a.list_agents()) == n_agents


@pytest.mark.parametrize("body, field", [
    ({"kind": "classifier", "encoder": "none", "dim": 4}, "name"),
    ({"name": "x", "encoder": "none"}, "dim"), ({"name": "x", "encoder": "none", "dim": 0}, "dim"),
    ({"name": "x", "kind": "oracle"}, "kind"), ({"name": "x", "encoder": "bert"}, "encoder"),
    ({"name": "x", "encoder": "minilm", "memory": {"rule": "adam"}}, "memory.rule"),
    ({"name": "x", "encoder": "minilm", "memory": {"beta": 0}}, "memory.beta"),
    ({"name": "x", "encoder": "minilm", "memory": []}, "memory"),
    ({"name": "x", "kind": "chat", "prompt": {"recent": -1}}, "prompt.recent"),
    ({"name": "x", "kind": "chat", "prompt": {"top_k": "2"}}, "prompt.top_k"),
    ({"name": "x", "kind": "chat", "prompt": {"recnt": 2}}, "prompt.recnt"),
    ({"name": "x", "encoder": "none", "dim": 4, "prompt": {"recent": 2}}, "prompt"),
])
def test_bad_agent_bodies(raw, tenant_a, body, field):
    n = len(tenant_a.list_agents())
    assert_error(post(raw, tenant_a, "/v1/agents", body=body), 422, field)
    assert len(tenant_a.list_agents()) == n


def test_bad_query_parameters(raw, tenant_a, agent):
    r = raw.get(f"/v1/agents/{agent.id}/versions", params={"limit": "many"}, headers=auth(tenant_a))
    assert_error(r, 422, "limit")
    r = post(raw, tenant_a, f"/v1/agents/{agent.id}/events", body={"events": vec_events(1)},
             params={"partial": "perhaps"})
    assert_error(r, 422, "partial")


def test_duplicates_are_reported_not_errors(raw, tenant_a, agent):
    before = counts(tenant_a, agent.id)
    r = post(raw, tenant_a, f"/v1/agents/{agent.id}/events", body={"events": vec_events(6)})
    assert r.status_code == 202 and r.json() == {"accepted": 0, "duplicates": 6, "rejected": []}
    assert counts(tenant_a, agent.id) == before


def test_text_agent_input_checks(raw, tenant_a):
    a = tenant_a.create_agent("text", kind="classifier", encoder="minilm")
    for inp, field in [("", "events[0].input"), ("x" * (LIMITS["max_input_chars"] + 1), "events[0].input"),
                       ([1.0, 2.0], "events[0].input")]:
        r = post(raw, tenant_a, f"/v1/agents/{a.id}/events",
                 body={"events": [{"input": inp, "target": "t"}]})
        assert_error(r, 422, field)
    assert tenant_a.get_agent(a.id).events_received == 0


# ---- lone UTF-16 surrogates -----------------------------------------------------------------
# JSON can spell a lone surrogate (the six characters \ud800); Python parses it into a str that
# no UTF-8 encoder takes, so a database, a log or a JSON answer would fail on it. Each is refused
# by name (422) before anything is stored. The bodies are raw bytes holding the escape itself.

SURROGATE_BODIES = [  # (route, raw JSON body, field named by the error)
    ("tenants", b'{"name": "t\\ud800"}', "name"),
    ("agents", b'{"name": "a\\ud800", "encoder": "none", "dim": 4}', "name"),
    ("agents", b'{"name": "a", "kind": "\\ud800", "encoder": "none", "dim": 4}', "kind"),
    ("agents", b'{"name": "a", "encoder": "\\udc00", "dim": 4}', "encoder"),
    ("agents", b'{"name": "a", "encoder": "none", "dim": 4, "memory": {"rule": "\\ud800"}}',
     "memory.rule"),
    ("agents", b'{"name": "a", "encoder": "none", "dim": 4, "memory": {"dtype": "\\ud800"}}',
     "memory.dtype"),
    ("agents", b'{"name": "a", "encoder": "none", "dim": 4, "memory": {"\\ud800": 1}}', "memory"),
    ("fork", b'{"name": "f\\ud800"}', "name"),
    ("forget", b'{"event_ids": ["e0", "\\udfff"]}', "event_ids[1]"),
    ("rollback", b'{"version": "\\ud800"}', "version"),
    ("predict", b'{"inputs": ["\\ud800"]}', "inputs[0]"),
]


def _tenant_names(api):
    with api.service.store.read() as repo:
        return sorted(t.name for t in repo.list_tenants())


@pytest.mark.parametrize("route, content, field", SURROGATE_BODIES)
def test_lone_surrogates_in_bodies_are_422_naming_the_field(api, raw, tenant_a, agent, route,
                                                            content, field):
    assert b"\\ud" in content and content.isascii()  # the escape itself travels
    before = counts(tenant_a, agent.id), len(tenant_a.list_agents()), _tenant_names(api)
    if route == "tenants":
        r = raw.post("/v1/tenants", content=content, headers={
            "Authorization": f"Bearer {ADMIN_KEY}", "Content-Type": "application/json"})
    else:
        path = "/v1/agents" if route == "agents" else f"/v1/agents/{agent.id}/{route}"
        r = post(raw, tenant_a, path, content=content, ctype="application/json")
    assert_error(r, 422, field, "invalid_input")
    after = counts(tenant_a, agent.id), len(tenant_a.list_agents()), _tenant_names(api)
    assert after == before


SURROGATE_EVENTS = [  # (event, field named by the error)
    ({"input": GOOD, "target": "L\ud800"}, "events[0].target"),
    ({"id": "\ud800", "input": GOOD, "target": "L0"}, "events[0].id"),
    ({"input": GOOD, "target": "L0", "meta": {"note": "\udfff"}}, "events[0].meta.note"),
    ({"input": GOOD, "target": "L0", "meta": {"\ud800": 1}}, "events[0].meta"),
]


@pytest.mark.parametrize("event, field", SURROGATE_EVENTS)
def test_lone_surrogates_in_events_are_named_and_partial_keeps_the_rest(raw, tenant_a, agent,
                                                                          event, field):
    before = counts(tenant_a, agent.id)
    good = {"id": f"sur-{field}", "input": GOOD, "target": "L0"}
    content = json.dumps({"events": [event, good]}).encode()  # ensure_ascii: "\ud800" escaped
    assert b"\\ud" in content
    path = f"/v1/agents/{agent.id}/events"
    body = assert_error(post(raw, tenant_a, path, content=content, ctype="application/json"),
                        422, field, "invalid_events")
    assert [x["index"] for x in body["rejected"]] == [0] and "Unicode" in body["error"]["message"]
    lines = b"\n".join(json.dumps(e).encode() for e in (event, good))
    body = assert_error(post(raw, tenant_a, path, content=lines, ctype="application/x-ndjson"),
                        422, field, "invalid_events")
    assert [(x["index"], x["line"]) for x in body["rejected"]] == [(0, 1)]
    assert counts(tenant_a, agent.id) == before
    # partial=true: the valid event is accepted, the one with the surrogate listed
    r = post(raw, tenant_a, path, content=content, ctype="application/json",
             params={"partial": "true"})
    assert r.status_code == 202, r.text
    assert r.json()["accepted"] == 1 and [x["index"] for x in r.json()["rejected"]] == [0]
    wait_applied(tenant_a, agent.id, before[2] + 1)


def test_lone_surrogates_in_text_inputs_are_422(raw, tenant_a):
    a = tenant_a.create_agent("text-surrogate", kind="recall", encoder="minilm")
    r = post(raw, tenant_a, f"/v1/agents/{a.id}/events", ctype="application/json",
             content=b'{"events": [{"input": "q\\ud800", "target": "an answer"}]}')
    assert_error(r, 422, "events[0].input", "invalid_events")
    r = post(raw, tenant_a, f"/v1/agents/{a.id}/predict", ctype="application/json",
             content=b'{"inputs": ["fine", "q\\udfff?"]}')
    assert_error(r, 422, "inputs[1]", "invalid_input")
    assert tenant_a.get_agent(a.id).events_received == 0


def test_undecodable_path_query_and_key_bytes_are_plain_4xx(raw, tenant_a, agent):
    """The URL and headers cannot carry a lone surrogate: percent-escaped UTF-8 of one decodes
    to U+FFFD and header bytes are latin-1, so these are the usual 404, 422 and 401."""
    before = counts(tenant_a, agent.id)
    assert_error(raw.get("/v1/agents/%ED%A0%80", headers=auth(tenant_a)), 404)
    r = post(raw, tenant_a, f"/v1/agents/{agent.id}/events?partial=%ED%A0%80",
             body={"events": vec_events(1)})
    assert_error(r, 422, "partial")
    r = raw.get(f"/v1/agents/{agent.id}/versions?limit=%ED%A0%80", headers=auth(tenant_a))
    assert_error(r, 422, "limit")
    for key in (b"Bearer dm_\xed\xa0\x80", b"Bearer " + ADMIN_KEY.encode() + b"\xed\xa0\x80"):
        r = raw.get("/v1/agents", headers={"Authorization": key})
        assert_error(r, 401, "authorization", "unauthorized")
    r = raw.post("/v1/tenants", json={"name": "x"},
                 headers={"Authorization": b"Bearer \xed\xa0\x80"})
    assert_error(r, 403, "authorization", "forbidden")
    assert counts(tenant_a, agent.id) == before
