"""Text agents through the deployment's encoder actor (real Ray, real SQLite, real MiniLM):
each text is encoded once, when it is accepted, and its embedding is stored with the event;
learning, forget and rebuild read the stored embedding (a forget calls the encoder not once);
serving asks the same actor (no model of its own); states equal the in-process learner's."""

from __future__ import annotations

import numpy as np
import pytest
import ray

from agent.backbones.minilm import get_minilm
from agent.config import AgentConfig
from agent.memory.delta import state_checksum
from agent.model import MemoryAgent
from tests.workers_helpers import all_applied, start_deployment, wait_for

CONFIG = {"kind": "classifier", "encoder": "minilm", "dim": 384,
          "memory": {"rule": "delta", "beta": 0.5, "decay": 1.0}}
TEXTS = [("book a flight to Oslo", "travel"), ("reserve a plane ticket", "travel"),
         ("what is my balance", "bank"), ("move money to savings", "bank"),
         ("play some jazz", "music"), ("next song please", "music"),
         ("is it going to rain", "weather"), ("how warm is it outside", "weather")]


@pytest.fixture(scope="module")
def dep(ray_cluster, tmp_path_factory):
    running = start_deployment(tmp_path_factory.mktemp("text"))
    svc = running.service
    yield running, svc, svc.create_tenant("t")["id"]
    running.stop()


def _encoder_stats(running) -> dict:
    actor = ray.get_actor("encoder", namespace=running.settings.ray_namespace)
    return ray.get(actor.stats.remote())


def test_text_events_store_embeddings_and_forget_never_encodes(dep):
    running, svc, tenant = dep
    agent_id = svc.create_agent(tenant, "intents", CONFIG)["id"]
    events = [{"id": f"t{i}", "input": x, "target": y} for i, (x, y) in enumerate(TEXTS)]
    svc.ingest(tenant, agent_id, events, False)
    wait_for(lambda: all_applied(svc, tenant, [agent_id]), what="text events applied")

    with svc.store.read() as repo:
        rows = repo.events_of(agent_id)
        stored = np.stack([e.as_replay()["input"] for e in rows])  # (8, 384) float32
        assert [e.payload["input"] for e in rows] == [x for x, _ in TEXTS]  # the text is kept
        head = repo.get_agent(agent_id).head_version
        head_sum = repo.list_versions(agent_id, limit=1, before=None)[0].checksum
    assert stored.dtype == np.float32 and stored.shape == (8, 384)
    local = get_minilm().encode([x for x, _ in TEXTS])  # the same model in this process
    np.testing.assert_allclose(stored, local, rtol=0, atol=1e-5)

    # the in-process learner given the stored embeddings holds the same state, bit for bit
    ref = MemoryAgent(AgentConfig.from_dict(CONFIG))
    ref.learn_many(stored.astype(np.float64), [y for _, y in TEXTS])
    assert ref.checksum() == head_sum and head == 1
    # and given the texts, it predicts the same labels
    probes = ["fly me to Paris", "transfer cash", "turn the music up", "sunny tomorrow?"]
    mine = svc.predict(tenant, agent_id, probes)["predictions"]
    assert [p["label"] for p in mine] == [p["label"] for p in ref.predict_many(probes)]

    before = _encoder_stats(running)
    out = svc.forget(tenant, agent_id, ["t2", "t5"])
    assert _encoder_stats(running)["calls"] == before["calls"]  # replayed from stored embeddings
    keep = [i for i in range(len(TEXTS)) if i not in (2, 5)]
    ref2 = MemoryAgent(AgentConfig.from_dict(CONFIG))
    ref2.learn_many(stored[keep].astype(np.float64), [TEXTS[i][1] for i in keep])
    with svc.store.read() as repo:
        assert state_checksum(*repo.load_state(agent_id, out["version"])) == ref2.checksum()


def test_serving_asks_the_encoder_actor(dep):
    running, svc, tenant = dep
    agent_id = svc.create_agent(tenant, "ask", CONFIG)["id"]
    svc.ingest(tenant, agent_id, [{"input": "hello there", "target": "greet"}], False)
    wait_for(lambda: all_applied(svc, tenant, [agent_id]), what="applied")
    before = _encoder_stats(running)
    svc.predict(tenant, agent_id, ["a question nobody asked before 7f3a"])
    after = _encoder_stats(running)
    assert after["calls"] == before["calls"] + 1 and after["texts"] == before["texts"] + 1
    assert after["threads"] == running.settings.encoder_cpus


def test_the_encoder_actor_batches_concurrent_callers(dep):
    """Calls that arrive while a forward pass runs go into the next one together; each caller
    gets its own rows, the same numbers the model gives them alone."""
    running, _, _ = dep
    actor = ray.get_actor("encoder", namespace=running.settings.ray_namespace)
    before = ray.get(actor.stats.remote())
    big = [f"a long enough request number {i} to keep the model busy" for i in range(128)]
    small = [[f"caller {k} asks about topic {k * 7}"] for k in range(8)]
    refs = [actor.encode.remote(big)] + [actor.encode.remote(t) for t in small]
    outs = ray.get(refs)
    after = ray.get(actor.stats.remote())
    calls = after["calls"] - before["calls"]
    forwards = after["forwards"] - before["forwards"]
    assert calls == 9 and forwards < calls  # merged across callers
    local = get_minilm()
    for texts, got in zip([big] + small, outs, strict=True):
        assert got.shape == (len(texts), 384) and got.dtype == np.float32
        np.testing.assert_allclose(got, local.encode(texts), rtol=0, atol=1e-5)
