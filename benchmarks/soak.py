"""``deltamem bench soak``: is the service in a steady state after N minutes of streaming?

Starts ``deltamem serve`` as a subprocess (its own Ray; SQLite in a temporary directory, or
``--db``) with retention (versions, events and the version horizon: ``event_retention_s`` =
``version_history_s`` = the window) and snapshots on short settings, creates ``--agents``
vector classifiers, and for ``--minutes`` sends at a fixed rate (open loop: each client thread
keeps its own schedule, so a slow answer does not lower the offered load): ingest requests of 1 and
of 64 events in turn, and single-input predicts interleaved. It prints, per minute: p50/p99
of ingest and predict (ms), events/s applied (from the agents' counters), database size (file
+ WAL + SHM for SQLite; ``pg_database_size`` for PostgreSQL) and the resident memory (RSS) of
every process of the deployment (the serve process, Ray's GCS, raylet and workers). At the end
it says whether steady state holds:

- the last minute's p99 (ingest and predict) is within 1.2x of the second minute's;
- the database plateaus under retention: its size and its count of version rows grow < 10%
  over the second half (the file alone hides rows while SQLite reuses freed pages);
- the total RSS grows < 10% after warm-up (the second minute to the last).

    deltamem bench soak                                  # 50 agents, 10 minutes
    deltamem bench soak --minutes 2 --minute-s 5 --agents 4 --rate 4   # a smoke run

The test (``tests/test_bench_soak.py``) runs a few seconds and checks the table's columns are
computed, not the figures.
"""

from __future__ import annotations

import argparse
import json
import secrets
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks.deployment import ServeProcess, rss_by_process
from benchmarks.eval_common import p50_p99

DIM, LABELS = 32, 8


class Minute:
    """What the clients saw during one reporting interval."""

    def __init__(self) -> None:
        self.lat: dict[str, list[float]] = {"ingest": [], "predict": []}
        self.errors = 0
        self.lock = threading.Lock()

    def add(self, op: str, seconds: float, ok: bool) -> None:
        with self.lock:
            self.lat[op].append(seconds * 1e3)
            self.errors += not ok


def _client(url: str, key: str, agents: list[str], rate: float, stop: threading.Event,
            current: list[Minute], seed: int) -> None:
    """Requests at ``rate`` per second: ingest 1, predict, ingest 64, predict, ..."""
    rng = np.random.default_rng(seed)
    centers = np.random.default_rng(0).normal(size=(LABELS, DIM))
    n, t_next = 0, time.monotonic()
    with httpx.Client(base_url=url, timeout=60, headers={"Authorization": f"Bearer {key}"}) as c:
        while not stop.is_set():
            t_next += 1.0 / rate
            agent = agents[int(rng.integers(len(agents)))]
            kind = n % 4
            if kind in (0, 2):
                m = 1 if kind == 0 else 64
                ys = rng.integers(LABELS, size=m)
                xs = centers[ys] + 0.5 * rng.normal(size=(m, DIM))
                body = {"events": [{"id": f"{seed}-{n}-{i}", "input": x.tolist(),
                                    "target": f"L{y}"} for i, (x, y) in enumerate(zip(xs, ys, strict=True))]}
                op, path = "ingest", f"/v1/agents/{agent}/events"
            else:
                body = {"inputs": [centers[int(rng.integers(LABELS))].tolist()]}
                op, path = "predict", f"/v1/agents/{agent}/predict"
            t0 = time.monotonic()
            try:
                ok = c.post(path, json=body).status_code < 400
            except httpx.HTTPError:
                ok = False
            current[0].add(op, time.monotonic() - t0, ok)
            n += 1
            stop.wait(max(0.0, t_next - time.monotonic()))


def db_bytes(url: str) -> int:
    """The database's size on disk (SQLite: file + WAL + SHM)."""
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///"):])
        return sum(p.stat().st_size for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm"))
                   if p.exists())
    return _scalar(url, "SELECT pg_database_size(current_database())")


def version_rows(url: str) -> int:
    """Rows in the ``versions`` table (what the version horizon bounds)."""
    return _scalar(url, "SELECT count(*) FROM versions")


def _scalar(url: str, sql: str) -> int:
    """One integer read from the database at ``url`` (a short-lived engine)."""
    from sqlalchemy import text

    from storage.engine import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(sql)).scalar() or 0)
    finally:
        engine.dispose()


def _applied(c: httpx.Client) -> int:
    return sum(int(a["events_applied"]) for a in c.get("/v1/agents").json()["agents"])


def _counters(c: httpx.Client) -> dict[str, float]:
    """The learners' commit counters from ``/metrics`` (summed over shards): seconds in commit
    transactions, commits, versions."""
    want = {"deltamem_commit_seconds_total": 0.0, "deltamem_commits_total": 0.0,
            "deltamem_versions_total": 0.0}
    for line in c.get("/metrics").text.splitlines():
        name = line.split("{")[0].split(" ")[0]
        if name in want:
            want[name] += float(line.rsplit(" ", 1)[1])
    return want


def verdict(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The steady-state conditions over the per-minute rows (the second one is the baseline)."""
    if len(rows) < 3:
        return {"p99": None, "db_plateau": None, "rss": None, "steady": None}
    base, last, half = rows[1], rows[-1], rows[len(rows) // 2]
    p99 = all(last[f"{op}_p99"] <= 1.2 * base[f"{op}_p99"] for op in ("ingest", "predict"))
    db = last["db_bytes"] <= 1.1 * half["db_bytes"] \
        and last["version_rows"] <= 1.1 * half["version_rows"]
    rss = last["rss_total"] <= 1.1 * base["rss_total"]
    return {"p99": p99, "db_plateau": db, "rss": rss, "steady": p99 and db and rss}


def db_growth(rows: list[dict[str, Any]], minute_s: float) -> float | None:
    """The database's growth over the second half of the run, in MB a day if it went on at
    that rate (the plateau test above can pass in ten minutes while a slow linear growth, e.g.
    of version rows, would fill a disk in a month); None with fewer than 3 minutes.

    >>> db_growth([{"db_bytes": b} for b in (0, 10 * 2**20, 10 * 2**20, 11 * 2**20)], 60.0)
    1440.0
    """
    if len(rows) < 3:
        return None
    half, last = len(rows) // 2, len(rows) - 1
    per_s = (rows[last]["db_bytes"] - rows[half]["db_bytes"]) / ((last - half) * minute_s)
    return per_s * 86400 / 2**20


def run(minutes: int = 10, minute_s: float = 60.0, agents: int = 50, rate: float = 20.0,
        clients: int = 4, db: str | None = None, retention_s: float = 60.0,
        snapshot_every: int = 20, say: Any = print) -> dict[str, Any]:
    """Run the soak; returns ``{"rows": [per minute], "processes": {...}, "verdict": {...}}``."""
    tmp = tempfile.TemporaryDirectory(prefix="deltamem-soak.")
    url = db or f"sqlite:///{Path(tmp.name) / 'soak.db'}"
    admin = secrets.token_urlsafe(12)
    svc = ServeProcess(url, Path(tmp.name) / "serve.log", admin_key=admin,
                       retention_window_s=retention_s, event_retention_s=retention_s,
                       version_history_s=retention_s,
                       retention_snapshot_spacing_s=86400.0,
                       retention_interval_s=max(1.0, retention_s / 4),
                       snapshot_every_versions=snapshot_every, snapshot_every_s=retention_s / 2)
    rows: list[dict[str, Any]] = []
    procs: dict[str, list[float]] = {}
    try:
        svc.wait_ready()
        key = httpx.post(f"{svc.url}/v1/tenants", json={"name": "soak"}, timeout=60,
                         headers={"Authorization": f"Bearer {admin}"}).json()["api_key"]
        c = httpx.Client(base_url=svc.url, timeout=60, headers={"Authorization": f"Bearer {key}"})
        ids = [c.post("/v1/agents", json={"name": f"soak{i}", "kind": "classifier",
                                          "encoder": "none", "dim": DIM}).json()["id"]
               for i in range(agents)]
        current, stop = [Minute()], threading.Event()
        threads = [threading.Thread(target=_client, args=(svc.url, key, ids, rate / clients, stop,
                                                          current, s), daemon=True)
                   for s in range(clients)]
        applied0, counters0, t0 = _applied(c), _counters(c), time.monotonic()
        for t in threads:
            t.start()
        say(f"{'min':>3} {'ingest p50':>10} {'p99':>7} {'predict p50':>11} {'p99':>7} "
            f"{'applied/s':>9} {'commit ms':>9} {'versions/s':>10} {'db MB':>7} {'ver rows':>8} "
            f"{'RSS MB':>7} {'errors':>6}")
        for m in range(1, minutes + 1):
            time.sleep(max(0.0, t0 + m * minute_s - time.monotonic()))
            seen, current[0] = current[0], Minute()
            applied = _applied(c)
            rss = rss_by_process(svc.processes())
            _add_rss(procs, rss, m)
            counters = _counters(c)
            row = _minute_row(m, seen, (applied - applied0) / minute_s, url, rss)
            row.update(_commit_rates(counters0, counters, minute_s))
            applied0, counters0 = applied, counters
            rows.append(row)
            say(f"{m:>3} {row['ingest_p50']:>10.1f} {row['ingest_p99']:>7.1f} "
                f"{row['predict_p50']:>11.1f} {row['predict_p99']:>7.1f} "
                f"{row['applied_per_s']:>9.1f} {row['commit_ms']:>9.2f} {row['versions_per_s']:>10.1f} "
                f"{row['db_bytes'] / 2**20:>7.1f} {row['version_rows']:>8} "
                f"{row['rss_total'] / 2**20:>7.0f} {row['errors']:>6}")
        stop.set()
        for t in threads:
            t.join(timeout=70)
        c.close()
    finally:
        svc.stop()
        tmp.cleanup()
    out = {"rows": rows, "processes": procs, "verdict": verdict(rows),
           "db_growth_mb_per_day": db_growth(rows, minute_s)}
    _print_end(out, say)
    return out


def _commit_rates(before: dict[str, float], after: dict[str, float],
                  minute_s: float) -> dict[str, float]:
    """The learners' mean commit transaction (ms) and versions/s over one interval."""
    commits = after["deltamem_commits_total"] - before["deltamem_commits_total"]
    spent = after["deltamem_commit_seconds_total"] - before["deltamem_commit_seconds_total"]
    return {"commit_ms": 1e3 * spent / commits if commits else 0.0,
            "versions_per_s": (after["deltamem_versions_total"]
                               - before["deltamem_versions_total"]) / minute_s}


def _add_rss(procs: dict[str, list[float]], rss: dict[int, tuple[str, int]], m: int) -> None:
    """Append minute ``m``'s RSS (MB) per process name to ``procs`` (0 where none ran)."""
    by_name: dict[str, float] = {}
    for name, b in rss.values():
        by_name[name] = by_name.get(name, 0.0) + b / 2**20
    for name, mb in by_name.items():
        procs.setdefault(name, [0.0] * (m - 1)).append(mb)
    for v in procs.values():
        v.extend([0.0] * (m - len(v)))


def _minute_row(m: int, seen: Minute, applied_per_s: float, url: str,
                rss: dict[int, tuple[str, int]]) -> dict[str, Any]:
    """One minute's row of the table."""
    (i50, i99), (p50, p99) = p50_p99(seen.lat["ingest"]), p50_p99(seen.lat["predict"])
    return {"minute": m, "ingest_p50": i50, "ingest_p99": i99,
            "predict_p50": p50, "predict_p99": p99,
            "applied_per_s": applied_per_s, "db_bytes": db_bytes(url),
            "version_rows": version_rows(url),
            "rss_total": sum(b for _, b in rss.values()), "processes": len(rss),
            "errors": seen.errors}


def _print_end(out: dict[str, Any], say: Any) -> None:
    say("RSS by process (MB): " + ", ".join(
        f"{name} {v[1] if len(v) > 1 else v[0]:.0f}->{v[-1]:.0f}"
        for name, v in sorted(out["processes"].items())))
    growth = out.get("db_growth_mb_per_day")
    if growth is not None:
        say(f"database growth over the second half: {growth:,.0f} MB a day "
            f"(~{growth * 30 / 1024:,.1f} GB a month if it stays linear)")
    v = out["verdict"]
    if v["steady"] is None:
        say("steady state: needs at least 3 minutes")
        return
    say(f"steady state: {'yes' if v['steady'] else 'NO'} (p99 last <= 1.2x minute 2: {v['p99']}; "
        f"database plateaus: {v['db_plateau']}; RSS growth < 10%: {v['rss']})")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="deltamem bench soak", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=int, default=10)
    p.add_argument("--minute-s", type=float, default=60.0, help="length of a reported 'minute'")
    p.add_argument("--agents", type=int, default=50)
    p.add_argument("--rate", type=float, default=20.0,
                   help="requests/s in all (half ingest of 1 or 64 events, half predict)")
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--db", default=None, help="database URL (default: SQLite in a temp dir)")
    p.add_argument("--retention-s", type=float, default=60.0, help="retention window (s)")
    p.add_argument("--snapshot-every", type=int, default=20, help="snapshot every N versions")
    p.add_argument("--json", action="store_true", help="print the results as JSON last")
    a = p.parse_args(argv)
    out = run(a.minutes, a.minute_s, a.agents, a.rate, a.clients, a.db, a.retention_s,
              a.snapshot_every)
    if a.json:
        print(json.dumps(out))
    return 0
