"""The workers' timeouts and retries are settings (one object, DESIGN §5), and the service uses
them: the defaults are the constants they replace, and a changed value reaches the answer."""

from __future__ import annotations

import numpy as np
import pytest

from tests.faults_helpers import database, deployment
from tests.workers_helpers import vector_events
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
