"""Event retention's choice of prunable events (storage/repository/event_retention.py), which
reads only the versions between the head, the covering snapshot and the oldest version an
unpruned event was applied in, equals the choice made from every version's full event history
(``VersionGraph.histories``, the reference below) on random histories of commits, snapshots,
rollbacks, forgets and forks, at every cutoff between two versions, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from storage.models import Event, Version, agent_key_of
from storage.repository import unit_of_work
from tests.db_fixtures import *  # noqa: F401,F403
from tests.test_storage_labels import _random_history


def _reference(repo, agent_id, head, old_snaps, cutoff) -> list[int]:
    """The prunable ids from the full histories of the head's path (the former plan)."""
    g = repo.graph
    vmap = g.vmap(agent_id)
    covered = None
    for v, hist in g.histories(agent_id, vmap, head):
        if v in old_snaps:
            covered = hist  # the newest one on the path wins (root first)
    if not covered:
        return []
    upto, held = max(covered), set(covered)
    applied = {e.seq for e, _ in repo.applied_events(agent_id)}
    rows = repo.session.execute(select(Event.id, Event.seq, Event.forgotten_version,
                                       Event.rejected).where(
        Event.agent_key == agent_key_of(agent_id), Event.seq <= upto, Event.received_at < cutoff)
        .order_by(Event.seq)).all()
    return [i for i, seq, fv, rej in rows
            if (seq in applied and fv is None and seq in held) or fv is not None or rej]


@pytest.mark.parametrize("seed", range(3))
def test_prunable_events_equal_the_full_history_choice(db, seed):
    agents = _random_history(db, 100 + seed, steps=40)
    compared = nonempty = 0
    with unit_of_work(db, write=False) as repo:
        for aid in sorted(agents):
            head = repo.get_agent(aid).head_version
            rows = repo.session.execute(select(Version.created_at).where(
                Version.agent_id == aid)).scalars().all()
            # every distinct cutoff: just after each version, and after all of them
            for at in sorted(set(rows)):
                cutoff = at + timedelta(microseconds=1)
                old_snaps = set(repo.session.scalars(select(Version.version).where(
                    Version.agent_id == aid, Version.has_snapshot.is_(True),
                    Version.status == "ok", Version.created_at < cutoff)))
                want = _reference(repo, aid, head, old_snaps, cutoff)
                got = repo.event_retention._prunable(aid, head, old_snaps, cutoff)
                assert got == want, (aid, cutoff)
                compared += 1
                nonempty += bool(want)
    assert compared > 10 and nonempty > 3
