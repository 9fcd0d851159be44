"""Helpers for the worker tests: a running deployment without HTTP, waits on conditions,
and the single-process reference learner the deployment must agree with."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from agent.config import AgentConfig
from agent.model import MemoryAgent
from workers.runtime import RunningService, start
from workers.settings import Settings


def wait_for(cond: Callable[[], bool], timeout: float = 120.0, what: str = "condition") -> None:
    """Poll ``cond`` until true (no fixed sleeps in tests)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def start_deployment(tmp: Path, http: bool = False, **overrides: Any) -> RunningService:
    s = Settings(**{"database_url": f"sqlite:///{tmp / 'deltamem.db'}",
                    "ray_namespace": f"t-{uuid.uuid4().hex[:8]}", "scheduler_enabled": False,
                    "batch_max_ms": 5.0, **overrides})
    return start(s, http=http)


def all_applied(svc: Any, tenant: str, agent_ids: list[str]) -> bool:
    for a in agent_ids:
        info = svc.get_agent(tenant, a)
        if info["events_applied"] != info["events_received"]:
            return False
    return True


def vector_events(rng: np.random.Generator, n: int, dim: int, n_labels: int,
                  prefix: str) -> list[dict[str, Any]]:
    """Random vector events whose label depends on the input (learnable)."""
    centers = np.random.default_rng(7).normal(size=(n_labels, dim))
    out = []
    for i in range(n):
        y = int(rng.integers(n_labels))
        x = centers[y] + 0.5 * rng.normal(size=dim)
        out.append({"id": f"{prefix}{i}", "input": x.tolist(), "target": f"L{y}",
                    "beta": float(rng.uniform(0.2, 1.0))})
    return out


def reference(config: dict[str, Any], events: list[dict[str, Any]], batch: int = 64,
              start_state: tuple[dict[str, np.ndarray], list[str]] | None = None) -> MemoryAgent:
    """A single-process learner fed ``events`` in order (DESIGN §7 semantics)."""
    ref = MemoryAgent(AgentConfig.from_dict(config))
    if start_state is not None:
        ref.load_state(*start_state)
    for i in range(0, len(events), batch):
        chunk = events[i : i + batch]
        ref.learn_many([e["input"] for e in chunk], [e["target"] for e in chunk],
                       betas=[e.get("beta") for e in chunk])
    return ref


def assert_same_predictions(svc: Any, tenant: str, agent_id: str, ref: MemoryAgent,
                            probes: list[list[float]]) -> None:
    got = svc.predict(tenant, agent_id, probes, top_k=None)
    want = ref.predict_many(probes)
    for i, (g, w) in enumerate(zip(got["predictions"], want, strict=True)):
        assert g["label"] == w["label"], f"probe {i}: {g} != {w}"
        assert abs(g["score"] - float(w["score"])) <= 1e-6 * max(1.0, abs(float(w["score"]))), \
            f"probe {i}: {g['score']} vs {w['score']}"
