"""Event inputs in blocks (``storage/repository/event_inputs.py``, migration 0012), on SQLite
and PostgreSQL, against a reference that keeps every accepted event's input on its own.

Random streams of group commits (duplicate ids with other numbers, in the group and already
stored; ids left out; texts with embeddings; list inputs, which stay in the payload), micro-batch
commits with snapshots, forgets of applied and pending events, event retention and a fork.
After each step:

- every event replays the input the reference accepted for it (same dtype, same bytes), an
  erased one none;
- every block is referred to, its seq range covers the events that refer to it, and its
  checksum matches its bytes;
- no block holds the bytes of a forgotten event or of a duplicate that was not stored.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import select

from agent.memory.delta import apply_delta
from storage.models import Event, EventInputs, utcnow
from storage.repository import unit_of_work
from storage.repository.event_groups import append_groups
from tests.db_fixtures import *  # noqa: F401,F403
from tests.storage_helpers import D_K, batch_delta, checksum, empty_state, replay

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _vector(rng: np.random.Generator) -> np.ndarray:
    """Dyadic numbers (exact whatever the grouping; float32 exactly) or, one time in three,
    float64 numbers float32 cannot hold (stored as float64, unique bytes)."""
    if rng.random() < 1 / 3:
        return rng.integers(-4, 5, size=D_K) / 8 + rng.normal(size=D_K) * 1e-12
    return (rng.integers(-4, 5, size=D_K) / 8).astype(np.float64)


def _event(rng: np.random.Generator, cid: str | None) -> dict[str, Any]:
    ev: dict[str, Any] = {"target": str(rng.choice(["x", "y", "z"])), "beta": 0.5,
                          "gamma": 1.0}
    kind = rng.random()
    if kind < 0.7:
        ev["input"] = _vector(rng)
    elif kind < 0.85:
        ev["input"] = "a text"
        ev["embedding"] = _vector(rng).astype(np.float32)
    else:
        ev["input"] = [float(v) for v in rng.integers(-4, 5, size=D_K) / 8]
    if cid is not None:
        ev["id"] = cid
    return ev


def _stored(x: Any) -> tuple[str, bytes] | None:
    """An input as the store keeps it: float32 when its numbers are float32 exactly."""
    if not isinstance(x, np.ndarray):
        return None
    f = x.astype(np.float32)
    a = f if x.dtype == np.float32 or (f == x).all() else x
    return a.dtype.str, a.tobytes()


class Reference:
    """What each agent's events should replay as input, and the bytes no block may hold."""

    def __init__(self) -> None:
        self.inputs: dict[tuple[str, str], tuple[str, bytes] | None] = {}
        self.gone: list[bytes] = []

    def accepted(self, agent: str, cid: str, ev: dict[str, Any]) -> None:
        self.inputs[agent, cid] = _stored(ev.get("embedding", ev["input"]))

    def skipped(self, agent: str, ev: dict[str, Any]) -> None:
        got = _stored(ev.get("embedding", ev["input"]))
        if got is not None and got[0] == "<f8":  # unique bytes (float32 ones may repeat)
            self.gone.append(got[1])

    def forgotten(self, agent: str, cid: str) -> None:
        got = self.inputs.get((agent, cid))
        if got is not None and got[0] == "<f8":
            self.gone.append(got[1])
        self.inputs[agent, cid] = None


def _check(db: Any, ref: Reference, agents: list[str]) -> None:
    with unit_of_work(db, write=False) as repo:
        s = repo.session
        for a in agents:
            for e in repo.events_of(a):
                if (a, e.client_id) in ref.inputs:
                    assert _stored(e.as_replay().get("input")) == ref.inputs[a, e.client_id], \
                        (a, e.client_id)
        refs: dict[int, list[tuple[int, int]]] = {}
        for key, seq, bid in s.execute(select(Event.agent_key, Event.seq, Event.input_block_id)
                                       .where(Event.input_block_id.is_not(None))):
            refs.setdefault(bid, []).append((key, seq))
        blocks = list(s.scalars(select(EventInputs)))
        assert {b.id for b in blocks} == set(refs), "a block no event refers to, or missing"
        for b in blocks:
            assert all(k == b.agent_key and b.first_seq <= q <= b.last_seq for k, q in refs[b.id])
            assert b.matrix("block").shape == (b.rows, b.dim)  # checksum verified
            raw = b.matrix("block").tobytes()  # (decoded, when coded by byte planes)
            assert not any(g in bytes(b.data) or g in raw for g in ref.gone)


def _commit(db: Any, agent: str, at: datetime, snapshot: bool) -> None:
    with unit_of_work(db) as repo:
        pending = repo.pending_events(agent)
        if not pending:
            return
        head = repo.get_agent(agent).head_version
        st = repo.load_state(agent, head)
        evs = [e.as_replay() for e in pending]
        d = batch_delta(*st, evs, "float64", dense=False)
        new = (apply_delta(st[0], d), st[1] + d.labels_added)
        repo.commit_version(agent, head, "delta", delta=d, event_seqs=[e.seq for e in pending],
                            checksum=checksum(new), created_at=at,
                            snapshot=new if snapshot else None)


def test_blocks_hold_every_accepted_input_and_nothing_else(db):
    rng = np.random.default_rng(12)
    with unit_of_work(db) as repo:
        tenant, _ = repo.create_tenant("t")
        st0 = empty_state()
        agents = [repo.create_agent(tenant.id, n, {"kind": "classifier"}, *st0, checksum(st0)).id
                  for n in "ab"]
    ref = Reference()
    used: dict[str, list[str]] = {a: [] for a in agents}
    n_id = 0
    for step in range(24):
        group = []
        for _ in range(int(rng.integers(1, 4))):
            a = agents[int(rng.integers(2))]
            evs = []
            for _ in range(int(rng.choice([1, 2, 15, 40]))):
                r = rng.random()
                if r < 0.15 and used[a]:  # a stored id again, other numbers
                    cid: str | None = used[a][int(rng.integers(len(used[a])))]
                elif r < 0.25:
                    cid = None
                else:
                    n_id += 1
                    cid = f"e{n_id}"
                evs.append(_event(rng, cid))
            if evs and rng.random() < 0.3 and evs[0].get("id"):
                evs.append(_event(rng, evs[0]["id"]))  # repeated inside the request
            group.append((a, evs))
        with unit_of_work(db) as repo:
            results = append_groups(repo, group)
        for (a, evs), res in zip(group, results, strict=True):
            assert not isinstance(res, Exception), res
            accepted, _ = res
            by_seq = iter(accepted)
            sent = {ev.get("id") for ev in evs}
            taken = {e.client_id for e in accepted} & sent
            for ev in evs:
                cid = ev.get("id")
                if cid is not None and cid in taken:
                    ref.accepted(a, cid, ev)
                    taken.discard(cid)
                    used[a].append(cid)
                elif cid is None:
                    acc = next(e for e in by_seq if e.client_id not in sent)
                    ref.accepted(a, acc.client_id, ev)
                    used[a].append(acc.client_id)
                else:
                    ref.skipped(a, ev)
        if step % 3 == 2:
            for a in agents:
                _commit(db, a, T0 + timedelta(seconds=step), snapshot=step % 6 == 5)
        if step % 4 == 3:
            a = agents[int(rng.integers(2))]
            live = [c for c in used[a] if ref.inputs.get((a, c)) is not None]
            if live:
                cid = live[int(rng.integers(len(live)))]
                with unit_of_work(db) as repo:
                    repo.forget(a, [cid], replay)
                ref.forgotten(a, cid)
        if step == 17:
            with unit_of_work(db) as repo:
                deleted, _ = repo.prune_events(agents[0], 1.0, now=utcnow() + timedelta(days=1),
                                               limit=10_000)
                assert deleted > 0
                left = {e.client_id for e in repo.events_of(agents[0])}
            for key in [k for k in ref.inputs if k[0] == agents[0] and k[1] not in left]:
                del ref.inputs[key]
        _check(db, ref, agents)
    with unit_of_work(db) as repo:  # a fork copies the rows its history uses, no more
        head = repo.get_agent(agents[1]).head_version
        fork = repo.fork(agents[1], head, "f", tenant.id)
        hist = {e.client_id for e in repo.event_history(agents[1], head)}
        fork_id, fork_key = fork.id, fork.key
    for a, cid in list(ref.inputs):
        if a == agents[1] and cid in hist:
            ref.inputs[fork_id, cid] = ref.inputs[a, cid]
    _check(db, ref, [*agents, fork_id])
    with unit_of_work(db, write=False) as repo:
        rows = sum(b.rows for b in repo.session.scalars(select(EventInputs).where(
            EventInputs.agent_key == fork_key)))
        with_input = sum(1 for e in repo.events_of(fork_id) if e.input_block_id is not None)
    assert rows == with_input > 0
    # the source forgets an event the fork holds: the fork's copy stays (its own history)
    shared = next(c for c in hist if ref.inputs.get((agents[1], c)) is not None)
    with unit_of_work(db) as repo:
        repo.forget(agents[1], [shared], replay)
    ref.forgotten(agents[1], shared)
    ref.gone = []  # the fork still holds those bytes, by design
    _check(db, ref, [*agents, fork_id])
    with unit_of_work(db, write=False) as repo:  # both forms were checked (storage/planes.py)
        codecs = set(repo.session.scalars(select(EventInputs.codec)))
    assert codecs == {None, "split-zstd"}, codecs


def test_a_large_request_is_stored_in_bounded_blocks(db, monkeypatch):
    """Reading one event reads its block: a request of many events is split into blocks of
    at most BLOCK_BYTES, each row replaying its own event's input."""
    from storage.repository import event_inputs

    monkeypatch.setattr(event_inputs, "BLOCK_BYTES", 7 * 4 * 256 + 5)  # 256 rows of 7 float32
    n = 2 * 256 + 88
    X = np.random.default_rng(5).normal(size=(n, 7)).astype(np.float32)
    with unit_of_work(db) as repo:
        tenant, _ = repo.create_tenant("t")
        st0 = empty_state()
        a = repo.create_agent(tenant.id, "a", {"kind": "classifier"}, *st0, checksum(st0)).id
        repo.append_events(a, [{"id": f"x{i}", "input": X[i], "target": "y"} for i in range(n)])
    with unit_of_work(db, write=False) as repo:
        sizes = sorted(b.rows for b in repo.session.scalars(select(EventInputs)))
        assert sizes == [88, 256, 256]
        for e in repo.events_of(a):
            np.testing.assert_array_equal(e.as_replay()["input"], X[int(e.client_id[1:])])
