"""The scheduler lease (workers/actors/scheduler.py ``_hold_lease``) under concurrent jobs, on
SQLite and PostgreSQL: a deployment's jobs start together and all take the lease when there is
none (no duplicate-key error: PostgreSQL does not lock a row that is not there yet); of two
deployments racing for a free lease exactly one gets it; the holder renews it."""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import delete

from storage.models import SchedulerLease
from tests.db_fixtures import *  # noqa: F401,F403
from workers.actors.scheduler import _hold_lease
from workers.store import Store


class _Rt:
    def __init__(self, store: Store, scheduler_id: str) -> None:
        self.store = store
        self.scheduler_id = scheduler_id


def _race(rts: list[_Rt]) -> list[Any]:
    out: list[Any] = [None] * len(rts)
    barrier = threading.Barrier(len(rts))

    def run(i: int) -> None:
        barrier.wait()
        try:
            out[i] = _hold_lease(rts[i])
        except Exception as e:  # noqa: BLE001 - the assertion shows it
            out[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(rts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def test_concurrent_jobs_take_a_free_lease_without_errors(db_url):
    store = Store(db_url)
    try:
        for round_ in range(15):
            with store.tx() as repo:
                repo.session.execute(delete(SchedulerLease))
            same = _race([_Rt(store, "dep-a") for _ in range(6)])  # one deployment's jobs
            assert same == [True] * 6, (round_, same)
            with store.tx() as repo:
                repo.session.execute(delete(SchedulerLease))
            two = _race([_Rt(store, f"dep-{i % 2}") for i in range(6)])  # two deployments
            assert not any(isinstance(x, Exception) for x in two), two
            winners = {f"dep-{i % 2}" for i, x in enumerate(two) if x}
            assert len(winners) == 1, two
            holder = winners.pop()
            assert _hold_lease(_Rt(store, holder))  # renewed by its holder
            assert not _hold_lease(_Rt(store, "dep-x" if holder != "dep-x" else "dep-y"))
    finally:
        store.close()
