"""Cost per request as an agent's history grows (issue 16: constant per-request cost).

One vector agent is grown to 10, 1,000, 10,000 and 100,000 versions, and at each size the
real service (uvicorn + Ray actors, in this process) is timed over HTTP: ingest of one event
per request, predict of one input per request, and ``GET /v1/agents/{id}``. The history is
built fast through the store: bulk inserts of version rows (kind ``rollback`` to the real head,
so the head's state stays the one the learner holds) with one applied event row each, and the
agent's head and counters moved to match. Beside each size, the read every request made before
(``labels_at``'s scan of every version row) is timed on the same database, to show what the
request path no longer does.

Run: ``python -m benchmarks.history_cost [--sizes 10,1000,10000,100000] [--requests 200]
[--db URL]``. Prints a table and the ratio of each p50 at the largest size to the smallest.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import insert, select, update

from benchmarks.bench_service import Deployment
from benchmarks.eval_common import p50_p99
from storage.engine import Database
from storage.models import Agent, Event, Version, utcnow
from storage.repository import unit_of_work

DIM = 16
LABELS = 8
BULK = 5_000


def grow(db: Database, agent_id: str, versions: int) -> None:
    """Append version rows (and one applied event each) until the agent has ``versions``."""
    with unit_of_work(db) as repo:
        agent = repo.session.get(Agent, agent_id)
        assert agent is not None
        head, received, seq = agent.head_version, agent.events_received, agent.next_seq
        base = repo.session.execute(select(Version.state_of, Version.kind, Version.checksum).where(
            Version.agent_id == agent_id, Version.version == head)).one()
        state_of = base.state_of if base.kind == "rollback" else head
        add = versions - (head + 1)
        if add <= 0:
            return
        now = utcnow()
        for lo in range(0, add, BULK):
            n = min(BULK, add - lo)
            first = head + 1 + lo
            repo.session.execute(insert(Version), [
                {"agent_id": agent_id, "version": v, "parent": v - 1, "kind": "rollback",
                 "state_of": state_of, "created_at": now - timedelta(microseconds=add - v),
                 "event_count": 0, "checksum": base.checksum, "delta_norm": 0.0,
                 "labels_added": [], "has_snapshot": False, "pinned": False, "status": "ok"}
                for v in range(first, first + n)])
            repo.session.execute(insert(Event), [
                {"agent_key": agent.key, "client_id": f"hist-{seq + i}", "seq": seq + i,
                 "payload": {"input": [1.0] * DIM, "target": "L0"}, "received_at": now,
                 "applied_version": first + i} for i in range(n)])
            seq += n
        repo.session.execute(update(Agent).where(Agent.id == agent_id).values(
            head_version=head + add, events_received=received + add,
            events_applied=Agent.events_applied + add, next_seq=seq, applied_seq=seq - 1))


def measure(dep: Deployment, db: Database, agent_id: str, n: int, rng: np.random.Generator,
            tag: str) -> dict[str, Any]:
    """Per-request latencies (ms) at the agent's current size."""
    centers = rng.normal(size=(LABELS, DIM))
    ing, pred, get = [], [], []
    for i in range(n):
        y = int(rng.integers(LABELS))
        ev = {"id": f"{tag}-{i}", "input": (centers[y] + 0.3 * rng.normal(size=DIM)).tolist(),
              "target": f"L{y}"}
        t0 = time.perf_counter()
        r = dep.http.post(f"/v1/agents/{agent_id}/events", json={"events": [ev]})
        ing.append((time.perf_counter() - t0) * 1e3)
        r.raise_for_status()
        t0 = time.perf_counter()
        r = dep.http.post(f"/v1/agents/{agent_id}/predict",
                          json={"inputs": [centers[y].tolist()]})
        pred.append((time.perf_counter() - t0) * 1e3)
        r.raise_for_status()
        if i % 4 == 0:
            t0 = time.perf_counter()
            dep.http.get(f"/v1/agents/{agent_id}").raise_for_status()
            get.append((time.perf_counter() - t0) * 1e3)
    with unit_of_work(db, write=False) as repo:
        head = repo.head_version(agent_id)
        t0 = time.perf_counter()
        repo.graph.vmap(agent_id, upto=head)  # what every request read before (labels_at's scan)
        old_ms = (time.perf_counter() - t0) * 1e3
        assert repo.labels_at(agent_id, head) == repo.get_agent(agent_id).labels
    return {"ingest": p50_p99(ing), "predict": p50_p99(pred), "get": p50_p99(get),
            "labels_at_ms": old_ms, "head": head}


def run(sizes: list[int], requests: int, db_url: str | None) -> list[dict[str, Any]]:
    tmp = tempfile.mkdtemp(prefix="history-cost-")
    url = db_url or f"sqlite:///{Path(tmp) / 'history.db'}"
    rng = np.random.default_rng(0)
    rows = []
    with Deployment(url, namespace=f"history-{time.time_ns()}") as dep:
        db = Database(url)
        try:
            agent_id = dep.agent("history", dim=DIM)
            warm = [{"id": f"w{i}", "input": rng.normal(size=DIM).tolist(), "target": f"L{i % LABELS}"}
                    for i in range(LABELS)]
            dep.send(agent_id, warm)
            dep.wait_applied([agent_id])
            for size in sizes:
                grow(db, agent_id, size)
                measure(dep, db, agent_id, max(5, requests // 10), rng, f"warm{size}")  # reloads
                dep.wait_applied([agent_id])
                row = measure(dep, db, agent_id, requests, rng, f"s{size}")
                rows.append({"versions": size, **row})
                dep.wait_applied([agent_id])
        finally:
            db.dispose()
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"{'versions':>9} {'ingest p50':>10} {'p99':>7} {'predict p50':>11} {'p99':>7} "
          f"{'GET p50':>8} {'old version scan':>16}   (ms)")
    for r in rows:
        print(f"{r['versions']:>9,} {r['ingest'][0]:>10.2f} {r['ingest'][1]:>7.2f} "
              f"{r['predict'][0]:>11.2f} {r['predict'][1]:>7.2f} {r['get'][0]:>8.2f} "
              f"{r['labels_at_ms']:>16.2f}")
    if len(rows) >= 2:
        a, b = rows[0], rows[-1]
        print(f"ratio {b['versions']:,}/{a['versions']:,} (p50): ingest "
              f"{b['ingest'][0] / a['ingest'][0]:.2f}x, predict "
              f"{b['predict'][0] / a['predict'][0]:.2f}x, GET agent {b['get'][0] / a['get'][0]:.2f}x"
              f" (old version scan {b['labels_at_ms'] / a['labels_at_ms']:.0f}x)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.history_cost", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="10,1000,10000,100000",
                   help="version counts, ascending, comma-separated")
    p.add_argument("--requests", type=int, default=200, help="timed requests of each kind per size")
    p.add_argument("--db", default=None, help="database URL (default: SQLite in a temp dir)")
    a = p.parse_args(argv)
    sizes = sorted(int(s) for s in a.sizes.split(","))
    print_table(run(sizes, a.requests, a.db))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
