"""Classifier agents with rule ``softmax`` (rehearsal): settings, the agent, the store, the service.

The reference is the float64 oracle (:func:`agent.memory.softmax.naive.softmax_replay_naive`) fed the
agent's own keys, and, through the service, an in-process agent learning the same events.
"""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import select

from agent.config import DEFAULT_REPLAY, DEFAULT_SOFTMAX_BETA, AgentConfig
from agent.errors import InputError
from agent.memory.delta import state_checksum
from agent.memory.softmax.naive import softmax_replay_naive
from agent.model import MemoryAgent, replay_seed
from storage.engine import Database
from storage.models import DeltaRow
from storage.repository import unit_of_work
from tests.db_fixtures import *  # noqa: F401,F403
from tests.db_fixtures import commit_learning, downgraded
from tests.helpers import assert_close
from tests.service_fixtures import auth, wait_applied

DIM = 8


def _config(dtype: str = "float64", **memory) -> AgentConfig:
    """Rule softmax rehearsing every event (the unbounded memory; the bounded one, the default,
    is tested in test_model_reservoir.py)."""
    return AgentConfig.from_dict({"kind": "classifier", "encoder": "none", "dim": DIM, "memory": {
        "rule": "softmax", "dtype": dtype, "reservoir": None, **memory}})


def _stream(n: int, seed: int = 0, classes: int = 5) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    c = rng.integers(0, classes, n)
    X = rng.standard_normal((n, DIM))
    X[np.arange(n), c] += 3.0
    return X, [f"c{int(v)}" for v in c]


def test_settings_defaults_and_the_json_shape():
    cfg = _config()
    assert (cfg.memory.beta, cfg.memory.replay) == (DEFAULT_SOFTMAX_BETA, DEFAULT_REPLAY) == (0.8, 7)
    assert cfg.to_dict()["memory"]["replay"] == DEFAULT_REPLAY
    assert AgentConfig.from_dict(cfg.to_dict()) == cfg
    plain = AgentConfig.from_dict({"kind": "classifier", "encoder": "none", "dim": 3,
                                   "memory": {"rule": "delta"}})
    assert "replay" not in plain.to_dict()["memory"]  # the §7 shape of other rules is unchanged
    assert set(MemoryAgent.initial_state(cfg)[0]) == {"S", "X", "Y"}
    assert set(MemoryAgent.initial_state(_config(replay=0))[0]) == {"S"}


@pytest.mark.parametrize("body,field", [
    ({"kind": "recall", "memory": {"rule": "softmax"}}, "memory.rule"),
    ({"memory": {"rule": "rls", "replay": 4}}, "memory.replay"),
    ({"memory": {"rule": "softmax", "replay": -1}}, "memory.replay"),
    ({"memory": {"rule": "softmax", "replay": 257}}, "memory.replay"),
    ({"memory": {"rule": "softmax", "replay": True}}, "memory.replay"),
    ({"memory": {"rule": "softmax", "replay": 2.5}}, "memory.replay"),
    ({"memory": {"rule": "softmaxx"}}, "memory.rule"),
])
def test_bad_settings_name_the_field(body, field):
    with pytest.raises(InputError) as exc:
        AgentConfig.from_dict({"kind": "classifier", "encoder": "none", "dim": 4, **body})
    assert exc.value.field == field


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_agent_equals_the_oracle_whatever_its_micro_batches(dtype):
    cfg = _config(dtype, replay=6, beta=0.7, decay=0.999)
    X, y = _stream(400, seed=1)
    agent, s = MemoryAgent(cfg), 0
    betas = np.full(400, 0.7)
    for n in (1, 15, 63, 300, 21):  # the last event of each batch brings its own β
        agent.learn_many(X[s:s + n], y[s:s + n], betas=[None] * (n - 1) + [0.2])
        betas[s + n - 1] = 0.2
        s += n
    layers = agent.state[0]
    pos = {label: i for i, label in enumerate(agent.labels)}
    assert_close(layers["X"], agent.keys(X), rtol=0.0 if dtype == "float64" else 1e-7, name="keys kept")
    S_ref, _, labels = softmax_replay_naive(np.zeros((len(pos), cfg.key_dim)), layers["X"],
                                            [pos[v] for v in y], betas, 6, alpha=0.999,
                                            seed=replay_seed(cfg))
    assert_close(layers["S"], S_ref, rtol=1e-11 if dtype == "float64" else 1e-4, name=f"S, {dtype}")
    assert layers["Y"][:, 0].tolist() == labels


def test_state_round_trips_and_bad_label_positions_are_refused():
    cfg = _config(replay=3)
    X, y = _stream(50, seed=2)
    agent = MemoryAgent(cfg)
    agent.learn_many(X, y)
    twin = MemoryAgent(cfg)
    twin.load_state(*agent.state)
    assert twin.checksum() == agent.checksum() == state_checksum(*agent.state)
    twin.learn_many(X[:7], y[:7])
    agent.learn_many(X[:7], y[:7])
    assert twin.checksum() == agent.checksum()
    layers, labels = agent.state
    bad = dict(layers, Y=layers["Y"] + 0.5)
    with pytest.raises(ValueError, match="label positions"):
        twin.load_state(bad, labels)
    with pytest.raises(ValueError, match="shape"):
        twin.load_state(dict(layers, Y=layers["Y"][:-1]), labels)


def test_rehearsal_keeps_the_first_classes_when_they_stop_arriving():
    """Class-incremental: classes 0–2 first, then only 3–5; without rehearsal the first classes
    are forgotten, with it they are kept (the point of the rule)."""
    X1, y1 = _stream(600, seed=3, classes=3)
    X2, y2 = _stream(1500, seed=4, classes=6)
    keep = np.array([v not in ("c0", "c1", "c2") for v in y2])
    X2, y2 = X2[keep], [v for v, k in zip(y2, keep, strict=True) if k]
    Xt, yt = _stream(300, seed=5, classes=3)
    acc = {}
    for R in (0, 8):
        agent = MemoryAgent(_config(replay=R, beta=0.5))
        for s in range(0, 600, 50):
            agent.learn_many(X1[s:s + 50], y1[s:s + 50])
        for s in range(0, len(y2), 50):
            agent.learn_many(X2[s:s + 50], y2[s:s + 50])
        acc[R] = np.mean([p["label"] == t for p, t in zip(agent.predict_many(Xt), yt, strict=True)])
    print(f"first classes kept: {acc}")
    assert acc[8] > 0.85 and acc[0] < acc[8] - 0.2


def test_a_reads_only_view_drops_the_rehearsal_rows_and_predicts_the_same():
    cfg = _config("float32", replay=4)
    X, y = _stream(120, seed=6)
    agent, view = MemoryAgent(cfg), MemoryAgent(cfg)
    view.keep_reads_only()
    for s in range(0, 120, 30):
        view.apply(view.for_reads(agent.learn_many(X[s:s + 30], y[s:s + 30])))
    assert set(view.state[0]) == {"S"}
    assert view.predict_many(X[:20], top_k=2) == agent.predict_many(X[:20], top_k=2)


def _commits(db: Database, delta_dtype: str | None = None):
    X, y = _stream(90, seed=8)
    return commit_learning(db, _config("float32", replay=5), X, y, 10, delta_dtype)


@pytest.mark.parametrize("delta_dtype", [None, "float16"])
def test_rehearsal_rows_are_stored_as_rows_and_rebuild_bit_identically(db, delta_dtype):
    agent_id, sums = _commits(db, delta_dtype)
    with unit_of_work(db, write=False) as repo:
        rows = repo.session.scalars(select(DeltaRow).where(DeltaRow.agent_id == agent_id)).all()
        forms = {(r.layer, r.form, np.dtype(r.dtype).name) for r in rows}
        # keys as every delta is stored; label positions stay float32 (whole numbers)
        assert {("X", "rows", delta_dtype or "float32"), ("Y", "rows", "float32")} <= forms
        for r in rows:
            if r.form == "rows":
                assert len(r.data) == r.rank * r.d_k * np.dtype(r.dtype).itemsize
        for v, want in enumerate(sums):
            layers, labels = repo.load_state(agent_id, v)  # verifies the checksum
            assert state_checksum(layers, labels) == want
            assert layers["Y"].shape == (10 * v, 1)


def test_downgrade_rewrites_rows_as_factors_and_upgrade_reads_them(empty_db_url):
    with downgraded(empty_db_url, _commits, "0003") as (db, _, _):
        with unit_of_work(db, write=False) as repo:
            assert "rows" not in set(repo.session.scalars(select(DeltaRow.form)))


def test_service_learns_rolls_back_and_forgets_a_softmax_agent(raw, tenant_a):
    body = {"name": "softmax", "kind": "classifier", "encoder": "none", "dim": DIM,
            "memory": {"rule": "softmax", "replay": 4, "dtype": "float64", "reservoir": None}}
    r = raw.post("/v1/agents", json=body, headers=auth(tenant_a))
    assert r.status_code == 201, r.text
    agent = r.json()
    assert agent["memory"]["rule"] == "softmax" and agent["memory"]["replay"] == 4
    X, y = _stream(300, seed=7)
    events = [{"id": f"e{i}", "input": X[i].tolist(), "target": y[i]} for i in range(300)]
    for s in range(0, 150, 50):
        tenant_a.ingest(agent["id"], events[s:s + 50])
    v1 = wait_applied(tenant_a, agent["id"], 150).head_version
    for s in range(150, 300, 30):
        tenant_a.ingest(agent["id"], events[s:s + 30])
    v2 = wait_applied(tenant_a, agent["id"], 300).head_version
    cfg = AgentConfig.from_dict(body)
    probes, _ = _stream(20, seed=9)

    def scores_at(version: int) -> np.ndarray:
        got = tenant_a.predict(agent["id"], probes.tolist(), min_version=version, top_k=5).predictions
        return np.array([[s for _, s in sorted(p.top)] for p in got])

    def reference(Xs: np.ndarray, ys: list[str]) -> np.ndarray:
        ref = MemoryAgent(cfg)
        ref.learn_many(Xs, ys)  # one batch: the service's micro-batches differ only by rounding
        return np.array([[s for _, s in sorted(p["top"])] for p in ref.predict_many(probes, top_k=5)])

    assert_close(scores_at(v2), reference(X, y), rtol=1e-9, name="service vs in-process")
    r = raw.post(f"/v1/agents/{agent['id']}/rollback", json={"version": v1}, headers=auth(tenant_a))
    assert r.status_code == 200, r.text  # the rebuild of v1 verified its checksum
    assert r.json()["checksum"] == {v.version: v for v in tenant_a.versions(agent["id"]).versions}[v1].checksum
    assert_close(scores_at(r.json()["version"]), reference(X[:150], y[:150]), rtol=1e-9, name="rollback")
    r = raw.post(f"/v1/agents/{agent['id']}/forget", json={"event_ids": ["e0", "e3"]},
                 headers=auth(tenant_a))
    assert r.status_code == 200, r.text
    keep = [i for i in range(150) if i not in (0, 3)]
    assert_close(scores_at(r.json()["version"]), reference(X[keep], [y[i] for i in keep]),
                 rtol=1e-9, name="forget: the stream without e0 and e3")


@pytest.mark.parametrize("memory,field", [
    ({"rule": "softmax", "replay": -2}, "memory.replay"),
    ({"rule": "delta", "replay": 3}, "memory.replay"),
    ({"rule": "bogus"}, "memory.rule"),
])
def test_service_refuses_bad_softmax_settings_naming_the_field(raw, tenant_a, memory, field):
    r = raw.post("/v1/agents", json={"name": "x", "kind": "classifier", "encoder": "none", "dim": 4,
                                     "memory": memory}, headers=auth(tenant_a))
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == field
    r = raw.post("/v1/agents", json={"name": "x", "kind": "recall", "encoder": "none", "dim": 4,
                                     "memory": {"rule": "softmax"}}, headers=auth(tenant_a))
    assert r.status_code == 422 and r.json()["error"]["field"] == "memory.rule", r.text


def test_rows_appended_in_place_leave_every_earlier_view_as_it_was():
    from agent.memory.delta import LayerDelta, RowRoom, apply_layer

    rng = np.random.default_rng(11)
    room, X0 = RowRoom(), rng.standard_normal((3, 4))
    a, b = (LayerDelta.append(rng.standard_normal((2, 4)), 5) for _ in range(2))
    X1 = room.append("X", X0, a)  # X0 is not a view of the room: copied
    assert X1.tobytes() == apply_layer(X0, a).tobytes() and not np.shares_memory(X0, X1)
    more = LayerDelta.append(rng.standard_normal((5, 4)), 10)
    X2 = room.append("X", X1, more)  # the last view: in place
    assert np.shares_memory(X1, X2) and X2.tobytes() == apply_layer(X1, more).tobytes()
    snapshot = X2.copy()
    X1b = room.append("X", X0, b)  # another branch from an older state: a new buffer
    X2b = room.append("X", X1, more)  # X1 again, no longer the last view: copied
    assert X2.tobytes() == snapshot.tobytes()  # nothing written over a view handed out
    assert X1b.tobytes() == apply_layer(X0, b).tobytes() and X2b.tobytes() == X2.tobytes()
    with pytest.raises(ValueError, match="cannot take"):
        room.append("X", X0, more)


def test_checksums_of_a_long_stream_rehash_only_the_last_row_block():
    """An agent past two blocks of 4,096 events: every commit's checksum equals the full
    definition, and the full blocks of X and Y are not hashed again."""
    from agent.memory.delta import ROW_BLOCK

    cfg = _config("float32", replay=2)
    X, y = _stream(2 * ROW_BLOCK + 700, seed=12)
    agent = MemoryAgent(cfg)
    reused = []
    for s in range(0, len(y), 1100):
        agent.learn_many(X[s:s + 1100], y[s:s + 1100])
        assert agent.checksum() == state_checksum(*agent.state)
        reused.append(agent._hasher.reused_blocks)
    print(f"full blocks reused per commit: {reused}")
    assert reused[:4] == [0, 0, 0, 0] and reused[4] == 2 and reused[-1] == 4  # X and Y: 2 blocks each
    twin = MemoryAgent(cfg)
    twin.load_state(*agent.state)  # a copy: hashed in full, the same digest
    assert twin.checksum() == agent.checksum()


def test_storage_benchmark_counts_what_a_softmax_agent_stores():
    """Per event: S's delta as the smaller of factors ((R+1) rows of keys and errors) and dense
    (150 × 384), plus one key (384 numbers) and one label position, all float32."""
    from benchmarks.storage import softmax_bytes_per_event

    one, many = softmax_bytes_per_event(1, events=5), softmax_bytes_per_event(64, events=128)
    print(f"bytes/event: micro-batches of 1 {one:.0f}, of 64 {many:.0f}")
    assert one == 8 * (384 + 150) * 4 + 384 * 4 + 4  # factors (R + 1 = 8 rows) for one event
    assert many == 150 * 384 * 4 / 64 + 384 * 4 + 4  # dense for 64
