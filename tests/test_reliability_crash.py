"""Crash recovery of the whole service: ``deltamem serve`` (a subprocess with its own local Ray,
on a SQLite file) is SIGKILLed together with every process it started, while a client streams
events over HTTP; then it is restarted on the same database and the client re-sends everything,
acknowledged or not.

Afterwards, for every agent: each event is applied exactly once and in the order it was sent
(``applied_events`` in ``seq`` order equals the ids sent), re-sent acknowledged batches were all
duplicates, versions are contiguous, their event counts sum to ``events_applied``, every committed
version rebuilds from the store with its checksum, and the head state equals a single-process
reference learner fed the same events (up to float rounding from other micro-batch boundaries).

CI runs one kill; the long form (``-m slow``) kills the service four times at random moments.
"""

from __future__ import annotations

import random
import time
from typing import Any

import httpx
import pytest

from tests.reliability_helpers import ServeProcess, make_batches, tenant_key
from tests.reliability_stream import Sender, check_against_reference, resend, wait_all_applied

DIM = 16
CONFIG = {"kind": "classifier", "encoder": "none", "dim": DIM,
          "memory": {"rule": "delta", "beta": 0.5, "decay": 1.0}}


def run_crash_cycles(tmp_path, kills: int, n_batches: int, size: int, seed: int) -> None:
    db_url = f"sqlite:///{tmp_path / 'crash.db'}"
    log = tmp_path / "serve.log"
    started: list[ServeProcess] = []

    def serve() -> ServeProcess:
        started.append(ServeProcess(db_url, log, snapshot_every_versions=7, batch_max_ms=5))
        started[-1].wait_ready()
        return started[-1]

    try:
        batches = _cycles(serve, kills, n_batches, size, random.Random(seed), seed)
        started[-1].stop()
    finally:
        for s in started:
            s.kill_all()
    check_against_reference(db_url, CONFIG, batches)


def _cycles(serve, kills: int, n_batches: int, size: int, rnd: random.Random,
            seed: int) -> list[tuple[str, list[dict[str, Any]]]]:
    svc = serve()
    key = tenant_key(svc.url)
    with httpx.Client(base_url=svc.url, timeout=60, headers={"Authorization": f"Bearer {key}"}) as c:
        agents = [c.post("/v1/agents", json={"name": f"crash{i}", **CONFIG}).json()["id"]
                  for i in range(3)]
    batches = make_batches(agents, n_batches, size, DIM, seed=seed)
    acked: set[int] = set()
    pos = 0
    for cycle in range(kills + 1):
        if cycle > 0:  # restarted on the same database: re-send everything sent so far
            svc = serve()
            resend(svc.url, key, batches, pos, acked)
            acked.update(range(pos))  # the re-send acknowledged them all
        last = cycle == kills
        sender = Sender(svc.url, key, batches, pos)
        sender.thread.start()
        if last:
            sender.thread.join(timeout=300)
        else:  # kill once a random share of the remaining batches is acknowledged
            share = rnd.uniform(0.15, 0.4) / (kills - cycle)
            goal = max(1, int((len(batches) - pos) * share))
            deadline = time.monotonic() + 120
            while len(sender.acked) < goal and sender.thread.is_alive() \
                    and time.monotonic() < deadline:
                time.sleep(0.005)
            time.sleep(rnd.uniform(0.0, 0.05))
            n = svc.kill_all()
            assert n >= 4, f"expected serve + Ray processes, killed {n}"
            sender.thread.join(timeout=30)
        assert not sender.refused, sender.refused
        acked.update(sender.acked)
        pos = min(len(batches), sender.next + (0 if last else 1))  # in flight counts as sent
    assert pos == len(batches) and len(acked) == len(batches)
    resend(svc.url, key, batches, len(batches), acked)  # everything is a duplicate now
    wait_all_applied(svc.url, key, agents, n_batches * size)
    return batches


def test_sigkill_whole_service_mid_ingest_loses_nothing(tmp_path):
    run_crash_cycles(tmp_path, kills=1, n_batches=24, size=20, seed=1)


@pytest.mark.slow
def test_sigkill_whole_service_repeatedly(tmp_path):
    run_crash_cycles(tmp_path, kills=4, n_batches=80, size=25, seed=2)
