"""One answer shape (issue 17): the agent JSON the service sends is built with the model the
client parses with (client.schema.Agent) and the OpenAPI document states, over real HTTP."""

from __future__ import annotations

from client.schema import Agent, VersionList
from tests.service_fixtures import DIM, auth, vec_events, wait_applied

OPTIONAL = {"standardize", "input_scale"}  # only where the agent's config has them
CHAT_ONLY = {"prompt"}  # chat agents' fields


def test_the_agent_answer_is_the_model(raw, tenant_a):
    body = {"name": "shape", "kind": "classifier", "encoder": "none", "dim": DIM,
            "standardize": True, "input_scale": [1.0] * DIM}
    sent = raw.post("/v1/agents", json=body, headers=auth(tenant_a)).json()
    assert set(sent) == set(Agent.model_fields) - CHAT_ONLY, set(sent) ^ set(Agent.model_fields)
    tenant_a.ingest(sent["id"], vec_events(3, prefix="shape"))
    wait_applied(tenant_a, sent["id"], 3)
    got = raw.get(f"/v1/agents/{sent['id']}", headers=auth(tenant_a)).json()
    parsed = tenant_a.get_agent(sent["id"])
    assert parsed.model_dump(exclude_unset=True) == got  # every field read, none lost
    assert parsed.labels and parsed.standardize is True and parsed.base is None
    assert parsed.input_scale == [1.0] * DIM
    fork = tenant_a.fork(sent["id"], "shape-fork")
    assert fork.base is not None and fork.base.agent_id == sent["id"]
    plain = raw.post("/v1/agents", json={"name": "plain", "encoder": "none", "dim": DIM},
                     headers=auth(tenant_a)).json()
    assert set(Agent.model_fields) - set(plain) <= OPTIONAL | CHAT_ONLY


def test_the_document_states_the_models(raw, tenant_a):
    doc = raw.get("/openapi.json").json()["components"]["schemas"]
    assert set(doc["Agent"]["properties"]) == set(Agent.model_fields)
    assert set(doc["VersionList"]["properties"]) == set(VersionList.model_fields)
    agent = tenant_a.create_agent("doc", kind="classifier", encoder="none", dim=DIM)
    versions = raw.get(f"/v1/agents/{agent.id}/versions", headers=auth(tenant_a)).json()
    assert set(versions["versions"][0]) <= set(doc["VersionInfo"]["properties"])
