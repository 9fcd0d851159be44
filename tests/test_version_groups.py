"""Group commit of delta versions (storage/repository/version_groups.py), SQLite and PostgreSQL.

:func:`commit_delta_group` (many agents' micro-batches, one transaction, a few executemany
statements) stores exactly the rows that :meth:`commit_version` followed by
:meth:`record_quality` store, one agent after the other (the reference): on random groups of
random deltas (new labels now and then, tested or untested batches, batches of one event and
of many), two twin sets of agents fed the same events end with the same versions, quality
totals, deltas, applied events, heads, labels and answers; a stale parent or seqs that are not
the oldest pending ones raise what the reference raises and write nothing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from storage.errors import InputError, VersionConflict
from storage.models import Agent, Answer, DeltaRow, Version
from storage.repository import unit_of_work
from storage.repository.version_groups import commit_delta_group, prepare_delta
from tests.db_fixtures import *  # noqa: F401,F403
from tests.storage_helpers import empty_agents, random_delta

N_AGENTS = 4


def _plan(rng: np.random.Generator, labels: list[list[str]], pending: list[int]
          ) -> list[tuple[int, int, Any, str, list[bool] | None]]:
    """A random group: ``(agent index, events applied, delta, checksum, hits or None)``."""
    out = []
    for i in sorted(rng.choice(N_AGENTS, size=int(rng.integers(1, N_AGENTS + 1)),
                               replace=False)):
        if pending[i] == 0:
            continue
        k = int(rng.integers(1, pending[i] + 1))
        new = [f"L{len(labels[i]) + j}" for j in range(int(rng.integers(0, 3)))] \
            if rng.random() < 0.4 else []
        if new and rng.random() < 0.2 and labels[i]:
            new = [labels[i][0]]  # a label the agent has already: stored as the reference does
        delta = random_delta(rng, {}, labels[i], new, dtype=str(rng.choice(["float64",
                                                                            "float32"])))
        hits = None if rng.random() < 0.3 else [bool(x) for x in rng.random(k) < 0.6]
        out.append((int(i), k, delta, f"{int(rng.integers(2**62)):064x}", hits))
    return out


def _apply(repo, ids: list[str], plan, grouped: bool) -> None:
    heads = {a: repo.get_agent(a).head_version for a in ids}
    items = []
    for i, k, delta, sha, hits in plan:
        a = ids[i]
        seqs = [e.seq for e in repo.pending_events(a, limit=k)]
        items.append((a, heads[a], delta, seqs, sha, hits))
    if grouped:
        commit_delta_group(repo, [prepare_delta(a, h, d, s, sha, None, hits)
                                  for a, h, d, s, sha, hits in items])
        return
    for a, h, d, s, sha, hits in items:
        row = repo.commit_version(a, h, "delta", delta=d, event_seqs=s, checksum=sha)
        if hits is not None:
            repo.record_quality(a, row.version, hits, row)


def _rows(repo, agent_id: str) -> dict[str, Any]:
    s = repo.session
    v = [(r.version, r.parent, r.kind, r.state_of, r.event_count, r.checksum, r.delta_norm,
          r.labels_added, r.has_snapshot, r.pinned, r.status, r.hits, r.tested_total,
          r.hits_total) for r in s.scalars(select(Version).where(Version.agent_id == agent_id)
                                           .order_by(Version.version))]
    d = [(r.version, r.layer, r.form, r.gamma, r.d_v, r.d_k, r.rank, r.dtype, r.data, r.sha256)
         for r in s.scalars(select(DeltaRow).where(DeltaRow.agent_id == agent_id)
                            .order_by(DeltaRow.version, DeltaRow.layer))]
    e = [(r.client_id, r.seq, r.applied_version) for r in repo.events_of(agent_id)]
    ans = [(r.position, r.text, r.first_version) for r in s.scalars(
        select(Answer).where(Answer.agent_id == agent_id).order_by(Answer.position))]
    a = s.scalars(select(Agent).where(Agent.id == agent_id)).one()
    return {"versions": v, "deltas": d, "events": e, "answers": ans,
            "agent": (a.head_version, a.events_applied, a.events_received, a.labels)}


@pytest.mark.parametrize("seed", range(3))
def test_group_stores_what_commit_version_stores(db, seed):
    rng = np.random.default_rng(seed)
    with unit_of_work(db) as repo:
        tenant, _ = repo.create_tenant("t")
        ref = empty_agents(repo, tenant.id, "r", N_AGENTS)
        grp = empty_agents(repo, tenant.id, "g", N_AGENTS)
    labels: list[list[str]] = [[] for _ in range(N_AGENTS)]
    n_events = [0] * N_AGENTS
    for _ in range(8):
        for i in range(N_AGENTS):  # new events (the same ids for both twins)
            m = int(rng.integers(0, 6))
            evs = [{"id": f"e{n_events[i] + j}", "input": [1.0, 0.0, 0.0, 0.0], "target": "x"}
                   for j in range(m)]
            n_events[i] += m
            with unit_of_work(db) as repo:
                repo.append_events(ref[i], evs)
                repo.append_events(grp[i], evs)
        with unit_of_work(db) as repo:
            pending = [repo.get_agent(a).pending for a in ref]
        plan = _plan(rng, labels, pending)
        with unit_of_work(db) as repo:
            _apply(repo, ref, plan, grouped=False)
        with unit_of_work(db) as repo:
            _apply(repo, grp, plan, grouped=True)
        for i, _, delta, _, _ in plan:
            labels[i] = labels[i] + list(delta.labels_added)
    with unit_of_work(db, write=False) as repo:
        for r, g in zip(ref, grp, strict=True):
            assert _rows(repo, g) == _rows(repo, r)
        assert any(_rows(repo, g)["answers"] for g in grp)
        assert any(v[12] is not None for g in grp for v in _rows(repo, g)["versions"])


def test_stale_parent_or_skipped_seqs_raise_and_write_nothing(db):
    rng = np.random.default_rng(0)
    with unit_of_work(db) as repo:
        tenant, _ = repo.create_tenant("t")
        ids = empty_agents(repo, tenant.id, "a", N_AGENTS)
        for a in ids:
            repo.append_events(a, [{"id": f"e{j}", "input": [1.0, 0, 0, 0], "target": "x"}
                                   for j in range(3)])
    with unit_of_work(db, write=False) as repo:
        before = [_rows(repo, a) for a in ids]
    sha = "ab" * 32
    good = [prepare_delta(a, 0, random_delta(rng, {}, [], ["x"]), [1], sha) for a in ids[:2]]
    for bad, err in ((prepare_delta(ids[2], 1, random_delta(rng, {}, [], []), [1], sha),
                      VersionConflict),
                     (prepare_delta(ids[2], 0, random_delta(rng, {}, [], []), [2], sha),
                      InputError)):
        with pytest.raises(err):
            with unit_of_work(db) as repo:
                commit_delta_group(repo, good + [bad])
        with pytest.raises(err):  # the reference raises the same
            with unit_of_work(db) as repo:
                repo.commit_version(bad.agent_id, bad.parent, "delta",
                                    delta=random_delta(rng, {}, [], []), event_seqs=bad.seqs,
                                    checksum=sha)
    with pytest.raises(InputError, match="one commit per agent"):
        with unit_of_work(db) as repo:
            commit_delta_group(repo, [good[0], good[0]])
    with unit_of_work(db, write=False) as repo:
        assert [_rows(repo, a) for a in ids] == before


def test_pending_check_is_the_reference_on_random_seqs(db):
    """``_check_group_pending`` for one agent (a consecutive run counted, anything else read
    row by row) accepts and refuses, with the same message, exactly what
    ``check_next_pending`` does: random candidate seqs over pending events with rejected and
    forgotten ones among them."""
    from sqlalchemy import update

    from storage.models import Event
    from storage.repository.version_groups import _check_group_pending

    rng = np.random.default_rng(5)
    with unit_of_work(db) as repo:
        tenant, _ = repo.create_tenant("t")
        (aid,) = empty_agents(repo, tenant.id, "p", 1)
        repo.append_events(aid, [{"id": f"e{j}", "input": [1.0, 0, 0, 0], "target": "x"}
                                 for j in range(30)])
        key = repo.session.scalar(select(Agent.key).where(Agent.id == aid))
        repo.commit_version(aid, 0, "delta", delta=random_delta(rng, {}, [], ["x"]),
                            event_seqs=[1, 2, 3], checksum="ab" * 32)  # watermark 3
        for seq, col in ((9, "rejected"), (14, "forgotten_version"), (15, "rejected")):
            repo.session.execute(update(Event).where(Event.agent_key == key, Event.seq == seq)
                                 .values({col: True if col == "rejected" else 1}))

    def outcome(fn: Any, seqs: list[int]) -> str | None:
        try:
            fn(seqs)
        except InputError as e:
            return str(e)
        return None

    tried = {True: 0, False: 0}
    with unit_of_work(db, write=False) as repo:
        for _ in range(400):
            lo = int(rng.integers(1, 20))
            seqs = list(range(lo, lo + int(rng.integers(1, 10))))
            if rng.random() < 0.3 and len(seqs) > 1:  # a gap
                seqs.pop(int(rng.integers(len(seqs))))
            if rng.random() < 0.1:  # a repeat
                seqs.append(seqs[0])
            rng.shuffle(seqs)
            got = outcome(lambda s: _check_group_pending(repo.session, [(aid, key, 3, s)]), seqs)
            want = outcome(lambda s: repo.versions.check_next_pending(aid, s), seqs)
            assert got == want, seqs
            tried[want is None] += 1
    assert tried[True] > 10 and tried[False] > 100


def test_group_pending_check_is_the_reference_agent_by_agent(db):
    """``_check_group_pending`` (the consecutive runs of a group counted in one statement)
    passes exactly when ``check_next_pending`` passes for every agent, and otherwise raises
    the first failing agent's error: random candidates for five agents whose pending events
    have rejected and forgotten ones among them, groups larger than one statement's share."""
    from sqlalchemy import update

    from storage.models import Event
    from storage.repository import version_groups as vg

    rng = np.random.default_rng(9)
    with unit_of_work(db) as repo:
        tenant, _ = repo.create_tenant("t")
        aids = empty_agents(repo, tenant.id, "g", 5)
        keys, marks = {}, {}
        for n, aid in enumerate(aids):
            repo.append_events(aid, [{"id": f"e{j}", "input": [1.0, 0, 0, 0], "target": "x"}
                                     for j in range(25)])
            keys[aid] = repo.session.scalar(select(Agent.key).where(Agent.id == aid))
            marks[aid] = n % 3  # watermarks 0, 1 and 2
            if marks[aid]:
                repo.commit_version(aid, 0, "delta", delta=random_delta(rng, {}, [], ["x"]),
                                    event_seqs=list(range(1, marks[aid] + 1)), checksum="ab" * 32)
            for seq in rng.choice(np.arange(4, 20), size=2, replace=False):
                col = "rejected" if rng.random() < 0.5 else "forgotten_version"
                repo.session.execute(update(Event).where(Event.agent_key == keys[aid],
                                                         Event.seq == int(seq))
                                     .values({col: True if col == "rejected" else 1}))

    def outcome(fn: Any) -> str | None:
        try:
            fn()
        except InputError as e:
            return str(e)
        return None

    def candidate(aid: str) -> list[int]:
        lo = marks[aid] + 1 + (int(rng.integers(0, 3)) if rng.random() < 0.2 else 0)
        seqs = list(range(lo, lo + int(rng.integers(1, 8))))
        if rng.random() < 0.15 and len(seqs) > 1:  # a gap
            seqs.pop(int(rng.integers(len(seqs))))
        return seqs

    tried = {True: 0, False: 0}
    vg_max = vg._RUNS_MAX
    vg._RUNS_MAX = 2  # five agents: three statements a group
    try:
        with unit_of_work(db, write=False) as repo:
            for _ in range(300):
                picked = [a for a in aids if rng.random() < 0.8] or aids[:1]
                runs = [(a, keys[a], marks[a], candidate(a)) for a in picked]
                got = outcome(lambda r=runs: vg._check_group_pending(repo.session, r))
                want = next((w for w in (outcome(lambda r=r: repo.versions.check_next_pending(
                    r[0], r[3])) for r in runs) if w is not None), None)
                assert got == want, runs
                tried[want is None] += 1
    finally:
        vg._RUNS_MAX = vg_max
    assert tried[True] > 30 and tried[False] > 30
