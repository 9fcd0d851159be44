"""Ingest paths side by side in one run (issue 16): events/s end to end over HTTP for vectors
in JSON and Arrow bodies, one event per request from several clients, text through the encoder
actor against the raw encoder, ``learn_many`` on arrays in-process, and stored bytes per event.

    .venv/bin/python -m benchmarks.ingest_paths [--quick] [--agents 20] [--per-agent 2000]
        [--request 1000] [--vector-clients 2] [--single 2000] [--clients 8] [--texts 2000]
        [--only json,arrow,single,text] [--client raw|httpx] [--http-workers 1]

Everything is real: ``deltamem serve``'s stack (``workers.runtime.start``: Ray on 127.0.0.1,
uvicorn, SQLite in a temporary directory), HTTP clients, classifier agents (rule delta, d = 384,
20 labels). End to end = first request sent → every event committed (``events_applied``).

* vector JSON / Arrow: ``--agents`` agents, each sent ``--per-agent`` events in requests of
  ``--request`` (bodies built before the clock starts), ``--vector-clients`` client threads;
* 1 event/request: ``--single`` events over ``--clients`` threads, one JSON request each,
  with the events a version and the apply lag (notify to commit, ``workers/actors/
  apply_lag.py``) p50 / p99 of the row; before it, the apply lag at an idle learner (40
  one-event requests 150 ms apart);
* clients run as threads of a process of their own, as a deployment's clients do; the
  vector rows' load generator is ``--client``: ``raw`` (bytes on a kept-alive socket,
  ``benchmarks/raw_http.py``; the default) or ``httpx`` (the project's client), which takes
  about as much CPU per one-event request as the server's HTTP process;
* text: ``--texts`` distinct sentences to one MiniLM classifier in requests of 100, beside the
  raw encoder (``MiniLMEncoder``, no cache, batches of 64) on other sentences with the same
  number of torch threads as the encoder actor (``encoder_cpus``);
* reference: ``MemoryAgent.learn_many`` on ``(64, 384)`` float64 arrays (the service's
  micro-batch), in this process, timed just before and just after each vector row (whose
  ratio is to their mean: this machine's speed drifts by a third within minutes) and at the
  end;
* CPU: µs of CPU per event of every process role (``benchmarks/proc_cpu.py``: ingest actor,
  learner, HTTP app, raylet, ...) from the first vector request sent to the last event applied;
* storage: bytes per event in the SQLite file after the vector runs (events, their input
  bytes, deltas, versions, indexes), and the columns alone (input bytes, payload JSON, delta data).

What is measured computes the right thing: tests/test_api_arrow.py (JSON, NDJSON and Arrow
give bit-identical states, equal to the in-process learner), tests/test_workers_text.py
(stored embeddings, states equal the in-process learner), tests/test_workers_inbox.py.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np

from benchmarks import proc_cpu
from benchmarks.ingest_paths_report import DIM, LABELS, report
from benchmarks.raw_http import RawClient

CONFIG = {"kind": "classifier", "encoder": "none", "dim": DIM,
          "memory": {"rule": "delta", "beta": 0.5, "decay": 1.0}}
TEXT_CONFIG = {"kind": "classifier", "encoder": "minilm", "dim": DIM,
               "memory": {"rule": "delta", "beta": 0.5, "decay": 1.0}}


def vectors(rng: np.random.Generator, n: int) -> tuple[np.ndarray, list[str]]:
    """``(X (n, 384) float32, labels)``: learnable vectors around 20 centres."""
    centers = np.random.default_rng(7).normal(size=(LABELS, DIM))  # (labels, d)
    y = rng.integers(LABELS, size=n)
    X = (centers[y] + 0.5 * rng.normal(size=(n, DIM))).astype(np.float32)  # (n, d)
    return X, [f"L{int(k)}" for k in y]


def sentences(n: int, seed: int) -> list[str]:
    words = ("book flight hotel card balance transfer weather rain music song play alarm "
             "timer recipe pasta train ticket refund order delivery password reset meeting "
             "calendar invoice").split()
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(words, size=6)) + f" #{seed}-{i}" for i in range(n)]


def _wait_applied(c: Any, agents: list[str], total: int, timeout: float = 3600) -> None:
    deadline = time.monotonic() + timeout
    while sum(c.get_agent(a).events_applied for a in agents) < total:
        if time.monotonic() > deadline:
            raise TimeoutError("events not applied in time")
        time.sleep(0.02)


def _send_all(c: Any, jobs: list[tuple[str, bytes, str]], threads: int,
              cpu: dict[str, Any] | None = None, kind: str = "raw") -> float:
    """POST every ``(agent, body, content type)`` from ``threads`` threads; returns the
    ``perf_counter`` when the first was sent. The client threads run in a process of their
    own, as a deployment's clients do: in this one they would take the GIL from the HTTP
    server's event loop."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    ready, go = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_send_from, args=(c.base_url, c.api_key, jobs, threads, ready, go,
                                                kind))
    proc.start()
    if not ready.wait(120):
        proc.kill()
        raise RuntimeError("the client process did not start")
    if cpu is not None:  # every process's CPU from here (benchmarks/proc_cpu.py)
        cpu["before"] = proc_cpu.snapshot()
    t0 = time.perf_counter()
    go.set()
    proc.join()
    if proc.exitcode != 0:
        raise RuntimeError(f"the client process failed (exit code {proc.exitcode})")
    return t0


def _send_from(base_url: str, api_key: str, jobs: list[tuple[str, bytes, str]],
               threads: int, ready: Any = None, go: Any = None, kind: str = "raw") -> None:
    """:func:`_send_all`'s work; in a client process, ``ready``/``go`` (events) start the
    sending after the imports, when the caller's clock starts. ``kind``: the load generator,
    ``raw`` (:mod:`benchmarks.raw_http`) or ``httpx`` (the project's client)."""
    from client import Client
    from client.http import agent_path

    if kind not in ("raw", "httpx"):
        raise ValueError(f"client: expected raw or httpx, got {kind!r}")
    if ready is not None:
        ready.set()
        go.wait()
    lock = threading.Lock()
    todo = list(jobs)

    def run() -> None:
        raw = kind == "raw"
        conn: Any = (RawClient(base_url, {"Authorization": f"Bearer {api_key}"}, timeout=600)
                     if raw else Client(base_url, api_key=api_key, timeout=600))
        with conn:
            while True:
                with lock:
                    if not todo:
                        return
                    agent, body, ctype = todo.pop(0)
                path = agent_path(agent, "/events")
                if raw:
                    conn.post(path, content=body, content_type=ctype).raise_for_status()
                else:
                    conn._request("POST", path, key=api_key, content=body, content_type=ctype)

    ts = [threading.Thread(target=run) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def vector_e2e(c: Any, fmt: str, n_agents: int, per_agent: int, request: int,
               seed: int, clients: int, kind: str = "raw") -> dict[str, Any]:
    import orjson

    from client import ARROW_STREAM, arrow_body

    agents = [c.create_agent(f"{fmt}-{uuid.uuid4().hex[:6]}", kind="classifier", encoder="none",
                             dim=DIM, memory=CONFIG["memory"]).id for _ in range(n_agents)]
    rng = np.random.default_rng(seed)
    jobs = []
    for start in range(0, per_agent, request):
        for a in agents:
            m = min(request, per_agent - start)
            X, y = vectors(rng, m)
            evs = [{"id": f"{a}-{start + i}", "input": X[i], "target": y[i]} for i in range(m)]
            if fmt == "arrow":
                jobs.append((a, arrow_body(evs), ARROW_STREAM))
            else:
                body = {"events": [{**e, "input": e["input"].tolist()} for e in evs]}
                jobs.append((a, orjson.dumps(body), "application/json"))
    cpu: dict[str, Any] = {}
    t0 = _send_all(c, jobs, clients, cpu, kind)
    sent = time.perf_counter() - t0
    _wait_applied(c, agents, n_agents * per_agent)
    wall = time.perf_counter() - t0
    spent = proc_cpu.by_role(cpu["before"], proc_cpu.snapshot(), os.getpid())
    return {"events": n_agents * per_agent, "wall": wall, "send": sent,
            "body_bytes": sum(len(b) for _, b, _ in jobs), "cpu": spent}


def single_e2e(c: Any, n: int, clients: int, seed: int, kind: str = "raw",
               learners: Sequence[Any] = ()) -> dict[str, Any]:
    """``n`` one-event requests over ``clients`` agents and threads, until every event is
    applied; with the ``learners`` (actor handles): the row's events a version and the p50 /
    p99 of its apply lags (``workers/actors/apply_lag.py``, shard 0's)."""
    import orjson
    import ray

    agents = [c.create_agent(f"one-{uuid.uuid4().hex[:6]}", kind="classifier", encoder="none",
                             dim=DIM, memory=CONFIG["memory"]).id for _ in range(clients)]
    X, y = vectors(np.random.default_rng(seed), n)
    jobs = [(agents[i % clients], orjson.dumps({"events": [{"id": f"s{i}", "input": X[i].tolist(),
                                                            "target": y[i]}]}), "application/json")
            for i in range(n)]
    cpu: dict[str, Any] = {}
    before = ray.get([h.ping.remote() for h in learners])
    t0 = _send_all(c, jobs, clients, cpu, kind)
    _wait_applied(c, agents, n)
    wall = time.perf_counter() - t0
    out = {"events": n, "wall": wall,
           "cpu": proc_cpu.by_role(cpu["before"], proc_cpu.snapshot(), os.getpid())}
    if learners:  # (the shard counts a version just after publishing it)
        time.sleep(0.2)
        after = ray.get([h.ping.remote() for h in learners])
        out["versions"] = sum(a["versions"] - b["versions"] for a, b in zip(after, before, strict=True))
        notifies = after[0]["apply_lag"]["count"] - before[0]["apply_lag"]["count"]
        out["lag"] = ray.get(learners[0].apply_lag.remote(notifies))
    return out


def idle_lag(c: Any, learners: Sequence[Any], n: int = 40, gap_s: float = 0.15) -> dict[str, Any]:
    """The apply lag of ``n`` one-event requests to one agent, ``gap_s`` apart (each applied
    before the next is sent): the learner is idle when each arrives."""
    import ray

    agent = c.create_agent(f"idle-{uuid.uuid4().hex[:6]}", kind="classifier", encoder="none",
                           dim=DIM, memory=CONFIG["memory"]).id
    X, y = vectors(np.random.default_rng(5), n)
    before = ray.get(learners[0].ping.remote())["apply_lag"]["count"]
    for i in range(n):
        c.ingest(agent, [{"id": f"i{i}", "input": X[i].tolist(), "target": y[i]}])
        _wait_applied(c, [agent], i + 1)
        time.sleep(gap_s)
    done = ray.get(learners[0].ping.remote())["apply_lag"]["count"] - before
    return ray.get(learners[0].apply_lag.remote(done))


def text_e2e(c: Any, n: int, clients: int = 1) -> dict[str, Any]:
    """``n`` texts in requests of 100 to one MiniLM classifier from ``clients`` threads (each
    its own connection); until every event is applied."""
    from client import Client

    agent = c.create_agent(f"text-{uuid.uuid4().hex[:6]}", kind="classifier", encoder="minilm",
                           memory=TEXT_CONFIG["memory"]).id
    c.ingest(agent, [{"id": "warm", "input": "warm up the encoder", "target": "w"}])
    _wait_applied(c, [agent], 1)
    texts = sentences(n, seed=11 + clients)  # other texts each run: the encoder caches
    labels = [f"T{i % LABELS}" for i in range(n)]
    starts = list(range(0, n, 100))

    def send(k: int) -> None:
        with Client(c.base_url, api_key=c.api_key, timeout=600) as mine:
            for s in starts[k::clients]:
                mine.ingest(agent, [{"id": f"x{i}", "input": texts[i], "target": labels[i]}
                                    for i in range(s, min(n, s + 100))])

    threads = [threading.Thread(target=send, args=(k,)) for k in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    _wait_applied(c, [agent], n + 1)
    return {"events": n, "wall": time.perf_counter() - t0}


def raw_encoder_rate(n: int, threads: int) -> float:
    """MiniLM in this process with ``threads`` torch threads, batches of 64, no cache."""
    import torch

    from agent.backbones.minilm import MiniLMEncoder

    torch.set_num_threads(threads)
    enc = MiniLMEncoder(cache_size=0)
    enc.encode(sentences(16, seed=3))
    texts = sentences(n, seed=4)
    t0 = time.perf_counter()
    for i in range(0, n, 64):
        enc.encode(texts[i:i + 64])
    return n / (time.perf_counter() - t0)


def learn_many_rate(n: int) -> float:
    """The in-process reference: ``learn_many`` on (64, 384) float64 arrays."""
    from agent.config import AgentConfig
    from agent.model import MemoryAgent

    X, y = vectors(np.random.default_rng(5), n)
    X64 = X.astype(np.float64)
    m = MemoryAgent(AgentConfig.from_dict(CONFIG))
    t0 = time.perf_counter()
    for s in range(0, n, 64):
        m.learn_many(X64[s:s + 64], y[s:s + 64], delta_dtype="float64")
    return n / (time.perf_counter() - t0)


def storage(db_path: str, url: str) -> dict[str, float]:
    """Bytes per event: the SQLite file, and the event input bytes, payloads and delta data;
    events per delta version (the learner's micro-batches)."""
    from sqlalchemy import create_engine, text

    eng = create_engine(url)
    try:
        with eng.connect() as conn:
            n = conn.execute(text("SELECT count(*) FROM events")).scalar() or 1
            def total(sql: str) -> float:
                return float(conn.execute(text(sql)).scalar() or 0)

            inp = total("SELECT coalesce(sum(length(input_data)), 0) FROM events") + total(
                "SELECT coalesce(sum(length(data)), 0) FROM event_inputs")
            pay = total("SELECT sum(length(payload)) FROM events")
            dd = total("SELECT sum(length(data)) FROM deltas")
            nv = total("SELECT count(*) FROM versions WHERE kind = 'delta'") or 1.0
            conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
    finally:
        eng.dispose()
    return {"events": float(n), "file": os.path.getsize(db_path) / n, "input": inp / n,
            "payload": pay / n, "deltas": dd / n, "per_version": n / nv}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run)")
    ap.add_argument("--agents", type=int, default=20)
    ap.add_argument("--per-agent", type=int, default=2000)
    ap.add_argument("--request", type=int, default=1000)
    ap.add_argument("--vector-clients", type=int, default=2,
                    help="client threads sending the JSON and Arrow vector requests")
    ap.add_argument("--single", type=int, default=2000, help="events sent one per request")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--http-workers", type=int, default=1,
                    help="HTTP server processes (setting http_workers, workers/http_workers.py)")
    ap.add_argument("--client", default="raw", choices=("raw", "httpx"),
                    help="load generator of the vector rows: raw (bytes on a kept-alive socket, "
                         "benchmarks/raw_http.py) or httpx (the project's client)")
    ap.add_argument("--texts", type=int, default=2000)
    ap.add_argument("--text-clients", type=int, default=2,
                    help="the text row again with this many concurrent clients")
    ap.add_argument("--only", default="json,arrow,single,text",
                    help="comma-separated rows to run: json, arrow, single, text (the "
                         "reference and storage rows come with them)")
    args = ap.parse_args(argv)
    rows = set(args.only.split(","))
    if not rows <= {"json", "arrow", "single", "text"}:
        ap.error(f"--only: unknown rows {sorted(rows - {'json', 'arrow', 'single', 'text'})}")
    if args.quick:
        args.agents, args.per_agent, args.request, args.single, args.texts = 2, 40, 20, 16, 20
        args.clients = 2
    for k, v in {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled",
                 "RAY_USAGE_STATS_ENABLED": "0", "OPENBLAS_NUM_THREADS": "1",
                 "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                 "TOKENIZERS_PARALLELISM": "false"}.items():
        os.environ.setdefault(k, v)
    from client import Client
    from workers.gc_tuning import settle_gc
    from workers.runtime import free_port, start
    from workers.settings import Settings

    tmp = tempfile.mkdtemp(prefix="deltamem-ingest-")
    db = f"{tmp}/deltamem.db"
    s = Settings(database_url=f"sqlite:///{db}", scheduler_enabled=False, port=free_port(),
                 ray_namespace=f"bench-{uuid.uuid4().hex[:8]}", admin_key="bench-admin",
                 ray_num_cpus=2, ray_object_store_mb=256,
                 max_events_per_request=max(10_000, args.request), http_workers=args.http_workers)
    out: dict[str, Any] = {}
    ref_n = 640 if args.quick else 20_000
    refs: list[float] = []
    running = start(s, http=True)
    settle_gc()  # as `deltamem serve` does (workers/runtime.py serve_forever)
    try:
        with Client(running.url, admin_key="bench-admin", timeout=600) as admin:
            key = admin.create_tenant("bench").api_key
        with Client(running.url, api_key=key, timeout=600) as c:
            for seed, fmt in enumerate(("json", "arrow"), start=1):
                if fmt in rows:  # the reference just before and just after, in this process
                    before = learn_many_rate(ref_n)
                    out[fmt] = vector_e2e(c, fmt, args.agents, args.per_agent, args.request,
                                          seed, args.vector_clients, args.client)
                    after = learn_many_rate(ref_n)
                    out[fmt]["ref"] = (before + after) / 2
                    refs += [before, after]
            if rows & {"json", "arrow"}:
                out["storage"] = storage(db, s.database_url)
            if "single" in rows:
                out["idle_lag"] = idle_lag(c, running.service.learner_handles())
                out["single"] = single_e2e(c, args.single, args.clients, 3, args.client,
                                           running.service.learner_handles())
            if "text" in rows:
                out["text"] = text_e2e(c, args.texts)
                out["text_clients"] = text_e2e(c, args.texts, args.text_clients)
    finally:
        running.stop()
        shutil.rmtree(tmp, ignore_errors=True)  # ~6 MB of database a run
    if "text" in rows:
        out["encoder"] = raw_encoder_rate(max(args.texts, 64), max(1, s.encoder_cpus))
    refs.append(learn_many_rate(ref_n))
    out["learn_many"] = float(np.mean(refs))
    out["learn_many_range"] = (min(refs), max(refs))
    report(args, s, out)  # benchmarks/ingest_paths_report.py
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
