"""The HTTP edge alone (issue 17): what parsing and validating a request costs in the FastAPI app,
with a service that answers at once (no Ray, no store), beside ``json.loads`` of the same body.

    .venv/bin/python -m benchmarks.http_edge [--events 1000] [--dim 64] [--repeat 30]

Rows: a JSON ingest of ``--events`` vector events (strict JSON, ``IngestBatch``, one
``check_event`` per event with one NumPy pass per vector, the batch split) and a one-input
predict (``PredictRequest``, the input checked against the agent), each through
``workers.http.app.build_app`` in process (ASGI via httpx), min and median of ``--repeat``
requests after a warm-up. What the edge computes is tested over real HTTP
(tests/test_api_bad_input.py, tests/test_request_models.py).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np


class InstantService:
    """Answers the calls the two routes make at once: the edge's cost alone."""

    def __init__(self, dim: int) -> None:
        self.dim = dim

    def authenticate(self, key: str) -> str | None:
        return "t1" if key == "k" else None

    def agent_config(self, tenant: str, agent_id: str) -> dict[str, Any]:
        return {"id": agent_id, "kind": "classifier", "encoder": "none", "dim": self.dim,
                "memory": {}}

    def ingest(self, tenant: str, agent_id: str, events: list[Any], partial: bool) -> dict[str, Any]:
        return {"accepted": len(events), "duplicates": 0, "rejected": []}

    def predict(self, tenant: str, agent_id: str, inputs: Any, **kw: Any) -> dict[str, Any]:
        return {"version": 0, "predictions": [{"label": None, "score": 0.0}] * len(inputs)}

    def cached_config(self, tenant: str, agent_id: str) -> dict[str, Any] | None:
        return None  # holds nothing: the route asks agent_config in a thread

    async def ingest_on_loop(self, tenant: str, agent_id: str, events: Any,
                             partial: bool) -> dict[str, Any] | None:
        return None  # as cached_config: the route calls ingest in a thread

    def predict_cached(self, tenant: str, agent_id: str, inputs: Any, **kw: Any) -> dict[str, Any] | None:
        return None


def _times(fn: Callable[[], Any], repeat: int) -> list[float]:
    for _ in range(3):
        fn()
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def run(events: int, dim: int, repeat: int) -> list[tuple[str, float, float]]:
    """``(row, min ms, median ms)`` for each measurement."""
    from fastapi.testclient import TestClient

    from workers.http.app import build_app
    from workers.settings import Settings

    rng = np.random.default_rng(0)
    ingest = json.dumps({"events": [{"id": f"e{i}", "input": rng.standard_normal(dim).tolist(),
                                     "target": f"l{i % 7}"} for i in range(events)]}).encode()
    predict = json.dumps({"inputs": [rng.standard_normal(dim).tolist()], "top_k": 2}).encode()
    h = {"Authorization": "Bearer k", "Content-Type": "application/json"}
    c = TestClient(build_app(InstantService(dim), Settings()))  # type: ignore[arg-type]

    def post_ingest() -> None:
        r = c.post("/v1/agents/a1/events", content=ingest, headers=h)
        assert r.status_code == 202 and r.json()["accepted"] == events, r.text

    def post_predict() -> None:
        r = c.post("/v1/agents/a1/predict", content=predict, headers=h)
        assert r.status_code == 200, r.text

    rows = []
    for name, fn in ((f"ingest {events} events JSON ({dim}-d)", post_ingest),
                     ("  json.loads of that body (reference)", lambda: json.loads(ingest)),
                     (f"predict 1 input ({dim}-d)", post_predict),
                     ("  json.loads of that body (reference)", lambda: json.loads(predict))):
        ts = _times(fn, repeat)
        rows.append((name, min(ts) * 1e3, statistics.median(ts) * 1e3))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=1000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--repeat", type=int, default=30)
    a = p.parse_args(argv)
    print(f"{'HTTP edge (in process, instant service)':<44} {'min ms':>9} {'median ms':>10}")
    for name, lo, med in run(a.events, a.dim, a.repeat):
        print(f"{name:<44} {lo:>9.3f} {med:>10.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
