"""The version horizon (storage/repository/horizon.py) on SQLite and PostgreSQL: on random
histories of commits, snapshots, rollbacks, forgets and forks, folded at cutoff after cutoff,
every version it keeps loads the same state and has the same event history as before (the
reference: both read from the unfolded history), every version it deletes answers as thinned
(load, status, rollback, ``as_of``), and a forget afterwards equals the replay of the kept
events from the empty state. Pins and forks below the covering snapshot hold the root back."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import func, select

from agent.memory.delta import apply_delta
from storage.errors import ForgottenEvents, VersionThinned
from storage.models import Event, Version, agent_key_of
from storage.repository import unit_of_work
from tests.db_fixtures import *  # noqa: F401,F403
from tests.storage_helpers import batch_delta, checksum, empty_state, event_payload, replay
from tests.test_storage_labels import _random_history


def _load(repo, aid, v):
    try:
        return checksum(repo.load_state(aid, v))
    except (VersionThinned, ForgottenEvents) as e:
        return type(e).__name__


def _before(repo, aid):
    """Per version: (created_at, what loading it gives, its event history as client ids)."""
    vmap = repo.graph.vmap(aid)
    ids = dict(repo.session.execute(select(Event.seq, Event.client_id).where(
        Event.agent_key == agent_key_of(aid))).all())
    return {v: (repo.session.scalar(select(Version.created_at).where(
        Version.agent_id == aid, Version.version == v)), _load(repo, aid, v),
        [ids[s] for s in repo.graph.history(aid, vmap, v)]) for v in vmap}


def _fold(db, aid, now) -> int:
    deleted, more = 0, True
    while more:  # a few versions a call, as the job's short transactions
        with unit_of_work(db) as repo:
            k, more = repo.fold_history(aid, 0.0, now, limit=3)
        deleted += k
    return deleted


def _check(repo, aid, before) -> int:
    root = repo.graph.history_start(aid)
    vmap = repo.graph.vmap(aid)
    ids = dict(repo.session.execute(select(Event.seq, Event.client_id).where(
        Event.agent_key == agent_key_of(aid))).all())
    for v, (at, loaded, hist) in before.items():
        if v == 0 or v >= root:
            assert v in vmap, (aid, v)
            assert _load(repo, aid, v) == loaded, (aid, v)
            if v >= root:
                assert [ids[s] for s in repo.graph.history(aid, vmap, v)] == hist, (aid, v)
        else:
            assert v not in vmap, (aid, v)
            assert repo.version_status(aid, v) == "thinned"
            with pytest.raises(VersionThinned):
                repo.load_state(aid, v)
            with pytest.raises(VersionThinned):
                repo.rollback(aid, v)
            with pytest.raises(VersionThinned):
                repo.version_as_of(aid, at)
    return root


@pytest.mark.parametrize("seed", [300, 302, 304, 305])  # histories where some agent folds
def test_folded_histories_load_and_forget_as_before(db, seed):
    agents = _random_history(db, seed, steps=40)
    roots = []
    for aid in sorted(agents):
        with unit_of_work(db, write=False) as repo:
            before = _before(repo, aid)
            head = repo.get_agent(aid).head_version
        times = sorted(at for at, _, _ in before.values())
        for at in times[1::3] + [times[-1]]:  # cutoffs after cutoffs
            _fold(db, aid, at + timedelta(microseconds=1))
            with unit_of_work(db, write=False) as repo:
                roots.append(_check(repo, aid, before))
        with unit_of_work(db) as repo:  # forget after the fold: the replay of what is kept
            hist = before[head][2]
            if not hist or repo.get_agent(aid).head_version != head:
                continue
            gone = hist[len(hist) // 2]
            payload = {e.client_id: e.payload for e in repo.session.scalars(select(Event).where(
                Event.agent_key == agent_key_of(aid)))}
            kept = [c for c in hist if c != gone]
            got = repo.forget(aid, [gone], replay).version
            assert got.checksum == checksum(replay(*empty_state(), [payload[c] for c in kept]))
        if len(kept) > 1:  # again, through the root the first forget may have erased
            with unit_of_work(db) as repo:
                again = kept[len(kept) // 3]
                got = repo.forget(aid, [again], replay).version
                want = replay(*empty_state(), [payload[c] for c in kept if c != again])
                assert got.checksum == checksum(want)
                assert [i.version for i in repo.graph.walk(aid, got.version)][-1] in (0, roots[-1])
    assert max(roots) > 1  # some history was folded


def _commit(db, aid: str, state, rng, snapshot: bool):
    """One event learnt onto the head as a new version; returns the new state."""
    with unit_of_work(db) as repo:
        head = repo.get_agent(aid).head_version
        repo.append_events(aid, [{"id": f"e{head + 1}", **event_payload(rng, ["x", "y"])}])
        pending = repo.pending_events(aid)
        d = batch_delta(*state, [e.payload for e in pending], "float64", False)
        state = (apply_delta(state[0], d), state[1] + d.labels_added)
        repo.commit_version(aid, head, delta=d, event_seqs=[e.seq for e in pending],
                            checksum=checksum(state), snapshot=state if snapshot else None)
    return state


def _root_after_fold(db, aid) -> int:
    with unit_of_work(db, write=False) as repo:
        last = repo.session.scalar(select(func.max(Version.created_at)).where(
            Version.agent_id == aid))
    _fold(db, aid, last + timedelta(seconds=1))
    with unit_of_work(db, write=False) as repo:
        return repo.graph.history_start(aid)


def test_pins_forks_and_branches_hold_the_root_back(db):
    rng = np.random.default_rng(0)
    with unit_of_work(db) as repo:
        tenant = repo.create_tenant("t")[0].id
        state = empty_state()
        aid = repo.create_agent(tenant, "a", {}, *state, checksum(state)).id
    for v in range(1, 9):
        state = _commit(db, aid, state, rng, snapshot=v in (4, 6))
    with unit_of_work(db) as repo:
        repo.pin_version(aid, 2)
    assert _root_after_fold(db, aid) == 1  # a pin below the covering snapshot (6)
    with unit_of_work(db) as repo:
        repo.pin_version(aid, 2, False)
        fork = repo.fork(aid, 3, "f", tenant).id
    assert _root_after_fold(db, aid) == 1  # the fork's base
    with unit_of_work(db) as repo:
        repo.session.delete(repo.get_agent(fork))
        repo.rollback(aid, 2)  # version 9: a branch from below 6, left by version 10
        repo.rollback(aid, 8)
    assert _root_after_fold(db, aid) == 1
    state = _commit(db, aid, state, rng, snapshot=True)  # version 11 covers the branch
    assert _root_after_fold(db, aid) == 11
    with unit_of_work(db, write=False) as repo:  # /metrics' versions committed: 0..11 still
        assert repo.session.scalar(select(func.count()).select_from(Version)) == 2
        assert repo.totals()["versions"] == 12
    for snap in (True, False):  # versions 12 (a snapshot) and 13
        state = _commit(db, aid, state, rng, snapshot=snap)
    with unit_of_work(db) as repo:  # old snapshots thinned to one a day: the root's stays
        later = repo.get_version(aid, 11).created_at + timedelta(days=2)
        repo.apply_retention(aid, 0.0, later, snapshot_spacing_s=86400.0)
        assert repo.get_version(aid, 11).has_snapshot
    with unit_of_work(db) as repo:
        with pytest.raises(VersionThinned):
            repo.rollback(aid, 9)
        assert _load(repo, aid, 13) == checksum(state)
        v = repo.rollback(aid, 13).version
        assert _load(repo, aid, v) == checksum(state)
        assert [i.version for i in repo.graph.walk(aid, v)] == [v, 13, 12, 11]


def test_events_of_a_branch_below_the_root_are_pruned(db):
    """A rollback leaves a branch; once the horizon deletes its versions, its events are in
    no state that is left, and event retention deletes their rows (before: kept forever)."""
    rng = np.random.default_rng(3)
    with unit_of_work(db) as repo:
        tenant = repo.create_tenant("t")[0].id
        state = empty_state()
        aid = repo.create_agent(tenant, "a", {}, *state, checksum(state)).id
    states = {0: state}
    for v in range(1, 5):  # 1..4; the branch 3, 4 is left by the rollback to 2 (version 5)
        state = states[v] = _commit(db, aid, state, rng, snapshot=v == 2)
    with unit_of_work(db) as repo:
        repo.rollback(aid, 2)
    state = states[2]
    for _ in range(3):  # 6, 7, 8 (8 a snapshot: the covering one)
        state = _commit(db, aid, state, rng, snapshot=_ == 2)
    with unit_of_work(db, write=False) as repo:
        branch = {e.client_id for e, v in repo.applied_events(aid) if v in (3, 4)}
    assert len(branch) == 2
    assert _root_after_fold(db, aid) == 8
    with unit_of_work(db) as repo:
        later = repo.get_version(aid, 8).created_at + timedelta(days=1)
        kept_before = {e.client_id for e in repo.events_of(aid)} - branch
        pruned, _ = repo.prune_events(aid, 60.0, later)
        left = {e.client_id for e in repo.events_of(aid)}
        start = repo.graph.history_start(aid)
        assert not any(0 < v < start for _, v in repo.applied_events(aid))
    assert not branch & left and pruned >= len(branch)
    assert left <= kept_before
    state = _commit(db, aid, state, rng, snapshot=False)  # 9: learning goes on
    with unit_of_work(db, write=False) as repo:
        assert _load(repo, aid, 9) == checksum(state)
