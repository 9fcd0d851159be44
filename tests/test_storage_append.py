"""The event append path (a Core executemany) against slow, obviously correct references, on
SQLite and PostgreSQL: random batches with duplicates (stored before, repeated inside the
batch), missing ids, datetimes in payloads, naive and non-UTC receipt times, and invalid
events. Compared: what ``append_events`` returns, the stored rows (client id, seq, payload
as stored text, receipt time), and the agent's counters.

References: ``_append_row_by_row`` below (one ORM object and one flush per event, the
duplicate check a query per event), and the pre-rewrite ORM path the benchmark keeps
(:func:`benchmarks.storage_append.append_events_orm`).
"""

from __future__ import annotations

import json
import random
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from benchmarks import storage_append
from storage.errors import InputError
from storage.models import EVENT_ID_LEN, Agent, Event, utcnow
from storage.repository import Repository, unit_of_work
from tests.db_fixtures import *  # noqa: F401,F403
from tests.storage_helpers import checksum, empty_state

T0 = datetime(2026, 1, 1, tzinfo=UTC)
GENERATED = re.compile(r"^ev_[0-9a-f]{32}$")
Rows = list[tuple[Any, ...]]


def _payload_of(ev: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v)
            for k, v in ev.items() if k != "id"}


def _utf8(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check(ev: Any, i: int) -> None:
    """The documented validation rules, spelled out (stdlib JSON, strict)."""
    if not isinstance(ev, dict):
        raise InputError(f"events[{i}]", "expected an object")
    cid = ev.get("id")
    if cid is not None and (not isinstance(cid, str) or not cid.strip()
                            or len(cid) > EVENT_ID_LEN or not _utf8(cid)):
        raise InputError(f"events[{i}].id", "bad id")
    try:  # (UnicodeEncodeError, for a lone surrogate, is a ValueError)
        json.dumps(_payload_of(ev), allow_nan=False, ensure_ascii=False).encode("utf-8")
    except ValueError as exc:
        raise InputError(f"events[{i}]", str(exc)) from exc


def _append_row_by_row(repo: Repository, agent_id: str, events: list[dict[str, Any]], *,
                       received_at: datetime | None = None) -> tuple[list[Event], list[str]]:
    """One event at a time: look the id up, add one ORM row, flush. Repeats inside the
    batch are found because the earlier occurrence is already flushed."""
    for i, ev in enumerate(events):
        _check(ev, i)
    s = repo.session
    agent = s.execute(select(Agent).where(Agent.id == agent_id).with_for_update()
                      .execution_options(populate_existing=True)).scalar_one()
    now = received_at or utcnow()
    accepted, duplicates = [], []
    for ev in events:
        cid = ev.get("id")
        if cid is not None and s.scalar(select(func.count()).select_from(Event).where(
                Event.agent_key == agent.key, Event.client_id == cid)):
            duplicates.append(cid)
            continue
        row = Event(agent_key=agent.key, client_id=cid or f"ev_{uuid.uuid4().hex}",
                    seq=agent.next_seq, payload=_payload_of(ev), received_at=now)
        s.add(row)
        agent.next_seq += 1
        agent.events_received += 1
        s.flush()
        accepted.append(row)
    return accepted, duplicates


REFERENCES: dict[str, Callable[..., tuple[list[Any], list[str]]]] = {
    "row_by_row": _append_row_by_row,
    "old_orm_path": storage_append.append_events_orm,
}


def _random_event(rng: random.Random, pool: list[str]) -> dict[str, Any]:
    ev: dict[str, Any] = {"target": rng.choice(["a", "b", "ünï", ""])}
    kind = rng.random()
    if kind < 0.5:
        ev["input"] = [rng.choice([0.1, -2.5, 1e-300, 1e300, 3.0, 0.0]) * rng.random()
                       for _ in range(rng.randint(0, 6))]
    elif kind < 0.8:
        ev["input"] = rng.choice(["hi", "a \"quoted\" line\n", "日本", ""])
    else:
        ev["input"] = {"nested": [1, 2, {"x": None}], "flag": True}
    if rng.random() < 0.3:
        ev["beta"] = rng.choice([0.25, 1.0, 2])
    if rng.random() < 0.2:
        ev["ts"] = rng.choice([T0 + timedelta(seconds=rng.randint(0, 99)),
                               datetime(2026, 5, 1, 12, 30)])  # aware and naive
    if rng.random() < 0.8:  # a few ids, so repeats inside and across batches are common
        ev["id"] = rng.choice(pool)
    return ev


def _invalid_event(rng: random.Random) -> Any:
    return rng.choice([
        "not an object", {"id": 7, "input": "x"}, {"id": "  ", "input": "x"},
        {"id": "x" * (EVENT_ID_LEN + 1)}, {"id": "a\ud800"}, {"input": "\ud800"},
        {"input": [1.0, float("nan")]},
        {"input": {"deep": [float("inf")]}}])


def _random_batch(rng: random.Random, pool: list[str]) -> list[Any]:
    batch: list[Any] = [_random_event(rng, pool) for _ in range(rng.choice([0, 1, 2, 7, 40]))]
    if batch and rng.random() < 0.15:
        batch.insert(rng.randrange(len(batch) + 1), _invalid_event(rng))
    return batch


def _received_at(rng: random.Random, round_: int) -> datetime:
    t = T0 + timedelta(minutes=round_, microseconds=rng.randint(0, 999_999))
    return rng.choice([t, t.replace(tzinfo=None), t.astimezone(timezone(timedelta(hours=-7)))])


def _stored(repo: Repository, agent_id: str) -> Rows:
    return [tuple(r) for r in repo.session.execute(text(
        "SELECT client_id, seq, CAST(payload AS TEXT), received_at, applied_version, "
        "forgotten_version, origin_event_id FROM events WHERE agent_key = "
        "(SELECT key FROM agents WHERE id = :a) ORDER BY seq"),
        {"a": agent_id})]


def _counters(repo: Repository, agent_id: str) -> tuple[int, int, int]:
    a = repo.session.execute(select(Agent).where(Agent.id == agent_id)
                             .execution_options(populate_existing=True)).scalar_one()
    return a.next_seq, a.events_received, a.events_applied


def _masked(ids: list[str]) -> list[str]:
    """Generated ids are random: check their form and uniqueness, then mask them."""
    gen = [c for c in ids if c.startswith("ev_")]
    assert all(GENERATED.match(c) for c in gen) and len(set(gen)) == len(gen)
    return ["<generated>" if GENERATED.match(c) else c for c in ids]


def _returned(acc: list[Any]) -> list[tuple[Any, ...]]:
    masked = _masked([e.client_id for e in acc])
    return [(c, e.seq, e.payload, e.received_at) for c, e in zip(masked, acc, strict=True)]


def _two_agents(db) -> tuple[str, str]:
    with unit_of_work(db) as repo:
        tenant, _ = repo.create_tenant("t")
        layers, labels = empty_state()
        return tuple(repo.create_agent(tenant.id, name, {"kind": "classifier"}, layers,
                                       labels, checksum((layers, labels)),
                                       created_at=T0).id for name in ("new", "ref"))


@pytest.mark.parametrize("reference", sorted(REFERENCES))
@pytest.mark.parametrize("seed", [0, 1])
def test_append_matches_reference(db, reference, seed):
    ref_append = REFERENCES[reference]
    new_id, ref_id = _two_agents(db)
    rng = random.Random(seed)
    pool = [f"id{k}" for k in range(25)] + ["ü-ñ/ id", "x" * EVENT_ID_LEN]
    for round_ in range(14):
        batch = _random_batch(rng, pool)
        now = _received_at(rng, round_)
        outcomes = []
        for agent_id, append in ((new_id, None), (ref_id, ref_append)):
            try:
                with unit_of_work(db) as repo:
                    if append is None:
                        acc, dup = repo.append_events(agent_id, batch, received_at=now)
                    else:
                        acc, dup = append(repo, agent_id, batch, received_at=now)
                    # the counters are current inside the transaction too
                    assert repo.get_agent(agent_id).next_seq == _counters(repo, agent_id)[0]
                    outcomes.append((_returned(acc), dup))
            except InputError as exc:
                outcomes.append(("InputError", exc.field))
        assert outcomes[0] == outcomes[1], (round_, batch)
        with unit_of_work(db, write=False) as repo:
            new_rows, ref_rows = _stored(repo, new_id), _stored(repo, ref_id)
            assert _counters(repo, new_id) == _counters(repo, ref_id)
            assert _counters(repo, new_id)[:2] == (len(new_rows) + 1, len(new_rows))
        for rows in (new_rows, ref_rows):
            masked = _masked([r[0] for r in rows])
            rows[:] = [(m, *r[1:]) for m, r in zip(masked, rows, strict=True)]
        assert new_rows == ref_rows  # payload compared as stored text: the same encoding
        assert [r[1] for r in new_rows] == list(range(1, len(new_rows) + 1))
    assert len(new_rows) > 20  # the batches did store something


def test_append_reads_back_and_counts_in_one_transaction(db):
    new_id, _ = _two_agents(db)
    with unit_of_work(db) as repo:
        acc, dup = repo.append_events(new_id, [
            {"id": "a", "input": [0.5, 1.0], "target": "x", "ts": T0},
            {"input": "no id", "target": "y"}, {"id": "a", "input": "again"}])
        assert dup == ["a"] and [e.seq for e in acc] == [1, 2]
        agent = repo.get_agent(new_id)
        assert (agent.next_seq, agent.events_received) == (3, 2)
        pending = repo.pending_events(new_id)
        assert [(e.client_id, e.seq, e.payload) for e in pending] == [
            (e.client_id, e.seq, e.payload) for e in acc]
        assert pending[0].payload["ts"] == T0.isoformat()
        assert pending[0].received_at == acc[0].received_at  # default: now, UTC
        assert acc[0].received_at.tzinfo is not None
        assert repo.events_by_ids(new_id, [acc[1].client_id])[0].seq == 2


@pytest.mark.parametrize("append", ["new", "old_orm_path"])
def test_unique_violation_surfaces_as_before(db, append):
    """A stale ``next_seq`` collides with a stored seq: both paths raise IntegrityError
    (only version-number races become VersionConflict) and nothing is kept."""
    new_id, _ = _two_agents(db)
    with unit_of_work(db) as repo:
        repo.append_events(new_id, [{"id": "a"}, {"id": "b"}])
    with unit_of_work(db) as repo:
        repo.session.execute(text("UPDATE agents SET next_seq = 2 WHERE id = :a"), {"a": new_id})
    with pytest.raises(IntegrityError), unit_of_work(db) as repo:
        if append == "new":
            repo.append_events(new_id, [{"id": "c"}])
        else:
            storage_append.append_events_orm(repo, new_id, [{"id": "c"}])
    with unit_of_work(db, write=False) as repo:
        assert [r[0] for r in _stored(repo, new_id)] == ["a", "b"]
        assert _counters(repo, new_id)[:2] == (2, 2)


def test_append_benchmark_runs():
    table = storage_append.run(None, [1, 10], events=20, dim=4, min_tx=2, max_tx=3)
    lines = table.splitlines()
    assert len(lines) == 4 and lines[2].startswith("| sqlite | 1 |")


@pytest.mark.parametrize("bad,field", [({"id": "a\ud800", "input": "x"}, "events[1].id"),
                                       ({"id": "b", "input": "\udfff"}, "events[1]")])
def test_unstorable_text_is_input_error_naming_the_event(db, bad, field):
    """Lone surrogates cannot be stored as UTF-8: a named 422-class error, not a crash."""
    new_id, _ = _two_agents(db)
    with pytest.raises(InputError) as err, unit_of_work(db) as repo:
        repo.append_events(new_id, [{"id": "ok", "input": "x"}, bad])
    assert err.value.field == field
    with unit_of_work(db, write=False) as repo:
        assert _stored(repo, new_id) == [] and _counters(repo, new_id)[:2] == (1, 0)
