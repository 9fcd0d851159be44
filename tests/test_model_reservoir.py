"""The default classifier: rule ``softmax``, float32, a bounded rehearsal memory (issue 18).

Settings and their JSON; the agent against the float64 oracle
(:func:`agent.memory.softmax.naive.reservoir_naive`) fed the agent's own keys; memory that stops growing
with the stream; the store (put deltas rebuilt bit for bit, the migration that keeps old configs'
meaning); and exact forgetting through the real service on SQLite and PostgreSQL: the forget
version's checksum is the one of a learner that never saw the events.
"""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from sqlalchemy import select, update

from agent.config import DEFAULT_RESERVOIR, AgentConfig
from agent.errors import InputError
from agent.memory.delta import state_checksum
from agent.memory.softmax.naive import reservoir_naive
from agent.model import MemoryAgent, replay_seed
from storage.engine import Database
from storage.migrate import downgrade, upgrade
from storage.models import Agent, DeltaRow
from storage.repository import unit_of_work
from tests.db_fixtures import *  # noqa: F401,F403
from tests.db_fixtures import commit_learning
from tests.helpers import assert_close
from tests.workers_helpers import wait_for
from workers.settings import Settings

DIM = 8
BASE = {"kind": "classifier", "encoder": "none", "dim": DIM}


def _stream(n: int, seed: int = 0, classes: int = 4) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    c = rng.integers(0, classes, n)
    X = rng.standard_normal((n, DIM))
    X[np.arange(n), c] += 3.0
    return X, [f"c{int(v)}" for v in c]


def test_defaults_are_softmax_float32_bounded_and_shown_in_force():
    cfg = AgentConfig.from_dict(BASE)
    mem = cfg.to_dict()["memory"]
    assert mem == {"rule": "softmax", "beta": 0.8, "decay": 1.0, "ridge": 0.1, "forget": 1.0,
                   "lift_dim": None, "dtype": "float32", "replay": 7, "reservoir": DEFAULT_RESERVOIR}
    assert AgentConfig.from_dict(cfg.to_dict()) == cfg
    assert set(MemoryAgent.initial_state(cfg)[0]) == {"S", "X", "Y", "T", "N"}
    unbounded = AgentConfig.from_dict({**BASE, "memory": {"reservoir": None}})
    assert unbounded.memory.reservoir is None and unbounded.to_dict()["memory"]["reservoir"] is None
    assert set(MemoryAgent.initial_state(unbounded)[0]) == {"S", "X", "Y"}
    recall = AgentConfig.from_dict({**BASE, "kind": "recall"}).to_dict()["memory"]
    assert (recall["rule"], recall["beta"], recall["dtype"]) == ("delta", 1.0, "float64")
    assert "reservoir" not in recall and "replay" not in recall


@pytest.mark.parametrize("memory", [{"reservoir": 0}, {"reservoir": -3}, {"reservoir": True},
                                    {"reservoir": 2.5}, {"reservoir": 65537}, {"reservoir": "10"},
                                    {"rule": "delta", "reservoir": 4}, {"rule": "rls", "reservoir": 4}])
def test_bad_reservoir_settings_name_the_field(memory):
    with pytest.raises(InputError) as e:
        AgentConfig.from_dict({**BASE, "memory": memory})
    assert e.value.field == "memory.reservoir"


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_agent_equals_the_oracle_and_stops_growing(dtype):
    cap, R = 5, 3
    cfg = AgentConfig.from_dict({**BASE, "memory": {"reservoir": cap, "replay": R, "dtype": dtype}})
    X, y = _stream(300, seed=1)
    agent = MemoryAgent(cfg)
    sizes = []
    for s in range(0, 300, 17):
        agent.learn_many(X[s:s + 17], y[s:s + 17])
        sizes.append(agent.state[0]["X"].shape[0])
    layers, labels = agent.state
    K = MemoryAgent(cfg).keys(X).astype(dtype)
    yi = [labels.index(v) for v in y]
    S, slots = reservoir_naive(np.zeros((len(labels), agent.config.key_dim)), K, yi,
                               cfg.memory.beta, R, cap, seed=replay_seed(cfg))
    assert_close(layers["S"], S, rtol=1e-10 if dtype == "float64" else 2e-4, name="S")
    assert layers["T"][:, 0].astype(int).tolist() == [t for _, _, t in slots]
    assert np.array_equal(layers["X"], np.array([k for k, _, _ in slots]))
    assert sizes[-1] == cap * len(labels) and sizes[-4:] == [sizes[-1]] * 4  # bounded
    assert int(layers["N"][0, 0]) == 300 and layers["X"].dtype == np.dtype(dtype)


@pytest.mark.parametrize("delta_dtype", [None, "float16"])
def test_put_deltas_are_stored_and_rebuild_bit_identically(db, delta_dtype):
    cfg = AgentConfig.from_dict({**BASE, "memory": {"reservoir": 3, "replay": 2}})
    X, y = _stream(120, seed=2)
    agent_id, sums = commit_learning(db, cfg, X, y, 10, delta_dtype)
    with unit_of_work(db, write=False) as repo:
        forms = {(r.layer, r.form, np.dtype(r.dtype).name) for r in
                 repo.session.scalars(select(DeltaRow).where(DeltaRow.agent_id == agent_id))}
        # slots are put in place as the state holds them, positions and counts in float64
        assert {("X", "put", "float32"), ("Y", "put", "float32"), ("T", "put", "float64"),
                ("N", "dense", "float64")} <= forms
        for v, want in enumerate(sums):
            layers, labels = repo.load_state(agent_id, v)  # verifies the checksum
            assert state_checksum(layers, labels) == want
        assert layers["X"].shape[0] == 3 * 4


def test_migration_keeps_old_configs_meaning_and_refuses_to_drop_put_deltas(empty_db_url):
    upgrade(empty_db_url)
    db = Database(empty_db_url)
    try:
        old = {**BASE, "memory": {"rule": "softmax", "beta": 0.8, "decay": 1.0, "ridge": 0.1,
                                  "forget": 1.0, "lift_dim": None, "replay": 3}}
        with unit_of_work(db) as repo:
            tenant, _ = repo.create_tenant("m")
            cfg = AgentConfig.from_dict({**old, "memory": {**old["memory"], "reservoir": None,
                                                           "dtype": "float64"}})
            layers, labels = MemoryAgent.initial_state(cfg)
            row = repo.create_agent(tenant.id, "old", cfg.to_dict(), layers, labels,
                                    state_checksum(layers, labels))
            repo.session.execute(update(Agent).where(Agent.id == row.id).values(config=old))
        db.dispose()
        downgrade(empty_db_url, "0005")
        upgrade(empty_db_url)
        db = Database(empty_db_url)
        with unit_of_work(db, write=False) as repo:
            mem = repo.session.scalars(select(Agent.config).where(Agent.id == row.id)).one()["memory"]
            assert state_checksum(*repo.load_state(row.id, 0)) == state_checksum(layers, labels)
        assert mem["reservoir"] is None and mem["dtype"] == "float64"  # as it was: unbounded float64
        commit_learning(db, AgentConfig.from_dict({**BASE, "memory": {"reservoir": 2}}),
                        *_stream(20, seed=3), 5)
        db.dispose()
        with pytest.raises(RuntimeError, match="bounded rehearsal memory"):
            downgrade(empty_db_url, "0005")
    finally:
        db.dispose()


def test_forget_through_the_service_equals_a_learner_that_never_saw_the_events(ray_cluster, empty_db_url):
    """Default agent (no memory settings) on SQLite and PostgreSQL; the events forgotten include
    one the reservoir holds, so the reservoir after forget must be refilled as the learner's."""
    from workers.runtime import start

    batch = 16
    settings = Settings(database_url=empty_db_url, ray_namespace=f"rsv-{uuid.uuid4().hex[:8]}",
                        scheduler_enabled=False, batch_max_ms=5.0, batch_max_events=batch)
    running = start(settings, http=False)
    try:
        svc = running.service
        tenant = svc.create_tenant("r")["id"]
        body = {**BASE, "memory": {"reservoir": 3}}
        agent = svc.create_agent(tenant, "d", body)
        assert agent["memory"]["rule"] == "softmax" and agent["memory"]["reservoir"] == 3
        X, y = _stream(200, seed=4)
        events = [{"id": f"e{i}", "input": X[i].tolist(), "target": y[i]} for i in range(200)]
        for s in range(0, 200, 40):
            svc.ingest(tenant, agent["id"], events[s:s + 40], partial=False)
        wait_for(lambda: svc.get_agent(tenant, agent["id"])["events_applied"] == 200, what="applied")

        def learner(keep: list[int]) -> MemoryAgent:
            ref = MemoryAgent(AgentConfig.from_dict(body))
            for s in range(0, len(keep), batch):
                part = keep[s:s + batch]
                ref.learn_many(X[part], [y[i] for i in part])
            return ref

        full = learner(list(range(200)))
        held = full.state[0]["T"][:, 0].astype(int).tolist()
        gone = [held[0], 0 if held[0] != 0 else 1]
        out = svc.forget(tenant, agent["id"], [f"e{i}" for i in gone])
        want = learner([i for i in range(200) if i not in gone])
        assert out["checksum"] == want.checksum()  # bit for bit: S, the reservoir, the count
    finally:
        running.stop()
