"""Text predicts at the head answered in the HTTP process (workers/text_head.py) are the serving
actor's answers for the same version, bit for bit (issue 16).

Real Ray, real SQLite, real HTTP, real MiniLM (tests/service_fixtures.py), in both encoder modes
(the HTTP process's own MiniLM copy, and the encoder actor). As for vector agents
(tests/test_head_cache.py), after each ingest the head is asked three times (the first goes to the
serving actor, the second warms the copy, the third is answered from it) and every answer is
compared with the answer pinned to the version it reports, which always goes to the serving
actor (and through it to the encoder actor). Every query text is new, and nothing else encodes
meanwhile, so the encoder actor encodes each query list alone, in one forward pass, as this
process does: the embeddings, hence the JSON floats, are equal bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import ray

from tests.service_fixtures import auth, wait_applied

TOPICS = ["travel", "bank", "music", "weather", "food"]
WORDS = ["flight", "ticket", "balance", "savings", "jazz", "song", "rain", "sunny", "pizza",
         "salad", "hotel", "loan", "guitar", "storm", "pasta", "train", "card", "drums"]


def _text(rng: np.random.Generator, tag: str) -> str:
    return f"{tag} " + " ".join(WORDS[int(i)] for i in rng.integers(0, len(WORDS), 5))


def _post(raw: httpx.Client, head: dict[str, str], agent: str, body: dict[str, Any]) -> Any:
    r = raw.post(f"/v1/agents/{agent}/predict", headers=head, json=body)
    assert r.status_code == 200, r.text
    return r.json()


def _same_as_serving(raw: httpx.Client, head: dict[str, str], agent: str,
                     body: dict[str, Any]) -> dict[str, Any]:
    got = _post(raw, head, agent, body)
    pinned = _post(raw, head, agent, {**body, "version": got["version"]})
    assert got == pinned
    return got  # type: ignore[no-any-return]


def _encoder_calls(api: Any) -> int:
    actor = ray.get_actor("encoder", namespace=api.settings.ray_namespace)
    return int(ray.get(actor.stats.remote())["calls"])


@pytest.fixture(params=["local", "actor"])
def mode(request, api) -> Iterator[str]:
    """The HTTP process's text head in each mode (a learner copied while it holds takes its
    encoder then: agents are created fresh per test)."""
    th = api.service.text_head
    before, th.mode = th.mode, request.param
    try:
        yield request.param
    finally:
        th.mode = before


def _text_agent(tenant: Any, **memory: Any) -> str:
    return tenant.create_agent(f"txt-{np.random.default_rng().integers(1 << 30)}",
                               kind="classifier", encoder="minilm", memory=memory or None).id


@pytest.mark.parametrize("memory", [{}, {"rule": "rls"}], ids=["default", "rls"])
def test_text_head_answers_equal_the_serving_actors(api, tenant_a, raw, mode, memory):
    heads = api.service.heads
    hits0 = heads.stats["hits"]
    agent = _text_agent(tenant_a, **memory)
    head = auth(tenant_a)
    rng = np.random.default_rng(5)
    n = 0
    for step in range(6):
        k = int(rng.integers(1, 4))
        tenant_a.ingest(agent, [{"id": f"s{step}-{j}", "input": _text(rng, f"e{step}.{j}"),
                                 "target": TOPICS[int(rng.integers(0, len(TOPICS)))]}
                                for j in range(k)])
        n += k
        wait_applied(tenant_a, agent, n)
        queries = [_text(rng, f"{mode}-q{step}.{j}") for j in range(int(rng.integers(1, 3)))]
        body: dict[str, Any] = {"inputs": queries, "top_k": 3} if step % 2 else {"inputs": queries}
        answers = [_same_as_serving(raw, head, agent, body) for _ in range(3)]
        assert answers[0] == answers[1] == answers[2]
    assert heads.stats["hits"] - hits0 >= 6  # the third ask of each step at least
    # a head hit encodes here ("local": the encoder actor is not asked) or in the actor
    calls = _encoder_calls(api)
    hits = heads.stats["hits"]
    _post(raw, head, agent, {"inputs": [_text(rng, f"{mode}-last")]})
    assert heads.stats["hits"] == hits + 1
    assert _encoder_calls(api) - calls == (0 if mode == "local" else 1)


def test_rollback_and_forget_are_not_answered_from_a_stale_copy(api, tenant_a, raw, mode):
    agent = _text_agent(tenant_a)
    head = auth(tenant_a)
    rng = np.random.default_rng(13)
    q = {"inputs": [_text(rng, f"{mode}-rq{i}") for i in range(2)], "top_k": 3}
    tenant_a.ingest(agent, [{"id": f"a{i}", "input": _text(rng, f"a{i}"),
                             "target": TOPICS[i % 3]} for i in range(6)])
    v1 = wait_applied(tenant_a, agent, 6).head_version
    for _ in range(3):  # warm at v1
        assert _same_as_serving(raw, head, agent, q)["version"] == v1
    assert api.service.heads.get(agent, v1) is not None

    tenant_a.ingest(agent, [{"id": "b0", "input": _text(rng, "b0"), "target": "brand new"}])
    v2 = wait_applied(tenant_a, agent, 7).head_version
    for _ in range(3):
        got = _same_as_serving(raw, head, agent, {**q, "top_k": 10})
        assert got["version"] == v2 and "brand new" in [lab for lab, _ in got["predictions"][0]["top"]]

    rb = tenant_a.rollback(agent, v1)  # a new head whose state is v1's: no "brand new"
    for _ in range(3):
        got = _same_as_serving(raw, head, agent, {**q, "top_k": 10})
        assert got["version"] == rb.version
        assert "brand new" not in [lab for lab, _ in got["predictions"][0]["top"]]

    fg = tenant_a.forget(agent, ["a0", "a1"])
    for _ in range(3):
        assert _same_as_serving(raw, head, agent, q)["version"] == fg.version


def test_another_tenant_gets_404_from_a_warm_text_agent(api, tenant_a, tenant_b, raw):
    agent = _text_agent(tenant_a)
    tenant_a.ingest(agent, [{"id": "t0", "input": "book a flight to Oslo", "target": "travel"}])
    wait_applied(tenant_a, agent, 1)
    q = {"inputs": ["a plane ticket please"]}
    for _ in range(3):
        _same_as_serving(raw, auth(tenant_a), agent, q)
    assert api.service.heads.get(agent, tenant_a.get_agent(agent).head_version) is not None
    for body in (q, {**q, "version": 1}):
        r = raw.post(f"/v1/agents/{agent}/predict", headers=auth(tenant_b), json=body)
        assert r.status_code == 404 and r.json()["error"]["field"] == "agent_id", r.text


def test_what_the_text_head_serves():
    from workers.settings import Settings
    from workers.text_head import TextHead

    th = TextHead("local", 1, lambda: pytest.fail("the encoder actor is not asked"))
    assert th.serves({"kind": "classifier", "encoder": "minilm"})
    assert not th.serves({"kind": "recall", "encoder": "minilm"})  # answers are embeddings
    assert not th.serves({"kind": "chat", "encoder": "minilm"})
    assert not th.serves({"kind": "classifier", "encoder": "none"})  # the head cache's own
    assert not TextHead("off", 1, lambda: None).serves({"kind": "classifier",  # type: ignore
                                                       "encoder": "minilm"})
    with pytest.raises(ValueError, match="text_head_encoder"):
        TextHead("both", 1, lambda: None)  # type: ignore[arg-type,return-value]
    with pytest.raises(ValueError, match="text_head_encoder"):
        Settings(text_head_encoder="both")


def test_batching_merges_concurrent_callers_and_keeps_each_callers_rows():
    """:class:`workers.text_head.Batching` over the real MiniLM: alone, a caller gets the
    inner encoder's bits; concurrent callers get their own rows, in order, from shared
    passes (a padded pass moves the last float32 bits: compared at 1e-6); an error reaches
    every caller of its pass and the next callers are served."""
    import threading

    from agent.backbones.minilm import MiniLMEncoder
    from workers.text_head import Batching

    inner = MiniLMEncoder(cache_size=0)
    enc = Batching(inner, max_batch=8)
    rng = np.random.default_rng(3)
    lists = [[_text(rng, f"b{k}.{j}") for j in range(1 + k % 3)] for k in range(12)]
    for texts in lists[:3]:
        assert np.array_equal(enc.encode(texts), inner.encode(texts))

    got: dict[int, np.ndarray] = {}
    start = threading.Barrier(len(lists))

    def one(k: int) -> None:
        start.wait()
        got[k] = enc.encode(lists[k])

    forwards = enc.stats["forwards"]
    threads = [threading.Thread(target=one, args=(k,)) for k in range(len(lists))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k, texts in enumerate(lists):
        assert got[k].shape == (len(texts), 384)
        np.testing.assert_allclose(got[k], inner.encode(texts), rtol=0, atol=1e-6)
    assert enc.stats["forwards"] - forwards < len(lists)  # at least two callers shared a pass

    with pytest.raises(Exception):  # noqa: B017 - whatever the tokenizer raises for a non-text
        enc.encode([123])  # type: ignore[list-item]
    assert np.array_equal(enc.encode(lists[0]), inner.encode(lists[0]))


def test_bad_inputs_at_a_warm_text_head_are_refused_as_the_serving_actor_refuses_them(
        api, tenant_a, raw):
    """What the head refuses, the pinned path refuses with the same error: a blank text
    beside a good one, and a vector (a text agent's predict takes texts), a 422 naming it."""
    agent = _text_agent(tenant_a)
    head = auth(tenant_a)
    tenant_a.ingest(agent, [{"id": "w0", "input": "book a flight to Oslo", "target": "travel"},
                            {"id": "w1", "input": "what is my balance", "target": "bank"}])
    v = wait_applied(tenant_a, agent, 2).head_version
    for _ in range(3):
        _same_as_serving(raw, head, agent, {"inputs": ["a train to Bergen"]})
    assert api.service.heads.get(agent, v) is not None
    for inputs in (["fine", "   "], [[1.0, 2.0]]):
        errors = []
        for body in ({"inputs": inputs}, {"inputs": inputs, "version": v}):
            r = raw.post(f"/v1/agents/{agent}/predict", headers=head, json=body)
            assert r.status_code == 422, r.text
            errors.append(r.json()["error"])
        assert errors[0] == errors[1] and errors[0]["field"] == f"inputs[{len(inputs) - 1}]"
