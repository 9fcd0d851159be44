"""Byte-plane coding of event input blocks (storage/planes.py): every bit comes back on
random arrays of awkward sizes, dtypes and values (the raw bytes are the oracle); a corrupt or
unknown coding is refused; a repository block of 384-d float32 inputs is stored coded, reads
back exactly, is smaller, and an erased row leaves no trace in it (SQLite and PostgreSQL)."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import select

from storage.errors import CorruptData
from storage.models import EventInputs
from storage.planes import CODERS, HUFF, PLANES, pack, unpack
from storage.repository import unit_of_work
from tests.db_fixtures import *  # noqa: F401,F403
from tests.storage_helpers import checksum, empty_state, replay


def _arrays(rng: np.random.Generator):
    for rows in (1, 15, 63, 300):
        for dim in (1, 3, 384):
            for dtype in ("<f2", "<f4", "<f8"):
                kind = rng.integers(4)
                if kind == 0:
                    m = rng.standard_normal((rows, dim))
                elif kind == 1:  # unit rows: an embedding's scale
                    m = rng.standard_normal((rows, dim))
                    m /= np.linalg.norm(m, axis=1, keepdims=True)
                elif kind == 2:  # uniform bytes: nothing to gain, stored raw
                    m = np.frombuffer(rng.bytes(rows * dim * np.dtype(dtype).itemsize),
                                      dtype=dtype).reshape(rows, dim).copy()
                else:  # zeros, signed zeros, subnormals, extremes, NaN payloads
                    pool = np.array([0.0, -0.0, 1e-310, -5e-324, 1.0, -2.0, np.inf, np.nan,
                                     1e300, -1e-300])
                    m = rng.choice(pool, size=(rows, dim))
                with np.errstate(over="ignore"):  # (float16: large values become inf)
                    yield np.ascontiguousarray(m.astype(dtype, copy=False))


@pytest.mark.parametrize("coding", sorted(CODERS))
def test_every_bit_comes_back(coding):
    rng = np.random.default_rng(0)
    coded = raw = 0
    for m in _arrays(rng):
        data, codec = pack(m, coding)
        out = unpack(data, codec, m.dtype.str, m.size, "test")
        assert out == m.tobytes(), (m.shape, m.dtype)
        assert len(data) < m.nbytes if codec else data == m.tobytes()
        coded += codec == coding
        raw += codec is None
    assert coded > 10 and raw > 10


@pytest.mark.parametrize("coding", sorted(CODERS))
def test_bad_codings_are_refused(coding):
    m = np.random.default_rng(1).standard_normal((20, 384)).astype(np.float32)
    data, codec = pack(m, coding)
    assert codec == coding
    with pytest.raises(CorruptData, match="unknown input coding"):
        unpack(data, "zstd", "<f4", m.size, "block 7")
    with pytest.raises(CorruptData, match="bad coded input"):
        unpack(data[:4] + b"\xff" * 8 + data[12:], codec, "<f4", m.size, "block 7")
    with pytest.raises(CorruptData, match="bad coded input"):
        unpack(b"\xff\xff\x00\x00" + data[4:], codec, "<f4", m.size, "block 7")
    with pytest.raises(CorruptData, match="wrong size|bad coded input"):
        unpack(data, codec, "<f4", m.size - 1, "block 7")
    with pytest.raises(CorruptData, match="wrong size|bad coded input"):
        unpack(data[:-1], codec, "<f4", m.size, "block 7")


def _agent_with_events(repo, X: np.ndarray) -> str:
    """A classifier agent with one event per row of ``X`` (ids ``e0``, ``e1``, ...)."""
    tenant, _ = repo.create_tenant("t")
    st0 = empty_state()
    aid = repo.create_agent(tenant.id, "a", {"kind": "classifier"}, *st0, checksum(st0)).id
    repo.append_events(aid, [{"id": f"e{i}", "input": X[i], "target": "x"}
                             for i in range(len(X))])
    return aid


def test_blocks_are_coded_read_back_exactly_and_erase(db):
    rng = np.random.default_rng(2)
    X = rng.standard_normal((50, 384)).astype(np.float32)
    with unit_of_work(db) as repo:
        aid = _agent_with_events(repo, X)
    with unit_of_work(db, write=False) as repo:
        (b,) = repo.session.scalars(select(EventInputs)).all()
        assert b.codec == PLANES and len(b.data) < 0.9 * X.nbytes
        got = {e.client_id: e.as_replay()["input"] for e in repo.events_of(aid)}
    assert all(got[f"e{i}"].tobytes() == X[i].tobytes() for i in range(50))
    with unit_of_work(db) as repo:  # a pending event forgotten: its row zeroed, re-coded
        repo.forget(aid, ["e7"], replay)
    with unit_of_work(db, write=False) as repo:
        (b,) = repo.session.scalars(select(EventInputs)).all()
        m = b.matrix("block")
        assert b.codec == PLANES and not m[7].any() and X[7].tobytes() not in m.tobytes()
        left = {e.client_id: e.as_replay().get("input") for e in repo.events_of(aid)}
    assert all(left[f"e{i}"].tobytes() == X[i].tobytes() for i in range(50) if i != 7)


def test_blocks_coded_before_read_back_and_erase(db):
    """A block written by the Huffman coding (before zstd) still reads back exactly; erasing
    a row of it re-codes the block with zstd."""
    import hashlib

    rng = np.random.default_rng(4)
    X = rng.standard_normal((40, 384)).astype(np.float32)
    with unit_of_work(db) as repo:
        aid = _agent_with_events(repo, X)
        (b,) = repo.session.scalars(select(EventInputs)).all()
        data, codec = pack(X, HUFF)
        b.data, b.codec, b.sha256 = data, codec, hashlib.sha256(data).digest()
    with unit_of_work(db, write=False) as repo:
        (b,) = repo.session.scalars(select(EventInputs)).all()
        assert b.codec == HUFF
        got = {e.client_id: e.as_replay()["input"] for e in repo.events_of(aid)}
    assert all(got[f"e{i}"].tobytes() == X[i].tobytes() for i in range(40))
    with unit_of_work(db) as repo:
        repo.forget(aid, ["e3"], replay)
    with unit_of_work(db, write=False) as repo:
        (b,) = repo.session.scalars(select(EventInputs)).all()
        m = b.matrix("block")
        assert b.codec == PLANES and not m[3].any()
        assert np.array_equal(np.delete(m, 3, axis=0), np.delete(X, 3, axis=0))


def test_downgrade_writes_coded_blocks_back_raw(empty_db_url):
    import hashlib

    import sqlalchemy as sa

    from storage.engine import Database, make_engine
    from storage.migrate import downgrade, upgrade

    upgrade(empty_db_url)
    X = np.random.default_rng(3).standard_normal((30, 384)).astype(np.float32)
    db = Database(empty_db_url)
    try:
        with unit_of_work(db) as repo:
            tenant, _ = repo.create_tenant("t")
            st0 = empty_state()
            aid = repo.create_agent(tenant.id, "a", {}, *st0, checksum(st0)).id
            repo.append_events(aid, [{"id": f"e{i}", "input": X[i], "target": "x"}
                                     for i in range(30)])
    finally:
        db.dispose()
    downgrade(empty_db_url, "0013")
    engine = make_engine(empty_db_url)
    try:
        with engine.connect() as conn:
            data, sha = conn.execute(sa.text("SELECT data, sha256 FROM event_inputs")).one()
            cols = {c["name"] for c in sa.inspect(conn).get_columns("event_inputs")}
    finally:
        engine.dispose()
    assert bytes(data) == X.tobytes() and bytes(sha) == hashlib.sha256(X.tobytes()).digest()
    assert "codec" not in cols
    upgrade(empty_db_url)
    db = Database(empty_db_url)
    try:
        with unit_of_work(db, write=False) as repo:
            got = [e.as_replay()["input"].tobytes() for e in repo.events_of(aid)]
    finally:
        db.dispose()
    assert got == [x.tobytes() for x in X]
