"""The actors end to end (real Ray, real SQLite): a 10,000-event stream over 20 agents agrees
with a single-process reference; SIGKILLed learner and serving actors lose nothing and apply
nothing twice; rollback while events arrive never applies an event onto the wrong base."""

from __future__ import annotations

import ipaddress
import os
import signal
import threading

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

DIM, LABELS = 16, 6
CONFIG = {"kind": "classifier", "encoder": "none", "dim": DIM,
          "memory": {"rule": "delta", "beta": 0.5, "decay": 1.0}}


@pytest.fixture(scope="module")
def dep(ray_cluster, tmp_path_factory):
    running = start_deployment(tmp_path_factory.mktemp("stream"), learner_shards=2)
    svc = running.service
    tenant = svc.create_tenant("t")["id"]
    yield running, svc, tenant
    running.stop()


def _probes(seed: int) -> list[list[float]]:
    return np.random.default_rng(seed).normal(size=(20, DIM)).tolist()


def _contiguous(svc, tenant, agent_id) -> None:
    vs = svc.versions(tenant, agent_id, limit=None, before=None)
    nums = sorted(v["version"] for v in vs["versions"])
    assert nums == list(range(vs["head"] + 1)), "versions are not contiguous"
    applied = sum(v["events"] for v in vs["versions"] if v["kind"] == "delta")
    assert applied == svc.get_agent(tenant, agent_id)["events_applied"], "an event counted twice"


def test_stream_10k_events_20_agents_matches_reference(dep):
    _, svc, tenant = dep
    rng = np.random.default_rng(0)
    agents = [svc.create_agent(tenant, f"a{i}", CONFIG)["id"] for i in range(20)]
    streams = {a: vector_events(rng, 500, DIM, LABELS, f"{a}-") for a in agents}
    for start in range(0, 500, 50):  # interleave agents, 50 events per request
        for a in agents:
            out = svc.ingest(tenant, a, streams[a][start : start + 50], partial=False)
            assert out["accepted"] == 50 and out["duplicates"] == 0
    # a re-send is all duplicates and changes nothing
    assert svc.ingest(tenant, agents[0], streams[agents[0]][:50], False)["duplicates"] == 50
    wait_for(lambda: all_applied(svc, tenant, agents), what="all 10,000 events applied")
    for a in agents:
        assert svc.get_agent(tenant, a)["events_applied"] == 500
        assert_same_predictions(svc, tenant, a, reference(CONFIG, streams[a]), _probes(1))
        _contiguous(svc, tenant, a)


def _kill(actor) -> None:
    os.kill(ray.get(actor.pid.remote()), signal.SIGKILL)


@pytest.mark.parametrize("victim", ["learner", "serving"])
def test_sigkill_mid_stream_loses_nothing(dep, victim):
    running, svc, tenant = dep
    rng = np.random.default_rng(1 if victim == "learner" else 2)
    agents = [svc.create_agent(tenant, f"{victim}{i}", CONFIG)["id"] for i in range(4)]
    streams = {a: vector_events(rng, 400, DIM, LABELS, f"{a}-") for a in agents}
    killed = False
    for start in range(0, 400, 40):
        for a in agents:
            svc.ingest(tenant, a, streams[a][start : start + 40], partial=False)
            if start == 160 and not killed:
                actor = svc.learner(a) if victim == "learner" else svc.server(a)
                if victim == "serving":  # make sure it holds state worth losing
                    svc.predict(tenant, a, _probes(3)[:1])
                _kill(actor)
                killed = True
    wait_for(lambda: all_applied(svc, tenant, agents), what="events applied after SIGKILL")
    for a in agents:
        assert svc.get_agent(tenant, a)["events_applied"] == 400
        _contiguous(svc, tenant, a)
        assert_same_predictions(svc, tenant, a, reference(CONFIG, streams[a]), _probes(4))


def test_rollback_while_events_arrive(dep):
    running, svc, tenant = dep
    rng = np.random.default_rng(5)
    agent = svc.create_agent(tenant, "rb", CONFIG)["id"]
    first = vector_events(rng, 200, DIM, LABELS, "first-")
    svc.ingest(tenant, agent, first, partial=False)
    wait_for(lambda: all_applied(svc, tenant, [agent]))
    v = svc.get_agent(tenant, agent)["head_version"]
    more = vector_events(rng, 600, DIM, LABELS, "more-")

    def sender() -> None:
        for i in range(0, 600, 20):
            svc.ingest(tenant, agent, more[i : i + 20], partial=False)

    t = threading.Thread(target=sender)
    t.start()
    wait_for(lambda: svc.get_agent(tenant, agent)["events_received"] >= 400, what="half sent")
    rb = svc.rollback(tenant, agent, v)
    t.join()
    wait_for(lambda: all_applied(svc, tenant, [agent]))
    assert rb["state_of"] == v and rb["kind"] == "rollback"
    # events applied after the rollback, in acknowledgement order, on top of v's state
    with running.service.store.tx() as repo:
        rows = repo.applied_events(agent)
        state_v = repo.load_state(agent, v)
    after = [r for r, v in rows if v > rb["version"]]
    before = [r for r, v in rows if v < rb["version"]]
    assert not before or not after or max(r.seq for r in before) < min(r.seq for r in after), \
        "an event acknowledged before the rollback was applied after it"
    ref = reference(CONFIG, [r.as_replay() for r in sorted(after, key=lambda r: r.seq)],
                    start_state=state_v)
    assert_same_predictions(svc, tenant, agent, ref, _probes(6))


def test_nothing_listens_beyond_loopback(dep):
    """DESIGN §5: every socket of the deployment (driver, Ray daemons, actors) is on loopback."""
    import psutil

    me = psutil.Process()
    procs = {me.pid} | {p.pid for p in me.children(recursive=True)}
    for p in psutil.process_iter(["pid", "cmdline"]):  # Ray daemons may be re-parented
        cmd = " ".join(p.info["cmdline"] or [])
        if "ray" in cmd and ("gcs_server" in cmd or "raylet" in cmd or "ray::" in cmd
                             or "default_worker" in cmd or "dashboard" in cmd):
            procs.add(p.info["pid"])
    listening = [c for c in psutil.net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN and c.pid in procs]
    assert listening, "found no listening socket at all (the check would prove nothing)"
    def loopback(ip: str) -> bool:
        addr = ipaddress.ip_address(ip.split("%")[0])
        mapped = getattr(addr, "ipv4_mapped", None)
        return (mapped or addr).is_loopback

    outside = [(c.pid, c.laddr) for c in listening if not loopback(c.laddr.ip)]
    assert not outside, f"listening beyond loopback: {outside}"


def test_fork_reports_its_base_and_inherits_the_state(dep):
    _, svc, tenant = dep
    src = svc.create_agent(tenant, "src", CONFIG)
    assert src["base"] is None
    events = vector_events(np.random.default_rng(9), 40, DIM, LABELS, "f-")
    svc.ingest(tenant, src["id"], events, partial=False)
    wait_for(lambda: all_applied(svc, tenant, [src["id"]]))
    v = svc.get_agent(tenant, src["id"])["head_version"]
    fork = svc.fork(tenant, src["id"], v, "fork")
    assert fork["base"] == {"agent_id": src["id"], "version": v}
    assert fork["events_applied"] == 40 and fork["labels"] == svc.get_agent(tenant, src["id"])["labels"]
    assert_same_predictions(svc, tenant, fork["id"], reference(CONFIG, events), _probes(10))
