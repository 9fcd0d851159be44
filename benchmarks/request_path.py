"""Per-request latency of one-event ingest and single-input predict over HTTP, with and without
the bearer-key cache (``auth_cache_s``), side by side in one run.

One deployment (Ray actors and a SQLite store, in this process) is served by two HTTP apps on
two loopback ports: one with ``auth_cache_s=0`` (every request reads the key table, as before
the cache) and one with the default. Requests alternate between the two, so both see the same
machine, store and actors at the same moments. Prints p50/p99 (ms) of each and their ratio:
ingest and predict alternating (each predict sees a new head: the serving actor answers), then,
once the learner is idle, predicts only (the head holds: the HTTP process's warm copy answers,
``workers/head_cache.py``), each beside a predict with that cache turned off.
Then, on the cached app, single-input predicts from 1 and from ``--clients`` client threads
for ``--seconds`` each: requests per second and their ratio. The client threads run in a process
of their own (spawned; one connection each, all warm before the clock starts), so the load
generator does not share the service's interpreter and takes at most one core of its own;
``--client`` picks the load generator, ``raw`` (bytes on a kept-alive socket,
``benchmarks/raw_http.py``) and/or ``httpx``, which takes about as much CPU per request as the
server (both printed).

With ``--text N`` it first times N single-text predicts over HTTP on a MiniLM classifier agent,
once per ``--text-head`` mode (setting ``text_head_encoder``, ``workers/text_head.py``: the HTTP
process's own MiniLM, the encoder actor, or the serving actor), beside the in-process encode of
one text (the encoder actor's torch threads), and their ratio.

Run: ``python -m benchmarks.request_path [--requests 500] [--dim 32] [--clients 8] [--text 0]
[--text-head local,actor,off] [--client raw,httpx] [--http-workers 1]``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks import proc_cpu
from benchmarks.eval_common import p50_p99
from benchmarks.raw_http import RawClient


def http_client(kind: str, url: str, head: dict[str, str]) -> Any:
    """A load generator's connection: ``raw`` (:class:`benchmarks.raw_http.RawClient`, bytes on
    one kept-alive socket) or ``httpx``."""
    if kind == "raw":
        return RawClient(url, head, timeout=60)
    if kind == "httpx":
        return httpx.Client(base_url=url, headers=head, timeout=60)
    raise ValueError(f"client: expected raw or httpx, got {kind!r}")


def _clients(url: str, head: dict[str, str], agent: str, dim: int, clients: int,
             seconds: float, ready: Any, go: Any, counts: Any, cpu: Any, kind: str) -> None:
    """The load generator's process: ``clients`` threads, one connection each; each warms up,
    then all send predicts for ``seconds`` from ``go``."""
    import threading

    def one(k: int) -> None:
        rng = np.random.default_rng(k)
        with http_client(kind, url, head) as c:
            for _ in range(20):
                c.post(f"/v1/agents/{agent}/predict",
                       json={"inputs": [rng.normal(size=dim).tolist()]}).raise_for_status()
            ready.release()
            go.wait()
            n, stop = 0, time.perf_counter() + seconds
            while time.perf_counter() < stop:
                c.post(f"/v1/agents/{agent}/predict",
                       json={"inputs": [rng.normal(size=dim).tolist()]}).raise_for_status()
                n += 1
            counts[k] = n

    threads = [threading.Thread(target=one, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    go.wait()
    c0 = time.process_time()
    for t in threads:
        t.join()
    cpu.value = time.process_time() - c0


def predict_rate(url: str, head: dict[str, str], agent: str, dim: int, clients: int,
                 seconds: float, kind: str = "raw") -> tuple[float, float, float]:
    """Single-input predicts per second from ``clients`` threads of one client process, and
    the CPU ms per predict that the service's HTTP processes (this one and its HTTP workers)
    and the client process spent meanwhile."""
    ctx = mp.get_context("spawn")  # not fork: this process runs Ray's threads
    ready, go, counts = ctx.Semaphore(0), ctx.Event(), ctx.Array("q", clients)
    client_cpu = ctx.Value("d", 0.0)
    proc = ctx.Process(target=_clients, args=(url, head, agent, dim, clients, seconds, ready,
                                              go, counts, client_cpu, kind))
    proc.start()
    for _ in range(clients):
        if not ready.acquire(timeout=120):
            raise RuntimeError("the client process did not start")
    t0, c0 = time.perf_counter(), proc_cpu.snapshot()
    go.set()
    proc.join()
    wall = time.perf_counter() - t0
    spent = proc_cpu.by_role(c0, proc_cpu.snapshot(), os.getpid())
    cpu = spent.get("this process", 0.0) + spent.get("HTTP workers", 0.0)
    if proc.exitcode != 0:
        raise RuntimeError("the client process failed")
    n = max(1, sum(counts[:]))
    return n / wall, cpu * 1e3 / n, client_cpu.value * 1e3 / n


def _wait_idle(c: httpx.Client, agent: str) -> None:
    """Until every accepted event of the agent is applied (its head then holds)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        a = c.get(f"/v1/agents/{agent}").json()
        if a["events_applied"] + a["events_rejected"] >= a["events_received"]:
            return
        time.sleep(0.05)
    raise RuntimeError("the learner did not catch up")


def _alternating(clients: dict[str, httpx.Client], agent: str, dim: int, requests: int,
                 rng: np.random.Generator, lat: dict[tuple[str, str], list[float]]) -> None:
    """One-event ingests and predicts alternating, each app in turn (20 rounds warm up)."""
    for i in range(requests + 20):
        for name, c in clients.items():
            ev = {"id": f"{name}-{i}", "input": rng.normal(size=dim).tolist(), "target": f"L{i % 4}"}
            for op, path, body in (("ingest", f"/v1/agents/{agent}/events", {"events": [ev]}),
                                   ("predict", f"/v1/agents/{agent}/predict",
                                    {"inputs": [rng.normal(size=dim).tolist()]})):
                t0 = time.perf_counter()
                c.post(path, json=body).raise_for_status()
                if i >= 20:
                    lat.setdefault((op, name), []).append((time.perf_counter() - t0) * 1e3)


def _head_held(clients: dict[str, httpx.Client], agent: str, dim: int, requests: int,
               rng: np.random.Generator, lat: dict[tuple[str, str], list[float]],
               cache: Any) -> None:
    """Predicts only (the head holds), with the HTTP process's head cache on and off
    (workers/head_cache.py: ``max_bytes`` 0 turns it off)."""
    full = cache.max_bytes
    for i in range(requests + 20):
        for name, c in clients.items():
            for op, size in (("predict, head held", full), ("  same, head cache off", 0)):
                cache.max_bytes = size
                t0 = time.perf_counter()
                c.post(f"/v1/agents/{agent}/predict",
                       json={"inputs": [rng.normal(size=dim).tolist()]}).raise_for_status()
                if i >= 20:
                    lat.setdefault((op, name), []).append((time.perf_counter() - t0) * 1e3)
    cache.max_bytes = full


def run(requests: int, dim: int, n_clients: int = 8, seconds: float = 10.0,
        rates: dict[tuple[str, int], tuple[float, float, float]] | None = None,
        heads: dict[str, int] | None = None, kinds: tuple[str, ...] = ("raw",),
        http_workers: int = 1) -> dict[str, dict[str, tuple[float, float]]]:
    from workers.http.app import build_app
    from workers.http_server import HttpServer
    from workers.runtime import free_port, start
    from workers.settings import Settings

    tmp = tempfile.mkdtemp(prefix="request-path-")
    admin = secrets.token_urlsafe(12)
    s = Settings(database_url=f"sqlite:///{Path(tmp) / 'rp.db'}", port=free_port(),
                 admin_key=admin, ray_namespace=f"rp-{time.time_ns()}", scheduler_enabled=False,
                 http_workers=http_workers)
    running = start(s)
    sock = HttpServer.bind(s.host, 0)
    plain = HttpServer(build_app(running.service, s.model_copy(update={"auth_cache_s": 0.0})),
                        sock)
    plain.start()
    urls = {"no key cache": f"http://{s.host}:{sock.getsockname()[1]}",
            "key cache": running.url}
    try:
        key = httpx.post(f"{running.url}/v1/tenants", json={"name": "rp"}, timeout=60,
                         headers={"Authorization": f"Bearer {admin}"}).json()["api_key"]
        head = {"Authorization": f"Bearer {key}"}
        clients = {k: httpx.Client(base_url=u, headers=head, timeout=60) for k, u in urls.items()}
        c0 = clients["key cache"]
        agent = c0.post("/v1/agents", json={"name": "rp", "kind": "classifier",
                                            "encoder": "none", "dim": dim}).json()["id"]
        rng = np.random.default_rng(0)
        lat: dict[tuple[str, str], list[float]] = {}
        _alternating(clients, agent, dim, requests, rng, lat)
        _wait_idle(c0, agent)
        _head_held(clients, agent, dim, requests, rng, lat, running.service.heads)
        for c in clients.values():
            c.close()
        if rates is not None:
            for kind in kinds:
                for n in (1, n_clients):
                    rates[(kind, n)] = predict_rate(running.url, head, agent, dim, n, seconds, kind)
        if heads is not None:
            heads.update(running.service.heads.stats)
    finally:
        plain.stop()
        running.stop()
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for (op, name), xs in lat.items():
        out.setdefault(op, {})[name] = p50_p99(xs)
    return out


def run_text(requests: int, ingest: int = 300, mode: str = "local"
             ) -> tuple[tuple[float, float], tuple[float, float]]:
    """Single-text predict over HTTP on a text classifier agent (``ingest`` texts learnt), the
    HTTP process encoding texts at the head as ``mode`` says, each followed by the in-process
    MiniLM encode of one text on the encoder actor's torch threads (so both see the same
    machine load): (p50, p99) each. Every text is new, so no encoder's cache answers."""
    import torch

    from agent.backbones.minilm import MiniLMEncoder
    from workers.runtime import free_port, start
    from workers.settings import Settings

    tmp = tempfile.mkdtemp(prefix="request-path-text-")
    admin = secrets.token_urlsafe(12)
    s = Settings(database_url=f"sqlite:///{Path(tmp) / 'rpt.db'}", port=free_port(),
                 admin_key=admin, ray_namespace=f"rpt-{time.time_ns()}", scheduler_enabled=False,
                 text_head_encoder=mode)
    running = start(s)
    torch.set_num_threads(max(1, s.encoder_cpus))
    enc = MiniLMEncoder(cache_size=0)
    http: list[float] = []
    local: list[float] = []
    try:
        key = httpx.post(f"{running.url}/v1/tenants", json={"name": "rpt"}, timeout=60,
                         headers={"Authorization": f"Bearer {admin}"}).json()["api_key"]
        with httpx.Client(base_url=running.url, timeout=120,
                          headers={"Authorization": f"Bearer {key}"}) as c:
            agent = c.post("/v1/agents", json={"name": "rpt", "kind": "classifier",
                                               "encoder": "minilm"}).json()["id"]
            evs = [{"id": f"t{i}", "input": f"training text number {i} about topic {i % 4}",
                    "target": f"L{i % 4}"} for i in range(ingest)]
            for k in range(0, ingest, 100):
                c.post(f"/v1/agents/{agent}/events", json={"events": evs[k:k + 100]}
                       ).raise_for_status()
            _wait_idle(c, agent)
            for i in range(requests + 20):
                t0 = time.perf_counter()
                c.post(f"/v1/agents/{agent}/predict",
                       json={"inputs": [f"query {mode} {i} asking about topic {i % 4}"]}
                       ).raise_for_status()
                t1 = time.perf_counter()
                enc.encode([f"local {mode} {i} asking about topic {i % 4}"])
                if i >= 20:
                    http.append((t1 - t0) * 1e3)
                    local.append((time.perf_counter() - t1) * 1e3)
    finally:
        running.stop()
    return p50_p99(http), p50_p99(local)


def print_table(out: dict[str, dict[str, Any]]) -> None:
    print(f"{'request':<22} {'no key cache p50':>16} {'p99':>7} {'key cache p50':>14} {'p99':>7} "
          f"{'p50 ratio':>9}   (ms)")
    for op, v in out.items():
        a, b = v["no key cache"], v["key cache"]
        print(f"{op:<22} {a[0]:>16.2f} {a[1]:>7.2f} {b[0]:>14.2f} {b[1]:>7.2f} {b[0] / a[0]:>9.2f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.request_path", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=500, help="timed requests of each kind each")
    p.add_argument("--dim", type=int, default=32)
    p.add_argument("--clients", type=int, default=8, help="concurrent predict clients")
    p.add_argument("--seconds", type=float, default=10.0, help="per predict-rate measurement")
    p.add_argument("--http-workers", type=int, default=1,
                   help="HTTP server processes of the cached app (setting http_workers)")
    p.add_argument("--client", default="raw,httpx",
                   help="load generators for the predict rates, comma-separated: raw "
                        "(benchmarks/raw_http.py) and/or httpx")
    p.add_argument("--text", type=int, default=0,
                   help="also time this many single-text predicts (MiniLM agent) against the "
                        "in-process encode of one text; 0 (default) skips them")
    p.add_argument("--text-head", default="local,actor,off",
                   help="text_head_encoder modes to time text predicts with, comma-separated")
    a = p.parse_args(argv)
    if a.text:
        print("text predict, 1 input, each beside the in-process encode of one text (ms)")
        for m in a.text_head.split(","):
            (h50, h99), (e50, e99) = run_text(a.text, mode=m)
            print(f"  text_head_encoder={m:<6} HTTP p50 {h50:.2f} p99 {h99:.2f}; in-process "
                  f"encode p50 {e50:.2f} p99 {e99:.2f}; ratio {h50 / e50:.2f}")
        print()
    rates: dict[tuple[str, int], tuple[float, float, float]] = {}
    heads: dict[str, int] = {}
    kinds = tuple(k for k in a.client.split(",") if k)
    print_table(run(a.requests, a.dim, a.clients, a.seconds, rates, heads, kinds, a.http_workers))
    for kind in kinds:
        (one, cpu1, ccpu1), (many, cpu_n, ccpu_n) = rates[(kind, 1)], rates[(kind, a.clients)]
        print(f"\npredict, 1 input, cached app, {kind} clients: 1 client {one:,.0f}/s, "
              f"{a.clients} clients {many:,.0f}/s ({many / one:.2f}x)")
        print(f"HTTP process CPU per predict ({a.http_workers} process(es)): {cpu1:.2f} ms with 1 "
              f"client, {cpu_n:.2f} ms with {a.clients} (one interpreter: at most "
              f"{1e3 / cpu_n:,.0f}/s at that cost); client "
              f"process CPU per predict: {ccpu1:.2f} ms with 1 client, {ccpu_n:.2f} ms with "
              f"{a.clients}")
    print(f"predicts answered in the HTTP process (workers/head_cache.py): "
          f"{heads.get('hits', 0):,} of {heads.get('hits', 0) + heads.get('misses', 0):,} "
          f"lookups ({heads.get('warmed', 0):,} states copied from the serving actor)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
