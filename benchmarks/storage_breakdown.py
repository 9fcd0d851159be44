"""Bytes stored per event, split by table and index (issue 16: ≤ 2 KB per event at 384-d).

    .venv/bin/python -m benchmarks.storage_breakdown [--agents 20] [--per-agent 2000]
        [--request 1000] [--batch 512] [--pg URL] [--sqlite-only] [--page-size N] [--reads N]
        [--rounds N]

Builds each database the way ``benchmarks.ingest_paths`` fills it, through the repository
without HTTP or Ray: ``--agents`` classifier agents (rule delta, d = 384, 20 labels), each sent
``--per-agent`` vector events in requests of ``--request`` (one group commit per round of
requests, :func:`storage.repository.event_groups.append_groups`, client ids
``<agent id>-<i>``), every round's pending events then learnt and committed in micro-batches of
``--batch`` (the service's burst size) with float64 deltas (the service's default), which marks
the events applied as the learner does. Then it prints, per event, the space of every table and
index (SQLite: the ``dbstat`` virtual table, pages and their unused bytes; PostgreSQL:
``pg_table_size``/``pg_relation_size``), and the event row's columns alone; then the median
time of one event read by its client id (``--reads``; ``--page-size`` builds the SQLite file
with other pages, to compare). ``--rounds N`` fills it N times and prints what each round added
per event, PostgreSQL vacuumed between rounds as autovacuum would: the steady state of a
service left running, where the dead copies the learner's update leaves are reused.

PostgreSQL is measured when ``--pg`` or ``DELTAMEM_TEST_POSTGRES_URL`` is given (a scratch
database is created in it and dropped). :func:`sqlite_breakdown` also reads any deltamem SQLite
file (``benchmarks.ingest_paths`` prints it for its own database).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from sqlalchemy import text

from storage import engine
from storage.engine import Database
from storage.repository import unit_of_work

CONFIG = {"kind": "classifier", "encoder": "none", "dim": 384,
          "memory": {"rule": "delta", "beta": 0.5, "decay": 1.0}}
# every table (heap + TOAST) and index of the schema, with its bytes (PostgreSQL)
_PG_SIZES = ("SELECT c.relname AS name, CASE WHEN c.relkind = 'r' THEN pg_table_size(c.oid) "
             "ELSE pg_relation_size(c.oid) END AS size FROM pg_class c "
             "JOIN pg_namespace n ON n.oid = c.relnamespace "
             "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'i')")
# byte sums per event (SQLite): the inputs (in blocks, or inline in rows before 0012), and two
# of the events table's columns
_COLUMNS = {"input_data": "(SELECT coalesce(sum(length(input_data)), 0) FROM events) + "
                          "(SELECT coalesce(sum(length(data)), 0) FROM event_inputs)",
            "payload": "(SELECT sum(length(payload)) FROM events)",
            "client_id": "(SELECT sum(length(client_id)) FROM events)"}


def build(db: Database, agents: int, per_agent: int, request: int, batch: int,
          rounds: int = 1, after_round: Callable[[int], None] | None = None) -> int:
    """Fill ``db`` as the service would, ``rounds`` times ``per_agent`` events an agent
    (``after_round(r)`` after each); returns the number of events stored."""
    from agent.config import AgentConfig
    from agent.memory.delta import state_checksum
    from agent.model import MemoryAgent
    from benchmarks.ingest_paths import vectors
    from storage.repository.event_groups import append_groups

    cfg = AgentConfig.from_dict(CONFIG)
    learners: dict[str, MemoryAgent] = {}
    heads: dict[str, int] = {}
    with unit_of_work(db) as repo:
        tenant, _ = repo.create_tenant("bench")
        for k in range(agents):
            m = MemoryAgent(cfg)
            layers, labels = MemoryAgent.initial_state(cfg)
            made = repo.create_agent(tenant.id, f"a{k}", cfg.to_dict(), layers, labels,
                                     state_checksum(layers, labels))
            learners[made.id], heads[made.id] = m, 0
    rng = np.random.default_rng(1)
    for r in range(rounds):
        for start in range(r * per_agent, (r + 1) * per_agent, request):
            reqs = []
            for a in learners:
                X, y = vectors(rng, min(request, (r + 1) * per_agent - start))
                reqs.append((a, [{"id": f"{a}-{start + i}", "input": X[i], "target": y[i]}
                                 for i in range(len(y))]))
            with unit_of_work(db) as repo:
                for res in append_groups(repo, reqs):
                    assert not isinstance(res, Exception), res
            for aid, m in learners.items():
                _learn_pending(db, aid, m, heads, batch)
        if after_round is not None:
            after_round(r)
    return agents * per_agent * rounds


def _learn_pending(db: Database, agent_id: str, m: Any, heads: dict[str, int],
                   batch: int) -> None:
    """Commit the agent's pending events, a version per ``batch`` (float64 deltas)."""
    while True:
        with unit_of_work(db) as repo:
            rows = repo.pending_events(agent_id, limit=batch)
            if not rows:
                return
            evs = [r.as_replay() for r in rows]
            X = np.stack([e["input"] for e in evs]).astype(np.float64)  # (n, d)
            delta = m.learn_many(X, [e["target"] for e in evs], delta_dtype="float64")
            v = repo.commit_version(agent_id, heads[agent_id], "delta", delta=delta,
                                    event_seqs=[r.seq for r in rows], checksum=m.checksum(),
                                    delta_norm=delta.norm())
            heads[agent_id] = v.version


def point_reads(db: Database, n: int, seed: int = 5) -> float:
    """Median µs of one event read by its client id (``events_by_ids`` of one random id,
    input decoded and verified), each in its own read transaction."""
    from storage.models import Agent

    with unit_of_work(db, write=False) as repo:
        agents = list(repo.session.scalars(text("SELECT id FROM agents")))
        counts = {a: repo.session.get(Agent, a).events_received for a in agents}  # type: ignore[union-attr]
    rng = np.random.default_rng(seed)
    times = []
    for _ in range(n):
        a = agents[int(rng.integers(len(agents)))]
        cid = f"{a}-{int(rng.integers(max(1, counts[a])))}"
        t = time.perf_counter()
        with unit_of_work(db, write=False) as repo:
            rows = repo.events_by_ids(a, [cid])
            assert len(rows) == 1 and rows[0].as_replay()["input"].shape == (384,)
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1e6)


def sqlite_breakdown(db: Database) -> tuple[list[tuple[str, int, int]], dict[str, float]]:
    """``([(table or index, bytes, unused bytes)], facts)`` of a SQLite database, largest
    first; facts: page size, file pages, free pages, events, column byte sums."""
    with db.engine.connect() as c:
        c.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        rows = [(str(n), int(s), int(u)) for n, s, u in c.exec_driver_sql(
            "SELECT name, SUM(pgsize), SUM(unused) FROM dbstat GROUP BY name "
            "ORDER BY SUM(pgsize) DESC")]
        facts: dict[str, float] = {
            "page_size": c.exec_driver_sql("PRAGMA page_size").scalar() or 0,
            "pages": c.exec_driver_sql("PRAGMA page_count").scalar() or 0,
            "free_pages": c.exec_driver_sql("PRAGMA freelist_count").scalar() or 0,
            "events": c.exec_driver_sql("SELECT count(*) FROM events").scalar() or 0}
        for name, expr in _COLUMNS.items():
            facts[name] = c.exec_driver_sql(f"SELECT {expr}").scalar() or 0
    return rows, facts


def pg_breakdown(db: Database) -> tuple[list[tuple[str, int, int]], dict[str, float]]:
    """The same for PostgreSQL (after VACUUM ANALYZE): every table's heap + TOAST, and each
    index, from ``pg_class`` (unused bytes are not counted: 0)."""
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.exec_driver_sql("VACUUM ANALYZE")
        rows = [(str(n), int(s), 0) for n, s in c.execute(text(f"{_PG_SIZES} ORDER BY 2 DESC"))]
        facts: dict[str, float] = {
            "events": c.execute(text("SELECT count(*) FROM events")).scalar() or 0,
            "database": c.execute(text("SELECT pg_database_size(current_database())")).scalar()
            or 0}
    return rows, facts


def used_bytes(db: Database) -> int:
    """Bytes the database's tables and indexes take: SQLite, its pages in use (the file less
    its free pages); PostgreSQL, after a plain ``VACUUM`` (dead rows' space made reusable, as
    autovacuum does in a running service; the files do not shrink)."""
    if db.engine.dialect.name == "sqlite":
        with db.engine.connect() as c:
            c.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            pages = c.exec_driver_sql("PRAGMA page_count").scalar() or 0
            free = c.exec_driver_sql("PRAGMA freelist_count").scalar() or 0
            return int((pages - free) * (c.exec_driver_sql("PRAGMA page_size").scalar() or 0))
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.exec_driver_sql("VACUUM")
        return int(c.execute(text(f"SELECT sum(size) FROM ({_PG_SIZES}) AS sizes")).scalar() or 0)


def table(rows: list[tuple[str, int, int]], n: float, top: int = 12) -> list[list[str]]:
    """Markdown rows: name, bytes per event, unused per event, share; the rest summed."""
    total = sum(s for _, s, _ in rows) or 1
    out = [[name, f"{s / n:,.0f}", f"{u / n:,.0f}", f"{100 * s / total:.1f} %"]
           for name, s, u in rows[:top]]
    rest = rows[top:]
    if rest:
        out.append([f"{len(rest)} others", f"{sum(s for _, s, _ in rest) / n:,.0f}",
                    f"{sum(u for _, _, u in rest) / n:,.0f}",
                    f"{100 * sum(s for _, s, _ in rest) / total:.1f} %"])
    out.append(["**all**", f"**{total / n:,.0f}**",
                f"{sum(u for _, _, u in rows) / n:,.0f}", "100 %"])
    return out


def print_sqlite(db: Database, path: str | None = None) -> float:
    """Print the SQLite breakdown; returns the file's bytes per event."""
    from benchmarks.eval_common import md_table

    rows, f = sqlite_breakdown(db)
    n = max(1.0, float(f["events"]))
    size = os.path.getsize(path) if path else f["pages"] * f["page_size"]
    print(f"SQLite, {int(n):,} events, {int(f['page_size']):,} B pages, file {size / n:,.0f} B "
          f"per event ({int(f['free_pages'])} free pages); events columns per event: "
          + ", ".join(f"{k} {f[k] / n:,.0f} B" for k in _COLUMNS) + "\n")
    print(md_table(["table / index", "B per event", "unused B per event", "share"],
                   table(rows, n)))
    return size / n


def print_pg(db: Database) -> float:
    from benchmarks.eval_common import md_table

    rows, f = pg_breakdown(db)
    n = max(1.0, float(f["events"]))
    total = sum(s for _, s, _ in rows)
    print(f"\nPostgreSQL, {int(n):,} events, tables + indexes {total / n:,.0f} B per event "
          f"(database {f['database'] / n:,.0f} B per event)\n")
    print(md_table(["table / index", "B per event", "unused B per event", "share"],
                   table(rows, n)))
    return total / n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agents", type=int, default=20)
    ap.add_argument("--per-agent", type=int, default=2000)
    ap.add_argument("--request", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--pg", default=os.environ.get("DELTAMEM_TEST_POSTGRES_URL"))
    ap.add_argument("--page-size", type=int, default=None,
                    help="SQLite page size of the new file (default: storage.engine's)")
    ap.add_argument("--sqlite-only", action="store_true")
    ap.add_argument("--rounds", type=int, default=1,
                    help="fill this many times, measuring the growth of each round (PostgreSQL "
                    "vacuumed between rounds): the steady state of a service left running")
    ap.add_argument("--reads", type=int, default=2000,
                    help="random point reads of one event by id to time (0: none)")
    args = ap.parse_args(argv)
    default_pages = engine.SQLITE_PAGE_SIZE
    engine.SQLITE_PAGE_SIZE = args.page_size or default_pages  # (read when a file is made)
    try:
        _run(args)
    finally:
        engine.SQLITE_PAGE_SIZE = default_pages
    return 0


def _run(args: Any) -> None:
    from benchmarks.storage_dbs import scratch_databases

    print(f"deltamem storage per event: {args.agents} agents x {args.per_agent} events "
          f"(384-d float32 inputs), {args.request} a request, micro-batches of {args.batch}, "
          f"float64 deltas (1-min load {os.getloadavg()[0]:.1f})\n")
    for name, url in scratch_databases(None if args.sqlite_only else args.pg):
        db = Database(url)
        try:
            t = time.perf_counter()
            sizes = [used_bytes(db)]

            def measure(_round: int, db: Database = db, sizes: list[int] = sizes) -> None:
                sizes.append(used_bytes(db))

            build(db, args.agents, args.per_agent, args.request, args.batch, args.rounds, measure)
            built = time.perf_counter() - t
            if args.rounds > 1:
                each = args.agents * args.per_agent
                print(f"{name}: growth per event of each round of {each:,} events: " + ", ".join(
                    f"{(b - a) / each:,.0f} B" for a, b in zip(sizes, sizes[1:], strict=False))
                    + " (tables and indexes)\n")
            if name == "sqlite":
                print_sqlite(db, url.removeprefix("sqlite:///"))
            else:
                print_pg(db)
            print(f"\n(built in {built:.1f} s)")
            if args.reads:
                print(f"one event read by id (events_by_ids, decoded), median of {args.reads}: "
                      f"{point_reads(db, args.reads):,.0f} µs")
        finally:
            db.dispose()


if __name__ == "__main__":
    raise SystemExit(main())
