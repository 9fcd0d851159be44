"""A real service over HTTP on SQLite or PostgreSQL for the fault tests of issue 15 (poison
events, forget erasure, large version numbers), and the few requests they make."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.faults_helpers import BACKENDS, database, deployment
from workers.runtime import RunningService


@dataclass
class Svc:
    backend: str
    url: str  # the database URL
    running: RunningService
    http: httpx.Client  # authorised as one tenant

    def agent(self, **body: Any) -> dict[str, Any]:
        body = {"name": f"a-{uuid.uuid4().hex[:6]}", "kind": "classifier", "encoder": "none",
                "dim": 4, **body}
        r = self.http.post("/v1/agents", json=body)
        assert r.status_code == 201, r.text
        return r.json()

    def send(self, agent_id: str, events: list[dict[str, Any]]) -> dict[str, Any]:
        r = self.http.post(f"/v1/agents/{agent_id}/events", json={"events": events})
        assert r.status_code == 202, r.text
        return r.json()

    def get(self, agent_id: str) -> dict[str, Any]:
        r = self.http.get(f"/v1/agents/{agent_id}")
        assert r.status_code == 200, r.text
        return r.json()

    def settled(self, agent_id: str, received: int, timeout: float = 60.0) -> dict[str, Any]:
        """Poll until ``received`` events are each applied or rejected (none pending)."""
        deadline = time.monotonic() + timeout
        while True:
            a = self.get(agent_id)
            done = a["events_applied"] + a.get("events_rejected", 0)
            if a["events_received"] == received and done == received:
                return a
            if time.monotonic() > deadline:
                raise AssertionError(f"not settled after {timeout}s (wedged?): {a}")
            time.sleep(0.05)

    def predict(self, agent_id: str, inputs: list[Any], **kw: Any) -> httpx.Response:
        return self.http.post(f"/v1/agents/{agent_id}/predict", json={"inputs": inputs, **kw})


@pytest.fixture(scope="module", params=BACKENDS, name="svc")
def fault_service(request, ray_cluster, tmp_path_factory) -> Iterator[Svc]:
    """One service per backend for a test module; each test makes its own agents."""
    with database(request.param, tmp_path_factory.mktemp("faults")) as url, \
            deployment(url, http=True) as running:
        with httpx.Client(base_url=running.url, timeout=120) as admin:
            r = admin.post("/v1/tenants", json={"name": "t"}, headers={"Authorization": "Bearer adm"})
            assert r.status_code == 201, r.text
            key = r.json()["api_key"]
        with httpx.Client(base_url=running.url, timeout=120,
                          headers={"Authorization": f"Bearer {key}"}) as http:
            yield Svc(request.param, url, running, http)
