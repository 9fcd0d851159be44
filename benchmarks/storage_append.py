"""Event append, side by side: the per-object ORM path it replaced against the Core
executemany path of :meth:`storage.repository.events.Events.append_events`.

    .venv/bin/python -m benchmarks.storage_append [--pg URL] [--sizes 1 10 100 1000]
    deltamem bench storage --append                 (the same, through the CLI)

Both paths run on the same database file, in alternating transactions (so a noisy machine
slows both alike), each into a fresh agent per batch size, with 384-float vector events (the
HTTP API's ``input``). Printed per batch size, as a markdown table: µs per event inside
``append_events`` (the transaction open, its lock taken) and for the whole transaction
(BEGIN IMMEDIATE, append, COMMIT with SQLite's ``synchronous=FULL``), median over the
transactions, and the ratio old / new. Correctness of both paths (same stored rows and
counters) is proved by tests/test_storage_append.py.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import select, update

from benchmarks.storage_dbs import new_agent, scratch_databases
from storage.engine import Database
from storage.errors import AgentNotFound
from storage.models import Agent, Event, utcnow
from storage.repository import Repository, unit_of_work
from storage.repository._base import chunks
from storage.repository.events import _payload

AppendFn = Callable[[Repository, str, list[dict[str, Any]]], int]


def _lock_agent_orm(repo: Repository, agent_id: str) -> Agent:
    """``Core.lock_agent`` (storage/repository/_base.py) as it was: the same SQL, the statements built per call and
    the no-op write as an ORM-enabled UPDATE."""
    with repo.core.translate(agent_id):
        if repo.core.is_sqlite:
            repo.session.execute(update(Agent).where(Agent.id == agent_id)
                                 .values(head_version=Agent.head_version))
        agent = repo.session.execute(
            select(Agent).where(Agent.id == agent_id).with_for_update()
            .execution_options(populate_existing=True)).scalar_one_or_none()
    if agent is None:
        raise AgentNotFound(agent_id)
    return agent


def append_events_orm(repo: Repository, agent_id: str, events: list[dict[str, Any]], *,
                      received_at: datetime | None = None) -> tuple[list[Event], list[str]]:
    """The append path before the Core rewrite (kept as the reference): one ORM ``Event``
    per accepted event, written by the session's unit of work at flush, and the agent lock
    as it was (:func:`_lock_agent_orm`).

    Validation (:func:`storage.repository.events._payload`) is shared with the new path;
    the ``JSON`` column encodes each payload again at flush, as it did.
    """
    parsed = [_payload(ev, i)[:2] for i, ev in enumerate(events)]
    agent = _lock_agent_orm(repo, agent_id)
    ids = [cid for cid, _ in parsed if cid is not None]
    existing: set[str] = set()
    for part in chunks(sorted(set(ids))):
        existing.update(repo.session.scalars(select(Event.client_id).where(
            Event.agent_key == agent.key, Event.client_id.in_(part))))
    now = received_at or utcnow()
    accepted: list[Event] = []
    duplicates: list[str] = []
    seen: set[str] = set()
    seq = agent.next_seq
    for cid, payload in parsed:
        if cid is not None and (cid in existing or cid in seen):
            duplicates.append(cid)
            continue
        cid = cid or "ev_" + uuid.uuid4().hex
        seen.add(cid)
        accepted.append(Event(agent_key=agent.key, client_id=cid, seq=seq, payload=payload,
                              received_at=now))
        seq += 1
    if accepted:
        repo.session.add_all(accepted)
        agent.next_seq = seq
        agent.events_received += len(accepted)
        with repo.core.translate(agent_id):
            repo.session.flush()
    return accepted, duplicates


def _old(repo: Repository, agent_id: str, events: list[dict[str, Any]]) -> int:
    return len(append_events_orm(repo, agent_id, events)[0])


def _new(repo: Repository, agent_id: str, events: list[dict[str, Any]]) -> int:
    return len(repo.append_events(agent_id, events)[0])


PATHS: dict[str, AppendFn] = {"old": _old, "new": _new}


def _batches(rng: np.random.Generator, n: int, count: int, dim: int) -> list[list[dict]]:
    return [[{"id": uuid.uuid4().hex, "input": rng.standard_normal(dim).tolist(),
              "target": f"l{int(rng.integers(10))}"} for _ in range(n)] for _ in range(count)]


def time_paths(db: Database, n: int, transactions: int, dim: int,
               seed: int = 0) -> dict[str, tuple[float, float]]:
    """``{path: (µs/event in append, µs/event for the transaction)}``, medians over
    ``transactions`` batches of ``n`` events per path (the paths alternate)."""
    rng = np.random.default_rng(seed)
    agents = {name: new_agent(db, d=8, labels=2)[0] for name in PATHS}
    work = {name: _batches(rng, n, transactions, dim) for name in PATHS}
    times: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in PATHS}
    for i in range(transactions):
        for name, fn in PATHS.items():
            t0 = time.perf_counter()
            with unit_of_work(db) as repo:
                t1 = time.perf_counter()
                assert fn(repo, agents[name], work[name][i]) == n
                t2 = time.perf_counter()
            t3 = time.perf_counter()
            times[name][0].append((t2 - t1) / n)
            times[name][1].append((t3 - t0) / n)
    return {name: (statistics.median(a) * 1e6, statistics.median(t) * 1e6)
            for name, (a, t) in times.items()}


def markdown_table(rows: list[tuple[str, int, dict[str, tuple[float, float]]]]) -> str:
    lines = ["| database | batch | old append µs/ev | new append µs/ev | append ratio "
             "| old tx µs/ev | new tx µs/ev | tx ratio |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for dbname, n, r in rows:
        (oa, ot), (na, nt) = r["old"], r["new"]
        lines.append(f"| {dbname} | {n} | {oa:.1f} | {na:.1f} | {oa / na:.2f}x "
                     f"| {ot:.1f} | {nt:.1f} | {ot / nt:.2f}x |")
    return "\n".join(lines)


def run(pg: str | None, sizes: list[int], events: int, dim: int,
        min_tx: int = 5, max_tx: int = 200) -> str:
    """The table for every database and batch size (about ``events`` events per path and
    size, between ``min_tx`` and ``max_tx`` transactions)."""
    rows = []
    for dbname, url in scratch_databases(pg):
        db = Database(url)
        try:
            time_paths(db, 10, 3, dim)  # warm up: compiled-statement caches, the file
            for n in sizes:
                tx = max(min_tx, min(max_tx, events // n))
                rows.append((dbname, n, time_paths(db, n, tx, dim)))
        finally:
            db.dispose()
    return markdown_table(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="deltamem bench storage --append", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pg", default=os.environ.get("DELTAMEM_TEST_POSTGRES_URL"),
                    help="also measure PostgreSQL (a scratch database is made and dropped)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 100, 1000])
    ap.add_argument("--events", type=int, default=4000,
                    help="events per path and batch size (default 4000)")
    ap.add_argument("--dim", type=int, default=384, help="floats per event input")
    args = ap.parse_args(argv)
    print(run(args.pg, args.sizes, args.events, args.dim))
    return 0


if __name__ == "__main__":
    main()
