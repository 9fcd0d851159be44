"""Events marked applied by their versions' seq ranges (migration 0013,
storage/repository/applied.py), on SQLite and PostgreSQL: after every step of random histories
of appends, rejections, commits of part of the pending events, forgets of applied and pending
events (between pending ones, so a later range spans them), rollbacks and forks, every read of
the marks (applied events, pending events, pages of applied events, version histories) equals a
reference that records by hand which version applied each event, and no commit rewrites an
event row."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import func, select

from agent.memory.delta import apply_delta
from storage.errors import ForgottenEvents
from storage.models import Event
from storage.repository import unit_of_work
from tests.db_fixtures import *  # noqa: F401,F403
from tests.storage_helpers import batch_delta, checksum, empty_state, event_payload, replay

POOL = [f"l{i}" for i in range(6)]


class Model:
    """One agent as the reference sees it: states and event histories (client ids) per
    version, which version applied each event (by client id), the pending ones in order."""

    def __init__(self, state, applied=None, hist=None):
        self.states = {0: state}
        self.hist = {0: list(hist or [])}
        self.head = 0
        self.applied: dict[str, int] = dict(applied or {})
        self.pending: list[str] = []
        self.gone: set[str] = set()
        self.payloads: dict[str, dict] = {}


def _check(repo, aid: str, m: Model) -> None:
    seq = {e.client_id: e.seq for e in repo.events_of(aid)}
    want = sorted((seq[c], v) for c, v in m.applied.items())
    assert [(e.seq, v) for e, v in repo.applied_events(aid)] == want
    assert [e.client_id for e in repo.pending_events(aid)] == m.pending
    assert repo.pending_count(aid) == len(m.pending)
    got, after = [], None  # pages of 3: each page reads its own ranges
    while True:
        page, after = repo.list_events(aid, "applied", limit=3, after_seq=after)
        got += [(e["seq"], e["applied_version"]) for e in page]
        if after is None:
            break
    assert got == want
    page, _ = repo.list_events(aid, "pending", limit=1000)
    assert [e["id"] for e in page] == m.pending and all(
        e["applied_version"] is None for e in page)
    vmap = repo.graph.vmap(aid)
    by_seq = {s: c for c, s in seq.items()}
    for v, hist in repo.graph.histories(aid, vmap, m.head):
        assert [by_seq[s] for s in hist] == m.hist[v], v


def _step(repo, rng, aid: str, m: Model, n: list[int], tenant: str) -> tuple[str, Model] | None:
    op = rng.choice(["append", "reject", "commit", "forget", "rollback", "fork"],
                    p=[0.3, 0.1, 0.3, 0.14, 0.1, 0.06])
    if op == "append":
        evs = []
        for _ in range(int(rng.integers(1, 6))):
            n[0] += 1
            evs.append({"id": f"e{n[0]}", **event_payload(rng, POOL)})
            m.payloads[f"e{n[0]}"] = {k: x for k, x in evs[-1].items() if k != "id"}
        repo.append_events(aid, evs)
        m.pending += [e["id"] for e in evs]
    elif op == "reject" and m.pending:
        c = m.pending[int(rng.integers(len(m.pending)))]
        seq = next(e.seq for e in repo.pending_events(aid) if e.client_id == c)
        assert repo.reject_events(aid, [(seq, "test")]) == 1
        m.pending.remove(c)
    elif op == "commit" and m.pending:
        k = int(rng.integers(1, len(m.pending) + 1))
        todo = repo.pending_events(aid, limit=k)
        cur = m.states[m.head]
        d = batch_delta(*cur, [e.payload for e in todo], "float64", False)
        new = (apply_delta(cur[0], d), cur[1] + d.labels_added)
        v = repo.commit_version(aid, m.head, delta=d, event_seqs=[e.seq for e in todo],
                                checksum=checksum(new)).version
        m.states[v], m.hist[v], m.head = new, m.hist[m.head] + [e.client_id for e in todo], v
        for e in todo:
            m.applied[e.client_id] = v
        m.pending = m.pending[k:]
    elif op == "forget":
        # an applied event of the head, or a pending one (in the middle: a later commit's
        # range then spans it)
        pool = [c for c in m.hist[m.head] if c not in m.gone] + m.pending[1:-1]
        if not pool:
            return None
        ids = [str(c) for c in rng.choice(pool, size=min(len(pool), int(rng.integers(1, 3))),
                                         replace=False)]
        v = repo.forget(aid, ids, replay).version.version
        m.gone |= set(ids)
        kept = [c for c in m.hist[m.head] if c not in m.gone]
        m.states[v] = replay(*empty_state(), [m.payloads[c] for c in kept])
        m.hist[v], m.head = kept, v
        m.pending = [c for c in m.pending if c not in m.gone]
    elif op == "rollback":
        to = sorted(m.states)[int(rng.integers(len(m.states)))]
        if set(m.hist[to]) & m.gone:
            with pytest.raises(ForgottenEvents):
                repo.rollback(aid, to)
            return None
        v = repo.rollback(aid, to).version
        m.states[v], m.hist[v], m.head = m.states[to], list(m.hist[to]), v
    elif op == "fork":
        at = sorted(m.states)[int(rng.integers(len(m.states)))]
        if set(m.hist[at]) & m.gone:
            return None
        f = repo.fork(aid, at, "f", tenant).id
        fm = Model(m.states[at], {c: 0 for c in m.hist[at]}, m.hist[at])
        fm.payloads = m.payloads
        return f, fm
    return None


@pytest.mark.parametrize("seed", range(3))
def test_marks_from_ranges_equal_the_recorded_marks(db, seed):
    rng = np.random.default_rng(seed)
    with unit_of_work(db) as repo:
        tenant, _ = repo.create_tenant("t")
        st0 = empty_state()
        aid = repo.create_agent(tenant.id, "a", {}, *st0, checksum(st0)).id
    agents = {aid: Model(st0)}
    n = [0]
    for _ in range(80):
        a = list(agents)[int(rng.integers(len(agents)))]
        with unit_of_work(db) as repo:
            forked = _step(repo, rng, a, agents[a], n, tenant.id)
        if forked:
            agents[forked[0]] = forked[1]
        with unit_of_work(db, write=False) as repo:
            for b, m in agents.items():
                _check(repo, b, m)
    with unit_of_work(db, write=False) as repo:
        # only fork copies carry a mark on their row
        marked = repo.session.scalar(select(func.count()).select_from(Event).where(
            Event.applied_version.is_not(None), Event.applied_version != 0))
        assert marked == 0
        assert sum(len(m.applied) for m in agents.values()) > 20
        assert any(m.gone for m in agents.values())
