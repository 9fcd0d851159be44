"""The repository on SQLite and PostgreSQL: tenants and keys, idempotent events, atomic
commits, rebuilds with checksum verification, rollback, as-of, fork, forget, retention, and
bad input that changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import func, select, update

from agent.memory.delta import Delta, LayerDelta, apply_delta
from storage.errors import (
    AgentNotFound,
    ChecksumMismatch,
    CorruptData,
    ForgottenEvents,
    InputError,
    UnknownEvents,
    VersionConflict,
    VersionNotFound,
    VersionThinned,
)
from storage.models import DeltaRow, Event, SnapshotLayer, Version, agent_key_of
from storage.repository import unit_of_work
from tests.db_fixtures import *  # noqa: F401,F403
from tests.storage_helpers import (
    batch_delta,
    checksum,
    empty_state,
    event_payload,
    random_delta,
    replay,
    same_state,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def make_agent(db, name="a"):
    with unit_of_work(db) as repo:
        tenant, key = repo.create_tenant("acme")
        layers, labels = empty_state()
        agent = repo.create_agent(tenant.id, name, {"kind": "classifier"}, layers, labels,
                                  checksum((layers, labels)), created_at=T0)
        return tenant.id, agent.id, key


def learn(db, agent_id, n_commits, rng, t0=T0, per=3, snapshot_every=0):
    """Ingest and commit ``n_commits`` micro-batches; returns {version: expected state}."""
    states = {}
    with unit_of_work(db) as repo:
        states[0] = repo.load_state(agent_id, 0)
    for i in range(n_commits):
        with unit_of_work(db) as repo:
            agent = repo.get_agent(agent_id)
            head = agent.head_version
            repo.append_events(agent_id, [event_payload(rng, ["x", "y", "z"]) for _ in range(per)])
            pending = repo.pending_events(agent_id)
            st = states.get(head) or repo.load_state(agent_id, head)
            d = batch_delta(*st, [e.payload for e in pending], "float64", dense=bool(i % 2))
            new = (apply_delta(st[0], d), st[1] + d.labels_added)
            v = repo.commit_version(agent_id, head, "delta", delta=d,
                                    event_seqs=[e.seq for e in pending], checksum=checksum(new),
                                    created_at=t0 + timedelta(seconds=i + 1),
                                    snapshot=new if snapshot_every and (i + 1) % snapshot_every == 0
                                    else None)
            states[v.version] = new
    return states


def test_tenants_and_keys(db):
    with unit_of_work(db) as repo:
        t1, k1 = repo.create_tenant("one")
        t2, k2 = repo.create_tenant("two")
        k1b = repo.create_key(t1.id)
    with unit_of_work(db) as repo:
        assert k1.startswith("dm_") and len(k1) > 40 and k1 != k1b
        assert repo.tenant_for_key(k1).id == t1.id and repo.tenant_for_key(k1b).id == t1.id
        assert repo.tenant_for_key(k2).id == t2.id
        assert repo.tenant_for_key("dm_nope") is None and repo.tenant_for_key("") is None
        assert {t.name for t in repo.list_tenants()} == {"one", "two"}
        from storage.models import ApiKey
        assert k1 not in {row.key_hash for row in repo.session.scalars(select(ApiKey))}
        assert repo.revoke_key(k1b) and repo.tenant_for_key(k1b) is None
    with pytest.raises(InputError, match="name"), unit_of_work(db) as repo:
        repo.create_tenant("  ")


def test_tenant_isolation(db):
    tenant_a, agent_id, _ = make_agent(db)
    with unit_of_work(db) as repo:
        other, _ = repo.create_tenant("other")
        assert repo.get_agent(agent_id, tenant_a).id == agent_id
        with pytest.raises(AgentNotFound):
            repo.get_agent(agent_id, other.id)
        with pytest.raises(AgentNotFound):
            repo.fork(agent_id, 0, "stolen", other.id)
        assert repo.list_agents(other.id) == []
        assert [a.id for a in repo.list_agents(tenant_a)] == [agent_id]


def test_agents_by_ids_equals_one_lookup_per_id(db):
    """The batch lookup (predict_batch's) against get_agent per id, over more ids than one
    IN query takes: unknown ids and, with a tenant, other tenants' agents are left out."""
    tenant_a, first, _ = make_agent(db)
    layers, labels = empty_state()
    with unit_of_work(db) as repo:
        other, _ = repo.create_tenant("other")
        ids = [first] + [repo.create_agent(t, f"a{i}", {"kind": "classifier"}, layers, labels,
                                           checksum((layers, labels))).id
                         for i, t in enumerate([tenant_a, other.id] * 3)]
    asked = ids + [f"ag_unknown{i}" for i in range(600)] + ids[:2]  # > 500 ids, repeats
    with unit_of_work(db, write=False) as repo:
        for tenant in (None, tenant_a, other.id):
            want = {}
            for a in dict.fromkeys(asked):
                try:
                    want[a] = repo.get_agent(a, tenant).tenant_id
                except AgentNotFound:
                    pass
            got = repo.agents_by_ids(asked, tenant)
            assert {a: row.tenant_id for a, row in got.items()} == want
            assert all(row.id == a for a, row in got.items())
        assert len(repo.agents_by_ids(asked)) == 7 and repo.agents_by_ids([]) == {}


def test_events_are_idempotent_and_ordered(db):
    _, agent_id, _ = make_agent(db)
    with unit_of_work(db) as repo:
        acc, dup = repo.append_events(agent_id, [
            {"id": "e1", "input": "hi", "target": "x"}, {"id": "e2", "input": [0.5], "target": "y"},
            {"id": "e1", "input": "again", "target": "z"}, {"input": "no id", "target": "x",
                                                          "ts": T0}])
        assert [e.client_id for e in acc][:2] == ["e1", "e2"] and dup == ["e1"]
        assert acc[2].client_id.startswith("ev_") and acc[2].payload["ts"] == T0.isoformat()
        assert [e.seq for e in acc] == [1, 2, 3]
    with unit_of_work(db) as repo:
        acc, dup = repo.append_events(agent_id, [{"id": "e2", "input": "x", "target": "x"},
                                                 {"id": "e3", "input": "x", "target": "x"}])
        assert [e.seq for e in acc] == [4] and dup == ["e2"]
        assert [e.client_id for e in repo.pending_events(agent_id, limit=2)] == ["e1", "e2"]
        agent = repo.get_agent(agent_id)
        assert (agent.events_received, agent.events_applied) == (4, 0)
        assert repo.events_by_ids(agent_id, ["e1"])[0].payload == {"input": "hi", "target": "x"}


@pytest.mark.parametrize("bad,field", [
    ([{"id": 3, "input": "x"}], "events[0].id"), ([{"id": "ok"}, "nope"], "events[1]"),
    ([{"id": "x" * 201}], "events[0].id"), ([{"input": [float("nan")]}], "events[0]"),
    ("not a list", "events")])
def test_bad_events_change_nothing(db, bad, field):
    _, agent_id, _ = make_agent(db)
    with pytest.raises(InputError) as err, unit_of_work(db) as repo:
        repo.append_events(agent_id, bad)
    assert err.value.field == field
    with unit_of_work(db) as repo:
        assert repo.events_of(agent_id) == [] and repo.get_agent(agent_id).events_received == 0


def test_unknown_agent_and_version(db):
    _, agent_id, _ = make_agent(db)
    with unit_of_work(db) as repo:
        with pytest.raises(AgentNotFound):
            repo.append_events("ag_nope", [{"input": "x"}])
        with pytest.raises(VersionNotFound):
            repo.load_state(agent_id, 5)
        with pytest.raises(VersionNotFound) as err:
            repo.version_as_of(agent_id, T0 - timedelta(days=1))
        assert err.value.field == "as_of"


def test_commit_rebuild_list_as_of(db):
    _, agent_id, _ = make_agent(db)
    rng = np.random.default_rng(1)
    states = learn(db, agent_id, 6, rng, snapshot_every=3)
    with unit_of_work(db) as repo:
        for v, st in states.items():
            assert same_state(repo.load_state(agent_id, v), st), v
        agent = repo.get_agent(agent_id)
        assert (agent.head_version, agent.events_received, agent.events_applied) == (6, 18, 18)
        rows = repo.list_versions(agent_id, limit=3, before=6)
        assert [r.version for r in rows] == [5, 4, 3]
        d = rows[0].as_dict()
        assert d["parent"] == 4 and d["kind"] == "delta" and d["events"] == 3 and d["delta_norm"] > 0
        assert rows[2].has_snapshot and not rows[1].has_snapshot
        assert repo.version_as_of(agent_id, T0 + timedelta(seconds=4.5)) == 4
        assert repo.version_as_of(agent_id, T0) == 0
        assert [a.text for a in repo.answers(agent_id)] == states[6][1]
        assert repo.pending_events(agent_id) == []


def test_commit_validations_change_nothing(db):
    _, agent_id, _ = make_agent(db)
    rng = np.random.default_rng(2)
    with unit_of_work(db) as repo:
        repo.append_events(agent_id, [event_payload(rng, ["x"]) for _ in range(3)])
        st = repo.load_state(agent_id, 0)
    d = random_delta(rng, *st, ["x"])
    good = (apply_delta(st[0], d), ["x"])
    cases = [
        (dict(parent_version=0, kind="delta", delta=d, event_seqs=[2], checksum=checksum(good)),
         "event_seqs"),  # skips the oldest pending
        (dict(parent_version=0, kind="delta", delta=d, event_seqs=[9], checksum=checksum(good)),
         "event_seqs"),
        (dict(parent_version=0, kind="delta", delta=d, checksum="abc"), "checksum"),
        (dict(parent_version=0, kind="weird", delta=d, checksum=checksum(good)), "kind"),
        (dict(parent_version=0, kind="snapshot", snapshot=(good[0], ["y"]),
              checksum=checksum(good)), "checksum"),
        (dict(parent_version=0, kind="delta", checksum=checksum(good)), "delta"),
        (dict(parent_version=0, kind="delta", delta=Delta({"S": LayerDelta.of_dense(
            np.full((1, 4), np.nan))}, ["x"]), checksum=checksum(good)), "delta.layers.S"),
    ]
    for kwargs, field in cases:
        with pytest.raises(InputError) as err, unit_of_work(db) as repo:
            repo.commit_version(agent_id, **kwargs)
        assert err.value.field == field, kwargs
    with pytest.raises(VersionConflict), unit_of_work(db) as repo:
        repo.commit_version(agent_id, 1, delta=d, checksum=checksum(good))
    with unit_of_work(db) as repo:
        assert repo.get_agent(agent_id).head_version == 0
        assert [v.version for v in repo.list_versions(agent_id)] == [0]
        assert len(repo.pending_events(agent_id)) == 3


def test_interrupted_commit_leaves_no_partial_version(db):
    _, agent_id, _ = make_agent(db)
    rng = np.random.default_rng(3)
    with unit_of_work(db) as repo:
        repo.append_events(agent_id, [event_payload(rng, ["x"]) for _ in range(2)])
        st = repo.load_state(agent_id, 0)
    d = random_delta(rng, *st, ["x"])
    new = (apply_delta(st[0], d), ["x"])
    with pytest.raises(RuntimeError, match="crash"), unit_of_work(db) as repo:
        v = repo.commit_version(agent_id, 0, delta=d, event_seqs=[1, 2], checksum=checksum(new),
                                snapshot=new)
        assert v.version == 1 and repo.get_agent(agent_id).head_version == 1
        raise RuntimeError("crash after the writes, before the commit")
    with unit_of_work(db) as repo:
        s = repo.session
        assert s.scalar(select(func.count()).select_from(Version)) == 1
        assert s.scalar(select(func.count()).select_from(DeltaRow)) == 0
        assert s.scalar(select(func.count()).select_from(SnapshotLayer)) == 2  # version 0's
        agent = repo.get_agent(agent_id)
        assert (agent.head_version, agent.events_applied) == (0, 0)
        assert len(repo.pending_events(agent_id)) == 2 and repo.answers(agent_id) == []
        # and the same commit goes through afterwards
        assert repo.commit_version(agent_id, 0, delta=d, event_seqs=[1, 2],
                                   checksum=checksum(new)).version == 1


def test_corrupted_bytes_and_wrong_checksum_are_detected(db):
    _, agent_id, _ = make_agent(db)
    states = learn(db, agent_id, 3, np.random.default_rng(4))
    with unit_of_work(db) as repo:
        row = repo.session.scalars(select(DeltaRow).where(DeltaRow.version == 2)).first()
        data = bytearray(row.data)
        data[5] ^= 0x40
        row.data = bytes(data)
    with pytest.raises(CorruptData, match="version 2 delta"), unit_of_work(db) as repo:
        repo.load_state(agent_id, 3)
    with unit_of_work(db) as repo:
        assert same_state(repo.load_state(agent_id, 1), states[1])  # unaffected
        repo.session.execute(update(Version).where(Version.version == 1)
                             .values(checksum="0" * 64))
    with pytest.raises(ChecksumMismatch) as err, unit_of_work(db) as repo:
        repo.load_state(agent_id, 1)
    assert err.value.version == 1


def test_rollback_then_learning_continues_on_the_rolled_back_state(db):
    _, agent_id, _ = make_agent(db)
    states = learn(db, agent_id, 4, np.random.default_rng(5))
    with unit_of_work(db) as repo:
        rb = repo.rollback(agent_id, 2)
        assert (rb.version, rb.kind, rb.state_of, rb.checksum) == (5, "rollback", 2,
                                                                    checksum(states[2]))
    more = learn(db, agent_id, 2, np.random.default_rng(6), t0=T0 + timedelta(hours=1))
    with unit_of_work(db) as repo:
        assert same_state(repo.load_state(agent_id, 5), states[2])
        assert same_state(repo.load_state(agent_id, 4), states[4])  # still readable
        assert same_state(repo.load_state(agent_id, 7), more[7])
        hist = [e.client_id for e in repo.event_history(agent_id, 7)]
        assert len(hist) == 2 * 3 + 2 * 3 and hist == sorted(hist, key=lambda c: [
            e.seq for e in repo.events_by_ids(agent_id, [c])][0])
        with pytest.raises(VersionNotFound):
            repo.rollback(agent_id, 99)


def test_fork_and_forget(db):
    tenant, agent_id, _ = make_agent(db)
    rng = np.random.default_rng(7)
    states = learn(db, agent_id, 4, rng, snapshot_every=2)
    with unit_of_work(db) as repo:
        ids = [e.client_id for e in repo.event_history(agent_id, 4)]
        fork = repo.fork(agent_id, 3, "f", tenant)
        assert fork.base_agent_id == agent_id and fork.base_version == 3
        assert same_state(repo.load_state(fork.id, 0), states[3])
        assert [e.client_id for e in repo.event_history(fork.id, 0)] == ids[:9]
        with pytest.raises(UnknownEvents) as err:
            repo.forget(fork.id, [ids[0], "nope", ids[11]], replay)
        assert err.value.ids == [ids[11], "nope"]
    with unit_of_work(db) as repo:  # nothing changed
        assert repo.get_agent(fork.id).head_version == 0
        res = repo.forget(fork.id, [ids[1]], replay)
        assert res.events_removed == 1 and res.version.kind == "forget"
        root = empty_state()
        expected = replay(*root, [e.payload for e in repo.events_of(agent_id)
                                  if e.client_id in ids[:9] and e.client_id != ids[1]])
        assert same_state(repo.load_state(fork.id, 1), expected)
        assert same_state(repo.load_state(agent_id, 4), states[4])  # source untouched
        res2 = repo.forget(agent_id, [ids[10]], replay)  # after the snapshot at version 2
        assert res2.from_version == (agent_id, 2) and res2.events_replayed == 5
        expected = replay(*states[2], [e.payload for e in repo.events_of(agent_id)
                                       if e.client_id in ids[6:] and e.client_id != ids[10]])
        assert same_state(repo.load_state(agent_id, 5), expected)
        with pytest.raises(ForgottenEvents):
            repo.rollback(agent_id, 4)
        with pytest.raises(ForgottenEvents):
            repo.fork(agent_id, 4, "g", tenant)
        assert repo.rollback(agent_id, 3).state_of == 3  # before the forgotten event


def test_forget_drops_pending_events(db):
    _, agent_id, _ = make_agent(db)
    learn(db, agent_id, 1, np.random.default_rng(8))
    with unit_of_work(db) as repo:
        acc, _ = repo.append_events(agent_id, [{"id": "p1", "input": [0.5] * 4, "target": "x",
                                                "beta": 0.5, "gamma": 1.0}])
        res = repo.forget(agent_id, ["p1"], replay)
        assert (res.events_removed, res.pending_dropped) == (0, 1)
        assert repo.pending_events(agent_id) == []
        a = repo.get_agent(agent_id)  # counted as if never received: received = applied + pending
        assert a.events_received == a.events_applied + a.events_rejected
        _, dup = repo.append_events(agent_id, [{"id": "p1", "input": [0.5] * 4}])
        assert dup == ["p1"]  # a forgotten id stays taken


def test_retention_thins_only_covered_old_unpinned_deltas(db):
    _, agent_id, _ = make_agent(db)
    states = learn(db, agent_id, 8, np.random.default_rng(9), snapshot_every=4)
    with unit_of_work(db) as repo:
        repo.pin_version(agent_id, 2)
        # a 1.5 s window keeps 7 and 8; 7 needs the deltas of 5 and 6 (snapshot at 4);
        # pinned 2 needs 1 and 2; only 3 goes
        report = repo.apply_retention(agent_id, keep_window_s=1.5,
                                      now=T0 + timedelta(seconds=8))
        assert report.dropped == [3] and report.thinned == [3] and report.bytes_freed > 0
        report = repo.apply_retention(agent_id, keep_window_s=0.5,
                                      now=T0 + timedelta(seconds=8))
        assert report.dropped == [5, 6, 7] and report.thinned == [5, 6, 7]
        for v in (0, 1, 2, 4, 8):
            assert same_state(repo.load_state(agent_id, v), states[v]), v
        for v in (3, 5, 6, 7):
            with pytest.raises(VersionThinned):
                repo.load_state(agent_id, v)
        assert {r.version: r.status for r in repo.list_versions(agent_id)}[5] == "thinned"
        assert repo.apply_retention(agent_id, 0, now=T0 + timedelta(days=8)).dropped == []
        with pytest.raises(VersionThinned):
            repo.rollback(agent_id, 5)


def test_retention_thins_old_snapshots_to_one_per_slot_keeping_what_versions_need(db):
    _, agent_id, _ = make_agent(db)
    states = learn(db, agent_id, 16, np.random.default_rng(5), snapshot_every=2)
    with unit_of_work(db) as repo:
        repo.pin_version(agent_id, 5)
        # window 1.5 s at 16 s keeps 15 and 16 (15 builds on snapshot 14, also the newest
        # one before the window on the head's path); pinned 5 builds on 4; slots of 8 s hold
        # versions 0-7, 8-15: the first old snapshot of each stays (0, the empty state, and
        # 8), the rest go
        report = repo.apply_retention(agent_id, keep_window_s=1.5,
                                      now=T0 + timedelta(seconds=16), snapshot_spacing_s=8.0)
        assert report.snapshots_dropped == (2, 6, 10, 12)
        rows = {r.version: r for r in repo.list_versions(agent_id)}
        assert sorted(v for v, r in rows.items() if r.has_snapshot) == [0, 4, 8, 14, 16]
        for v, r in rows.items():
            if r.status == "ok":
                assert same_state(repo.load_state(agent_id, v), states[v]), v
            else:
                with pytest.raises(VersionThinned):
                    repo.load_state(agent_id, v)
        assert {0, 4, 5, 8, 14, 15, 16} <= {v for v, r in rows.items() if r.status == "ok"}
        assert {2, 6, 10, 12} <= {v for v, r in rows.items() if r.status == "thinned"}
        n = repo.session.scalar(select(func.count()).select_from(SnapshotLayer))
        again = repo.apply_retention(agent_id, keep_window_s=1.5,
                                     now=T0 + timedelta(seconds=16), snapshot_spacing_s=8.0)
        assert again.snapshots_dropped == () and \
            repo.session.scalar(select(func.count()).select_from(SnapshotLayer)) == n


def test_write_snapshot_checks_the_state(db):
    _, agent_id, _ = make_agent(db)
    states = learn(db, agent_id, 3, np.random.default_rng(10))
    with unit_of_work(db) as repo:
        with pytest.raises(InputError, match="checksum"):
            repo.write_snapshot(agent_id, 2, *states[1])
        assert repo.write_snapshot(agent_id, 2, *states[2]).has_snapshot
        repo.write_snapshot(agent_id, 2, *states[2])  # idempotent
        assert same_state(repo.load_state(agent_id, 3), states[3])


def test_event_rows_survive_in_order(db):
    _, agent_id, _ = make_agent(db)
    learn(db, agent_id, 2, np.random.default_rng(11))
    with unit_of_work(db) as repo:
        rows = [(e.seq, v) for e, v in repo.applied_events(agent_id)]
        assert rows == [(1, 1), (2, 1), (3, 1), (4, 2), (5, 2), (6, 2)]
        # marked by the versions' seq ranges, not on the rows (applied.py)
        assert repo.session.scalar(select(func.count()).select_from(Event).where(
            Event.agent_key == agent_key_of(agent_id), Event.applied_version.is_not(None))) == 0
