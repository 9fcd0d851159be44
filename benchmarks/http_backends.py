"""Predict latency over real HTTP: uvicorn in the serve process vs the Ray Serve ingress.

Both backends run in one process on one Ray, one after the other (uvicorn, Serve, uvicorn
again, so drift in machine load shows), each answering the same 200 single-input predicts.

    python -m benchmarks.http_backends [--requests 200]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from collections.abc import Sequence

import httpx

from workers.runtime import free_port, start
from workers.settings import Settings


def _measure(backend: str, n: int) -> tuple[float, float]:
    port = free_port()
    s = Settings(database_url=f"sqlite:///{tempfile.mkdtemp()}/b.db", port=port, admin_key="adm",
                 http_backend=backend, ray_namespace=f"hb-{uuid.uuid4().hex[:8]}",
                 scheduler_enabled=False)
    running = start(s)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as c:
            deadline = time.monotonic() + 120
            while c.get("/healthz").status_code != 200 and time.monotonic() < deadline:
                time.sleep(0.1)
            key = c.post("/v1/tenants", json={"name": "t"},
                         headers={"Authorization": "Bearer adm"}).json()["api_key"]
            h = {"Authorization": f"Bearer {key}"}
            aid = c.post("/v1/agents", headers=h,
                         json={"name": "a", "encoder": "none", "dim": 4}).json()["id"]
            c.post(f"/v1/agents/{aid}/events", headers=h,
                   json={"events": [{"input": [1, 0, 0, 0], "target": "x"}]})
            c.post(f"/v1/agents/{aid}/predict", headers=h,
                   json={"inputs": [[1, 0, 0, 0]], "min_version": 1})  # warm: state cached
            ms = []
            for _ in range(n):
                t = time.perf_counter()
                r = c.post(f"/v1/agents/{aid}/predict", headers=h, json={"inputs": [[1, 0, 0, 0]]})
                ms.append((time.perf_counter() - t) * 1000)
                r.raise_for_status()
        ms.sort()
        return statistics.median(ms), ms[max(0, int(0.99 * n) - 1)]
    finally:
        running.stop()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.http_backends")
    p.add_argument("--requests", type=int, default=200)
    args = p.parse_args(argv)
    import ray

    ray.init(address="local", num_cpus=2, object_store_memory=256 * 2**20,
             include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    try:
        rows = [(b, *_measure(b, args.requests)) for b in ("uvicorn", "serve", "uvicorn")]
    finally:
        ray.shutdown()
    print(f"{'backend':8} {'p50 ms':>8} {'p99 ms':>8}   ({args.requests} predicts each, same run)")
    for b, p50, p99 in rows:
        print(f"{b:8} {p50:8.2f} {p99:8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
