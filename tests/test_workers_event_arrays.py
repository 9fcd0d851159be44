"""Events carry arrays (workers/event_arrays.py, workers/actors/factory.py): a micro-batch of stored
arrays is learnt as one (n, dim) array, bit-identical to learning the same numbers as JSON
lists (the slow path, checked float by float); accepted vectors become the arrays
check_vector makes; texts get the encoder's embedding, once per request."""

from __future__ import annotations

import numpy as np

from agent.backbones.minilm import get_minilm
from agent.config import AgentConfig
from workers.actors.factory import event_inputs, learn_events, make_learner
from workers.event_arrays import with_arrays

VEC = {"kind": "classifier", "encoder": "none", "dim": 6,
       "memory": {"rule": "delta", "beta": 0.5, "decay": 1.0}}


def test_learning_arrays_equals_learning_lists_bit_for_bit():
    rng = np.random.default_rng(0)
    for trial, rule in enumerate(["delta", "rls", "softmax"] * 2):
        cfg = {**VEC, "memory": {"rule": rule}}
        fast, slow = make_learner(AgentConfig.from_dict(cfg)), make_learner(AgentConfig.from_dict(cfg))
        for _ in range(3):
            n = int(rng.integers(1, 40))
            X = rng.normal(size=(n, 6)) * 10.0 ** rng.integers(-3, 3)
            if trial % 2:
                X = X.astype(np.float32)
            evs = [{"input": X[i], "target": f"L{int(rng.integers(4))}",
                    **({"beta": float(rng.uniform(0.1, 1))} if i % 3 == 0 else {})}
                   for i in range(n)]
            stacked = event_inputs(evs)
            assert isinstance(stacked, np.ndarray) and stacked.shape == (n, 6)
            assert stacked.dtype == np.float64
            learn_events(fast, evs, "float64")
            learn_events(slow, [{**e, "input": [float(x) for x in e["input"]]} for e in evs],
                         "float64")
            assert fast.checksum() == slow.checksum(), (trial, rule)


def test_mixed_or_ragged_inputs_stay_a_list():
    evs = [{"input": np.ones(3)}, {"input": [1.0, 2.0, 3.0]}]
    assert isinstance(event_inputs(evs), list)
    assert isinstance(event_inputs([{"input": np.ones(3)}, {"input": np.ones(4)}]), list)


def test_with_arrays_makes_vectors_and_leaves_what_it_cannot_check():
    evs = [{"id": "a", "input": [1, 0.5, 0, 0, 0, 0], "target": "x"},
           {"id": "b", "input": [0.1, 0, 0, 0, 0, 0], "target": "x"},
           {"id": "c", "input": [0, 0, 0, 0, 0, 0], "target": "x"},   # no direction
           {"id": "d", "input": [1, True, 0, 0, 0, 0], "target": "x"}]
    out = with_arrays(VEC, evs, lambda: None)
    assert out[0]["input"].dtype == np.float32 and out[1]["input"].dtype == np.float64
    assert out[1]["input"].tolist() == evs[1]["input"]
    assert out[2] is evs[2] and out[3] is evs[3]  # the store keeps them; the learner decides
    assert evs[0]["input"] == [1, 0.5, 0, 0, 0, 0]  # the caller's events are not changed


class Counting:
    """The real encoder, counting calls."""

    dim = 384

    def __init__(self) -> None:
        self.calls = 0

    def encode(self, texts):
        self.calls += 1
        return get_minilm().encode(texts)


def test_texts_are_encoded_once_per_request_and_chat_turns_never():
    enc = Counting()
    text = {"kind": "classifier", "encoder": "minilm", "dim": 384}
    evs = [{"input": "book a flight", "target": "travel"},
           {"input": "play jazz", "target": "music"}]
    out = with_arrays(text, evs, lambda: enc)
    assert enc.calls == 1
    np.testing.assert_array_equal(np.stack([e["embedding"] for e in out]),
                                  get_minilm().encode([e["input"] for e in evs]))
    assert [e["input"] for e in out] == [e["input"] for e in evs]
    assert with_arrays({"kind": "chat", "encoder": "minilm", "dim": 384}, evs, lambda: enc) is evs
    assert enc.calls == 1
