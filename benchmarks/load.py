"""``python -m benchmarks.load``: a bounded load generator against the HTTP API on loopback.

It starts ``deltamem serve`` as a subprocess (its own Ray, a temporary SQLite file; or targets
``--url`` with ``--key``), creates ``--agents`` vector classifiers, and for ``--seconds`` runs
``--workers`` client threads, each picking a random agent per request: an ingest of
``--batch`` new events (share ``--ingest-share``) or a predict of ``--predict-batch`` inputs.
Then it waits (bounded) until every accepted event is applied.

It prints throughput, latency percentiles and error counts per operation, and the resident
memory of every process of the deployment (the serve process, Ray's GCS, raylet, dashboard and
every worker), sampled each second: after a warm-up (the first ``--warmup`` share of the run)
and at the end, so growth under steady load is visible. ``--json`` prints one JSON object last.

    python -m benchmarks.load --seconds 60 --agents 100          # the long form
    python -m benchmarks.load --seconds 10 --agents 20 --json    # the CI form (see the test)

Every request is valid, so any 4xx or 5xx is an error (429, backpressure, is counted apart).
``tests/test_reliability_load.py`` runs the CI form and asserts no 5xx and bounded memory.
"""

from __future__ import annotations

import argparse
import json
import random
import secrets
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks.deployment import ServeProcess, rss_by_process

DIM, LABELS = 32, 8


class Stats:
    """Latencies (seconds) and status counts per operation; thread-safe."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lat: dict[str, list[float]] = {"ingest": [], "predict": []}
        self.codes: dict[str, Counter[int]] = {"ingest": Counter(), "predict": Counter()}
        self.events_accepted = 0

    def add(self, op: str, seconds: float, code: int, accepted: int = 0) -> None:
        with self.lock:
            self.lat[op].append(seconds)
            self.codes[op][code] += 1
            self.events_accepted += accepted


def _event(rng: random.Random, centers: np.ndarray, eid: str) -> dict[str, Any]:
    y = rng.randrange(LABELS)
    x = centers[y] + np.array([rng.gauss(0, 0.5) for _ in range(DIM)])
    return {"id": eid, "input": [round(float(v), 5) for v in x], "target": f"L{y}"}


def _worker(url: str, key: str, agents: list[str], deadline: float, args: argparse.Namespace,
            stats: Stats, wid: int) -> None:
    rng = random.Random(wid)
    centers = np.random.default_rng(0).normal(size=(LABELS, DIM))
    n = 0
    with httpx.Client(base_url=url, timeout=60, headers={"Authorization": f"Bearer {key}"}) as c:
        while time.monotonic() < deadline:
            agent = rng.choice(agents)
            if rng.random() < args.ingest_share:
                evs = [_event(rng, centers, f"w{wid}-{n + i}") for i in range(args.batch)]
                n += args.batch
                op, path, body = "ingest", f"/v1/agents/{agent}/events", {"events": evs}
            else:
                xs = [_event(rng, centers, "")["input"] for _ in range(args.predict_batch)]
                op, path, body = "predict", f"/v1/agents/{agent}/predict", {"inputs": xs}
            t0 = time.perf_counter()
            try:
                r = c.post(path, json=body)
                code = r.status_code
                acc = r.json().get("accepted", 0) if op == "ingest" and code == 202 else 0
            except httpx.HTTPError:
                code, acc = 0, 0  # transport error
            stats.add(op, time.perf_counter() - t0, code, acc)
            if code == 429:
                time.sleep(0.05)


def _sampler(svc: ServeProcess, stop: threading.Event, samples: list[tuple[float, dict]]) -> None:
    while not stop.is_set():
        samples.append((time.monotonic(), rss_by_process(svc.processes())))
        stop.wait(1.0)


def _pct(xs: list[float], q: float) -> float:
    return float(np.percentile(xs, q)) * 1000 if xs else float("nan")


def run(seconds: float = 60.0, agents: int = 100, workers: int = 8, ingest_share: float = 0.5,
        batch: int = 20, predict_batch: int = 8, warmup: float = 0.2, url: str | None = None,
        key: str | None = None, quiet: bool = False) -> dict[str, Any]:
    """Run the load and return the results (see the module doc); bounded in time."""
    args = argparse.Namespace(ingest_share=ingest_share, batch=batch, predict_batch=predict_batch)
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    svc = None
    tmp = tempfile.TemporaryDirectory(prefix="deltamem-load.")
    try:
        if url is None:
            admin = secrets.token_urlsafe(16)
            svc = ServeProcess(f"sqlite:///{Path(tmp.name) / 'load.db'}",
                               Path(tmp.name) / "serve.log", admin_key=admin)
            svc.wait_ready()
            url = svc.url
            r = httpx.post(f"{url}/v1/tenants", json={"name": "load"}, timeout=60,
                           headers={"Authorization": f"Bearer {admin}"})
            r.raise_for_status()
            key = r.json()["api_key"]
        assert key, "--key is needed with --url"
        with httpx.Client(base_url=url, timeout=60, headers={"Authorization": f"Bearer {key}"}) as c:
            ids = [c.post("/v1/agents", json={"name": f"load{i}", "kind": "classifier",
                                              "encoder": "none", "dim": DIM}).json()["id"]
                   for i in range(agents)]
        say(f"load: {agents} agents, {workers} client threads, {seconds:.0f} s, "
            f"ingest share {ingest_share}, {batch} events per ingest, {predict_batch} per predict")
        stats, stop = Stats(), threading.Event()
        samples: list[Any] = []
        sampler = threading.Thread(target=_sampler, args=(svc, stop, samples), daemon=True) \
            if svc is not None else None
        if sampler:
            sampler.start()
        t0 = time.monotonic()
        deadline = t0 + seconds
        threads = [threading.Thread(target=_worker, args=(url, key, ids, deadline, args, stats, w),
                                    daemon=True) for w in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=seconds + 120)
        elapsed = time.monotonic() - t0
        drain_s = _drain(url, key, ids, timeout=120)
        stop.set()
        if sampler:
            sampler.join(timeout=10)
        return _report(stats, samples, t0 + warmup * seconds, elapsed, drain_s, say)
    finally:
        if svc is not None:
            svc.stop()
        tmp.cleanup()


def _drain(url: str, key: str, ids: list[str], timeout: float) -> float | None:
    """Seconds until every accepted event is applied (None: not within ``timeout``)."""
    t0 = time.monotonic()
    with httpx.Client(base_url=url, timeout=60, headers={"Authorization": f"Bearer {key}"}) as c:
        while time.monotonic() - t0 < timeout:
            agents = c.get("/v1/agents").json()["agents"]
            mine = [a for a in agents if a["id"] in set(ids)]
            if all(a["events_applied"] == a["events_received"] for a in mine):
                return time.monotonic() - t0
            time.sleep(0.2)
    return None


def _report(stats: Stats, samples: list[tuple[float, dict]], warm_at: float, elapsed: float,
            drain_s: float | None, say: Any) -> dict[str, Any]:
    ops = {}
    say(f"\n{'op':8} {'requests':>9} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9} "
        f"{'max ms':>8} {'4xx':>5} {'429':>5} {'5xx':>5} {'conn':>5}")
    for op, lat in stats.lat.items():
        codes = stats.codes[op]
        row = {"requests": len(lat), "rps": len(lat) / elapsed, "p50_ms": _pct(lat, 50),
               "p99_ms": _pct(lat, 99), "p999_ms": _pct(lat, 99.9),
               "max_ms": max(lat) * 1000 if lat else float("nan"),
               "4xx": sum(v for k, v in codes.items() if 400 <= k < 500 and k != 429),
               "429": codes.get(429, 0), "5xx": sum(v for k, v in codes.items() if k >= 500),
               "transport": codes.get(0, 0)}
        ops[op] = row
        say(f"{op:8} {row['requests']:9d} {row['rps']:8.1f} {row['p50_ms']:8.1f} "
            f"{row['p99_ms']:8.1f} {row['p999_ms']:9.1f} {row['max_ms']:8.1f} {row['4xx']:5d} "
            f"{row['429']:5d} {row['5xx']:5d} {row['transport']:5d}")
    total = sum(r["requests"] for r in ops.values())
    errors = sum(r["4xx"] + r["5xx"] + r["transport"] for r in ops.values())
    say(f"events accepted {stats.events_accepted:,} ({stats.events_accepted / elapsed:,.0f}/s); "
        f"error rate {errors / max(total, 1):.2%}; drained in "
        + (f"{drain_s:.1f} s" if drain_s is not None else "NOT within the bound"))
    mem = _memory(samples, warm_at)
    if mem["processes"]:
        say(f"\n{'process':24} {'pid':>7} {'warm MB':>8} {'end MB':>8} {'peak MB':>8} "
            f"{'growth MB':>9}")
        for p in mem["processes"]:
            say(f"{p['name']:24} {p['pid']:7d} {p['warm_mb']:8.1f} {p['end_mb']:8.1f} "
                f"{p['peak_mb']:8.1f} {p['growth_mb']:9.1f}")
        say(f"{'total':24} {'':7} {mem['warm_mb']:8.1f} {mem['end_mb']:8.1f} {'':8} "
            f"{mem['growth_mb']:9.1f}")
    return {"seconds": elapsed, "ops": ops, "requests": total, "errors": errors,
            "error_rate": errors / max(total, 1), "events_accepted": stats.events_accepted,
            "events_per_s": stats.events_accepted / elapsed, "drain_s": drain_s, "memory": mem}


def _memory(samples: list[tuple[float, dict]], warm_at: float) -> dict[str, Any]:
    """Per process: RSS at the first sample after warm-up, at the end, and the peak."""
    if not samples:
        return {"processes": [], "warm_mb": 0.0, "end_mb": 0.0, "growth_mb": 0.0}
    warm = next((s for t, s in samples if t >= warm_at), samples[-1][1])
    end = samples[-1][1]
    rows = []
    for pid, (name, rss) in sorted(end.items()):
        base = warm.get(pid, (name, rss))[1]
        peak = max(s.get(pid, (name, 0))[1] for _, s in samples)
        rows.append({"name": name, "pid": pid, "warm_mb": base / 2**20, "end_mb": rss / 2**20,
                     "peak_mb": peak / 2**20, "growth_mb": (rss - base) / 2**20})
    warm_mb = sum(r["warm_mb"] for r in rows)
    end_mb = sum(r["end_mb"] for r in rows)
    return {"processes": rows, "warm_mb": warm_mb, "end_mb": end_mb, "growth_mb": end_mb - warm_mb}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.load",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--agents", type=int, default=100)
    ap.add_argument("--workers", type=int, default=8, help="client threads")
    ap.add_argument("--ingest-share", type=float, default=0.5)
    ap.add_argument("--batch", type=int, default=20, help="events per ingest request")
    ap.add_argument("--predict-batch", type=int, default=8, help="inputs per predict request")
    ap.add_argument("--warmup", type=float, default=0.2, help="share of the run before the "
                    "memory baseline")
    ap.add_argument("--url", help="an already running service (default: start one)")
    ap.add_argument("--key", help="a tenant API key for --url")
    ap.add_argument("--json", action="store_true", help="print one JSON object last")
    a = ap.parse_args(argv)
    out = run(a.seconds, a.agents, a.workers, a.ingest_share, a.batch, a.predict_batch,
              a.warmup, a.url, a.key)
    if a.json:
        print(json.dumps(out))
    bad = out["ops"]["ingest"]["5xx"] + out["ops"]["predict"]["5xx"]
    return 1 if bad or out["drain_s"] is None else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
