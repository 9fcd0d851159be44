"""The database connection cut mid-commit: PostgreSQL is restarted with ``pg_ctl restart -m
immediate`` (every backend killed, no clean shutdown) while a client streams events into
``deltamem serve`` over HTTP, and again right after the last batch is acknowledged, while the
learner is committing it and no further request will come to wake it up.

The service must recover on its own (the learner retries its failed commit; pooled connections
are replaced) and lose nothing: every acknowledged event is applied exactly once, in order; the
versions are contiguous and each rebuilds with its checksum; the head equals a reference learner.
Requests that arrive while the database is down may fail, with 503 and a JSON error; the client
retries them. Uses its own PostgreSQL server (synchronous commits), not the shared test server.
"""

from __future__ import annotations

import time

import httpx
import pytest

from tests.reliability_helpers import PgServer, ServeProcess, make_batches, tenant_key
from tests.reliability_stream import Sender, check_against_reference, resend, wait_all_applied

pytestmark = pytest.mark.postgres
DIM = 16
CONFIG = {"kind": "classifier", "encoder": "none", "dim": DIM,
          "memory": {"rule": "rls", "ridge": 1.0, "forget": 1.0}}


def run_pg_restarts(tmp_path, restarts: int, n_batches: int, size: int) -> None:
    pg = PgServer()
    svc = None
    try:
        svc = ServeProcess(pg.url, tmp_path / "serve.log", snapshot_every_versions=7,
                           batch_max_ms=5)
        svc.wait_ready()
        key = tenant_key(svc.url)
        auth = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=svc.url, timeout=60, headers=auth) as c:
            agents = [c.post("/v1/agents", json={"name": f"pg{i}", **CONFIG}).json()["id"]
                      for i in range(3)]
        batches = make_batches(agents, n_batches, size, DIM, seed=3)
        tail = len(agents)  # the last batch of each agent goes in the final phase
        sender = Sender(svc.url, key, batches[:-tail], retry_errors=True)
        sender.thread.start()
        for k in range(restarts):  # restarts spread over the stream
            goal = (k + 1) * (len(batches) - tail) // (restarts + 1)
            deadline = time.monotonic() + 120
            while len(sender.acked) < goal and sender.thread.is_alive() \
                    and time.monotonic() < deadline:
                time.sleep(0.005)
            pg.restart_immediate()
        sender.thread.join(timeout=300)
        assert not sender.thread.is_alive() and not sender.refused, sender.refused
        assert set(sender.retried) <= {503}, f"answers while the database was down: " \
            f"{sorted(set(sender.retried))} (want 503)\n{svc.log_tail()}"
        final = Sender(svc.url, key, batches[-tail:], retry_errors=True)
        final._run()  # acknowledged; the learner has not committed them yet
        assert not final.refused and len(final.acked) == tail
        pg.restart_immediate()  # the commit of the last batches is cut; nothing else will come
        wait_all_applied(svc.url, key, agents, n_batches * size, timeout=120)
        resend(svc.url, key, batches, len(batches), set(range(len(batches))))
        assert httpx.get(f"{svc.url}/readyz", timeout=30).status_code == 200
        svc.stop()
        check_against_reference(pg.url, CONFIG, batches)
    finally:
        if svc is not None:
            svc.kill_all()
        pg.stop()


def test_postgres_restart_mid_ingest_loses_nothing(tmp_path):
    run_pg_restarts(tmp_path, restarts=1, n_batches=16, size=20)


@pytest.mark.slow
def test_postgres_restarted_repeatedly(tmp_path):
    run_pg_restarts(tmp_path, restarts=5, n_batches=60, size=25)
