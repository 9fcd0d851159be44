"""Delta retention reads the agent's ``ok`` versions and, lazily, the thinned ones a walk
reaches (storage/repository/retention.py), not the whole version history: its choices equal
those made with every version loaded (``full_map``, the former reads) on random histories of
commits, snapshots, rollbacks, forgets, forks and pins, at cutoffs moving forward with
retention applied between them, with and without snapshot spacing, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import select

from agent.memory.delta import apply_delta
from storage.models import Version
from storage.repository import Repository, unit_of_work
from tests.db_fixtures import *  # noqa: F401,F403
from tests.storage_helpers import batch_delta, checksum, event_payload
from tests.test_storage_labels import POOL, _random_history


def _stream(db, agents, rng, n: int = 30) -> None:
    """``n`` more commits at the head of each agent, a snapshot every third."""
    for aid in sorted(agents):
        versions, head = agents[aid]
        for i in range(n):
            with unit_of_work(db) as repo:
                repo.append_events(aid, [{"id": f"x{i}", **event_payload(rng, POOL[:4])}])
                pending = repo.pending_events(aid)
                cur = versions[head]
                d = batch_delta(*cur, [e.payload for e in pending], "float64", False)
                new = (apply_delta(cur[0], d), cur[1] + d.labels_added)
                head = repo.commit_version(aid, head, delta=d, checksum=checksum(new),
                                           event_seqs=[e.seq for e in pending],
                                           snapshot=new if i % 3 == 2 else None).version
                versions[head] = new
        agents[aid] = (versions, head)


def _plan(db, aid, window, now, spacing, full):
    """The retention report for one agent, its writes rolled back."""
    session = db.WriteSession()
    try:
        session.begin()
        repo = Repository(session)
        repo.retention.full_map = full
        return repo.apply_retention(aid, window, now, spacing)
    finally:
        session.rollback()
        session.close()


@pytest.mark.parametrize(("seed", "steps", "stream"), [(0, 40, 12), (1, 40, 12), (2, 0, 40)])
def test_retention_choices_equal_the_whole_history_choice(db, seed, steps, stream):
    """Random histories, then a stream at each head; and a stream alone (no rollback leaves
    versions no snapshot covers: the oldest version retention may drop is one it drops)."""
    agents = _random_history(db, 200 + seed, steps=steps)
    rng = np.random.default_rng(seed)
    _stream(db, agents, rng, stream)
    with unit_of_work(db) as repo:  # a few pinned versions
        for aid in sorted(agents):
            versions = sorted(agents[aid][0])
            for v in rng.choice(versions, size=min(2, len(versions)), replace=False):
                repo.pin_version(aid, int(v), bool(rng.random() < 0.5))
    compared = dropped = 0
    for aid in sorted(agents):
        with unit_of_work(db, write=False) as repo:
            times = sorted(set(repo.session.scalars(select(Version.created_at).where(
                Version.agent_id == aid))))
        now = times[-1] + timedelta(seconds=1)
        for at in times[:: max(1, len(times) // 8)] + [now]:
            window = (now - at).total_seconds()  # the cutoff just after version ``at``
            spacing = float(rng.choice([0.002, 0.02, 10.0])) if rng.random() < 0.6 else None
            want = _plan(db, aid, window, now, spacing, full=True)
            got = _plan(db, aid, window, now, spacing, full=False)
            assert got == want, (aid, at, spacing)
            compared += 1
            dropped += len(want.dropped)
            with unit_of_work(db) as repo:  # applied: the next cutoff sees thinned versions
                repo.apply_retention(aid, window, now, spacing)
    assert compared >= 8 and dropped > 3, (compared, dropped)
