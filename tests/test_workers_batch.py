"""Predict batched across agents (one ``batched_read`` over padded, stacked states) equals each
agent's own ``predict_many``: in-process on random agents with different label counts and key
dimensions, and through the serving actors (``Runtime.predict_batch``, real Ray and SQLite)."""

from __future__ import annotations

import numpy as np
import pytest

from agent.config import AgentConfig
from agent.errors import InputError
from agent.model import MemoryAgent
from tests.workers_helpers import all_applied, start_deployment, vector_events, wait_for
from workers.actors.batch_predict import predict_many_agents
from workers.contract import ServiceError
from workers.http.errors import error_answer


def _agent(rng: np.random.Generator, dim: int, n_labels: int, lift: int | None = None,
           rule: str = "delta") -> MemoryAgent:
    mem = {"rule": rule, "beta": 0.7, "decay": float(rng.choice([1.0, 0.95]))}
    if lift:
        mem["lift_dim"] = lift
    a = MemoryAgent(AgentConfig.from_dict({"kind": "classifier", "encoder": "none",
                                           "dim": dim, "memory": mem}))
    if n_labels:
        n = int(rng.integers(n_labels, 4 * n_labels + 1))
        X = rng.normal(size=(n, dim))  # (n, dim)
        y = [f"L{i}" for i in range(n_labels)] + \
            [f"L{int(rng.integers(n_labels))}" for _ in range(n - n_labels)]
        a.learn_many(X, y)
    return a


def _same(got: list[dict], want: list[dict]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g["label"] == w["label"]
        assert abs(g["score"] - w["score"]) <= 1e-9
        assert ("top" in g) == ("top" in w)
        if "top" in w:
            assert [lab for lab, _ in g["top"]] == [lab for lab, _ in w["top"]]
            assert np.allclose([s for _, s in g["top"]], [s for _, s in w["top"]],
                               rtol=0, atol=1e-9)


@pytest.mark.parametrize("seed", range(6))
def test_batch_equals_per_agent_predict_many(seed):
    rng = np.random.default_rng(seed)
    agents = [_agent(rng, 24, int(rng.integers(0, 13))) for _ in range(10)]  # one d_k group
    agents += [_agent(rng, 8, int(rng.integers(1, 6))) for _ in range(3)]  # another d_k
    agents += [_agent(rng, 8, 4, lift=32), _agent(rng, 8, 5, rule="rls")]  # lift; rls
    requests = []
    for _ in range(40):
        a = agents[int(rng.integers(len(agents)))]
        n = int(rng.choice([1, 1, 2, 5, 12]))  # 12 > stack_max_queries: read on its own
        top_k = [None, 1, 3, 50][int(rng.integers(4))]
        requests.append((a, rng.normal(size=(n, a.config.dim)).tolist(), top_k))
    want = [a.predict_many(x, top_k=k) for a, x, k in requests]
    for kwargs in ({}, {"max_gather_bytes": 4096}, {"stack_max_queries": 0}):
        got = predict_many_agents(requests, **kwargs)
        for g, w in zip(got, want, strict=True):
            _same(g, w)


def test_batch_names_the_bad_request():
    rng = np.random.default_rng(0)
    a, b = _agent(rng, 4, 2), _agent(rng, 4, 3)
    with pytest.raises(InputError) as e:
        predict_many_agents([(a, [[1.0, 0, 0, 0]], None), (b, [[1.0, 2.0]], None)])
    assert e.value.field == "requests[1].inputs[0]"
    with pytest.raises(InputError) as e:
        predict_many_agents([(a, [[1.0, 0, 0, 0]], 0)])
    assert e.value.field == "requests[0].top_k"


DIM = 12


@pytest.fixture(scope="module")
def dep(ray_cluster, tmp_path_factory):
    running = start_deployment(tmp_path_factory.mktemp("batch"), learner_shards=2,
                               serving_replicas=2)
    yield running, running.service, running.service.create_tenant("t")["id"]
    running.stop()


def test_runtime_predict_batch_equals_single_predicts(dep):
    _, svc, tenant = dep
    rng = np.random.default_rng(11)
    cfg = {"kind": "classifier", "encoder": "none", "dim": DIM,
           "memory": {"rule": "delta", "beta": 0.5}}
    agents = [svc.create_agent(tenant, f"b{i}", cfg)["id"] for i in range(12)]
    for i, a in enumerate(agents[1:], start=1):  # agents[0] learns nothing: label None
        svc.ingest(tenant, a, vector_events(rng, 30 + 7 * i, DIM, 1 + i % 9, f"{a}-"), False)
    wait_for(lambda: all_applied(svc, tenant, agents), what="events applied")
    requests = [(agents[int(rng.integers(len(agents)))],
                 rng.normal(size=(int(rng.choice([1, 3, 10])), DIM)).tolist(),
                 [None, 2][int(rng.integers(2))]) for _ in range(30)]
    got = svc.predict_batch(tenant, requests)
    for (a, x, k), g in zip(requests, got, strict=True):
        want = svc.predict(tenant, a, x, top_k=k)
        assert g["version"] == want["version"] == svc.get_agent(tenant, a)["head_version"]
        _same(g["predictions"], want["predictions"])
    assert svc.predict_batch(tenant, []) == []


def test_runtime_predict_batch_errors(dep):
    _, svc, tenant = dep
    other = svc.create_tenant("other")["id"]
    cfg = {"kind": "classifier", "encoder": "none", "dim": DIM}
    mine = svc.create_agent(tenant, "mine", cfg)["id"]
    theirs = svc.create_agent(other, "theirs", cfg)["id"]
    with pytest.raises(ServiceError) as e:
        svc.predict_batch(tenant, [(mine, [[1.0] * DIM], None), (theirs, [[1.0] * DIM], None)])
    assert e.value.status == 404
    agents = [svc.create_agent(tenant, f"e{i}", cfg)["id"] for i in range(6)]
    bad = [(a, [[1.0] * DIM], None) for a in agents]
    bad[4] = (agents[4], [[1.0] * (DIM - 1)], None)
    with pytest.raises(InputError) as err:  # answered 422 invalid_input (workers/http/errors.py)
        svc.predict_batch(tenant, bad)
    assert error_answer(err.value).status == 422  # type: ignore[union-attr]
    assert err.value.field == "requests[4].inputs[0]"
