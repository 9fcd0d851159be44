"""Compact stored delta forms (``neg``: E = −A, ``shift``: E = [0 | I]): exact round trips, the
states an ``rls`` agent with pending rows commits rebuild bit for bit from them (SQLite and
PostgreSQL through Alembic), and migration 0003 rewrites them as factors on downgrade."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import select

from agent.config import AgentConfig
from agent.memory.delta import LayerDelta, state_checksum
from storage import deltaform
from storage.engine import Database
from storage.models import DeltaRow
from storage.repository import unit_of_work
from tests.db_fixtures import *  # noqa: F401,F403
from tests.db_fixtures import commit_learning, downgraded


def _bits(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a).tobytes()


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_pack_picks_the_exact_compact_form_and_unpack_restores_every_bit(dtype):
    rng = np.random.default_rng(0)
    A = rng.standard_normal((5, 7)).astype(dtype)
    A[0, :3] = 0.0  # −0.0 in E: negation must restore the sign of zero
    sel = np.zeros((5, 9), dtype)
    sel[:, 4:] = np.eye(5, dtype=dtype)
    for E, shape, want in [(np.negative(A), (7, 7), "neg"), (sel, (9, 7), "shift"),
                           (rng.standard_normal((5, 9)).astype(dtype), (9, 7), "factors")]:
        ld = LayerDelta.factors(A, E, 1.0)
        form, arrays = deltaform.pack(ld)
        assert form == want and len(arrays) == (2 if want == "factors" else 1)
        assert [a.shape for a in arrays] == deltaform.shapes(form, *shape, rank=5)
        back = deltaform.unpack(form, arrays, 1.0, shape)
        assert _bits(back.A) == _bits(A) and _bits(back.E) == _bits(E)
    D = rng.standard_normal((3, 4)).astype(dtype)
    assert deltaform.pack(LayerDelta.of_dense(D, 0.0))[0] == "dense"


def test_near_misses_stay_factors():
    A = np.array([[1.0, 0.0], [2.0, -3.0]])
    E = np.negative(A)
    E[0, 1] = 0.0  # +0.0 where −A has −0.0: equal as numbers, not as bits
    assert deltaform.pack(LayerDelta.factors(A, E))[0] == "factors"
    E = np.negative(A)
    E[1, 0] = np.nextafter(E[1, 0], 0.0)
    assert deltaform.pack(LayerDelta.factors(A, E))[0] == "factors"
    sel = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    sel[0, 0] = 1e-300
    assert deltaform.pack(LayerDelta.factors(np.ones((2, 4)), sel))[0] == "factors"
    assert deltaform.pack(LayerDelta.factors(A.astype(np.float32), np.negative(A)))[0] == "factors"


@pytest.mark.parametrize("form,shape,rank", [("neg", (3, 4), 2), ("shift", (2, 5), 3),
                                             ("factors", (2, 5), None), ("diag", (2, 2), 1)])
def test_impossible_stored_shapes_are_refused(form, shape, rank):
    with pytest.raises(ValueError):
        deltaform.shapes(form, *shape, rank=rank)


def _pending_agent_commits(db: Database, delta_dtype: str | None = None):
    """An rls agent with pending rows (1024-d keys) committing 9 micro-batches into the store."""
    cfg = AgentConfig.from_dict({"kind": "classifier", "encoder": "none", "dim": 6, "memory": {
        "rule": "rls", "ridge": 0.1, "lift_dim": 1024, "dtype": "float32"}})
    X = np.random.default_rng(2).standard_normal((540, 6))
    return commit_learning(db, cfg, X, [f"c{i % 5}" for i in range(540)], 60, delta_dtype)


@pytest.mark.parametrize("delta_dtype", [None, "float16"])
def test_pending_rls_deltas_are_stored_compact_and_rebuild_bit_identically(db, delta_dtype):
    agent_id, sums = _pending_agent_commits(db, delta_dtype)
    with unit_of_work(db, write=False) as repo:
        rows = repo.session.scalars(select(DeltaRow).where(DeltaRow.agent_id == agent_id)).all()
        forms = {(r.layer, r.form) for r in rows}
        assert ("Q", "shift") in forms and ("P", "neg") in forms  # S: 5 labels, dense is smaller
        for r in rows:  # A alone: rank × d_k numbers
            if r.form in ("neg", "shift"):
                assert len(r.data) == r.rank * r.d_k * np.dtype(r.dtype).itemsize
        for v, want in enumerate(sums):
            layers, labels = repo.load_state(agent_id, v)  # verifies the checksum
            assert state_checksum(layers, labels) == want


def test_downgrade_rewrites_compact_forms_as_factors_and_nothing_is_lost(empty_db_url):
    with downgraded(empty_db_url, _pending_agent_commits, "0002") as (db, agent_id, sums):
        with unit_of_work(db, write=False) as repo:
            forms = set(repo.session.scalars(select(DeltaRow.form)))
            assert forms <= {"factors", "dense"}
            assert state_checksum(*repo.load_state(agent_id, len(sums) - 1)) == sums[-1]


def test_storage_benchmark_measures_real_agents_in_each_format():
    from benchmarks.storage import agent_bytes_per_event

    legacy, plain, stored = (agent_bytes_per_event(1024, 10, pending=p, compact=c, events=300)
                             for p, c in ((False, False), (True, False), (True, True)))
    print(f"bytes/event: no pending rows {legacy:.0f}, pending A and E {plain:.0f}, stored {stored:.0f}")
    assert stored < plain and stored < 1.05 * legacy


def test_compact_counts_the_factors_as_stored():
    """A neg delta of rank between d/2 and d is smaller as A alone than dense: it stays factors
    (before, compact() counted A and E and stored d² numbers); a generic one goes dense."""
    rng = np.random.default_rng(4)
    A = rng.standard_normal((300, 384))
    neg = LayerDelta.factors(A, -A).compact()
    assert not neg.is_dense and deltaform.pack(neg)[0] == "neg"
    generic = LayerDelta.factors(A, rng.standard_normal((300, 384))).compact()
    assert generic.is_dense
    square = rng.standard_normal((400, 384))
    assert LayerDelta.factors(square, -square).compact().is_dense  # 400·384 > 384²
