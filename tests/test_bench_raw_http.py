"""benchmarks/raw_http.py, the benchmarks' light load generator, against httpx on the real
service over loopback: the same status and body for every request (answers, 4xx errors, an
answer larger than one socket read, an Arrow body), all on one kept-alive connection."""

from __future__ import annotations

import uuid

import httpx
import numpy as np

from benchmarks.raw_http import RawClient
from client import ARROW_STREAM, arrow_body
from tests.workers_helpers import wait_for


def test_raw_client_answers_as_httpx(ray_cluster, tmp_path):
    from workers.runtime import free_port, start
    from workers.settings import Settings

    s = Settings(database_url=f"sqlite:///{tmp_path / 'raw.db'}", port=free_port(),
                 ray_namespace=f"raw-{uuid.uuid4().hex[:8]}", scheduler_enabled=False,
                 admin_key="adm")
    running = start(s)
    try:
        key = httpx.post(f"{running.url}/v1/tenants", json={"name": "t"}, timeout=60,
                         headers={"Authorization": "Bearer adm"}).json()["api_key"]
        head = {"Authorization": f"Bearer {key}"}
        ref = httpx.Client(base_url=running.url, headers=head, timeout=60)
        with RawClient(running.url, head) as raw:
            dim = 8
            agent = raw.post("/v1/agents", json={"name": "a", "kind": "classifier",
                                                 "encoder": "none", "dim": dim}).json()["id"]
            rng = np.random.default_rng(0)
            evs = [{"id": f"e{i}", "input": rng.normal(size=dim).tolist(), "target": f"L{i % 3}"}
                   for i in range(30)]
            r = raw.post(f"/v1/agents/{agent}/events", json={"events": evs[:20]})
            assert r.status_code == 202 and r.json()["accepted"] == 20
            block = arrow_body([{**e, "input": np.asarray(e["input"], np.float32)}
                                for e in evs[20:]])
            r = raw.post(f"/v1/agents/{agent}/events", content=block, content_type=ARROW_STREAM)
            assert r.status_code == 202 and r.json()["accepted"] == 10
            sock = raw._sock
            wait_for(lambda: ref.get(f"/v1/agents/{agent}").json()["events_applied"] == 30,
                     what="30 events applied")
            probes = {"inputs": rng.normal(size=(1000, dim)).tolist(), "top_k": 3}  # > 64 KiB back
            cases = [("GET", f"/v1/agents/{agent}", None),
                     ("POST", f"/v1/agents/{agent}/predict", probes),
                     ("POST", f"/v1/agents/{agent}/predict", {"inputs": [[1.0] * (dim - 1)]}),
                     ("POST", f"/v1/agents/{agent}/events", {"events": [{"id": 3}]}),
                     ("GET", "/v1/agents/ag_missing", None),
                     ("GET", f"/v1/agents/{agent}/versions?limit=5", None)]
            for method, path, body in cases:
                want = ref.request(method, path, json=body)
                got = raw.get(path) if method == "GET" else raw.post(path, json=body)
                assert got.status_code == want.status_code, (path, got.content[:200])
                assert got.json() == want.json(), path
            assert len(raw.post(f"/v1/agents/{agent}/predict", json=probes).content) > 65536
            assert raw._sock is sock  # every request on the one connection
        ref.close()
    finally:
        running.stop()
