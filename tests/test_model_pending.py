"""``rls`` agents with wide keys keep pending rows (``P − QᵀQ``): the agent and the service.

The reference is the same agent without pending rows (a state stored before they existed, which
learns through :func:`agent.memory.rls.chunk.rls_chunk`, itself checked against the loop).
"""

from __future__ import annotations

import numpy as np
import pytest

from agent.config import AgentConfig
from agent.memory.delta import apply_delta, state_checksum
from agent.model import MemoryAgent
from tests.helpers import assert_close
from tests.service_fixtures import auth, wait_applied

DIM = 8
LIFT = 1024  # the narrowest key width with pending rows (256 of them)


def _config(dtype: str = "float64", forget: float = 1.0) -> AgentConfig:
    return AgentConfig.from_dict({"kind": "classifier", "encoder": "none", "dim": DIM, "memory": {
        "rule": "rls", "ridge": 0.05, "forget": forget, "lift_dim": LIFT, "dtype": dtype}})


def _stream(n: int, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    c = rng.integers(0, 5, n)
    X = rng.standard_normal((n, DIM))
    X[np.arange(n), c] += 3.0
    return X, [f"c{int(v)}" for v in c]


def _legacy(cfg: AgentConfig) -> MemoryAgent:
    """The agent as a state stored before pending rows existed loads it: no ``Q``."""
    agent = MemoryAgent(cfg)
    layers, labels = MemoryAgent.initial_state(cfg)
    del layers["Q"]
    agent.load_state(layers, labels)
    return agent


def test_wide_rls_agents_start_with_no_pending_rows_others_have_none():
    layers, _ = MemoryAgent.initial_state(_config())
    assert layers["Q"].shape == (0, LIFT)
    assert "Q" not in MemoryAgent.initial_state(_config(forget=0.99))[0]  # ρ < 1 replaces P
    narrow = AgentConfig.from_dict({"kind": "classifier", "encoder": "none", "dim": DIM,
                                    "memory": {"rule": "rls", "lift_dim": 512}})
    assert set(MemoryAgent.initial_state(narrow)[0]) == {"S", "P"}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_pending_agent_follows_the_agent_without_pending_rows(dtype):
    cfg = _config(dtype)
    X, y = _stream(700, seed=1)
    fast, ref = MemoryAgent(cfg), _legacy(cfg)
    folds = 0
    for s, n in zip(range(0, 700, 100), (1, 15, 63, 300, 100, 21, 200), strict=False):
        d = fast.learn_many(X[s:s + n], y[s:s + n])
        ref.learn_many(X[s:s + n], y[s:s + n])
        folds += "P" in d.layers
    (lf, _), (lr, _) = fast.state, ref.state
    assert "Q" not in lr and 0 < lf["Q"].shape[0] <= 256 and folds >= 1
    assert_close(lf["S"], lr["S"], name=f"S {dtype}")
    assert_close(lf["P"] - lf["Q"].T @ lf["Q"], lr["P"], name=f"P − QᵀQ {dtype}")
    probes, _ = _stream(50, seed=2)
    assert [p["label"] for p in fast.predict_many(probes)] == [p["label"] for p in ref.predict_many(probes)]


def test_pending_agent_deltas_rebuild_bit_identically_and_the_state_round_trips():
    cfg = _config("float32")
    X, y = _stream(600, seed=3)
    agent = MemoryAgent(cfg)
    deltas = [agent.learn_many(X[s:s + 64], y[s:s + 64], delta_dtype="float16")
              for s in range(0, 600, 64)]
    layers, labels = MemoryAgent.initial_state(cfg)
    for d in deltas:
        layers = apply_delta(layers, d)
        labels += d.labels_added
    assert state_checksum(layers, labels) == agent.checksum()
    again = MemoryAgent(cfg)
    again.load_state(layers, labels)  # a snapshot with pending rows loads as it is
    assert again.checksum() == agent.checksum()


def test_service_keeps_rolls_back_and_forgets_an_agent_with_pending_rows(raw, tenant_a):
    body = {"name": "pending", "kind": "classifier", "encoder": "none", "dim": DIM,
            "memory": {"rule": "rls", "ridge": 0.05, "lift_dim": LIFT, "dtype": "float32"}}
    r = raw.post("/v1/agents", json=body, headers=auth(tenant_a))
    assert r.status_code == 201, r.text
    agent = r.json()
    X, y = _stream(400, seed=7)
    events = [{"id": f"e{i}", "input": X[i].tolist(), "target": y[i]} for i in range(400)]
    for s in range(0, 150, 50):
        tenant_a.ingest(agent["id"], events[s:s + 50])
    v1 = wait_applied(tenant_a, agent["id"], 150).head_version
    for s in range(150, 400, 50):  # past 256 pending rows: P is folded at least once
        tenant_a.ingest(agent["id"], events[s:s + 50])
    v2 = wait_applied(tenant_a, agent["id"], 400).head_version
    cfg = AgentConfig.from_dict(body)
    probes, _ = _stream(20, seed=8)

    def labels_at(version: int) -> list[str | None]:
        got = tenant_a.predict(agent["id"], probes.tolist(), min_version=version).predictions
        return [p.label for p in got]

    def reference(Xs: np.ndarray, ys: list[str]) -> list[str | None]:
        ref = _legacy(cfg)
        ref.learn_many(Xs, ys)
        return [p["label"] for p in ref.predict_many(probes)]

    assert labels_at(v2) == reference(X, y)
    r = raw.post(f"/v1/agents/{agent['id']}/rollback", json={"version": v1}, headers=auth(tenant_a))
    assert r.status_code == 200, r.text  # the rebuild of v1 verified its checksum
    history = {v.version: v for v in tenant_a.versions(agent["id"]).versions}
    assert history[v1].checksum == r.json()["checksum"] and v2 > v1
    assert labels_at(r.json()["version"]) == reference(X[:150], y[:150])
    r = raw.post(f"/v1/agents/{agent['id']}/forget", json={"event_ids": ["e0", "e1"]},
                 headers=auth(tenant_a))
    assert r.status_code == 200, r.text
    assert labels_at(r.json()["version"]) == reference(X[2:150], y[2:150])


def test_rls_agent_benchmark_prints_both_agents_side_by_side(capsys):
    from benchmarks import rls_agent

    assert rls_agent.main(["--dims", "1024", "--dtypes", "float32", "--sizes", "5", "--events", "10"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| 1024 |")]
    assert len(rows) == 3 and rows[0].count("|") == 9 and "×" in rows[0] and rows[1].count("|") == 6
    assert rows[2].count("|") == 7


def test_commit_checksums_reuse_the_hash_of_an_unchanged_p_and_equal_the_full_hash():
    cfg = _config("float32")
    X, y = _stream(400, seed=4)
    agent = MemoryAgent(cfg)
    reused = []
    for s in range(0, 400, 40):  # folds after 280 and 400 events; appends in between
        d = agent.learn_many(X[s:s + 40], y[s:s + 40])
        assert agent.checksum() == state_checksum(*agent.state)  # the definition, hashed in full
        reused.append((agent._hasher.reused, "P" in d.layers))
    # after the first call, P's hash state is reused exactly when P was not replaced
    assert all((r >= 1) == (not folded) for r, folded in reused[1:]) and any(f for _, f in reused)


def test_a_reads_only_view_predicts_like_the_learner_without_p():
    """What a serving replica keeps: S (and labels), not P and Q; it follows the learner's
    deltas and refuses to learn or to give a checksum it cannot compute."""
    cfg = _config("float32")
    X, y = _stream(500, seed=6)
    agent, view = MemoryAgent(cfg), MemoryAgent(cfg)
    view.load_state(*agent.state)
    view.keep_reads_only()
    assert set(view.state[0]) == {"S"}
    for s in range(0, 500, 50):  # a fold at 300 and at 500
        view.apply(agent.learn_many(X[s:s + 50], y[s:s + 50]))
    probes, _ = _stream(60, seed=9)
    assert view.predict_many(probes, top_k=3) == agent.predict_many(probes, top_k=3)
    assert np.array_equal(view.state[0]["S"], agent.state[0]["S"])
    with pytest.raises(RuntimeError, match="cannot learn"):
        view.learn_many(X[:2], y[:2])
    with pytest.raises(RuntimeError, match="checksum"):
        view.checksum()
    view.load_state(*agent.state)  # a whole state again: a learner again
    assert view.checksum() == agent.checksum()


def test_a_learner_with_cached_hash_states_still_copies_and_pickles():
    import copy
    import pickle

    agent = MemoryAgent(_config("float32"))
    X, y = _stream(30, seed=5)
    agent.learn_many(X, y)
    digest = agent.checksum()  # fills the cache of hash states
    for twin in (copy.deepcopy(agent), pickle.loads(pickle.dumps(agent))):
        assert twin.checksum() == digest
        twin.learn_many(X[:5], y[:5])
        assert twin.checksum() == state_checksum(*twin.state) != digest
