"""The workers' timeouts and retries are settings (one object, DESIGN §5), and the service uses
them: the defaults are the constants they replace, and a changed value reaches the answer."""

from __future__ import annotations

import time

import numpy as np
import pytest

from tests.faults_helpers import database, deployment
from tests.workers_helpers import all_applied, vector_events, wait_for
from workers.contract import ServiceError
from workers.settings import Settings

CONFIG = {"kind": "classifier", "encoder": "none", "dim": 6}


def test_defaults_are_the_former_constants():
    s = Settings()
    assert (s.startup_timeout_s, s.actor_call_timeout_s, s.probe_timeout_s) == (120.0, 300.0, 5.0)
    assert (s.learner_backoff_s, s.learner_backoff_max_s, s.retry_after_ms) == (0.1, 5.0, 200)


@pytest.mark.parametrize("field", ["actor_call_timeout_s", "startup_timeout_s",
                                   "probe_timeout_s", "learner_backoff_s"])
def test_non_positive_timeouts_are_refused(field):
    with pytest.raises(ValueError, match=field):
        Settings(**{field: 0})


def test_backpressure_answers_the_configured_retry_hint(ray_cluster, tmp_path):
    with database("sqlite", tmp_path) as url, deployment(
            url, queue_max_events=2, retry_after_ms=350) as dep:
        svc = dep.service
        tenant = svc.create_tenant("s")["id"]
        agent = svc.create_agent(tenant, "a", CONFIG)["id"]
        events = vector_events(np.random.default_rng(0), 3, 6, 2, "e")
        with pytest.raises(ServiceError) as e:
            svc.ingest(tenant, agent, events, partial=False)
        assert (e.value.status, e.value.code) == (429, "backpressure")
        assert e.value.extra == {"retry_after_ms": 350}


@pytest.mark.parametrize("events_on", [False, True])
def test_task_events_reach_rays_gcs_only_when_asked(ray_cluster, tmp_path, events_on):
    """The service's actors report no task events to Ray unless ``ray_task_events`` is set:
    each one is kept in the GCS, whose memory grows with every call up to Ray's cap."""
    from ray._private.state import state  # Ray's reader of the GCS's task events

    def service_calls() -> int:
        return sum(e.task_info.func_or_class_name.startswith(
            ("IngestActor.ingest", "LearnerActor.notify", "ServingActor.publish_many"))
            for e in state._get_all_task_events() if e.HasField("task_info"))

    before = service_calls()
    with database("sqlite", tmp_path) as url, deployment(url, ray_task_events=events_on) as dep:
        svc = dep.service
        tenant = svc.create_tenant("s")["id"]
        agent = svc.create_agent(tenant, "a", CONFIG)["id"]
        for k in range(3):
            svc.ingest(tenant, agent, vector_events(np.random.default_rng(k), 2, 6, 2, f"e{k}"),
                       partial=False)
        wait_for(lambda: all_applied(svc, tenant, [agent]), what="events applied")
        if events_on:
            wait_for(lambda: service_calls() > before, timeout=30, what="task events")
        else:  # three of Ray's report intervals (task_events_report_interval_ms, 1 s)
            time.sleep(3.0)
            assert service_calls() == before
