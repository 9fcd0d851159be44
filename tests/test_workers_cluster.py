"""Scale-out on a local two-node Ray cluster (``ray.cluster_utils.Cluster``, all on 127.0.0.1):
learner shards start on both nodes; removing a node mid-stream moves its shards to the other node
(``max_restarts`` + soft node affinity), the stream goes on, and afterwards every event is applied
exactly once and every agent answers as the single-process reference does.

This module owns Ray for its duration: it shuts down any Ray the session started and builds its
own two-node cluster, and restores nothing. Run it as its own pytest process::

    pytest -m slow tests/test_workers_cluster.py

(CI's default run, ``-m "not slow"``, leaves it out.) On Linux ``Cluster`` needs no opt-in: Ray's
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` only gates clusters on Windows/macOS; set to ``0`` here it
keeps every address on loopback, and both nodes are given ``node_ip_address="127.0.0.1"``.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.workers_helpers import (
    all_applied,
    assert_same_predictions,
    reference,
    start_deployment,
    vector_events,
    wait_for,
)
from workers.actors.learner import shard_of

pytestmark = pytest.mark.slow

DIM, LABELS, EVENTS = 16, 5, 240
CONFIG = {"kind": "classifier", "encoder": "none", "dim": DIM,
          "memory": {"rule": "delta", "beta": 0.5, "decay": 1.0}}
NODE = {"node_ip_address": "127.0.0.1", "object_store_memory": 80 * 2**20,
        "include_dashboard": False}


@pytest.fixture(scope="module")
def cluster():
    """A head node (``node_a``) and one worker node (``node_b``), both on loopback."""
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():  # the session's single-node Ray: this module needs its own
        ray.shutdown()
    c = Cluster(initialize_head=True, head_node_args={
        **NODE, "num_cpus": 2, "resources": {"node_a": 1},
        # notice a dead node within a few seconds (defaults: 3 s × 5 misses)
        "_system_config": {"health_check_period_ms": 500,
                           "health_check_failure_threshold": 4}})
    worker = c.add_node(**NODE, num_cpus=1, resources={"node_b": 1})
    c.wait_for_nodes()
    yield c, worker
    ray.shutdown()
    c.shutdown()


def _node_ids() -> dict[str, str]:
    """Custom resource name (``node_a``/``node_b``) → node id, for the alive nodes."""
    import ray

    out = {}
    for n in ray.nodes():
        if n.get("Alive"):
            for tag in ("node_a", "node_b"):
                if tag in n.get("Resources", {}):
                    out[tag] = n["NodeID"]
    return out


def _learner_nodes(svc) -> list[str]:
    import ray

    return ray.get([a.node.remote() for a in svc.learner_handles()], timeout=120)


def _contiguous_once(running, svc, tenant, agent_id) -> None:
    vs = svc.versions(tenant, agent_id, limit=None, before=None)
    nums = sorted(v["version"] for v in vs["versions"])
    assert nums == list(range(vs["head"] + 1)), "versions are not contiguous"
    assert sum(v["events"] for v in vs["versions"]) == EVENTS, "an event counted twice"
    with running.service.store.read() as repo:
        rows = repo.applied_events(agent_id)
    assert len(rows) == EVENTS and len({r.seq for r, _ in rows}) == EVENTS


def test_removing_a_node_moves_its_shards_and_loses_nothing(cluster, tmp_path):
    c, worker = cluster
    running = start_deployment(tmp_path, learner_shards=2, ray_address=c.address)
    try:
        svc = running.service
        tenant = svc.create_tenant("t")["id"]
        nodes = _node_ids()
        assert set(nodes) == {"node_a", "node_b"}
        assert sorted(_learner_nodes(svc)) == sorted(nodes.values()), \
            "learner shards should start one on each node"
        agents: list[str] = []  # three agents on each shard
        while min(sum(shard_of(a, 2) == s for a in agents) for s in (0, 1)) < 3:
            agents.append(svc.create_agent(tenant, f"c{len(agents)}", CONFIG)["id"])
        rng = np.random.default_rng(3)
        streams = {a: vector_events(rng, EVENTS, DIM, LABELS, f"{a}-") for a in agents}
        for start in range(0, EVENTS, 20):
            if start == EVENTS // 2:
                c.remove_node(worker)  # node_b and everything on it die mid-stream
            for a in agents:
                out = svc.ingest(tenant, a, streams[a][start : start + 20], partial=False)
                # a retried ingest whose first try committed reports duplicates, not new events
                assert out["accepted"] + out["duplicates"] == 20
        wait_for(lambda: set(_node_ids()) == {"node_a"}, what="node_b reported dead")
        wait_for(lambda: all_applied(svc, tenant, agents), timeout=300,
                 what="every event applied after the node went away")
        assert set(_learner_nodes(svc)) == {nodes["node_a"]}, "shards did not move"
        for a in agents:
            info = svc.get_agent(tenant, a)
            assert info["events_received"] == info["events_applied"] == EVENTS
            _contiguous_once(running, svc, tenant, a)
            probes = np.random.default_rng(9).normal(size=(20, DIM)).tolist()
            assert_same_predictions(svc, tenant, a, reference(CONFIG, streams[a]), probes)
    finally:
        running.stop()
