"""The learner's inbox (workers/actors/inbox.py): events handed over with the notification are learnt
without reading the store; any doubt (unknown start, gap, reordering, a notification without
events, a full inbox, a reset) falls back to the store; states stay exactly the reference's."""

from __future__ import annotations

import numpy as np
import pytest
import ray

from tests.workers_helpers import (
    all_applied,
    assert_same_predictions,
    reference,
    start_deployment,
    vector_events,
    wait_for,
)
from workers.actors.inbox import Inbox


def _evs(*seqs):
    return [{"seq": s} for s in seqs]


def test_inbox_hands_out_only_a_gapless_run_from_the_next_seq():
    box = Inbox(max_events=10)
    box.put("a", _evs(1, 2, 3))
    assert box.take("a", 10) is None  # the next seq is not known yet
    box.committed("a", 0, complete=True)
    assert [e["seq"] for e in box.take("a", 2)] == [1, 2]  # at most the limit
    box.put("a", _evs(5, 4))  # reordered between ingest actors: fine once 4 is there
    assert [e["seq"] for e in box.take("a", 10)] == [1, 2, 3, 4, 5]
    box.committed("a", 5, complete=True)
    assert box.take("a", 10) == [] and len(box) == 0
    box.put("a", _evs(7))  # 6 went missing
    assert box.take("a", 10) is None
    box.committed("a", 7, complete=True)  # the store gave 6 and 7
    assert box.take("a", 10) == []
    box.put("a", None)  # a notification without its events
    assert box.take("a", 10) is None
    box.committed("a", 9, complete=False)  # the store was read up to a limit: read it again
    assert box.take("a", 10) is None
    box.committed("a", 9, complete=True)
    box.put("a", _evs(10, 11))
    box.reset("a")  # a forget, rollback, error or rejected event
    assert box.take("a", 10) is None and len(box) == 0


def test_columns_hand_out_what_their_dicts_would():
    """Runs put in columns (handover.AcceptedColumns) and the same runs put as dicts: every
    take gives the same events (as replay dicts), the columns as one AcceptedColumns whose
    matrix, targets and betas are the events'; random runs overlap, repeat, leave gaps and
    mix dtypes, with commits in between."""
    from datetime import UTC, datetime

    from storage.repository.events import AcceptedRun
    from workers.actors.factory import event_inputs
    from workers.actors.handover import AcceptedColumns, fields, pack_parts, unpack

    rng = np.random.default_rng(11)
    t = datetime(2026, 1, 1, tzinfo=UTC)
    cols, dicts = Inbox(max_events=10_000), Inbox(max_events=10_000)
    for box in (cols, dicts):
        box.committed("a", 0, complete=True)
    nxt, joined = 1, 0
    for _ in range(200):
        lo = max(1, nxt + int(rng.integers(-3, 4)))
        n = int(rng.integers(1, 9))
        dtype = np.float32 if rng.random() < 0.9 else np.float64
        run = AcceptedRun(range(lo, lo + n), [f"e{s}" for s in range(lo, lo + n)],
                          [{"target": f"L{s % 3}", **({"beta": 0.5} if s % 4 == 0 else {})}
                           for s in range(lo, lo + n)], t,
                          rng.normal(size=(n, 3)).astype(dtype))
        handed = pack_parts([run])
        cols.put("a", handed)
        dicts.put("a", unpack(handed))
        if rng.random() < 0.4:
            k = int(rng.integers(1, 12))
            got, want = cols.take("a", k), dicts.take("a", k)
            if want is None or not want:
                assert got == want
                continue
            assert got is not None
            as_dicts = [{**e, "input": (e["input"].dtype.str, e["input"].tobytes())}
                        for e in got]
            assert as_dicts == [{**e, "input": (e["input"].dtype.str, e["input"].tobytes())}
                                for e in want]
            if isinstance(got, AcceptedColumns):
                joined += 1
                X = event_inputs(got)
                assert np.array_equal(np.asarray(X, dtype=np.float64), event_inputs(want))
                for name in ("target", "beta"):
                    assert fields(got, name) == [e.get(name) for e in want]
            last = int(want[-1]["seq"])
            for box in (cols, dicts):
                box.committed("a", last, complete=True)
            nxt = last + 1
    assert joined > 20


def test_an_unstarted_agent_starts_at_the_stores_oldest_pending_seq():
    box = Inbox(max_events=10)
    assert not box.unstarted("a")  # holds nothing
    box.put("a", _evs(3, 4, 5))
    assert box.unstarted("a") and box.take("a", 10) is None
    box.start("a", 2)  # the store's oldest pending event is 2, which the inbox lacks
    assert not box.unstarted("a") and box.take("a", 10) is None
    box.put("b", _evs(3, 4))
    box.start("b", 3)
    assert [e["seq"] for e in box.take("b", 10)] == [3, 4]
    box.start("b", 1)  # known already (a start after a commit changes nothing)
    assert [e["seq"] for e in box.take("b", 10)] == [3, 4]
    box.put("c", _evs(1))
    box.start("c", None)  # no answer: the store is read
    assert box.take("c", 10) is None
    box.put("d", None)  # a notification without events: stale, the store is read
    box.put("d", _evs(1))
    assert not box.unstarted("d")


def test_a_full_inbox_drops_its_events_and_falls_back_to_the_store():
    box = Inbox(max_events=3)
    for agent in ("a", "b"):
        box.committed(agent, 0, complete=True)
    box.put("a", _evs(1, 2))
    box.put("b", _evs(1, 2))  # over the bound: nothing kept, every agent reads the store
    assert len(box) == 0 and box.take("a", 10) is None and box.take("b", 10) is None


CONFIG = {"kind": "classifier", "encoder": "none", "dim": 8,
          "memory": {"rule": "delta", "beta": 0.5, "decay": 1.0}}


@pytest.fixture(scope="module")
def dep(ray_cluster, tmp_path_factory):
    running = start_deployment(tmp_path_factory.mktemp("inbox"))
    svc = running.service
    yield running, svc, svc.create_tenant("t")["id"]
    running.stop()


def _stats(running):
    shard = ray.get_actor("learner-0", namespace=running.settings.ray_namespace)
    return ray.get(shard.ping.remote())


def test_the_learner_reads_the_store_only_to_recover(dep):
    running, svc, tenant = dep
    agent_id = svc.create_agent(tenant, "inbox", CONFIG)["id"]
    events = vector_events(np.random.default_rng(1), 120, 8, 4, "e")
    before = _stats(running)
    for i in range(0, 120, 6):
        svc.ingest(tenant, agent_id, events[i : i + 6], False)
    wait_for(lambda: all_applied(svc, tenant, [agent_id]), what="applied")
    after = _stats(running)
    assert after["inbox_events"] - before.get("inbox_events", 0) > 0
    # 20 requests, and no read of the store's payloads: even the first batch (an agent new to
    # the shard) comes from the inbox, once the store said where its pending events start
    assert after["sql_reads"] - before.get("sql_reads", 0) == 0
    # events the inbox never saw, then a notification without them: the store is read
    more = vector_events(np.random.default_rng(2), 10, 8, 4, "f")
    with svc.store.tx() as repo:
        repo.append_events(agent_id, [{**e, "input": np.asarray(e["input"])} for e in more])
    shard = ray.get_actor("learner-0", namespace=running.settings.ray_namespace)
    ray.get(shard.notify.remote([agent_id], len(more)))
    wait_for(lambda: all_applied(svc, tenant, [agent_id]), what="applied")
    assert _stats(running)["sql_reads"] > after["sql_reads"]
    with svc.store.read() as repo:
        rows = repo.events_of(agent_id)
        head = repo.get_agent(agent_id).head_version
    ref_events = [e.as_replay() for e in rows]
    ref = reference(CONFIG, ref_events, batch=10**6)  # the states: exact, whatever the source
    with svc.store.read() as repo:
        hist = [e.as_replay() for e in repo.event_history(agent_id, head)]
    assert [e["id"] for e in hist] == [e["id"] for e in ref_events]
    assert_same_predictions(svc, tenant, agent_id, ref,
                            np.random.default_rng(3).normal(size=(10, 8)).tolist())


class _NaiveInbox:
    """The inbox's rules written plainly (every take drops what is below the next seq)."""

    def __init__(self, max_events: int) -> None:
        self.max, self.events, self.next, self.stale = max_events, {}, {}, set()

    def count(self) -> int:
        return sum(len(b) for b in self.events.values())

    def put(self, a, evs):
        if not evs:
            self.stale.add(a)
            return
        if self.count() + len(evs) > self.max:
            self.events.clear()
            self.stale.update(self.next)
            self.stale.add(a)
            return
        box = self.events.setdefault(a, {})
        for e in evs:
            if e["seq"] >= self.next.get(a, 0):
                box.setdefault(e["seq"], e)

    def take(self, a, limit):
        if a not in self.next or a in self.stale:
            return None
        box = self.events.get(a, {})
        for s in [s for s in box if s < self.next[a]]:
            del box[s]
        if not box:
            return []
        out = []
        while len(out) < limit and self.next[a] + len(out) in box:
            out.append(box[self.next[a] + len(out)])
        return out or None

    def start(self, a, first):
        if a not in self.next and a not in self.stale and first is not None:
            self.next[a] = first

    def committed(self, a, last, complete):
        box = self.events.get(a, {})
        for s in [s for s in box if s <= last]:  # applied: they leave the box
            del box[s]
        self.next[a] = last + 1
        (self.stale.discard if complete else self.stale.add)(a)

    def reset(self, a):
        self.events.pop(a, None)
        self.next.pop(a, None)
        self.stale.discard(a)


def test_the_inbox_follows_its_rules_on_random_operations():
    """Random puts (overlapping, out of order, repeated), takes, commits of what was taken or
    of a store read, starts, resets and overflows: every take and count as the plain rules
    give them (applied seqs leave at the commit; the inbox scans its box only when it
    must)."""
    rng = np.random.default_rng(12)
    box, ref = Inbox(max_events=60), _NaiveInbox(60)
    agents = ["a", "b"]
    for _ in range(3000):
        a = agents[int(rng.integers(2))]
        op = rng.random()
        if op < 0.4:
            lo = int(rng.integers(1, 40))
            evs = [{"seq": s} for s in rng.permutation(range(lo, lo + int(rng.integers(0, 6))))]
            box.put(a, [dict(e) for e in evs])
            ref.put(a, evs)
        elif op < 0.7:
            k = int(rng.integers(1, 8))
            got, want = box.take(a, k), ref.take(a, k)
            assert (None if got is None else [e["seq"] for e in got]) == \
                (None if want is None else [e["seq"] for e in want])
            if got and rng.random() < 0.8:
                last = got[-1]["seq"] if rng.random() < 0.8 else got[-1]["seq"] + 2
                complete = bool(rng.random() < 0.9)
                box.committed(a, last, complete)
                ref.committed(a, last, complete)
        elif op < 0.8:
            last, complete = int(rng.integers(0, 45)), bool(rng.random() < 0.5)
            box.committed(a, last, complete)
            ref.committed(a, last, complete)
        elif op < 0.9:
            first = None if rng.random() < 0.2 else int(rng.integers(1, 40))
            assert box.unstarted(a) == (a not in ref.next and a not in ref.stale
                                        and bool(ref.events.get(a)))
            box.start(a, first)
            ref.start(a, first)
        else:
            box.reset(a)
            ref.reset(a)
        for x in agents:  # after a take both boxes hold the same seqs from the next one on
            if x in ref.next and x not in ref.stale:
                nb = box.take(x, 100)
                nr = ref.take(x, 100)
                assert (None if nb is None else [e["seq"] for e in nb]) == \
                    (None if nr is None else [e["seq"] for e in nr])
        assert len(box) == ref.count()
