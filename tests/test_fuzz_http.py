"""Byte-level fuzzing of the running HTTP API (Hypothesis, bounded examples): every POST route
gets raw bodies — random bytes, truncated or bit-flipped valid documents, deep nesting, huge or
non-finite numbers, lone surrogates, BOMs, NDJSON with broken lines — under assorted
Content-Types. (``test_api_property.py`` covers schema-driven generation with schemathesis.)

Every answer is below 500 and, when 4xx, the error format with no FastAPI ``detail``; a rejected
request changes nothing: the agent's head, counts and versions, and the tenant's agent list.
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.service_fixtures import ADMIN_KEY, auth, counts, vec_events, wait_applied

FUZZ = settings(max_examples=60, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))
ROUTES = ["events", "predict", "rollback", "forget", "fork", "agents", "tenants"]
CTYPES = [None, "application/json", "application/x-ndjson", "text/plain", "application/json; "
          "charset=latin-1", "multipart/form-data; boundary=x", "application/x-ndjson; charset=utf-16",
          "application/xml", "*/*"]
VALID = {"events": {"events": vec_events(2, prefix="fz")},
         "predict": {"inputs": [[1.0, 0.0, 0.0, 0.0]], "top_k": 2},
         "rollback": {"version": 0}, "forget": {"event_ids": ["seed0"]},
         "fork": {"name": "fz-fork"}, "agents": {"name": "fz", "kind": "classifier",
                                                 "encoder": "none", "dim": 4},
         "tenants": {"name": "fz-tenant"}}
SPECIAL = [b"", b"{", b"[]", b"null", b"{}", b'{"events": NaN}', b'{"inputs": [[1e400,0,0,0]]}',
           b"\xef\xbb\xbf{}", b'{"name": "\\ud800"}', b"[" * 5000 + b"]" * 5000,
           b'{"events": [' + b"{}," * 2000 + b"{}]}", b'{"version": 99999999999999999999}',
           b'{"version": -1}', b'{"event_ids": [' + b'"x",' * 500 + b'"x"]}',
           b'{"inputs": "x"}', b'{"name": ""}', b'{"a":1,"a":2}', b"\x00\x01\x02",
           b'{"events": [{"input": [1,0,0,0], "target": "L0"}]}\n{"x": 1}']


@st.composite
def bodies(draw, route: str) -> bytes:
    valid = json.dumps(VALID[route]).encode()
    kind = draw(st.sampled_from(["bytes", "truncate", "flip", "insert", "special", "ndjson",
                                 "json"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "truncate":
        return valid[:draw(st.integers(0, len(valid)))]
    if kind in ("flip", "insert"):
        i = draw(st.integers(0, len(valid) - 1))
        b = draw(st.integers(0, 255)).to_bytes(1, "big")
        return valid[:i] + b + valid[i + (kind == "flip"):]
    if kind == "special":
        return draw(st.sampled_from(SPECIAL))
    if kind == "ndjson":
        lines = [json.dumps(e) for e in vec_events(3, prefix="nd")]
        lines.insert(draw(st.integers(0, 3)), draw(st.text(max_size=20)))
        return "\n".join(lines).encode("utf-8", "surrogatepass")
    js = st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=8),
                      lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c,
                                                                            max_size=4),
                      max_leaves=12)
    doc = draw(st.dictionaries(st.sampled_from(list(VALID[route]) + ["extra"]), js, max_size=3))
    return json.dumps(doc).encode()


def _state(client, agent_id):
    return counts(client, agent_id), len(client.list_agents())


def test_raw_bodies_never_5xx_and_rejections_change_nothing(raw, tenant_a):
    agent = tenant_a.create_agent("fuzz-http", kind="classifier", encoder="none", dim=4)
    tenant_a.ingest(agent.id, vec_events(4, prefix="seed"))
    wait_applied(tenant_a, agent.id, 4)
    statuses: list[int] = []

    @FUZZ
    @given(data=st.data())
    def run(data):
        route = data.draw(st.sampled_from(ROUTES))
        body = data.draw(bodies(route))
        ctype = data.draw(st.sampled_from(CTYPES))
        path = {"agents": "/v1/agents", "tenants": "/v1/tenants"}.get(
            route, f"/v1/agents/{agent.id}/{route}")
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"} if route == "tenants" \
            else dict(auth(tenant_a))
        if ctype is not None:
            headers["Content-Type"] = ctype
        before = _state(tenant_a, agent.id)
        r = raw.post(path, content=body, headers=headers)
        statuses.append(r.status_code)
        assert r.status_code < 500, f"{route} {ctype} {body[:200]!r} -> {r.status_code} {r.text[:300]}"
        if r.status_code >= 400:
            err = r.json()
            assert "detail" not in err and err["error"]["code"] and err["error"]["message"], err
            assert _state(tenant_a, agent.id) == before, f"rejected {route} changed state"
        elif route == "events":
            wait_applied(tenant_a, agent.id, tenant_a.get_agent(agent.id).events_received)

    run()
    assert {400, 415, 422} <= set(statuses), sorted(set(statuses))  # parse, media type, schema
