"""Agents with a float32 state (``memory.dtype``).

The float64 agent (itself checked against the per-event loop in ``test_model.py``) is the
reference: the float32 state follows it to float32 rounding on awkward batch sizes, its deltas
are float32 and rebuild bit-identically, and the real HTTP service keeps, rebuilds, rolls back
and forgets a float32 agent.
"""

from __future__ import annotations

import numpy as np
import pytest

from agent.config import AgentConfig
from agent.errors import InputError
from agent.memory.delta import apply_delta, state_checksum
from agent.model import MemoryAgent
from tests.helpers import assert_close
from tests.service_fixtures import auth, wait_applied

DIM = 8


def _config(rule: str, dtype: str | None = None, lift: int | None = 48) -> AgentConfig:
    mem: dict = {"rule": rule, "ridge": 0.05, "beta": 0.6}
    if lift:
        mem["lift_dim"] = lift
    if dtype:
        mem["dtype"] = dtype
    return AgentConfig.from_dict({"kind": "classifier", "encoder": "none", "dim": DIM, "memory": mem})


def _stream(n: int, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """Four well separated classes (centres ±3 on two axes) plus noise."""
    rng = np.random.default_rng(seed)
    c = rng.integers(0, 4, n)
    X = rng.standard_normal((n, DIM))
    X[:, 0] += np.where(c % 2 == 0, 3.0, -3.0)
    X[:, 1] += np.where(c < 2, 3.0, -3.0)
    return X, [f"c{int(v)}" for v in c]


def test_config_dtype_round_trips_and_the_default_is_shown():
    assert _config("rls").to_dict()["memory"]["dtype"] == "float64"  # every setting in force
    cfg = _config("rls", "float32")
    assert cfg.memory.dtype == "float32" and cfg.to_dict()["memory"]["dtype"] == "float32"
    assert AgentConfig.from_dict(cfg.to_dict()) == cfg
    assert MemoryAgent(cfg).dtype == np.float32
    assert MemoryAgent.initial_state(cfg)[0]["P"].dtype == np.float32


@pytest.mark.parametrize("body", [
    {"kind": "classifier", "encoder": "none", "dim": 2, "memory": {"dtype": "float16"}},
    {"kind": "classifier", "encoder": "none", "dim": 2, "memory": {"dtype": 32}},
    {"kind": "chat", "memory": {"dtype": "float32"}},
])
def test_bad_dtype_names_the_field(body):
    with pytest.raises(InputError) as e:
        AgentConfig.from_dict(body)
    assert e.value.field == "memory.dtype"


@pytest.mark.parametrize("rule", ["rls", "delta"])
@pytest.mark.parametrize("n", [1, 15, 63, 300])
def test_float32_state_follows_the_float64_agent(rule, n):
    X, y = _stream(n, seed=n)
    ref, got = MemoryAgent(_config(rule)), MemoryAgent(_config(rule, "float32"))
    for s in range(0, n, 32):
        ref.learn_many(X[s:s + 32], y[s:s + 32])
        got.learn_many(X[s:s + 32], y[s:s + 32])
    assert got.labels == ref.labels
    for name, arr in got._layers.items():
        assert arr.dtype == np.float32, name
        assert_close(arr, ref._layers[name], name=f"{rule} {name} n={n}")  # float32: 1e-5
    probes, _ = _stream(50, seed=99)
    agree = np.mean([a["label"] == b["label"] for a, b in
                     zip(got.predict_many(probes), ref.predict_many(probes), strict=True)])
    assert agree >= 0.98


@pytest.mark.parametrize("delta_dtype,stored", [("float64", np.float32), ("float32", np.float32),
                                                ("float16", np.float16), (None, np.float32)])
def test_float32_deltas_never_widen_and_rebuild_bit_identically(delta_dtype, stored):
    cfg = _config("rls", "float32")
    X, y = _stream(70, seed=3)
    agent = MemoryAgent(cfg)
    deltas = [agent.learn_many(X[s:s + 25], y[s:s + 25], delta_dtype=delta_dtype)
              for s in (0, 25, 50)]
    for d in deltas:
        for ld in d.layers.values():
            for part in (ld.A, ld.E, ld.dense):
                assert part is None or part.dtype == stored
    layers, labels = MemoryAgent.initial_state(cfg)
    for d in deltas:
        layers = apply_delta(layers, d)
        labels += d.labels_added
    assert state_checksum(layers, labels) == agent.checksum()


def test_service_keeps_rolls_back_and_forgets_a_float32_agent(raw, tenant_a):
    body = {"name": "f32", "kind": "classifier", "encoder": "none", "dim": DIM,
            "memory": {"rule": "rls", "ridge": 0.05, "lift_dim": 48, "dtype": "float32"}}
    r = raw.post("/v1/agents", json=body, headers=auth(tenant_a))
    assert r.status_code == 201, r.text
    agent = r.json()
    assert agent["memory"]["dtype"] == "float32"
    X, y = _stream(60, seed=7)
    events = [{"id": f"e{i}", "input": X[i].tolist(), "target": y[i]} for i in range(60)]
    tenant_a.ingest(agent["id"], events[:30])
    v1 = wait_applied(tenant_a, agent["id"], 30).head_version
    tenant_a.ingest(agent["id"], events[30:])
    v2 = wait_applied(tenant_a, agent["id"], 60).head_version
    cfg = AgentConfig.from_dict(body)
    ref = MemoryAgent(cfg)
    ref.learn_many(X, y)
    probes, _ = _stream(20, seed=8)
    got = tenant_a.predict(agent["id"], probes.tolist(), min_version=v2).predictions
    assert [p.label for p in got] == [p["label"] for p in ref.predict_many(probes)]
    # rollback: the serving side rebuilds version v1 from the store and verifies its checksum
    r = raw.post(f"/v1/agents/{agent['id']}/rollback", json={"version": v1}, headers=auth(tenant_a))
    assert r.status_code == 200, r.text
    history = {v.version: v for v in tenant_a.versions(agent["id"]).versions}
    assert history[v1].checksum == r.json()["checksum"] and v2 > v1
    back = tenant_a.predict(agent["id"], probes.tolist(), min_version=r.json()["version"]).predictions
    ref1 = MemoryAgent(cfg)
    ref1.learn_many(X[:30], y[:30])
    assert [p.label for p in back] == [p["label"] for p in ref1.predict_many(probes)]
    # forget replays the remaining events into a float32 state
    r = raw.post(f"/v1/agents/{agent['id']}/forget", json={"event_ids": ["e0", "e1"]},
                 headers=auth(tenant_a))
    assert r.status_code == 200, r.text
    ref2 = MemoryAgent(cfg)
    ref2.learn_many(X[2:30], y[2:30])
    after = tenant_a.predict(agent["id"], probes.tolist(), min_version=r.json()["version"]).predictions
    assert [p.label for p in after] == [p["label"] for p in ref2.predict_many(probes)]
