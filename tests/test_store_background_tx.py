"""A background loop of write transactions on SQLite (snapshots, retention) lets a waiting
writer of another process in: with ``Store.background_tx`` a writer that starts waiting
mid-loop takes the lock after a transaction at most; with plain transactions back to back it
waits behind many (the convoy behind the soak's ingest tail: the loop begins its next
transaction before the writer's next poll). Real SQLite file, a real second process."""

from __future__ import annotations

import multiprocessing as mp
import time
from typing import Any

from sqlalchemy import text

from workers.store import Store

LOOP = 150


def _loop(url: str, background: bool, counter: Any) -> None:
    store = Store(url)
    for k in range(LOOP):
        with (store.background_tx() if background else store.tx()) as repo:
            repo.session.execute(text("INSERT INTO t VALUES (:k, 'loop')"), {"k": k})
            time.sleep(0.003)  # a transaction that holds the lock a while
        counter.value += 1
    store.close()


def _waits(tmp_path, name: str, background: bool) -> list[int]:
    """For 12 writes made while the other process loops: its commits while each one waited."""
    url = f"sqlite:///{tmp_path / name}"
    front = Store(url)
    with front.db.engine.begin() as c:
        c.execute(text("CREATE TABLE t (k INTEGER PRIMARY KEY, who TEXT)"))
    ctx = mp.get_context("spawn")
    counter = ctx.Value("i", 0)
    proc = ctx.Process(target=_loop, args=(url, background, counter))
    proc.start()
    try:
        deadline = time.monotonic() + 60
        while counter.value < 5 and time.monotonic() < deadline:
            time.sleep(0.001)
        waits = []
        for j in range(12):
            time.sleep(0.007)
            before = counter.value
            with front.db.write_session() as s:  # BEGIN IMMEDIATE (polling) at the first statement
                s.execute(text("INSERT INTO t VALUES (:k, 'front')"), {"k": 1000 + j})
                waits.append(counter.value - before)  # the lock is held here
    finally:
        proc.join(60)
    assert proc.exitcode == 0
    with front.read() as repo:
        assert repo.session.execute(text("SELECT count(*) FROM t")).scalar_one() == LOOP + 12
    front.close()
    return waits


def test_a_waiting_writer_gets_in_between_background_transactions(tmp_path):
    polite = _waits(tmp_path, "yield.db", background=True)
    assert max(polite) <= 2, polite
    convoy = _waits(tmp_path, "convoy.db", background=False)
    assert sum(convoy) >= 10, convoy  # what it prevents: the writer waits behind many
