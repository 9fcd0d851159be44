"""Vector agents that standardise their inputs online (``standardize``, ``input_scale``).

The statistics are a versioned state layer ("Z"): checked against the harness's
OnlineStandardizer fed one row at a time (the obviously correct reference), for micro-batch
boundaries, for bit-identical rebuilds, and through the real HTTP service for rollback.
"""

from __future__ import annotations

import numpy as np
import pytest

from agent.backbones.vector import STATS_LAYER, OnlineStandardizer, running_stats
from agent.config import AgentConfig
from agent.errors import InputError
from agent.memory.delta import apply_delta, state_checksum
from agent.model import MemoryAgent
from tests.helpers import assert_close
from tests.service_fixtures import auth, wait_applied

DIM = 5
SCALE = [4.0, 0.5, 0.5, 1.0, 2.0]


def _config(**extra) -> AgentConfig:
    return AgentConfig.from_dict({"kind": "classifier", "encoder": "none", "dim": DIM,
                                  "memory": {"rule": "delta", "lift_dim": 64}, **extra})


def _stream(n: int, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    X = rng.normal(loc=[100, -3, 0, 7, 1e3], scale=[10, 0.1, 1, 5, 300], size=(n, DIM))
    y = [f"c{int(v)}" for v in (X[:, 0] > 100) + 2 * (X[:, 3] > 7)]
    return X, y


@pytest.mark.parametrize("n", [1, 15, 63, 300])
def test_equals_the_harness_standardizer_fed_one_row_at_a_time(n):
    X, y = _stream(n, seed=n)
    agent = MemoryAgent(_config(standardize=True, input_scale=SCALE))
    ref_std, ref = OnlineStandardizer(DIM), MemoryAgent(_config())
    for i in range(n):  # the reference: transform with the statistics before, learn, then fold in
        assert agent.predict_many(X[i:i + 1]) == ref.predict_many(
            ref_std.transform_many(X[i:i + 1]) * np.array(SCALE))
        agent.learn_many(X[i:i + 1], y[i:i + 1])
        ref.learn_many(ref_std.transform_many(X[i:i + 1]) * np.array(SCALE), y[i:i + 1])
        ref_std.learn_many(X[i:i + 1])
    Z = agent._layers[STATS_LAYER]
    assert Z[0, 0] == n and np.array_equal(Z[1], ref_std.mean_) and np.array_equal(Z[2], ref_std._m2)
    assert np.array_equal(agent._layers["S"], ref._layers["S"])


def test_micro_batch_boundaries_change_no_statistic():
    X, y = _stream(120, seed=3)
    one, split, rows = (MemoryAgent(_config(standardize=True)) for _ in range(3))
    one.learn_many(X, y)
    split.learn_many(X[:47], y[:47])
    split.learn_many(X[47:], y[47:])
    for i in range(len(X)):
        rows.learn_many(X[i:i + 1], y[i:i + 1])
    for other in (split, rows):
        assert np.array_equal(one._layers[STATS_LAYER], other._layers[STATS_LAYER])
        # S to the lift's rounding: its float32 product rounds a row differently in batches of
        # other sizes on some BLAS kernels (OpenBLAS's Haswell kernel: 3e-6 here; 1e-10 with
        # its Prescott kernel, where a row's features do not depend on the batch)
        assert_close(one._layers["S"], other._layers["S"], rtol=1e-5, name="S across boundaries")


def test_rebuild_from_deltas_is_bit_identical_with_float16_deltas():
    X, y = _stream(90, seed=4)
    cfg = _config(standardize=True, input_scale=SCALE)
    agent = MemoryAgent(cfg)
    deltas = [agent.learn_many(X[s:s + 30], y[s:s + 30], delta_dtype="float16") for s in (0, 30, 60)]
    assert all(d.layers[STATS_LAYER].dense.dtype == np.float64 for d in deltas)  # never cast
    layers, labels = MemoryAgent.initial_state(cfg)
    for d in deltas:
        layers = apply_delta(layers, d)
        labels += d.labels_added
    assert state_checksum(layers, labels) == agent.checksum()
    fresh = MemoryAgent(cfg)
    fresh.load_state(layers, labels)
    assert fresh.predict_many(X[:10]) == agent.predict_many(X[:10])


def test_running_stats_row_i_never_sees_itself():
    X = np.array([[1.0], [3.0], [5.0], [5.0]])
    Xs, Z = running_stats(np.zeros((3, 1)), X)
    for i in range(1, 4):  # mean and (population) std of rows before i
        prev = X[:i, 0]
        std = prev.std() if prev.std() > 1e-8 else 1.0
        assert Xs[i, 0] == pytest.approx((X[i, 0] - prev.mean()) / std)
    assert Z[:, 0].tolist() == [4.0, X[:, 0].mean(), ((X[:, 0] - X[:, 0].mean()) ** 2).sum()]


@pytest.mark.parametrize("body,field", [
    ({"encoder": "minilm", "standardize": True}, "standardize"),
    ({"encoder": "none", "dim": 3, "standardize": "yes"}, "standardize"),
    ({"encoder": "none", "dim": 3, "input_scale": [1, 2]}, "input_scale"),
    ({"encoder": "none", "dim": 2, "input_scale": [1, 0]}, "input_scale"),
    ({"encoder": "none", "dim": 2, "input_scale": [1, float("nan")]}, "input_scale"),
    ({"encoder": "minilm", "input_scale": [1.0] * 384}, "input_scale"),
])
def test_bad_settings_name_the_field(body, field):
    with pytest.raises(InputError) as e:
        AgentConfig.from_dict({"kind": "classifier", **body})
    assert e.value.field == field


def test_config_round_trip_and_defaults_unchanged():
    cfg = _config(standardize=True, input_scale=SCALE)
    assert AgentConfig.from_dict(cfg.to_dict()) == cfg
    plain = _config().to_dict()
    assert "standardize" not in plain and "input_scale" not in plain  # the §7 shape as before


def test_service_standardises_and_rollback_restores_the_statistics(raw, tenant_a):
    body = {"name": "std", "kind": "classifier", "encoder": "none", "dim": 2,
            "standardize": True, "input_scale": [2.0, 1.0], "memory": {"rule": "delta", "lift_dim": 32}}
    r = raw.post("/v1/agents", json=body, headers=auth(tenant_a))
    assert r.status_code == 201, r.text
    agent = r.json()
    assert agent["standardize"] is True and agent["input_scale"] == [2.0, 1.0]
    X, y = _stream(40, seed=5)
    X = X[:, [0, 4]]  # two columns on very different scales
    events = [{"id": f"e{i}", "input": X[i].tolist(), "target": y[i]} for i in range(40)]
    tenant_a.ingest(agent["id"], events[:20])
    v1 = wait_applied(tenant_a, agent["id"], 20).head_version
    tenant_a.ingest(agent["id"], events[20:])
    v2 = wait_applied(tenant_a, agent["id"], 40).head_version
    ref = MemoryAgent(AgentConfig.from_dict(body))
    ref.learn_many(X, y)  # one batch or many: the same statistics and, to rounding, the same S
    probes = X[:8].tolist()
    got = tenant_a.predict(agent["id"], probes, min_version=v2).predictions
    assert [p.label for p in got] == [p["label"] for p in ref.predict_many(X[:8])]
    r = raw.post(f"/v1/agents/{agent['id']}/rollback", json={"version": v1}, headers=auth(tenant_a))
    assert r.status_code == 200, r.text
    ref1 = MemoryAgent(AgentConfig.from_dict(body))
    ref1.learn_many(X[:20], y[:20])
    back = tenant_a.predict(agent["id"], probes, min_version=r.json()["version"]).predictions
    assert [p.label for p in back] == [p["label"] for p in ref1.predict_many(X[:8])]
    history = {v.version: v for v in tenant_a.versions(agent["id"]).versions}
    assert history[v1].checksum == r.json()["checksum"] and v2 > v1
