"""``deltamem serve --http-workers N`` (workers/http_workers.py), as a real subprocess with its
own Ray: the extra HTTP processes answer on the same port with the same settings (the admin
key included: it reaches them on stdin, not on their command line), a request answered by any
process is seen by the others (one store, one set of actors), a clean stop ends them, and a
worker whose serve process was killed exits on its own instead of holding the port."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

from benchmarks.deployment import ADMIN_KEY, ServeProcess

CONFIG = {"kind": "classifier", "encoder": "none", "dim": 4}


def _workers(svc: ServeProcess) -> list[psutil.Process]:
    return [p for p in svc.processes()
            if "workers.http_workers" in " ".join(p.cmdline() or [])]


def _cpu(p: psutil.Process) -> float:
    t = p.cpu_times()
    return t.user + t.system


def _start(tmp_path: Path) -> ServeProcess:
    svc = ServeProcess(f"sqlite:///{tmp_path / 'hw.db'}", tmp_path / "serve.log",
                       http_workers=2, scheduler_enabled="false")
    svc.wait_ready()  # the serve process answers; its workers may still be starting
    deadline = time.monotonic() + 120
    while "deltamem serving on" not in svc.log_tail():  # printed once the workers answer
        assert time.monotonic() < deadline and svc.proc.poll() is None, svc.log_tail()
        time.sleep(0.1)
    return svc


def test_workers_answer_on_the_port_and_stop_with_the_service(tmp_path):
    svc = _start(tmp_path)
    try:
        workers = _workers(svc)
        assert len(workers) == 1
        assert ADMIN_KEY not in " ".join(workers[0].cmdline())
        assert ADMIN_KEY not in " ".join(f"{k}={v}" for k, v in workers[0].environ().items()
                                         if k != "DELTAMEM_ADMIN_KEY")
        before = _cpu(workers[0])
        keys: list[str] = []
        errors: list[str] = []
        lock = threading.Lock()

        def tenant_and_agent(i: int) -> None:  # a new connection each: either process answers
            try:
                r = httpx.post(f"{svc.url}/v1/tenants", json={"name": f"t{i}"}, timeout=60,
                               headers={"Authorization": f"Bearer {ADMIN_KEY}"})
                r.raise_for_status()
                key = r.json()["api_key"]
                with httpx.Client(base_url=svc.url, timeout=60,
                                  headers={"Authorization": f"Bearer {key}"}) as c:
                    a = c.post("/v1/agents", json={"name": "a", **CONFIG}).json()["id"]
                    c.post(f"/v1/agents/{a}/events", json={"events": [
                        {"id": "e1", "input": [1, 0, 0, 0], "target": "x"}]}).raise_for_status()
                    for _ in range(30):
                        c.post(f"/v1/agents/{a}/predict",
                               json={"inputs": [[1, 0, 0, 0]]}).raise_for_status()
                with lock:
                    keys.append(key)
            except Exception as e:  # noqa: BLE001 - reported below
                with lock:
                    errors.append(repr(e))

        threads = [threading.Thread(target=tenant_and_agent, args=(i,)) for i in range(32)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, (errors[:3], svc.log_tail())
        assert _cpu(workers[0]) - before > 0.05  # the worker answered some of them
        open_ = [httpx.Client(base_url=svc.url, timeout=60) for _ in range(32)]
        try:  # 32 kept-alive connections: the worker holds some of them itself
            for c in open_:
                assert c.get("/healthz").status_code == 200
            held = [k for k in workers[0].net_connections(kind="tcp")
                    if k.laddr and k.laddr.port == svc.port and k.status == psutil.CONN_ESTABLISHED]
            assert held, "the worker accepted none of 32 connections"
        finally:
            for c in open_:
                c.close()
        for key in keys:  # every tenant and agent is seen from every process
            for _ in range(4):
                r = httpx.get(f"{svc.url}/v1/agents", timeout=60,
                              headers={"Authorization": f"Bearer {key}"})
                assert r.status_code == 200 and len(r.json()["agents"]) == 1
        svc.proc.send_signal(signal.SIGTERM)
        svc.proc.wait(timeout=60)
        psutil.wait_procs(workers, timeout=30)
        assert not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{svc.url}/healthz", timeout=5)
    finally:
        svc.kill_all()


@pytest.mark.parametrize("when", ["serving", "starting"])
def test_a_worker_exits_when_its_serve_process_is_killed(tmp_path, when):
    if when == "serving":
        svc = _start(tmp_path)
    else:  # killed while the worker still joins Ray
        svc = ServeProcess(f"sqlite:///{tmp_path / 'hw.db'}", tmp_path / "serve.log",
                           http_workers=2, scheduler_enabled="false")
        svc.wait_ready()
    try:
        deadline = time.monotonic() + 60
        while not (workers := _workers(svc)):
            assert time.monotonic() < deadline, svc.log_tail()
            time.sleep(0.05)
        assert len(workers) == 1
        svc.proc.kill()  # SIGKILL: no clean stop reaches the worker
        svc.proc.wait(timeout=30)
        _, alive = psutil.wait_procs(workers, timeout=30)
        assert not alive
    finally:
        svc.kill_all()
