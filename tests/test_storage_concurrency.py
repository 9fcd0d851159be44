"""Concurrent writers: two sessions committing on one head cannot both win; a process
killed in the middle of a commit leaves no partial version (SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
from sqlalchemy import func, select

from agent.memory.delta import apply_delta
from storage.errors import StoreBusy, VersionConflict
from storage.models import DeltaRow, Snapshot, Version
from storage.repository import Repository, unit_of_work
from tests.db_fixtures import *  # noqa: F401,F403
from tests.storage_helpers import checksum, empty_state, random_delta


def _agent(db):
    with unit_of_work(db) as repo:
        tenant, _ = repo.create_tenant("t")
        st = empty_state()
        return repo.create_agent(tenant.id, "a", {}, *st, checksum(st)).id


@pytest.mark.parametrize("write_lock", [False, True], ids=["deferred", "immediate"])
def test_two_sessions_racing_cannot_both_win(db, write_lock):
    agent_id = _agent(db)
    rng = np.random.default_rng(0)
    start = threading.Barrier(2)
    results: list[object] = []
    lock = threading.Lock()

    def writer() -> None:
        # deferred: read the head inside the committing transaction (the loser may then be
        # refused at once by SQLite: StoreBusy); immediate: read it before, in another
        # session, then commit in a write session (the loser always gets VersionConflict)
        outcome: object
        if write_lock:
            with db.session() as s:
                repo = Repository(s)
                head = repo.get_agent(agent_id).head_version
                st = repo.load_state(agent_id, head)
            start.wait(timeout=60)
            session = db.WriteSession()
        else:
            session = db.Session()
            repo = Repository(session)
            head = repo.get_agent(agent_id).head_version
            st = repo.load_state(agent_id, head)
            start.wait(timeout=60)
        try:
            with lock:
                d = random_delta(rng, *st, ["x"])
            new = (apply_delta(st[0], d), st[1] + ["x"])
            v = Repository(session).commit_version(agent_id, head, delta=d,
                                                   checksum=checksum(new))
            session.commit()
            outcome = v.version
        except (VersionConflict, StoreBusy) as exc:
            session.rollback()
            outcome = exc
        finally:
            session.close()
        with lock:
            results.append(outcome)

    for _round in range(3):
        results.clear()
        threads = [threading.Thread(target=writer) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        wins = [r for r in results if isinstance(r, int)]
        assert len(results) == 2 and len(wins) == 1, results
        if write_lock:
            assert any(isinstance(r, VersionConflict) for r in results), results
    with unit_of_work(db) as repo:
        rows = repo.list_versions(agent_id)
        assert [r.version for r in rows] == [3, 2, 1, 0]
        assert [r.parent for r in rows] == [2, 1, 0, None]
        assert repo.session.scalar(select(func.count()).select_from(DeltaRow)) == 3 * 2
        repo.load_state(agent_id, 3)


KILL_SCRIPT = textwrap.dedent("""
    import os, sys
    import numpy as np
    from agent.memory.delta import apply_delta
    from storage.engine import Database
    from storage.repository import Repository
    sys.path.insert(0, os.getcwd())
    from tests.storage_helpers import checksum, random_delta
    db = Database(sys.argv[1])
    session = db.WriteSession()
    repo = Repository(session)
    st = repo.load_state(sys.argv[2], 0)
    d = random_delta(np.random.default_rng(0), *st, ["x"])
    new = (apply_delta(st[0], d), ["x"])
    repo.commit_version(sys.argv[2], 0, delta=d, snapshot=new, checksum=checksum(new))
    session.flush()
    print("flushed", flush=True)
    os._exit(9)  # killed before COMMIT
""")


def test_a_process_killed_mid_commit_leaves_nothing(db, db_url):
    agent_id = _agent(db)
    proc = subprocess.run([sys.executable, "-c", KILL_SCRIPT, db_url, agent_id],
                          capture_output=True, text=True, timeout=120,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    assert proc.returncode == 9 and "flushed" in proc.stdout, proc.stderr
    with unit_of_work(db) as repo:
        s = repo.session
        assert s.scalar(select(func.count()).select_from(Version)) == 1
        assert s.scalar(select(func.count()).select_from(DeltaRow)) == 0
        assert s.scalar(select(func.count()).select_from(Snapshot)) == 1
        assert repo.get_agent(agent_id).head_version == 0
        repo.load_state(agent_id, 0)
