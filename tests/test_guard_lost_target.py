"""The guard's rollback when its target can no longer be loaded (workers/actors/shard_guard.py):
retention thinned it, the version horizon deleted it, or a forget erased it since the guard
chose it. The agent is quarantined instead (its new events held, the action recorded with the
reason) and nothing raises; a target that still loads is rolled back to as before. SQLite and
PostgreSQL, the real store."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import select

from storage.models import GuardAction
from storage.repository import unit_of_work
from tests.db_fixtures import *  # noqa: F401,F403
from tests.storage_helpers import checksum, empty_state
from tests.test_version_horizon import _commit
from workers.actors.guard import Decision
from workers.actors.shard_guard import ShardGuard
from workers.store import Store


def _agent(db, n: int) -> str:
    """An agent with versions 1..n, a snapshot at n - 1."""
    rng = np.random.default_rng(n)
    with unit_of_work(db) as repo:
        tenant = repo.create_tenant("t")[0].id
        state = empty_state()
        aid = repo.create_agent(tenant, "a", {}, *state, checksum(state)).id
    for v in range(1, n + 1):
        state = _commit(db, aid, state, rng, snapshot=v == n - 1)
    return aid


@pytest.mark.parametrize("lost", [True, False])
def test_rollback_to_a_lost_version_quarantines_instead(db, db_url, lost):
    aid = _agent(db, 5)
    if lost:  # version 2 thinned: its deltas dropped once snapshot 4 covers them
        with unit_of_work(db) as repo:
            later = repo.get_version(aid, 5).created_at + timedelta(seconds=1)
            repo.apply_retention(aid, 0.0, later)
            assert repo.version_status(aid, 2) == "thinned"
    reset: list[str] = []
    guard = ShardGuard(Store(db_url), 0, lambda n: None, reset.append)
    guard._act(aid, 5, Decision("rollback", "accuracy fell 0.4", 2))
    with unit_of_work(db, write=False) as repo:
        agent = repo.get_agent(aid)
        actions = repo.session.scalars(select(GuardAction).where(
            GuardAction.agent_id == aid)).all()
        assert agent.quarantined and reset == [aid] and len(actions) == 1
        if lost:
            assert agent.head_version == 5 and actions[0].action == "quarantine"
            assert "version 2 can no longer be loaded" in actions[0].reason
            assert guard.counts == {"quarantine": 1}
        else:
            assert agent.head_version == 6 and actions[0].action == "rollback"
            assert repo.get_version(aid, 6).state_of == 2
            assert guard.counts == {"rollback": 1}
