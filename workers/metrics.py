"""Prometheus text for the deployment: store totals, learner queues and commit times, caches.

The HTTP app adds its own request/error/latency metrics; this module renders what only the
runtime knows. Every figure is read when scraped (no module-level registries).
"""

from __future__ import annotations

from typing import Any

import ray

from workers.actors.apply_lag import render_lag
from workers.actors.quality import render_histogram


def _line(out: list[str], name: str, kind: str, help_: str,
          samples: list[tuple[dict[str, str], float]]) -> None:
    out.append(f"# HELP {name} {help_}")
    out.append(f"# TYPE {name} {kind}")
    for labels, value in samples:
        lab = ",".join(f'{k}="{v}"' for k, v in labels.items())
        out.append(f"{name}{{{lab}}} {value}" if lab else f"{name} {value}")


def render_metrics(rt: Any) -> str:
    out: list[str] = []
    _store_totals(out, rt)
    _learners(out, rt)
    _serving_caches(out, rt)
    _ingest_groups(out, rt)
    return "\n".join(out) + "\n"


def _store_totals(out: list[str], rt: Any) -> None:
    with rt.store.tx() as repo:
        totals = repo.totals()
    _line(out, "deltamem_agents", "gauge", "Agents in the store.", [({}, totals["agents"])])
    _line(out, "deltamem_events_received_total", "counter", "Events accepted.",
          [({}, totals["events_received"])])
    _line(out, "deltamem_events_applied_total", "counter", "Events committed into a version.",
          [({}, totals["events_applied"])])
    _line(out, "deltamem_events_rejected_total", "counter",
          "Accepted events the learner could not apply (non-finite result), marked rejected.",
          [({}, totals["events_rejected"])])
    _line(out, "deltamem_versions_total", "counter", "Versions committed (all kinds).",
          [({}, totals["versions"])])


def _learners(out: list[str], rt: Any) -> None:
    try:
        pings = ray.get([a.ping.remote() for a in rt.learner_handles()],
                        timeout=rt.s.probe_timeout_s)
    except Exception:
        pings = []
    _line(out, "deltamem_queue_depth", "gauge", "Events acknowledged but not yet applied, by shard.",
          [({"shard": str(p["shard"])}, p["backlog"]) for p in pings])
    _line(out, "deltamem_commit_seconds_total", "counter", "Time spent in commit transactions.",
          [({"shard": str(p["shard"])}, round(p["commit_s"], 6)) for p in pings])
    _line(out, "deltamem_learn_seconds_total", "counter", "Time spent computing deltas.",
          [({"shard": str(p["shard"])}, round(p["learn_s"], 6)) for p in pings])
    _line(out, "deltamem_commits_total", "counter", "Delta versions committed by learners.",
          [({"shard": str(p["shard"])}, p["versions"]) for p in pings])
    _line(out, "deltamem_learner_errors_total", "counter", "Failed micro-batches (retried).",
          [({"shard": str(p["shard"])}, p["errors"]) for p in pings])
    _line(out, "deltamem_learner_held_bytes", "gauge",
          "Bytes of head states a learner shard holds (bounded by DELTAMEM_LEARNER_CACHE_BYTES).",
          [({"shard": str(p["shard"])}, p["held_bytes"]) for p in pings])
    _line(out, "deltamem_learner_evicted_total", "counter",
          "Idle head states dropped to stay within the learner cache (reloaded when needed).",
          [({"shard": str(p["shard"])}, p["evicted"]) for p in pings])
    render_histogram(out, [p.get("quality", {}) for p in pings])  # per agent kind (issue 18)
    render_lag(out, [p.get("apply_lag", {}) for p in pings])
    guard: dict[str, int] = {}
    for p in pings:
        for action, n in p.get("guard", {}).items():
            guard[action] = guard.get(action, 0) + int(n)
    _line(out, "deltamem_guard_actions_total", "counter",
          "Actions of agents' guards on a quality regression (workers/actors/guard.py), by action.",
          [({"action": a}, n) for a, n in sorted(guard.items())])


def _serving_caches(out: list[str], rt: Any) -> None:
    try:
        stats = ray.get([a.stats.remote() for a in rt.serving_handles()], timeout=rt.s.probe_timeout_s)
    except Exception:
        stats = []
    for key, help_ in (("entries", "Cached states."), ("bytes", "Bytes of cached states."),
                       ("hits", "Cache hits."), ("misses", "Cache misses (rebuilds).")):
        kind = "gauge" if key in ("entries", "bytes") else "counter"
        name = f"deltamem_serving_cache_{key}" + ("" if kind == "gauge" else "_total")
        _line(out, name, kind, help_, [({"replica": str(s["replica"])}, s[key]) for s in stats])


def _ingest_groups(out: list[str], rt: Any) -> None:
    try:  # group commit (workers/actors/group_commit.py): requests per transaction
        groups = ray.get([a.stats.remote() for a in rt.ingest_handles()], timeout=rt.s.probe_timeout_s)
    except Exception:
        groups = []
    edges = rt.edge_stats()  # workers/ingest_edge.py: this HTTP process's calls
    for name, help_, stats, key in (
            ("deltamem_ingest_groups_total", "Ingest transactions (each commits a group of "
             "concurrent requests), by ingest actor.", groups, "groups"),
            ("deltamem_ingest_grouped_requests_total", "Ingest requests committed in those "
             "transactions, by ingest actor.", groups, "requests"),
            ("deltamem_ingest_calls_total", "Calls from this HTTP process to an ingest actor "
             "(each carries its concurrent requests).", edges, "groups"),
            ("deltamem_ingest_call_requests_total", "Ingest requests those calls carried.",
             edges, "requests")):
        _line(out, name, "counter", help_, [({"actor": str(i)}, g[key]) for i, g in enumerate(stats)])
