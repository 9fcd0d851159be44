"""Group commit of ingest requests, on SQLite and PostgreSQL.

1. :func:`append_groups` (many requests, one transaction) answers every request exactly as
   :meth:`append_events` does when the same requests are appended one at a time in the same
   order (the reference), and stores the same rows: duplicates within a request, across the
   requests of a group and against stored ids; invalid requests and unknown agents write
   nothing; ``seq`` stays dense.
2. Through the real service over HTTP, many threads sending at once (ids repeated across
   concurrent requests): every event is stored exactly once, ``seq`` is dense, the counts add
   up, requests were merged (into transactions, and into the HTTP process's actor calls), and the agent predicts as an agent fed the same events one
   request at a time in the acknowledged order, and as the in-process reference learner.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

import httpx
import numpy as np
import pytest
import ray
from sqlalchemy import event

from storage.errors import AgentNotFound, InputError
from storage.repository import unit_of_work
from storage.repository.event_groups import append_groups
from tests.db_fixtures import *  # noqa: F401,F403
from tests.storage_helpers import empty_agents, event_rows
from tests.workers_helpers import assert_same_predictions, reference, wait_for

DIM = 4
CONFIG = {"kind": "classifier", "encoder": "none", "dim": DIM,
          "memory": {"rule": "delta", "beta": 0.5, "decay": 1.0}}


def _random_requests(rng: np.random.Generator, n: int, pool: int) -> list[tuple[int, list[Any]]]:
    """``(agent index, events)``; ids drawn from a small pool (so they repeat), some without
    an id, now and then an invalid event or an unknown agent (index -1)."""
    out = []
    for _ in range(n):
        events: list[Any] = []
        for _ in range(int(rng.integers(1, 5))):
            ev: dict[str, Any] = {"input": [float(x) for x in rng.integers(-3, 4, size=DIM)],
                                  "target": f"L{int(rng.integers(3))}"}
            if rng.random() < 0.9:
                ev["id"] = f"e{int(rng.integers(pool))}"
            events.append(ev)
        if rng.random() < 0.08:
            events.append({"id": 7})  # invalid id: the whole request is refused
        out.append((-1 if rng.random() < 0.05 else int(rng.integers(3)), events))
    return out


def statements_into(out: list[str]) -> Any:
    return lambda conn, cursor, statement, *args: out.append(statement.lower())


def test_sqlite_new_ids_go_in_without_a_lookup(db):
    """The common case on SQLite, every id new: one insert, no lookup of stored ids; a retry
    of the same request afterwards is all duplicates (looked up, nothing written)."""
    if not db.is_sqlite:
        pytest.skip("SQLite's path")
    with unit_of_work(db) as repo:
        tenant, _ = repo.create_tenant("t")
        (aid,) = empty_agents(repo, tenant.id, "g", 1)
    evs = [{"id": f"e{i}", "input": [1.0, float(i)], "target": "a"} for i in range(20)]
    for retry in (False, True):
        statements: list[str] = []
        listener = statements_into(statements)
        event.listen(db.engine, "before_cursor_execute", listener)
        with unit_of_work(db) as repo:
            (got,) = append_groups(repo, [(aid, evs)])
        event.remove(db.engine, "before_cursor_execute", listener)
        assert not isinstance(got, Exception)
        looked_up = any(x.startswith("select client_id from events") for x in statements)
        assert looked_up == retry
        assert (len(got[0]), len(got[1])) == ((0, 20) if retry else (20, 0))
    with unit_of_work(db, write=False) as repo:
        assert [(e.client_id, e.seq) for e in repo.events_of(aid)] == \
            [(f"e{i}", i + 1) for i in range(20)]


@pytest.mark.parametrize("seed", range(3))
def test_groups_answer_as_one_at_a_time(db, seed):
    rng = np.random.default_rng(seed)
    with unit_of_work(db) as repo:
        tenant, _ = repo.create_tenant("t")
        grouped = empty_agents(repo, tenant.id, "g", 3)
        single = empty_agents(repo, tenant.id, "s", 3)
    statements: list[str] = []

    def record(conn, cursor, statement, *args):
        statements.append(statement.lower())

    for _ in range(6):  # groups on top of what earlier groups stored
        reqs = _random_requests(rng, int(rng.integers(4, 14)), pool=25)
        event.listen(db.engine, "before_cursor_execute", record)
        with unit_of_work(db) as repo:
            got = append_groups(repo, [(grouped[a] if a >= 0 else "ag_missing", evs)
                                       for a, evs in reqs])
        event.remove(db.engine, "before_cursor_execute", record)
        want: list[Any] = []
        for a, evs in reqs:
            try:
                with unit_of_work(db) as repo:
                    want.append(repo.append_events(single[a] if a >= 0 else "ag_missing", evs))
            except (InputError, AgentNotFound) as exc:
                want.append(exc)
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            if isinstance(w, Exception):
                assert type(g) is type(w) and str(g) == str(w)
                continue
            assert not isinstance(g, Exception)
            assert g[1] == w[1]  # duplicates
            assert [(e.seq, e.payload) for e in g[0]] == [(e.seq, e.payload) for e in w[0]]
            assert [e.client_id for e in g[0] if not e.client_id.startswith("ev_")] == \
                [e.client_id for e in w[0] if not e.client_id.startswith("ev_")]
    if db.is_sqlite:  # inserted as new in a savepoint; with stored ids among them, rolled
        # back and the stored ids looked up first: final seqs at once, no conflict, no move
        assert any(x.startswith("insert or ignore into events") for x in statements)
        assert any(x.startswith("rollback to savepoint") for x in statements)
        assert any(x.startswith("select client_id from events") for x in statements)
        assert not any("on conflict" in x or x.startswith("update events set seq")
                       for x in statements)
    else:  # stored ids were skipped by the insert and the rows after them moved down
        assert any("on conflict" in x for x in statements)
        assert any(x.startswith("update events set seq") for x in statements)
    with unit_of_work(db, write=False) as repo:
        for g, s in zip(grouped, single, strict=True):
            assert event_rows(repo, g) == event_rows(repo, s)
            ga, sa = repo.get_agent(g), repo.get_agent(s)
            assert (ga.next_seq, ga.events_received) == (sa.next_seq, sa.events_received)
            assert [e.seq for e in repo.events_of(g)] == list(range(1, ga.next_seq))


def test_concurrent_http_requests_are_stored_once_in_order(ray_cluster, db_url, tmp_path):
    from workers.runtime import free_port, start
    from workers.settings import Settings

    s = Settings(database_url=db_url, port=free_port(), ray_namespace=f"gc-{uuid.uuid4().hex[:8]}",
                 scheduler_enabled=False, batch_max_ms=5.0, admin_key="adm")
    running = start(s)
    try:
        t = running.service.create_tenant("t")
        tenant, key = t["id"], t["api_key"]
        head = {"Authorization": f"Bearer {key}"}
        http = httpx.Client(base_url=running.url, headers=head, timeout=120)
        body = {"name": "a", **CONFIG}
        conc, seq1 = (http.post("/v1/agents", json={**body, "name": n}).json() for n in "ab")
        rng = np.random.default_rng(0)
        events = [{"id": f"e{i}", "input": [float(x) / 4 for x in rng.integers(1, 9, size=DIM)],
                   "target": f"L{i % 3}"} for i in range(160)]
        sentinel = {"id": "first", "input": [1.0] * DIM, "target": "L0"}
        assert http.post(f"/v1/agents/{conc['id']}/events", json={"events": [sentinel]}).json()[
            "accepted"] == 1
        threads, answers = 8, []
        lock = threading.Lock()

        def send(t: int) -> None:  # 1 or 3 events a request; each request's events also sent
            mine = events[t::threads]  # by the next thread, so ids collide across requests
            other = events[(t + 1) % threads::threads]
            with httpx.Client(base_url=running.url, headers=head, timeout=120) as c:
                for j in range(0, len(mine), 2):
                    for batch in (mine[j:j + 1], mine[j + 1:j + 2] + other[j:j + 2]):
                        if batch:
                            r = c.post(f"/v1/agents/{conc['id']}/events", json={"events": batch})
                            assert r.status_code == 202, r.text
                            with lock:
                                answers.append((len(batch), r.json()))

        pool = [threading.Thread(target=send, args=(t,)) for t in range(threads)]
        for th in pool:
            th.start()
        for th in pool:
            th.join()
        sent = sum(n for n, _ in answers)
        assert sum(a["accepted"] for _, a in answers) == len(events)
        assert sum(a["duplicates"] for _, a in answers) == sent - len(events)
        stats = [ray.get(a.stats.remote()) for a in running.service.ingest_handles()]
        assert sum(x["groups"] for x in stats) < sum(x["requests"] for x in stats)  # merged
        calls = running.service.edge_stats()  # and the HTTP process merged its actor calls
        assert sum(x["requests"] for x in calls) == len(answers) + 1
        assert sum(x["groups"] for x in calls) < len(answers) + 1
        text = httpx.get(f"{running.url}/metrics", timeout=60).text
        shown: dict[str, float] = {}
        for ln in text.splitlines():
            if ln.startswith("deltamem_ingest_"):
                name = ln.split("{")[0]
                shown[name] = shown.get(name, 0.0) + float(ln.split()[-1])
        assert shown["deltamem_ingest_groups_total"] < shown["deltamem_ingest_grouped_requests_total"]
        assert shown["deltamem_ingest_calls_total"] < shown["deltamem_ingest_call_requests_total"]
        with running.service.store.read() as repo:
            rows = repo.events_of(conc["id"])
        assert [e.seq for e in rows] == list(range(1, len(events) + 2))
        by_id = {e["id"]: e for e in events + [sentinel]}
        assert sorted(e.client_id for e in rows) == sorted(by_id)
        order = [by_id[e.client_id] for e in rows]  # the acknowledged order
        for ev in order:  # the same events, one request at a time, in that order
            http.post(f"/v1/agents/{seq1['id']}/events", json={"events": [ev]}).raise_for_status()

        def applied(a: str) -> bool:
            info = http.get(f"/v1/agents/{a}").json()
            return info["events_applied"] == info["events_received"] == len(events) + 1

        wait_for(lambda: applied(conc["id"]) and applied(seq1["id"]), what="events applied")
        ref = reference(CONFIG, order)  # micro-batch boundaries change only rounding
        probes = [[float(x) for x in rng.normal(size=DIM)] for _ in range(12)]
        for a in (conc["id"], seq1["id"]):
            assert_same_predictions(running.service, tenant, a, ref, probes)
        http.close()
    finally:
        running.stop()


def test_one_call_of_many_requests_answers_each_as_one_call_each(ray_cluster, db_url):
    """``IngestActor.ingest_many`` (the HTTP process's merged calls) against ``ingest`` called
    once per request on twin agents: the same answers and errors (backpressure 429, invalid
    event, unknown agent) request by request, and the same stored events."""
    from workers.contract import ServiceError
    from workers.runtime import free_port, start
    from workers.settings import Settings

    s = Settings(database_url=db_url, port=free_port(), queue_max_events=1000,
                 ray_namespace=f"im-{uuid.uuid4().hex[:8]}", scheduler_enabled=False)
    running = start(s)
    try:
        tenant = running.service.create_tenant("t")["id"]
        many, one = ([running.service.create_agent(tenant, f"{p}{i}", CONFIG)["id"]
                      for i in range(2)] for p in "mo")
        actor = running.service.ingest_handles()[0]
        rng = np.random.default_rng(5)
        reqs = [(a if a < 2 else 1, evs) for a, evs in _random_requests(rng, 14, pool=6)]
        reqs.insert(3, (0, [{"id": f"big{i}", "input": [1.0] * DIM, "target": "L0"}
                            for i in range(1001)]))  # more than a shard may queue: 429

        def agent(names: list[str], a: int) -> str:
            return names[a] if a >= 0 else "ag_missing"

        got = ray.get(actor.ingest_many.remote([(agent(many, a), evs) for a, evs in reqs]))
        want: list[Any] = []
        for a, evs in reqs:
            try:
                want.append(ray.get(actor.ingest.remote(agent(one, a), evs)))
            except ray.exceptions.RayTaskError as e:
                want.append(e.cause)
        assert any(isinstance(w, ServiceError) and w.status == 429 for w in want)
        assert any(isinstance(w, (InputError, AgentNotFound)) for w in want)
        assert len(got) == len(want) == len(reqs)
        for g, w in zip(got, want, strict=True):
            assert type(g) is type(w)
            if isinstance(w, ServiceError):  # its message names the backlog at that moment
                assert (g.status, g.code, g.field) == (w.status, w.code, w.field)
            elif isinstance(w, Exception):
                assert (str(g), getattr(g, "field", None)) == (str(w), getattr(w, "field", None))
            else:
                assert g == w
        with running.service.store.read() as repo:
            for m, o in zip(many, one, strict=True):
                assert event_rows(repo, m) == event_rows(repo, o)
    finally:
        running.stop()


def test_requests_on_the_loop_answer_as_in_a_thread(ray_cluster, db_url):
    """Vector requests over HTTP wait for the ingest actor on the app's event loop
    (``Runtime.ingest_on_loop``, ``IngestEdge.submit_async``); the same requests given to
    ``Runtime.ingest`` (a worker thread's path) on a twin agent get the same answers request
    by request (accepted, duplicates, a 429 with its retry hint) and store the same events."""
    from workers.contract import ServiceError
    from workers.runtime import free_port, start
    from workers.settings import Settings

    s = Settings(database_url=db_url, port=free_port(), queue_max_events=1000,
                 ray_namespace=f"lp-{uuid.uuid4().hex[:8]}", scheduler_enabled=False)
    running = start(s)
    try:
        svc = running.service
        t = svc.create_tenant("t")
        loop_agent, thread_agent = (svc.create_agent(t["id"], n, CONFIG)["id"] for n in "ab")
        rng = np.random.default_rng(11)
        reqs = []
        for k in range(12):  # ids from a small pool: duplicates within and across requests
            reqs.append([{"id": f"e{int(i)}", "input": [float(x) for x in rng.normal(size=DIM)],
                          "target": f"L{int(i) % 3}"} for i in rng.integers(0, 20, size=k % 4 + 1)])
        reqs.insert(5, [{"id": f"big{i}", "input": [1.0] * DIM, "target": "L0"}
                        for i in range(1001)])  # more than the shard may queue: 429
        before = sum(x["on_loop"] for x in svc.edge_stats())
        with httpx.Client(base_url=running.url, timeout=120,
                          headers={"Authorization": f"Bearer {t['api_key']}"}) as http:
            for evs in reqs:
                got = http.post(f"/v1/agents/{loop_agent}/events", json={"events": evs})
                try:
                    want = svc.ingest(t["id"], thread_agent, evs, partial=False)
                except ServiceError as e:
                    assert (got.status_code, got.json()["error"]["code"]) == (e.status, e.code)
                    assert got.json()["retry_after_ms"] == e.extra["retry_after_ms"]
                    continue
                assert got.status_code == 202, got.text
                assert got.json() == {"accepted": want["accepted"],
                                      "duplicates": want["duplicates"], "rejected": []}
            missing = http.post("/v1/agents/ag_missing/events", json={"events": reqs[0]})
            assert missing.status_code == 404
        assert sum(x["on_loop"] for x in svc.edge_stats()) - before >= len(reqs) - 1
        with svc.store.read() as repo:
            assert event_rows(repo, loop_agent) == event_rows(repo, thread_agent)
    finally:
        running.stop()
