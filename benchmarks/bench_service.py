"""The service-level measurements of ``deltamem bench all`` (see ``benchmarks.bench_all``).

:class:`Deployment` runs the whole service in this process (local Ray, uvicorn on a free
loopback port, the given database) with the user-facing defaults for micro-batching, and talks
to it over HTTP with httpx, as a client would.
"""

from __future__ import annotations

import secrets
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from storage.engine import Database
from storage.migrate import upgrade
from storage.repository import unit_of_work

WORDS = ("book flight hotel card lost refund balance transfer weather song play pause alarm "
         "timer recipe train taxi bill pay account password reset order track parcel").split()


def sentences(n: int, seed: int) -> tuple[list[str], list[str]]:
    """``n`` distinct short sentences and an intent label each (no encoder cache hits)."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i in range(n):
        w = rng.choice(WORDS, size=5)
        texts.append(f"please {w[0]} my {w[1]} and {w[2]} {w[3]} {w[4]} number {seed}-{i}")
        labels.append(f"intent_{w[0]}")
    return texts, labels


class Deployment:
    """The service in this process, on ``database_url``, with one tenant and an httpx client."""

    def __init__(self, database_url: str, namespace: str) -> None:
        from workers.runtime import free_port
        from workers.settings import Settings

        self.admin = secrets.token_urlsafe(16)
        self.settings = Settings(database_url=database_url, port=free_port(),
                                 admin_key=self.admin, ray_namespace=namespace,
                                 scheduler_enabled=False)

    def __enter__(self) -> Deployment:
        from workers.runtime import start

        self.running = start(self.settings)
        r = httpx.post(f"{self.running.url}/v1/tenants", json={"name": "bench"}, timeout=60,
                       headers={"Authorization": f"Bearer {self.admin}"})
        r.raise_for_status()
        self.headers = {"Authorization": f"Bearer {r.json()['api_key']}"}
        self.http = httpx.Client(base_url=self.running.url, headers=self.headers, timeout=300)
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()
        self.running.stop()

    def agent(self, name: str, encoder: str = "none", dim: int | None = None) -> str:
        body: dict[str, Any] = {"name": name, "kind": "classifier", "encoder": encoder}
        if dim is not None:
            body["dim"] = dim
        r = self.http.post("/v1/agents", json=body)
        r.raise_for_status()
        return r.json()["id"]

    def send(self, agent: str, events: list[dict[str, Any]], client: httpx.Client | None = None) -> None:
        r = (client or self.http).post(f"/v1/agents/{agent}/events", json={"events": events})
        if r.status_code == 429:  # backpressure: wait and resend
            time.sleep(0.1)
            return self.send(agent, events, client)
        r.raise_for_status()

    def wait_applied(self, agents: list[str], timeout: float = 1800.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            infos = [self.http.get(f"/v1/agents/{a}").json() for a in agents]
            if all(i["events_applied"] == i["events_received"] for i in infos):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"events not applied within {timeout} s")
            time.sleep(0.02)

    def ingest_vectors(self, n: int, n_agents: int, dim: int, labels: int) -> tuple[float, list[str]]:
        """Events/s from the first request to the last commit, ``n`` events over the agents."""
        rng = np.random.default_rng(0)
        agents = [self.agent(f"vec{i}", dim=dim) for i in range(n_agents)]
        centers = rng.normal(size=(labels, dim))

        def events(prefix: str, m: int) -> list[dict[str, Any]]:
            ys = rng.integers(labels, size=m)
            xs = centers[ys] + 0.5 * rng.normal(size=(m, dim))
            return [{"id": f"{prefix}{i}", "input": x.tolist(), "target": f"L{y}"}
                    for i, (x, y) in enumerate(zip(xs, ys, strict=True))]

        for a in agents:  # warm-up: the learner loads the head, first labels appear
            self.send(a, events(f"{a}-warm-", 64))
        self.wait_applied(agents)
        per = n // n_agents
        work = {a: [events(f"{a}-{j}-", 250) for j in range(max(1, per // 250))] for a in agents}
        total = sum(len(b) for bs in work.values() for b in bs)

        def sender(my_agents: list[str]) -> None:
            with httpx.Client(base_url=self.running.url, headers=self.headers, timeout=300) as c:
                for j in range(max(len(bs) for bs in work.values())):
                    for a in my_agents:
                        if j < len(work[a]):
                            self.send(a, work[a][j], c)

        threads = [threading.Thread(target=sender, args=(agents[i::2],)) for i in range(2)]
        before = self.learner_stats()
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.wait_applied(agents)
        rate = total / (time.perf_counter() - t0)
        after = self.learner_stats()
        self.per_version = {k: (after[k] - before[k]) / max(1, after["versions"] - before["versions"])
                            for k in ("learn_s", "commit_s", "events")}
        return rate, agents

    def learner_stats(self) -> dict[str, float]:
        """The learner shards' counters summed: versions, events, learn_s, commit_s."""
        import ray

        pings = ray.get([a.ping.remote() for a in self.running.service.learner_handles()], timeout=60)
        return {k: float(sum(p[k] for p in pings))
                for k in ("versions", "events", "learn_s", "commit_s")}

    def ingest_text(self, n: int) -> float:
        """Events/s for MiniLM-encoded text events (the learner encodes them)."""
        a = self.agent("text", encoder="minilm")
        warm, wl = sentences(64, seed=1)
        self.send(a, [{"id": f"w{i}", "input": t, "target": y}
                      for i, (t, y) in enumerate(zip(warm, wl, strict=True))])
        self.wait_applied([a])  # the learner has loaded MiniLM
        texts, labels = sentences(n, seed=2)
        evs = [{"id": f"t{i}", "input": t, "target": y}
               for i, (t, y) in enumerate(zip(texts, labels, strict=True))]
        t0 = time.perf_counter()
        for i in range(0, n, 64):
            self.send(a, evs[i:i + 64])
        self.wait_applied([a])
        return n / (time.perf_counter() - t0)


def minilm_sentences_per_s(n: int) -> float:
    """MiniLM's own throughput in this process: 1 torch thread, batches of 64, no cache."""
    import torch

    from agent.backbones.minilm import MiniLMEncoder

    torch.set_num_threads(1)
    enc = MiniLMEncoder(cache_size=0)
    enc.encode(sentences(16, seed=3)[0])
    texts = sentences(n, seed=4)[0]
    t0 = time.perf_counter()
    for i in range(0, n, 64):
        enc.encode(texts[i:i + 64])
    return n / (time.perf_counter() - t0)


def _pcts(lat: list[float]) -> dict[str, float]:
    a = np.asarray(lat) * 1000
    return {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)),
            "p99.9": float(np.percentile(a, 99.9)), "n": len(lat)}


def predict_latency(dep: Deployment, n_agents: int, dim: int, single: int,
                    batched: int) -> dict[str, Any]:
    """Request latency of predict over ``n_agents`` agents (round robin), 1 and 64 inputs, and
    the same predictions computed in this process on the same state (the compute floor)."""
    from agent.config import AgentConfig
    from agent.model import MemoryAgent

    rng = np.random.default_rng(5)
    agents = [dep.agent(f"p{i}", dim=dim) for i in range(n_agents)]
    for a in agents:
        xs = rng.normal(size=(32, dim))
        dep.send(a, [{"id": f"e{j}", "input": x.tolist(), "target": f"L{j % 10}"}
                     for j, x in enumerate(xs)])
    dep.wait_applied(agents)
    probes = rng.normal(size=(64, dim)).tolist()
    for a in agents:  # warm: every agent's state in the serving cache
        dep.http.post(f"/v1/agents/{a}/predict", json={"inputs": probes[:1]}).raise_for_status()
    out: dict[str, Any] = {}
    for kind, n, m in (("single", single, 1), ("batched", batched, 64)):
        lat = []
        for i in range(n):
            t0 = time.perf_counter()
            r = dep.http.post(f"/v1/agents/{agents[i % n_agents]}/predict",
                              json={"inputs": probes[:m]})
            lat.append(time.perf_counter() - t0)
            r.raise_for_status()
        out[kind] = _pcts(lat)
    cfg = dep.http.get(f"/v1/agents/{agents[0]}").json()
    with dep.running.service.store.read() as repo:
        layers, labels = repo.load_state(agents[0], cfg["head_version"])
    ref = MemoryAgent(AgentConfig.from_dict({k: cfg[k] for k in ("kind", "encoder", "dim",
                                                                   "memory")}))
    ref.load_state(layers, labels)
    for kind, m in (("single", 1), ("batched", 64)):
        ts = []
        for _ in range(200):
            t0 = time.perf_counter()
            ref.predict_many(probes[:m])
            ts.append(time.perf_counter() - t0)
        out[f"ref_{kind}_ms"] = float(np.median(ts)) * 1000
    return out


def storage_rows(dep: Deployment, agents: list[str], d: int, labels: int) -> list[dict[str, Any]]:
    """Stored bytes per applied event before and after retention (a snapshot at each head,
    then retention with a zero window drops every delta a snapshot covers)."""
    event_bytes = (d + labels) * 4.0  # the event as a float32 key row + value row
    before = after = events = 0
    with dep.running.service.store.tx() as repo:
        for a in agents:
            agent = repo.get_agent(a)
            st = repo.version_stats(a)
            before += st["delta_bytes"] + st["snapshot_bytes"]
            events += agent.events_applied
            layers, names = repo.load_state(a, agent.head_version)
            repo.write_snapshot(a, agent.head_version, layers, names)
            repo.apply_retention(a, keep_window_s=0)
    with dep.running.service.store.read() as repo:
        for a in agents:
            st = repo.version_stats(a)
            after += st["delta_bytes"] + st["snapshot_bytes"]
    ref = "the event: float32 key + value rows"
    return [dict(figure="storage before retention", value=before / events, unit="B/event",
                 ref_name=ref, ref=event_bytes, note=f"{events} events, deltas + snapshots"),
            dict(figure="storage after retention", value=after / events, unit="B/event",
                 ref_name=ref, ref=event_bytes, note="snapshot at head, window 0")]


def rebuild_rows(tmp: Path, quick: bool, d: int, labels: int, chunk: int) -> list[dict[str, Any]]:
    """``load_state`` k versions past the snapshot vs snapshot read + k in-memory applies."""
    from agent.memory.delta import Delta, LayerDelta, apply_delta, state_checksum
    from benchmarks.storage_dbs import new_agent

    ks = (0, 10, 50, 100) if quick else (0, 10, 100, 300, 1000)
    url = f"sqlite:///{tmp / 'rebuild.db'}"
    upgrade(url)
    db = Database(url)
    rng = np.random.default_rng(1)
    try:
        agent_id, layers, names = new_agent(db, d, labels)
        deltas = []
        for v in range(max(ks)):
            dl = Delta({"S": LayerDelta.factors(rng.standard_normal((chunk, d)) * 0.01,
                                                rng.standard_normal((chunk, labels)) * 0.01)})
            layers = apply_delta(layers, dl)
            deltas.append(dl)
            with unit_of_work(db) as repo:
                repo.commit_version(agent_id, v, delta=dl, checksum=state_checksum(layers, names))
        rows = []
        t_snap = None
        for k in ks:
            best = best_mem = float("inf")
            for _ in range(3):
                t0 = time.perf_counter()
                with unit_of_work(db, write=False) as repo:
                    state, _ = repo.load_state(agent_id, k)
                best = min(best, time.perf_counter() - t0)
                base = {"S": np.zeros((labels, d))}
                t0 = time.perf_counter()
                for dl in deltas[:k]:
                    base = apply_delta(base, dl)
                best_mem = min(best_mem, time.perf_counter() - t0)
            assert k == 0 or state["S"].tobytes() == base["S"].tobytes()
            t_snap = best if k == 0 else t_snap
            rows.append(dict(figure=f"rebuild {k} versions past snapshot", value=best * 1000,
                             unit="ms", ref_name="snapshot read + k in-memory applies",
                             ref=((t_snap or best) + best_mem) * 1000,
                             note=f"{chunk}-event deltas, SQLite"))
        return rows
    finally:
        db.dispose()
