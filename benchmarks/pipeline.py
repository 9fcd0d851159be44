"""Pipeline figures (issue 4): sustained end-to-end events/s, where the time goes, predict
latency for one agent and across 100 agents, and the memory of the whole Ray deployment.

    .venv/bin/python -m benchmarks.pipeline [--quick] [--agents 8] [--events 1000]
                                            [--shards 1] [--request 100] [--reps 200]

Everything is real: a local Ray on 127.0.0.1 (``workers.runtime.start``, no HTTP), SQLite in a
temporary directory, classifier agents on raw vectors (d = 384, 20 labels). Two sender threads
stream each agent's events in requests of ``--request`` events through ``Runtime.ingest``; the
rate is events / (first request → every event committed).

Where the time goes, two views of the same run:

* the learner loop (``LearnerActor.ping`` timers, summed over shards, as a share of the shards'
  wall time): kernel (``learn_s``), SQL reads (pending events + head state, ``read_s``), SQL
  commit (``commit_s``), the rest of a drain (publishing to serving over Ray, Python), and idle
  (waiting for events: the ingest path — driver → ingest actor over Ray, its SQL insert);
* CPU seconds per process (psutil) over the run: driver, ingest, learner, serving actors, the
  GCS and raylet (Ray's own messaging), and other Ray processes.

Predict latency: ``Runtime.predict`` with one input for one agent; a batch of one input for each
of 100 agents via ``Runtime.predict_batch`` beside 100 sequential ``Runtime.predict`` calls in the
same run (the answers of both are compared). Memory: RSS and PSS summed over the driver and every
process of the Ray deployment (all are the driver's descendants: GCS, raylet, workers, agents).

What is measured computes the right thing: tests/test_workers_stream.py (the pipeline equals the
reference learner) and tests/test_workers_batch.py (predict_batch equals per-agent predicts).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time
import uuid
from typing import Any

import numpy as np

DIM, LABELS = 384, 20
CONFIG = {"kind": "classifier", "encoder": "none", "dim": DIM,
          "memory": {"rule": "delta", "beta": 0.5, "decay": 1.0}}


def _events(rng: np.random.Generator, n: int, prefix: str) -> list[dict[str, Any]]:
    centers = np.random.default_rng(7).normal(size=(LABELS, DIM))  # (labels, d)
    y = rng.integers(LABELS, size=n)
    X = centers[y] + 0.5 * rng.normal(size=(n, DIM))  # (n, d)
    return [{"id": f"{prefix}{i}", "input": X[i].tolist(), "target": f"L{int(y[i])}"}
            for i in range(n)]


def _learner_stats(svc: Any) -> dict[str, float]:
    import ray

    out: dict[str, float] = {}
    for st in ray.get([a.ping.remote() for a in svc.learner_handles()], timeout=60):
        for k in ("events", "learn_s", "read_s", "commit_s", "busy_s"):
            out[k] = out.get(k, 0.0) + float(st[k])
    return out


def _processes() -> list[Any]:
    import psutil

    me = psutil.Process()
    return [me] + me.children(recursive=True)


def _role(p: Any) -> str:
    if p.pid == os.getpid():
        return "driver (client + Runtime)"
    try:
        cmd = " ".join(p.cmdline())
    except Exception:
        return "other Ray processes"
    for actor in ("IngestActor", "LearnerActor", "ServingActor"):
        if f"ray::{actor}" in cmd:
            return f"{actor} actors"
    if "gcs_server" in cmd or "raylet" in cmd:
        return "GCS + raylet"
    return "other Ray processes"


def _cpu_times() -> dict[int, tuple[Any, float]]:
    """pid → (process, user + system CPU seconds so far)."""
    out: dict[int, tuple[Any, float]] = {}
    for p in _processes():
        try:
            t = p.cpu_times()
        except Exception:
            continue
        out[p.pid] = (p, t.user + t.system)
    return out


def _cpu_by_role(t0: dict[int, tuple[Any, float]],
                 t1: dict[int, tuple[Any, float]]) -> dict[str, float]:
    """CPU seconds spent between two ``_cpu_times`` by each role (named at the end: an idle
    worker becomes an actor's process on first use)."""
    out: dict[str, float] = {}
    for pid, (p, sec) in t1.items():
        role = _role(p)
        out[role] = out.get(role, 0.0) + sec - (t0[pid][1] if pid in t0 else 0.0)
    return out


def _memory() -> tuple[int, float, float]:
    n, rss, pss = 0, 0.0, 0.0
    for p in _processes():
        try:
            m = p.memory_full_info()
        except Exception:
            continue
        n, rss, pss = n + 1, rss + m.rss, pss + getattr(m, "pss", m.rss)
    return n, rss / 2**20, pss / 2**20


def _pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs) * 1000.0, q))


def throughput(svc: Any, tenant: str, agents: list[str], per_agent: int,
               request: int) -> dict[str, Any]:
    """Stream ``per_agent`` events to every agent; wall time until all are committed."""
    rng = np.random.default_rng(0)
    streams = {a: _events(rng, per_agent, f"{a}-") for a in agents}
    n = len(agents) * per_agent
    before, cpu0 = _learner_stats(svc), _cpu_times()
    ingest_s = [0.0, 0.0]

    def send(k: int) -> None:
        mine = agents[k::2]
        for lo in range(0, per_agent, request):
            for a in mine:
                t = time.perf_counter()
                svc.ingest(tenant, a, streams[a][lo : lo + request], partial=False)
                ingest_s[k] += time.perf_counter() - t

    t0 = time.perf_counter()
    threads = [threading.Thread(target=send, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    t_sent = time.perf_counter()
    while _learner_stats(svc)["events"] - before["events"] < n:
        time.sleep(0.01)
    wall = time.perf_counter() - t0
    after, cpu1 = _learner_stats(svc), _cpu_times()
    d = {k: after[k] - before[k] for k in after}
    return {"events": n, "wall": wall, "send_wall": t_sent - t0, "ingest_s": sum(ingest_s),
            "learner": d, "cpu": _cpu_by_role(cpu0, cpu1)}


def predict_latency(svc: Any, tenant: str, agents: list[str], reps: int) -> dict[str, Any]:
    rng = np.random.default_rng(1)
    one = []
    for i in range(reps + 5):
        x = [rng.normal(size=DIM).tolist()]
        t = time.perf_counter()
        svc.predict(tenant, agents[0], x)
        if i >= 5:  # the first calls warm the serving cache
            one.append(time.perf_counter() - t)
    batch_t, seq_t, single_t, agree = [], [], [], True
    for i in range(max(3, reps // 10) + 1):
        xs = rng.normal(size=(len(agents), DIM)).tolist()
        t = time.perf_counter()
        got = svc.predict_batch(tenant, [(a, [x], None) for a, x in zip(agents, xs, strict=True)])
        tb = time.perf_counter() - t
        t = time.perf_counter()
        seq = []
        for a, x in zip(agents, xs, strict=True):
            ts = time.perf_counter()
            seq.append(svc.predict(tenant, a, [x]))
            single_t.append(time.perf_counter() - ts)
        ts = time.perf_counter() - t
        agree &= all(g["predictions"][0]["label"] == s["predictions"][0]["label"]
                     for g, s in zip(got, seq, strict=True))
        if i:  # the first round warms every cache entry
            batch_t.append(tb)
            seq_t.append(ts)
    return {"one": one, "batch": batch_t, "seq": seq_t, "single": single_t, "agree": agree}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small run (seconds)")
    ap.add_argument("--agents", type=int, default=8)
    ap.add_argument("--events", type=int, default=1000, help="events per agent")
    ap.add_argument("--shards", type=int, default=1, help="learner shards")
    ap.add_argument("--request", type=int, default=100, help="events per ingest request")
    ap.add_argument("--reps", type=int, default=200, help="single-agent predict calls")
    ap.add_argument("--batch-agents", type=int, default=100)
    args = ap.parse_args(argv)
    if args.quick:
        args.agents, args.events, args.reps = 4, 200, 50
    for k, v in {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled",
                 "RAY_USAGE_STATS_ENABLED": "0", "OPENBLAS_NUM_THREADS": "1",
                 "OMP_NUM_THREADS": "1"}.items():
        os.environ.setdefault(k, v)
    from workers.runtime import start
    from workers.settings import Settings

    tmp = tempfile.mkdtemp(prefix="deltamem-pipeline-")
    s = Settings(database_url=f"sqlite:///{tmp}/deltamem.db", scheduler_enabled=False,
                 ray_namespace=f"bench-{uuid.uuid4().hex[:8]}", learner_shards=args.shards,
                 ray_num_cpus=2, ray_object_store_mb=256)
    running = start(s, http=False)
    try:
        svc = running.service
        tenant = svc.create_tenant("bench")["id"]
        agents = [svc.create_agent(tenant, f"a{i}", CONFIG)["id"] for i in range(args.agents)]
        tp = throughput(svc, tenant, agents, args.events, args.request)
        more = [svc.create_agent(tenant, f"b{i}", CONFIG)["id"]
                for i in range(max(0, args.batch_agents - len(agents)))]
        rng = np.random.default_rng(2)
        for a in more:
            svc.ingest(tenant, a, _events(rng, 32, f"{a}-"), partial=False)
        while any(svc.get_agent(tenant, a)["events_applied"] < 32 for a in more):
            time.sleep(0.05)
        lat = predict_latency(svc, tenant, (agents + more)[: args.batch_agents], args.reps)
        n_proc, rss, pss = _memory()
    finally:
        running.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    _report(args, tp, lat, n_proc, rss, pss)
    return 0


def _report(args: Any, tp: dict[str, Any], lat: dict[str, Any], n_proc: int, rss: float,
            pss: float) -> None:
    from benchmarks.eval_common import md_table

    L, wall, n = tp["learner"], tp["wall"], tp["events"]
    loop = wall * args.shards
    other = L["busy_s"] - L["learn_s"] - L["read_s"] - L["commit_s"]
    load = os.getloadavg()[0]
    print(f"deltamem pipeline: {args.agents} agents x {args.events} events (d = {DIM}, "
          f"{LABELS} labels, rule delta), {args.shards} learner shard(s), requests of "
          f"{args.request}, SQLite, {os.cpu_count()} CPUs (1-min load {load:.1f})\n")
    rows = [["sustained end-to-end", f"{n / wall:,.0f} events/s",
             f"{n} events in {wall:.1f} s ({tp['send_wall']:.1f} s to send)"],
            ["ingest call (driver)", f"{1000 * tp['ingest_s'] / (n / args.request):.1f} ms",
             f"per request of {args.request}: Ray to the ingest actor + SQL insert"]]
    for name, sec in (("learner: kernel (learn_s)", L["learn_s"]),
                      ("learner: SQL read (read_s)", L["read_s"]),
                      ("learner: SQL commit (commit_s)", L["commit_s"]),
                      ("learner: publish + Python (rest of busy_s)", other),
                      ("learner: idle, waiting for ingest", loop - L["busy_s"])):
        rows.append([name, f"{100 * sec / loop:.1f} %", f"{1e6 * sec / n:.0f} us/event"])
    cpu = tp["cpu"]
    tot = sum(cpu.values())
    for role in sorted(cpu, key=lambda r: -cpu[r]):
        rows.append([f"CPU: {role}", f"{100 * cpu[role] / tot:.1f} %",
                     f"{cpu[role]:.1f} CPU-s ({1e6 * cpu[role] / n:.0f} us/event)"])
    rows += [["predict, 1 agent, 1 input", f"p50 {_pct(lat['one'], 50):.2f} ms",
              f"p99 {_pct(lat['one'], 99):.2f} ms ({len(lat['one'])} calls)"],
             [f"predict_batch, {args.batch_agents} agents x 1 input",
              f"p50 {_pct(lat['batch'], 50):.1f} ms",
              f"p99 {_pct(lat['batch'], 99):.1f} ms ({len(lat['batch'])} batches)"],
             [f"{args.batch_agents} sequential predicts (same inputs)",
              f"p50 {_pct(lat['seq'], 50):.1f} ms",
              f"p99 {_pct(lat['seq'], 99):.1f} ms; one call p50 {_pct(lat['single'], 50):.2f}"
              f" / p99 {_pct(lat['single'], 99):.2f} ms; same labels: {lat['agree']}"],
             ["memory, whole deployment", f"RSS {rss:,.0f} MiB",
              f"PSS {pss:,.0f} MiB over {n_proc} processes (driver + Ray)"]]
    print(md_table(["figure", "value", "detail"], rows))


if __name__ == "__main__":
    raise SystemExit(main())
