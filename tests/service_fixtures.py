"""Fixtures for the HTTP tests: one real running service (Ray actors, SQLite, uvicorn) per session.

Load with ``pytest_plugins = ["tests.service_fixtures"]`` in ``tests/conftest.py`` (or
``pytest -p tests.service_fixtures``). The service runs on a free port with the admin key
``test-admin`` and small limits, so the limit tests stay cheap.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from client import Agent, Client
from workers.settings import Settings

ADMIN_KEY = "test-admin"
DIM = 4
LIMITS = {"max_body_bytes": 64 * 1024, "max_events_per_request": 100, "max_input_chars": 300,
          "max_predict_inputs": 20, "default_wait_ms": 3000}


@pytest.fixture(scope="session")
def api(ray_cluster, tmp_path_factory) -> Iterator[Any]:
    """The running service (``.url``, ``.settings``, ``.service``)."""
    from workers.runtime import free_port, start

    tmp = tmp_path_factory.mktemp("api")
    settings = Settings(database_url=f"sqlite:///{tmp / 't.db'}", port=free_port(),
                        admin_key=ADMIN_KEY, ray_namespace=f"api-{uuid.uuid4().hex[:8]}",
                        scheduler_enabled=False, batch_max_ms=5.0, **LIMITS)
    running = start(settings)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def admin(api) -> Iterator[Client]:
    with Client(api.url, admin_key=ADMIN_KEY, timeout=120) as c:
        yield c


def _tenant_client(api: Any, admin: Client, name: str) -> Client:
    tenant = admin.create_tenant(name)
    return Client(api.url, api_key=tenant.api_key, timeout=120)


@pytest.fixture(scope="session")
def tenant_a(api, admin) -> Iterator[Client]:
    c = _tenant_client(api, admin, "tenant-a")
    yield c
    c.close()


@pytest.fixture(scope="session")
def tenant_b(api, admin) -> Iterator[Client]:
    c = _tenant_client(api, admin, "tenant-b")
    yield c
    c.close()


@pytest.fixture(scope="session")
def raw(api) -> Iterator[httpx.Client]:
    """A plain httpx client on the service, for requests the typed client would not send."""
    with httpx.Client(base_url=api.url, timeout=120) as c:
        yield c


@pytest.fixture()
def new_vector_agent(tenant_a) -> Callable[..., Agent]:
    """Make a fresh vector classifier of tenant A (``dim`` 4 unless given)."""

    def make(kind: str = "classifier", dim: int = DIM, **memory: Any) -> Agent:
        return tenant_a.create_agent(f"t-{uuid.uuid4().hex[:6]}", kind=kind, encoder="none",
                                     dim=dim, memory=memory or None)

    return make


def auth(client: Client) -> dict[str, str]:
    """The Authorization header of a typed client's key."""
    return {"Authorization": f"Bearer {client.api_key}"}


def vec_events(n: int, prefix: str = "e", dim: int = DIM, start: int = 0) -> list[dict[str, Any]]:
    """``n`` learnable vector events: the label is the index of the largest coordinate."""
    out = []
    for i in range(start, start + n):
        k = i % dim
        x = [0.1 * ((i * 7 + j * 3) % 5) for j in range(dim)]
        x[k] += 2.0
        out.append({"id": f"{prefix}{i}", "input": x, "target": f"L{k}"})
    return out


def wait_applied(client: Client, agent_id: str, n: int, timeout: float = 120.0) -> Agent:
    """Poll until ``n`` events of the agent are committed (no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    while True:
        a = client.get_agent(agent_id)
        if a.events_applied >= n:
            return a
        if time.monotonic() > deadline:
            raise AssertionError(f"{a.events_applied}/{n} events applied after {timeout}s")
        time.sleep(0.05)


def counts(client: Client, agent_id: str) -> tuple[int, int, int, int]:
    """What a rejected request must leave unchanged: head, received, applied, versions.

    Read once the agent is idle (every accepted event applied), so that events accepted
    earlier and still being applied are not mistaken for a change by the rejected request.
    """
    deadline = time.monotonic() + 120
    a = client.get_agent(agent_id)
    while a.events_applied != a.events_received and time.monotonic() < deadline:
        time.sleep(0.02)
        a = client.get_agent(agent_id)
    return (a.head_version, a.events_received, a.events_applied,
            len(client.versions(agent_id).versions))
