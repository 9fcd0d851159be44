"""Property tests (hypothesis) on SQLite and PostgreSQL: random sequences of commits,
snapshots, rollbacks, forgets, forks and retention.

1. With Gaussian (inexact) deltas in random forms and dtypes, the state rebuilt at every
   version equals, bit for bit, the state the learner had when it committed that version.
2. With the dyadic event rule (exact in floating point whatever the grouping), after any
   forget the head equals a learner that never saw the forgotten events, replaying the kept
   history one event at a time from the empty state.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.memory.delta import apply_delta
from storage.errors import ForgottenEvents, UnknownEvents, VersionThinned
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
SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


def _new_agent(repo):
    tenant, _ = repo.create_tenant("t")
    st0 = empty_state()
    return tenant.id, repo.create_agent(tenant.id, "a", {}, *st0, checksum(st0),
                                        created_at=T0).id


@SETTINGS
@given(data=st.data())
def test_rebuild_at_every_version_is_bit_identical(db, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    with unit_of_work(db) as repo:
        tenant, agent_id = _new_agent(repo)
    agents = {agent_id: {0: empty_state()}}  # agent → version → expected state
    heads = {agent_id: 0}
    clock = [T0]
    for _ in range(data.draw(st.integers(3, 14), label="steps")):
        aid = data.draw(st.sampled_from(list(agents)), label="agent")
        expect, head = agents[aid], heads[aid]
        op = data.draw(st.sampled_from(["commit"] * 4 + ["snapshot", "rollback", "pin",
                                                         "fork", "retention"]), label="op")
        clock[0] += timedelta(seconds=1)
        with unit_of_work(db) as repo:
            if op == "commit":
                cur = expect[head]
                new_labels = [f"l{len(cur[1])}"] if data.draw(st.booleans()) else []
                d = random_delta(rng, *cur, new_labels,
                                 dtype=data.draw(st.sampled_from(["float16", "float32",
                                                                  "float64"])),
                                 dense=data.draw(st.booleans()))
                new = (apply_delta(cur[0], d), cur[1] + new_labels)  # the learner's op
                v = repo.commit_version(aid, head, delta=d, checksum=checksum(new),
                                        created_at=clock[0],
                                        snapshot=new if data.draw(st.booleans()) else None)
                expect[v.version] = new
                heads[aid] = v.version
            elif op == "snapshot":
                v = data.draw(st.sampled_from(sorted(expect)))
                try:
                    repo.write_snapshot(aid, v, *expect[v])
                except Exception:  # thinned versions keep their status; others must work
                    assert repo.get_version(aid, v).status == "thinned"
            elif op == "rollback":
                v = data.draw(st.sampled_from(sorted(expect)))
                try:
                    rb = repo.rollback(aid, v, created_at=clock[0])
                except VersionThinned:
                    assert repo.get_version(aid, v).status == "thinned"
                    continue
                expect[rb.version] = expect[v]
                heads[aid] = rb.version
            elif op == "pin":
                repo.pin_version(aid, data.draw(st.sampled_from(sorted(expect))))
            elif op == "fork":
                v = data.draw(st.sampled_from(sorted(expect)))
                try:
                    fork = repo.fork(aid, v, "f", tenant, created_at=clock[0])
                except VersionThinned:
                    continue
                agents[fork.id] = {0: expect[v]}
                heads[fork.id] = 0
            else:
                repo.apply_retention(aid, data.draw(st.sampled_from([0, 2, 5])), now=clock[0],
                                     snapshot_spacing_s=data.draw(
                                         st.sampled_from([None, None, 1.0, 4.0])))
    with unit_of_work(db, write=False) as repo:
        for aid, expect in agents.items():
            assert repo.get_agent(aid).head_version == heads[aid]
            rows = {r.version: r for r in repo.list_versions(aid)}
            assert sorted(rows) == sorted(expect)
            for v, state in expect.items():
                if rows[v].status == "thinned":
                    assert not (rows[v].pinned or rows[v].has_snapshot or v == heads[aid])
                    continue
                assert same_state(repo.load_state(aid, v), state), (aid, v)


@SETTINGS
@given(data=st.data())
def test_forget_equals_a_learner_that_never_saw_the_events(db, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    with unit_of_work(db) as repo:
        tenant, agent_id = _new_agent(repo)
    # per agent: version → (expected state, history as client ids)
    model = {agent_id: {0: (empty_state(), [])}}
    heads = {agent_id: 0}
    payloads: dict[str, dict[str, dict]] = {agent_id: {}}
    forgotten: dict[str, set[str]] = {agent_id: set()}
    counter = [0]
    for _ in range(data.draw(st.integers(3, 12), label="steps")):
        aid = data.draw(st.sampled_from(list(model)), label="agent")
        versions, head = model[aid], heads[aid]
        op = data.draw(st.sampled_from(["learn"] * 4 + ["snapshot", "rollback", "forget",
                                                        "forget", "fork"]), label="op")
        with unit_of_work(db) as repo:
            if op == "learn":
                n = data.draw(st.integers(1, 4))
                evs = []
                for _ in range(n):
                    counter[0] += 1
                    evs.append({"id": f"e{counter[0]}", **event_payload(rng, ["a", "b", "c"])})
                repo.append_events(aid, evs)
                payloads[aid].update({e["id"]: {k: v for k, v in e.items() if k != "id"}
                                      for e in evs})
                pending = repo.pending_events(aid, limit=data.draw(st.integers(1, 6)))
                (cur, hist) = versions[head]
                dense = data.draw(st.booleans())
                dtype = "float64" if dense else data.draw(st.sampled_from(["float16",
                                                                           "float64"]))
                d = batch_delta(*cur, [e.payload for e in pending], dtype, dense)
                new = (apply_delta(cur[0], d), cur[1] + d.labels_added)
                # the learner that applies one event at a time agrees bit for bit
                assert same_state(new, replay(*cur, [e.payload for e in pending]))
                v = repo.commit_version(aid, head, delta=d, event_seqs=[e.seq for e in pending],
                                        checksum=checksum(new))
                versions[v.version] = (new, hist + [e.client_id for e in pending])
                heads[aid] = v.version
            elif op == "snapshot":
                v = data.draw(st.sampled_from(sorted(versions)))
                if set(versions[v][1]) & forgotten[aid]:  # erased by the forget
                    with pytest.raises(ForgottenEvents):
                        repo.write_snapshot(aid, v, *versions[v][0])
                    continue
                repo.write_snapshot(aid, v, *versions[v][0])
            elif op == "rollback":
                v = data.draw(st.sampled_from(sorted(versions)))
                if set(versions[v][1]) & forgotten[aid]:
                    try:
                        repo.rollback(aid, v)
                        raise AssertionError("rollback to a version with forgotten events")
                    except ForgottenEvents:
                        continue
                rb = repo.rollback(aid, v)
                versions[rb.version] = versions[v]
                heads[aid] = rb.version
            elif op == "forget":
                known = sorted(payloads[aid])
                if not known:
                    continue
                ids = data.draw(st.lists(st.sampled_from(known), min_size=1, max_size=3,
                                         unique=True))
                if data.draw(st.integers(0, 4)) == 0:
                    try:
                        repo.forget(aid, ids + ["missing"], replay)
                        raise AssertionError("unknown id accepted")
                    except UnknownEvents as exc:
                        assert exc.ids == ["missing"]
                        continue
                res = repo.forget(aid, ids, replay)
                forgotten[aid] |= set(ids)
                kept = [c for c in versions[head][1] if c not in forgotten[aid]]
                never_saw = replay(*empty_state(), [payloads[aid][c] for c in kept])
                assert same_state(repo.load_state(aid, res.version.version), never_saw)
                versions[res.version.version] = (never_saw, kept)
                heads[aid] = res.version.version
            else:
                v = data.draw(st.sampled_from(sorted(versions)))
                if set(versions[v][1]) & forgotten[aid]:
                    continue
                fork = repo.fork(aid, v, "f", tenant)
                model[fork.id] = {0: versions[v]}
                heads[fork.id] = 0
                payloads[fork.id] = {c: payloads[aid][c] for c in versions[v][1]}
                forgotten[fork.id] = set()
    with unit_of_work(db, write=False) as repo:
        for aid, versions in model.items():
            assert repo.get_agent(aid).head_version == heads[aid]
            for v, (state, hist) in versions.items():
                if set(hist) & forgotten[aid]:  # erased: its stored arrays are gone
                    with pytest.raises(ForgottenEvents):
                        repo.load_state(aid, v)
                else:
                    assert same_state(repo.load_state(aid, v), state), (aid, v)
                assert [e.client_id for e in repo.event_history(aid, v)] == hist, (aid, v)
