"""Predicts at the head answered by the HTTP process's warm copy (workers/head_cache.py) are the
serving actor's answers for the same version, bit for bit (issue 16).

Real Ray, real SQLite, real HTTP (tests/service_fixtures.py). After each of many ingests the
head is asked three times (the first goes to the serving actor, the second warms the copy, the
third is answered from it); every answer is compared with the answer for the same version
pinned (``"version": v``), which always goes to the serving actor. JSON floats are compared
as parsed: Python's float repr round-trips, so equal numbers are equal bits.
"""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import pytest

from tests.service_fixtures import DIM, auth, wait_applied


def _post(raw: httpx.Client, head: dict[str, str], agent: str, body: dict[str, Any]) -> Any:
    r = raw.post(f"/v1/agents/{agent}/predict", headers=head, json=body)
    assert r.status_code == 200, r.text
    return r.json()


def _same_as_serving(raw: httpx.Client, head: dict[str, str], agent: str,
                     body: dict[str, Any]) -> dict[str, Any]:
    """The head's answer, checked against the pinned answer of the version it reports."""
    got = _post(raw, head, agent, body)
    pinned = _post(raw, head, agent, {**body, "version": got["version"]})
    assert got == pinned
    return got  # type: ignore[no-any-return]


@pytest.mark.parametrize("memory", [{}, {"rule": "rls"}, {"rule": "delta", "beta": 0.7}],
                         ids=["default", "rls", "delta"])
def test_head_answers_equal_the_serving_actors(api, tenant_a, raw, new_vector_agent, memory):
    heads = api.service.heads
    hits0 = heads.stats["hits"]
    agent = new_vector_agent(**memory).id
    head = auth(tenant_a)
    rng = np.random.default_rng(7)
    n = 0
    for step in range(12):
        k = int(rng.integers(1, 4))
        events = [{"id": f"s{step}-{j}", "input": rng.normal(size=DIM).tolist(),
                   "target": f"L{int(rng.integers(0, 5))}"} for j in range(k)]
        tenant_a.ingest(agent, events)
        n += k
        wait_applied(tenant_a, agent, n)
        queries = rng.normal(size=(int(rng.integers(1, 4)), DIM)).tolist()
        body: dict[str, Any] = {"inputs": queries, "top_k": 3} if step % 2 else {"inputs": queries}
        answers = [_same_as_serving(raw, head, agent, body) for _ in range(3)]
        assert answers[0] == answers[1] == answers[2]
    assert heads.stats["hits"] - hits0 >= 12  # the third ask of each step at least


def test_min_version_rollback_and_forget_are_not_answered_from_a_stale_copy(
        api, tenant_a, raw, new_vector_agent):
    agent = new_vector_agent().id
    head = auth(tenant_a)
    rng = np.random.default_rng(11)
    q = {"inputs": rng.normal(size=(2, DIM)).tolist(), "top_k": 2}
    ev = [{"id": f"a{i}", "input": rng.normal(size=DIM).tolist(), "target": f"L{i % 3}"}
          for i in range(6)]
    tenant_a.ingest(agent, ev)
    v1 = wait_applied(tenant_a, agent, 6).head_version
    for _ in range(3):  # warm at v1
        assert _same_as_serving(raw, head, agent, q)["version"] == v1
    assert api.service.heads.get(agent, v1) is not None

    # read-your-writes: a min_version past the warm copy waits for the new head
    tenant_a.ingest(agent, [{"id": "b0", "input": rng.normal(size=DIM).tolist(),
                             "target": "L9"}])
    got = _same_as_serving(raw, head, agent, {**q, "top_k": 10, "min_version": v1 + 1,
                                              "wait_ms": 10_000})
    assert got["version"] >= v1 + 1
    assert "L9" in [label for label, _ in got["predictions"][0]["top"]]  # b0 is in the state

    # rollback to v1: a new head whose state is v1's
    rb = tenant_a.rollback(agent, v1)
    for _ in range(3):
        got = _same_as_serving(raw, head, agent, q)
        assert got["version"] == rb.version
    assert got["predictions"] == _post(raw, head, agent, {**q, "version": v1})["predictions"]

    # forget: a new head without the events
    fg = tenant_a.forget(agent, ["a0", "a1"])
    for _ in range(3):
        got = _same_as_serving(raw, head, agent, q)
        assert got["version"] == fg.version


def test_a_cache_turned_off_holds_nothing():
    """``head_cache_bytes=0``: nothing is held (the setting's off switch)."""
    from workers.head_cache import HeadCache

    off = HeadCache(0)
    assert not off.enabled
    off.put("a", 1, object(), 10)
    assert off.get("a", 1) is None and len(off) == 0


def test_another_tenant_gets_404_from_a_warm_agent(api, tenant_a, tenant_b, raw,
                                                   new_vector_agent):
    """The config and the head state are cached per agent, the tenant check is not skipped."""
    agent = new_vector_agent().id
    tenant_a.ingest(agent, [{"id": "t0", "input": [1.0, 0.0, 0.0, 0.0], "target": "L0"}])
    wait_applied(tenant_a, agent, 1)
    q = {"inputs": [[1.0, 0.0, 0.0, 0.0]]}
    for _ in range(3):
        _same_as_serving(raw, auth(tenant_a), agent, q)
    assert api.service.heads.get(agent, tenant_a.get_agent(agent).head_version) is not None
    for body in (q, {**q, "version": 0}):
        r = raw.post(f"/v1/agents/{agent}/predict", headers=auth(tenant_b), json=body)
        assert r.status_code == 404 and r.json()["error"]["field"] == "agent_id", r.text
