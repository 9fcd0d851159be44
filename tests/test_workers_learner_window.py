"""The learner's micro-batch window (workers/actors/learner.py ``_loop``): rounds start
``batch_max_ms`` apart at least, from the end of one to the start of the next, so events that
arrive meanwhile share a version; an event reaching an idle learner is applied at once. The
window here is long (seconds) so that which case happened is plain from the wait."""

from __future__ import annotations

import time

import numpy as np
import pytest
import ray

from tests.workers_helpers import all_applied, start_deployment, vector_events, wait_for

CONFIG = {"kind": "classifier", "encoder": "none", "dim": 8,
          "memory": {"rule": "delta", "beta": 0.5, "decay": 1.0}}
WINDOW_S = 16.0


@pytest.fixture(scope="module")
def dep(ray_cluster, tmp_path_factory):
    running = start_deployment(tmp_path_factory.mktemp("window"), batch_max_ms=WINDOW_S * 1000)
    svc = running.service
    yield running, svc, svc.create_tenant("t")["id"]
    running.stop()


def _store(svc, agent_id, events):
    with svc.store.tx() as repo:
        repo.append_events(agent_id, [{**e, "input": np.asarray(e["input"])} for e in events])


def _shard(running):
    return ray.get_actor("learner-0", namespace=running.settings.ray_namespace)


def _notify(running, agent_id, events):
    """As the ingest actor does: the accepted events go with the notification."""
    with running.service.store.read() as repo:
        handed = [e.as_replay() for e in repo.pending_events(agent_id)][-len(events):]
    ray.get(_shard(running).notify.remote([agent_id], len(events), {agent_id: handed}))


def _lag(running):
    return ray.get(_shard(running).ping.remote())["apply_lag"]


def test_an_event_at_an_idle_learner_is_applied_without_waiting_for_the_window(dep):
    running, svc, tenant = dep
    a = svc.create_agent(tenant, "idle", CONFIG)["id"]
    events = vector_events(np.random.default_rng(1), 1, 8, 3, "i")
    _store(svc, a, events)
    before = _lag(running)
    t0 = time.monotonic()
    _notify(running, a, events)
    wait_for(lambda: all_applied(svc, tenant, [a]), timeout=WINDOW_S / 2, what="applied at once")
    assert time.monotonic() - t0 < WINDOW_S / 2
    assert svc.get_agent(tenant, a)["head_version"] == 1
    after = _lag(running)  # its apply lag, as the shard measured it
    assert after["count"] == before["count"] + 1
    assert 0 < after["sum"] - before["sum"] < time.monotonic() - t0


def test_events_after_a_round_wait_for_the_window_and_share_a_version(dep):
    """Right after a round, three events notified one by one are not applied before the
    window has passed since that round, and then in one version."""
    running, svc, tenant = dep
    a = svc.create_agent(tenant, "busy", CONFIG)["id"]
    first, *later = vector_events(np.random.default_rng(2), 4, 8, 3, "b")
    _store(svc, a, [first])
    _notify(running, a, [first])
    # (at once, or a window after the round of the test before)
    wait_for(lambda: all_applied(svc, tenant, [a]), timeout=3 * WINDOW_S, what="first applied")
    ended = time.monotonic()  # the round ended before this
    before = _lag(running)
    for e in later:
        _store(svc, a, [e])
        _notify(running, a, [e])
    time.sleep(1.0)
    assert svc.get_agent(tenant, a)["events_applied"] == 1  # still in the window
    wait_for(lambda: all_applied(svc, tenant, [a]), timeout=3 * WINDOW_S, what="batch applied")
    assert time.monotonic() - ended >= WINDOW_S * 0.9
    info = svc.get_agent(tenant, a)
    assert (info["head_version"], info["events_applied"]) == (2, 4)  # the three in one version
    after = _lag(running)  # each waited about the window (notified within a second of its start)
    assert after["count"] == before["count"] + 3
    assert after["sum"] - before["sum"] > 3 * (WINDOW_S - 3)
