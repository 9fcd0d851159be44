"""Learner rounds (workers/actors/learner.py ``_drain_round``): the micro-batches of several
agents notified together are committed in one transaction (one write lock, one fsync), and each
agent's state is the one it gets alone: rebuilt from the store with its checksum verified, equal
to the in-process reference learner's."""

from __future__ import annotations

import numpy as np
import pytest
import ray

from tests.workers_helpers import (
    all_applied,
    assert_same_predictions,
    reference,
    start_deployment,
    vector_events,
    wait_for,
)

CONFIG = {"kind": "classifier", "encoder": "none", "dim": 8,
          "memory": {"rule": "delta", "beta": 0.5, "decay": 1.0}}


@pytest.fixture(scope="module")
def dep(ray_cluster, tmp_path_factory):
    running = start_deployment(tmp_path_factory.mktemp("rounds"))
    svc = running.service
    yield running, svc, svc.create_tenant("t")["id"]
    running.stop()


def _shard(running):
    return ray.get_actor("learner-0", namespace=running.settings.ray_namespace)


@pytest.mark.parametrize("n_events", [5, 40])
def test_agents_notified_together_share_one_commit(dep, n_events):
    running, svc, tenant = dep
    agents = [svc.create_agent(tenant, f"r{n_events}-{i}", CONFIG)["id"] for i in range(5)]
    rng = np.random.default_rng(n_events)
    sent = {a: vector_events(rng, n_events, 8, 4, f"{a}-") for a in agents}
    with svc.store.tx() as repo:  # stored, then one notification names them all
        for a in agents:
            repo.append_events(a, [{**e, "input": np.asarray(e["input"])} for e in sent[a]])
    before = ray.get(_shard(running).ping.remote())
    ray.get(_shard(running).notify.remote(agents, 5 * n_events))
    wait_for(lambda: all_applied(svc, tenant, agents), what="applied")
    # (the shard counts a version once it has published it, just after the commit)
    wait_for(lambda: ray.get(_shard(running).ping.remote())["versions"] >= before["versions"] + 5,
             what="counted")
    after = ray.get(_shard(running).ping.remote())
    assert after["versions"] - before["versions"] == 5  # one micro-batch each
    assert after["commits"] - before["commits"] == 1  # in one transaction
    for a in agents:
        with svc.store.read() as repo:
            head = repo.get_agent(a).head_version
            layers, labels = repo.load_state(a, head)  # rebuilt, checksum verified
        ref = reference(CONFIG, sent[a], batch=10**6)
        ref_layers, ref_labels = ref.state
        assert labels == ref_labels
        for name, arr in ref_layers.items():
            np.testing.assert_allclose(layers[name], arr, rtol=0, atol=1e-6)
        assert_same_predictions(svc, tenant, a, ref,
                                np.random.default_rng(3).normal(size=(6, 8)).tolist())


def test_a_round_keeps_each_agents_order_across_passes(dep):
    """More events than a micro-batch: several passes, each agent's events in seq order."""
    running, svc, tenant = dep
    agents = [svc.create_agent(tenant, f"p-{i}", CONFIG)["id"] for i in range(3)]
    limit = max(running.settings.batch_max_events, running.settings.batch_burst_events)
    rng = np.random.default_rng(9)
    sent = {a: vector_events(rng, limit + 7, 8, 4, f"{a}-") for a in agents}
    with svc.store.tx() as repo:
        for a in agents:
            repo.append_events(a, [{**e, "input": np.asarray(e["input"])} for e in sent[a]])
    ray.get(_shard(running).notify.remote(agents, 3 * (limit + 7)))
    wait_for(lambda: all_applied(svc, tenant, agents), what="applied")
    for a in agents:
        with svc.store.read() as repo:
            head = repo.get_agent(a).head_version
            hist = [e.client_id for e in repo.event_history(a, head)]
            repo.load_state(a, head)
        assert hist == [e["id"] for e in sent[a]]
        assert head == 2  # two micro-batches: limit, then 7


def test_a_pass_reaches_the_replicas_in_one_message(dep):
    """The replicas apply each committed version onto the head they hold (one message for
    the pass): the next predictions read no state from the store."""
    running, svc, tenant = dep
    agents = [svc.create_agent(tenant, f"pub-{i}", CONFIG)["id"] for i in range(4)]
    rng = np.random.default_rng(21)
    first = {a: vector_events(rng, 3, 8, 4, f"{a}-a") for a in agents}
    more = {a: vector_events(rng, 3, 8, 4, f"{a}-b") for a in agents}
    with svc.store.tx() as repo:
        for a in agents:
            repo.append_events(a, [{**e, "input": np.asarray(e["input"])} for e in first[a]])
    ray.get(_shard(running).notify.remote(agents, 12))
    wait_for(lambda: all_applied(svc, tenant, agents), what="applied")
    (replica, *_) = svc.serving_handles()
    x = [[0.5] * 8]
    for a in agents:  # the replica now holds each head (version 1)
        assert ray.get(replica.predict.remote(a, CONFIG, x, version=1))["version"] == 1
    before = ray.get(replica.stats.remote())
    with svc.store.tx() as repo:
        for a in agents:
            repo.append_events(a, [{**e, "input": np.asarray(e["input"])} for e in more[a]])
    ray.get(_shard(running).notify.remote(agents, 12))
    wait_for(lambda: ray.get(replica.stats.remote())["applied"] >= before["applied"] + 4,
             what="published")
    for a in agents:
        got = ray.get(replica.predict.remote(a, CONFIG, x, version=2))
        ref = reference(CONFIG, first[a] + more[a], batch=3)
        assert got["version"] == 2
        assert got["predictions"][0]["label"] == ref.predict_many(np.asarray(x))[0]["label"]
    after = ray.get(replica.stats.remote())
    assert after["misses"] == before["misses"]  # every version 2 came by the message
    assert after["applied"] - before["applied"] == 4
