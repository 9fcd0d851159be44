"""Property-based runs against the real service: no generated request gets a 5xx, and a
rejected ingest changes nothing.

1. Schemathesis reads ``/openapi.json`` and generates valid (positive) and invalid (negative)
   requests for every operation, on a real agent and on random ids (bounded examples).
2. Hypothesis generates event batches mixing valid events with every kind of broken field; each
   batch is either accepted (202) or rejected with a 4xx that leaves the agent's counts alone.
"""

from __future__ import annotations

import json
import math

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.service_fixtures import ADMIN_KEY, DIM, auth, counts, vec_events, wait_applied

EXAMPLES = 20
FAST = settings(max_examples=EXAMPLES, deadline=None, database=None, phases=[Phase.generate],
                suppress_health_check=list(HealthCheck))


def _runner(op, mode, extra, url, key, failures, calls):
    """One bounded Hypothesis run of an operation: record any 5xx or FastAPI-style body."""

    @FAST
    @given(case=op.as_strategy(generation_mode=mode, **extra))
    def run(case):
        resp = case.call(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
        calls.append(resp.status_code)
        if resp.status_code >= 500 or '"detail"' in resp.text:
            failures.append(f"{case.method} {case.formatted_path} query={case.query!r} body={case.body!r} "
                            f"-> {resp.status_code} {resp.text[:300]}")

    return run


def test_schemathesis_finds_no_server_errors(api, tenant_a):
    agent = tenant_a.create_agent("fuzzed", kind="classifier", encoder="none", dim=DIM)
    tenant_a.ingest(agent.id, vec_events(8))
    wait_applied(tenant_a, agent.id, 8)
    schema = schemathesis.openapi.from_url(f"{api.url}/openapi.json")
    failures: list[str] = []
    calls: list[int] = []
    for result in schema.get_all_operations():
        op = result.ok()
        key = ADMIN_KEY if op.path == "/v1/tenants" else tenant_a.api_key
        variants = [{}]
        if "{agent_id}" in op.path:
            variants = [{"path_parameters": {"agent_id": agent.id}}, {}]
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            for extra in variants:
                try:
                    _runner(op, mode, extra, api.url, key, failures, calls)()
                except Unsatisfiable:  # e.g. no way to make GET /healthz invalid
                    pass
    assert len(calls) > 100
    assert any(c < 300 for c in calls) and any(400 <= c < 500 for c in calls)
    assert not failures, "\n".join(failures[:10])


GOOD = st.builds(lambda i, xs, t: {"id": f"h{i}", "input": xs, "target": t},
                 st.integers(0, 10**9),
                 st.lists(st.floats(-10, 10, allow_nan=False), min_size=DIM, max_size=DIM)
                 .filter(lambda xs: any(xs)),
                 st.sampled_from(["L0", "L1", "L2"]))
JUNK = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(), st.text(max_size=5),
                 st.lists(st.floats(), max_size=DIM + 1), st.dictionaries(st.text(max_size=3),
                                                                         st.integers(), max_size=2))
BROKEN = st.builds(lambda ev, field, junk: {**ev, field: junk}, GOOD,
                   st.sampled_from(["input", "target", "beta", "ts", "id", "meta"]), JUNK)


def _is_valid(ev) -> bool:
    x, t = ev.get("input"), ev.get("target")
    if not (isinstance(x, list) and len(x) == DIM and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in x)
            and any(x)):
        return False
    if not (isinstance(t, str) and t.strip()):
        return False
    b = ev.get("beta")
    if b is not None and not (isinstance(b, (int, float)) and not isinstance(b, bool)
                              and math.isfinite(b) and 0 < b <= 1):
        return False
    if ev.get("ts") is not None:
        return False  # junk timestamps are never ISO-8601 here
    i = ev.get("id")
    if i is not None and not (isinstance(i, str) and i.strip()):
        return False
    m = ev.get("meta")
    return m is None or isinstance(m, dict)


@pytest.mark.parametrize("ndjson", [False, True], ids=["json", "ndjson"])
def test_generated_batches_are_accepted_or_change_nothing(raw, tenant_a, ndjson):
    agent = tenant_a.create_agent("generated", kind="classifier", encoder="none", dim=DIM)
    applied = {"n": 0}

    @FAST
    @given(st.lists(st.one_of(GOOD, BROKEN), min_size=1, max_size=6))
    def run(events):
        before = counts(tenant_a, agent.id)
        if ndjson:
            text = "\n".join(json.dumps(e) for e in events)  # float('nan') -> NaN: malformed
            r = raw.post(f"/v1/agents/{agent.id}/events", content=text.encode(),
                         headers={**auth(tenant_a), "Content-Type": "application/x-ndjson"})
        else:
            r = raw.post(f"/v1/agents/{agent.id}/events", content=json.dumps({"events": events}).encode(),
                         headers={**auth(tenant_a), "Content-Type": "application/json"})
        assert r.status_code < 500, r.text
        valid = all(_is_valid(e) for e in events)
        if r.status_code == 202:
            assert valid, (events, r.text)
            applied["n"] += r.json()["accepted"]
            wait_applied(tenant_a, agent.id, applied["n"])
        else:
            assert r.status_code in (400, 413, 422), r.text
            assert not valid, (events, r.text)
            assert "error" in r.json() and "detail" not in r.json()
            assert counts(tenant_a, agent.id) == before

    run()
