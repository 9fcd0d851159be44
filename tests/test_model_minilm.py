"""Text agents on the real MiniLM encoder (loaded offline from the wheel; a few seconds)."""

from __future__ import annotations

import numpy as np
import pytest

from agent.backbones.minilm import MINILM_DIM, Encoder, get_minilm
from agent.config import AgentConfig
from agent.errors import InputError
from agent.memory.delta import apply_delta
from agent.model import MemoryAgent

CITIES = {
    "France": "Paris", "Japan": "Tokyo", "Kenya": "Nairobi", "Peru": "Lima", "Canada": "Ottawa",
    "Egypt": "Cairo", "Norway": "Oslo", "Chile": "Santiago", "Vietnam": "Hanoi", "Ghana": "Accra",
}


@pytest.fixture(scope="module")
def enc():
    return get_minilm()


def test_encoder_shape_norm_cache(enc):
    assert isinstance(enc, Encoder) and enc.dim == MINILM_DIM
    texts = ["turn on the lights", "what's the weather", "turn on the lights"]
    X = enc.encode(texts)
    assert X.shape == (3, MINILM_DIM) and X.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(X[0], X[2])
    alone = enc.encode(["what's the weather"])[0]  # a cache hit and a fresh pass agree
    np.testing.assert_allclose(alone, X[1], atol=1e-5)
    assert enc.encode([]).shape == (0, MINILM_DIM)


def recall_agent(enc, **mem):
    cfg = AgentConfig.from_dict({"kind": "recall", "encoder": "minilm", "memory": mem})
    return MemoryAgent(cfg, encoder=enc)


@pytest.mark.parametrize("mem", [{"rule": "delta", "lift_dim": 4096}, {"rule": "delta", "beta": 1.0, "lift_dim": 4096}])
def test_recall_fact_overwrite_verbatim_and_paraphrased(enc, mem):
    agent = recall_agent(enc, **mem)
    qs = [f"What is the capital of {c}?" for c in CITIES]
    agent.learn_many(qs, [f"The capital of {c} is {a}." for c, a in CITIES.items()])
    assert agent.state[0]["S"].shape == (MINILM_DIM, 4096)
    changed = list(CITIES)[:3]
    agent.learn_many([f"What is the capital of {c}?" for c in changed],
                     [f"The capital of {c} is now New {CITIES[c]}." for c in changed])
    for c, a in CITIES.items():
        want = f"The capital of {c} is now New {a}." if c in changed else f"The capital of {c} is {a}."
        for q in (f"What is the capital of {c}?", f"Tell me the capital city of {c}"):
            p = agent.predict_many([q], top_k=2)[0]
            assert p["label"] == want, q
            assert -1.0 <= p["score"] <= 1.0 + 1e-9
            assert p["top"][0] == [p["label"], p["score"]]
    assert len(agent.labels) == len(CITIES) + len(changed)  # answers are the explicit memory


def test_recall_rebuild_and_load_state(enc):
    agent = recall_agent(enc, rule="delta", beta=0.8)
    deltas = [agent.learn_many(["where do I park?"], ["Level 2 of the garage."], delta_dtype=np.float16),
              agent.learn_many(["who is my manager?", "where do I park?"],
                               ["Dana.", "Level 3 since Monday."], delta_dtype=np.float16)]
    layers, labels = MemoryAgent.initial_state(agent.config)
    for d in deltas:
        layers, labels = apply_delta(layers, d), labels + d.labels_added
    assert np.array_equal(layers["S"], agent.state[0]["S"])
    other = recall_agent(enc, rule="delta", beta=0.8)
    other.load_state(layers, labels)
    assert other.checksum() == agent.checksum()
    assert other.predict_many(["where should I park"]) == agent.predict_many(["where should I park"])
    assert other.predict_many(["where should I park"])[0]["label"] == "Level 3 since Monday."


def test_text_classifier_learns_new_labels_online(enc):
    cfg = AgentConfig.from_dict({"kind": "classifier", "encoder": "minilm",
                                 "memory": {"rule": "rls", "ridge": 0.1}})
    agent = MemoryAgent(cfg, encoder=enc)
    agent.learn_many(["play some jazz", "put on a song by queen", "set an alarm for 7",
                      "wake me up at six"], ["music", "music", "alarm", "alarm"])
    agent.learn_many(["how much is 20 euros in dollars", "convert 5 pounds to yen"],
                     ["currency", "currency"])
    got = [p["label"] for p in agent.predict_many(
        ["play a track by the beatles", "alarm at 8 am please", "exchange rate dollars to euro"])]
    assert got == ["music", "alarm", "currency"]


def test_text_input_errors(enc):
    agent = recall_agent(enc)
    with pytest.raises(InputError) as e:
        agent.learn_many(["ok", "   "], ["a", "b"])
    assert e.value.field == "inputs[1]"
    with pytest.raises(InputError) as e:
        agent.predict_many(["ok", [0.1] * 3])
    assert e.value.field == "inputs[1]"
    # a MiniLM agent also takes precomputed 384-d embeddings
    x = enc.encode(["hello there"])[0]
    np.testing.assert_allclose(agent.keys([x.tolist()]), agent.keys(["hello there"]), atol=1e-6)
