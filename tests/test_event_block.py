"""Vector events in columns (storage/repository/event_block.py, workers/actors/handover.py),
each against the one-event-at-a-time form it replaces, on random inputs:

1. :func:`parse_block` gives, row for row, what ``events._payload`` gives for the block's
   events (same ids, payload text, input bytes, dtype and checksum, same narrowing to
   float32), and raises the same first error when a row is bad (sizes 1, 15, 63, 300);
2. :func:`append_groups` with blocks answers and stores exactly what it does with the same
   events as dicts (SQLite and PostgreSQL), duplicates and generated ids included;
3. :meth:`EventBlock.of_events` takes only what it can carry unchanged;
4. the learner's handover (:func:`pack` / :func:`unpack`) gives ``as_replay()``'s dicts;
5. :func:`key_range_errors` is :func:`check_key_range` row by row;
6. an Arrow body's block holds the events JSON validation makes of the same events.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from functools import partial
from typing import Any

import numpy as np
import pytest

from agent.errors import InputError as AgentInputError
from storage.errors import InputError
from storage.repository import unit_of_work
from storage.repository.event_block import EventBlock, parse_block
from storage.repository.event_groups import append_groups
from storage.repository.events import AcceptedEvent, _payload
from tests.db_fixtures import *  # noqa: F401,F403
from tests.storage_helpers import empty_agents, event_rows
from workers.actors.handover import AcceptedColumns, pack, unpack
from workers.validation import check_key_range, check_vector, key_range_errors

SIZES = (1, 15, 63, 300)


TRICKY = [0.0, -0.0, 1, 1.0, True, 0, False, 2.5, "2.5", None,
          datetime(2026, 1, 1, 12, tzinfo=UTC),
          datetime(2026, 1, 1, 13, tzinfo=timezone(timedelta(hours=1)))]  # the same instant


def _block(rng: np.random.Generator, n: int, d: int, dtype: Any) -> EventBlock:
    """Random rows: in float64 blocks about half the rows are float32 numbers exactly; ids
    missing now and then (and repeated); fields with betas, timestamps and a meta object."""
    X = rng.normal(size=(n, d))
    if dtype == np.float64:
        exact = rng.random(n) < 0.5
        X[exact] = X[exact].astype(np.float32)
    X = X.astype(dtype)
    ids = [None if rng.random() < 0.2 else f"e{int(rng.integers(3 * n))}" for _ in range(n)]
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    fields = []
    for _ in range(n):
        f: dict[str, Any] = {"target": f"L{int(rng.integers(5))}"}
        if rng.random() < 0.3:
            f["beta"] = float(rng.uniform(0.1, 1.0))
        if rng.random() < 0.3:
            f["ts"] = t0 + timedelta(seconds=int(rng.integers(10**6)))
        if rng.random() < 0.1:
            f["meta"] = {"k": [1, "x"]}
        if rng.random() < 0.4:  # equal values that print apart (parse_block memoises payloads)
            f["w"] = TRICKY[int(rng.integers(len(TRICKY)))]
        fields.append(f)
    return EventBlock(X, ids, fields)


def _error(fn: Any) -> tuple[str, str] | None:
    try:
        fn()
    except InputError as e:
        return (e.field, str(e))
    return None


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_parse_block_is_payload_row_by_row(n, dtype):
    rng = np.random.default_rng(n)
    b = _block(rng, n, 7, dtype)
    got = parse_block(b)
    want = [_payload(ev, i) for i, ev in enumerate(b.events())]
    assert len(got) == len(want) == n
    for g, w in zip(got, want, strict=True):
        assert g[:3] == w[:3]  # id, payload, its JSON text
        # the stored input: same dtype, same bytes
        assert g[3].dtype == w[3].dtype and g[3].tobytes() == w[3].tobytes()
    if dtype == np.float64 and n > 10:  # both kinds of rows were there
        assert {c[3].dtype.str for c in got} == {"<f4", "<f8"}


def test_equal_fields_that_print_apart_keep_their_own_text():
    """parse_block computes a payload once per distinct fields: values that compare equal but
    are stored differently (0.0 and -0.0, 1, 1.0 and True, one instant in two zones) each
    keep their own JSON text, in any order."""
    fields = [{"target": "a", "w": w} for w in TRICKY] * 2
    fields += [{"w": w, "target": "a"} for w in TRICKY]  # the keys' order is the text's
    b = EventBlock(np.ones((len(fields), 3), dtype=np.float32), [None] * len(fields), fields)
    want = [_payload(ev, i)[2] for i, ev in enumerate(b.events())]
    assert [p[2] for p in parse_block(b)] == want
    assert len(set(want)) == len(TRICKY) * 2


@pytest.mark.parametrize("n", SIZES)
def test_parse_block_raises_the_first_error_of_the_reference(n):
    rng = np.random.default_rng(100 + n)
    for trial in range(12):
        b = _block(rng, n, 5, np.float64 if trial % 2 else np.float32)
        for _ in range(int(rng.integers(1, 3))):
            i = int(rng.integers(n))
            what = int(rng.integers(5))
            if not isinstance(b.fields[i], dict):  # made "not an object" already
                continue
            if what == 0:
                b.inputs[i, int(rng.integers(5))] = [np.nan, np.inf, -np.inf][trial % 3]
            elif what == 1:
                b.ids[i] = ["", " ", "x" * 300, "a\x00b", "\ud800", 7][trial % 6]
            elif what == 2:
                b.fields[i] = {**b.fields[i], "meta": {1j}}  # not JSON
            elif what == 3:
                b.fields[i] = "not an object"  # type: ignore[call-overload]
            else:
                b.fields[i] = {**b.fields[i], "note": float("nan")}
        want = _error(partial(_payloads, b.events()))
        assert want is not None
        assert _error(partial(parse_block, b)) == want


def _payloads(events: list[Any]) -> list[tuple[Any, ...]]:
    return [_payload(ev, i) for i, ev in enumerate(events)]


def test_narrowing_is_check_vectors():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(200, 4)) * np.array([1, 1e-40, 1e39, 1])  # subnormal, beyond float32
    X[::3, [0, 1, 3]] = X[::3, [0, 1, 3]].astype(np.float32)  # some rows float32 exactly
    X[::5, 2] = 1.0
    X[5] = [0.5, -0.0, 1e-45, 2.0]
    b = EventBlock(X, [None] * 200, [{}] * 200)
    kinds = set()
    for row, p in zip(X, parse_block(b), strict=True):
        want = check_vector(row.tolist(), 4, "input")
        assert p[3].dtype == want.dtype and np.array_equal(p[3], want)
        kinds.add(want.dtype)
    assert kinds == {np.dtype(np.float32), np.dtype(np.float64)}


@pytest.mark.parametrize("seed", range(2))
def test_append_groups_stores_a_block_as_its_events(db, seed):
    rng = np.random.default_rng(seed)
    with unit_of_work(db) as repo:
        tenant, _ = repo.create_tenant("t")
        cols = empty_agents(repo, tenant.id, "c", 3)
        dicts = empty_agents(repo, tenant.id, "d", 3)
    for _ in range(4):  # later groups meet the ids earlier ones stored
        reqs = [(int(rng.integers(3)), _block(rng, int(rng.choice(SIZES)), 6,
                                              [np.float32, np.float64][int(rng.integers(2))]))
                for _ in range(int(rng.integers(2, 6)))]
        with unit_of_work(db) as repo:
            got = append_groups(repo, [(cols[a], b) for a, b in reqs])
        with unit_of_work(db) as repo:
            want = append_groups(repo, [(dicts[a], b.events()) for a, b in reqs])
        for g, w in zip(got, want, strict=True):
            assert not isinstance(g, Exception) and not isinstance(w, Exception)
            assert g[1] == w[1]  # duplicate ids
            assert [(e.seq, e.payload, e.input.dtype, e.input.tobytes()) for e in g[0]] == \
                [(e.seq, e.payload, e.input.dtype, e.input.tobytes()) for e in w[0]]
    with unit_of_work(db, write=False) as repo:
        for c, d in zip(cols, dicts, strict=True):
            assert event_rows(repo, c, inputs=True) == event_rows(repo, d, inputs=True)
            assert len(event_rows(repo, c, inputs=True)) > 0


def test_of_events_takes_only_what_it_carries_unchanged():
    x32, x64 = np.ones(3, np.float32), np.full(3, 0.1)
    b = EventBlock.of_events([{"input": x32, "target": "a", "id": "1"},
                              {"target": "b", "input": x64, "beta": 0.5}])
    assert b is not None and b.inputs.dtype == np.float64 and b.ids == ["1", None]
    assert b.fields == [{"target": "a"}, {"target": "b", "beta": 0.5}]
    assert [ev["input"].dtype for ev in b.events()] == [np.float32, np.float64]
    for events in ([], [{"input": [1.0, 2.0]}], [{"input": x32}, {"input": np.ones(4)}],
                   [{"input": x32, "embedding": x32}], [{"input": np.ones(3, np.int64)}],
                   [{"input": np.ones((1, 3))}], ["not an event"]):
        assert EventBlock.of_events(events) is None
    with pytest.raises(ValueError):
        EventBlock(np.ones((2, 3)), [None], [{}, {}])


def test_handover_unpacks_to_as_replay():
    rng = np.random.default_rng(4)
    t = datetime(2026, 1, 1, tzinfo=UTC)
    for n in SIZES:
        for dtype in (np.float32, np.float64):
            evs = [AcceptedEvent(f"e{i}", i + 1, {"target": f"L{i % 3}"} if i % 2 else
                                 {"input": f"text {i}", "target": "x"}, t,
                                 rng.normal(size=5).astype(dtype)) for i in range(n)]
            packed = pack(evs)
            assert isinstance(packed, AcceptedColumns) and len(packed) == n
            _same(unpack(packed), [e.as_replay() for e in evs])
    mixed = [AcceptedEvent("a", 1, {}, t, np.ones(2, np.float32)),
             AcceptedEvent("b", 2, {}, t, np.ones(2))]
    chat = [AcceptedEvent("c", 1, {"input": "hi"}, t, None)]
    for evs in (mixed, chat):
        packed = pack(evs)
        assert isinstance(packed, list)
        _same(unpack(packed), [e.as_replay() for e in evs])


def _same(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.keys() == w.keys()
        for k in g:
            if isinstance(w[k], np.ndarray):
                assert g[k].dtype == w[k].dtype and np.array_equal(g[k], w[k])
            else:
                assert g[k] == w[k]


@pytest.mark.parametrize("agent", [{"standardize": True}, {"input_scale": 2.0},
                                   {"memory": {"lift_dim": 8}}, {}])
def test_key_range_errors_are_check_key_range_row_by_row(agent):
    rng = np.random.default_rng(5)
    for dtype in (np.float32, np.float64):
        X = (rng.normal(size=(300, 6)) * 10.0 ** rng.integers(0, 300, size=(300, 1)))
        X = np.clip(X, -3e38, 3e38).astype(dtype) if dtype == np.float32 else X
        got = key_range_errors(X, agent, lambda i: f"events[{i}].input")
        for i, row in enumerate(X):
            try:
                check_key_range(row, agent, f"events[{i}].input")
                assert i not in got
            except AgentInputError as e:
                assert (got[i].field, str(got[i])) == (e.field, str(e))
        if agent and dtype == np.float64:
            assert got  # some rows were out of range (float32 ones may all be in it)


def test_an_arrow_body_gives_the_block_json_validation_gives():
    from client import arrow_body
    from workers.http.arrow import arrow_events
    from workers.http.event_batch import split_events
    from workers.settings import Settings

    rng = np.random.default_rng(6)
    agent = {"kind": "classifier", "encoder": "none", "dim": 4, "standardize": True}
    for n in SIZES:
        for dtype in (np.float32, np.float64):
            X = rng.normal(size=(n, 4)).astype(dtype)
            X[::7] = 0.0  # rejected: all zeros
            X[1::11, 2] = 1e200 if dtype == np.float64 else 3e38
            evs = [{"input": X[i], "target": f"L{i % 3}", **({"id": f"i{i}"} if i % 4 else {}),
                    **({"beta": 0.25} if i % 5 == 0 else {})} for i in range(n)]
            rows, block, rejected, first, m = arrow_events(arrow_body(evs), agent, Settings())
            items = [(None, {**e, "input": e["input"].tolist()}, None) for e in evs]
            valid, want_rejected, want_first = split_events(items, agent, Settings())
            assert m == n and rows == [i for i, _ in valid]
            assert rejected == want_rejected and first == want_first
            if not rows:
                continue
            assert isinstance(block, EventBlock)
            got = [_payload(ev, i) for i, ev in enumerate(block.events())]
            want = [_payload(ev, i) for i, (_, ev) in enumerate(valid)]
            assert [g[:3] for g in got] == [w[:3] for w in want]
            assert [(g[3].dtype, g[3].tobytes()) for g in got] == \
                [(w[3].dtype, w[3].tobytes()) for w in want]


def test_clean_arrow_columns_give_what_row_checks_give():
    """An Arrow body whose rows all pass is taken column by column (workers/http/arrow.py
    ``clean_columns``); it must give what the JSON checks give row by row, and a body with
    one bad target, id or beta anywhere must still reject exactly that row."""
    from client import arrow_body
    from workers.http.arrow import arrow_events
    from workers.http.event_batch import split_events
    from workers.settings import Settings

    rng = np.random.default_rng(8)
    agent = {"kind": "classifier", "encoder": "none", "dim": 4}
    bad_targets = [" ", "\u2003\u00a0", "\x00x", "t" * 1001]
    bad_ids = ["", "\t", "a\x00", "i" * 201]
    bad_betas = [0.0, 1.5, -0.1, float("nan"), float("inf")]
    fast = 0
    for trial in range(60):
        n = SIZES[trial % len(SIZES)]
        X = rng.normal(size=(n, 4)).astype(np.float32)
        evs: list[dict[str, Any]] = []
        for i in range(n):
            ev: dict[str, Any] = {"input": X[i], "target": rng.choice(["é", "L1", "ß x", "t" * 1000])}
            if rng.random() < 0.6:
                ev["id"] = f"id-{trial}-{i}" if rng.random() < 0.9 else "\u00e9" * 200
            if trial % 3 == 0 and rng.random() < 0.5:
                ev["beta"] = float(rng.choice([1.0, 0.25, 1e-300]))
            evs.append(ev)
        if trial % 2:  # one bad cell somewhere
            i = int(rng.integers(n))
            what = trial % 6
            if what == 1:
                evs[i]["target"] = bad_targets[trial % len(bad_targets)]
            elif what == 3:
                evs[i]["id"] = bad_ids[trial % len(bad_ids)]
            else:
                evs[i]["beta"] = bad_betas[trial % len(bad_betas)]
        rows, block, rejected, first, m = arrow_events(arrow_body(evs), agent, Settings())
        items = [(None, {**e, "input": e["input"].tolist()}, None) for e in evs]
        valid, want_rejected, want_first = split_events(items, agent, Settings())
        assert m == n and rows == [i for i, _ in valid]
        assert rejected == want_rejected and first == want_first
        fast += not rejected
        assert isinstance(block, EventBlock)
        got = [_payload(ev, i) for i, ev in enumerate(block.events())]
        want = [_payload(ev, i) for i, (_, ev) in enumerate(valid)]
        assert [g[:3] for g in got] == [w[:3] for w in want]
    assert fast >= 25
