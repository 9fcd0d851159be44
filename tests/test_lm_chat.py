"""The chat agent on a tiny Llama: versioned states reproduce bit for bit, forget by replay is
exact, predict returns text, bad input is rejected."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agent.config import AgentConfig
from agent.errors import InputError
from agent.lm.backbone import tiny_llama
from agent.lm.chat import ChatAgent, ChatSettings
from agent.lm.deltamem import DeltaMem, DeltaMemConfig
from agent.lm.runtime import MemLM
from agent.memory.delta import apply_delta, state_checksum

torch.set_num_threads(1)
CFG = AgentConfig.from_dict({"kind": "chat"})
TURNS = ["Hi, I am Maya.", "I live in Lisbon.", "ok", "My dog is called Mochi.", "ok"]
SPEAKERS = ["Maya", "Maya", "Sam", "Maya", "Sam"]


@pytest.fixture(scope="module")
def lm() -> MemLM:
    bb = tiny_llama(seed=0)
    mem = DeltaMem(DeltaMemConfig.for_backbone(bb), seed=3)
    with torch.no_grad():  # a "trained-looking" adapter: non-zero corrections
        mem.W_dq.normal_(std=0.1, generator=torch.Generator().manual_seed(1))
        mem.W_do.normal_(std=0.1, generator=torch.Generator().manual_seed(2))
    return MemLM(bb, mem)


def _agent(lm: MemLM) -> ChatAgent:
    return ChatAgent(CFG, lm=lm, settings=ChatSettings(max_new_tokens=5))


def test_initial_state_shapes():
    layers, labels = ChatAgent.initial_state(CFG)
    assert sorted(layers) == [f"L{i:02d}" for i in range(30)] and labels == []
    assert all(a.shape == (8, 8) and a.dtype == np.float32 and not a.any() for a in layers.values())


def test_deltas_rebuild_bit_identically(lm):
    agent = _agent(lm)
    deltas = [agent.learn_many(TURNS[:2], speakers=SPEAKERS[:2]),
              agent.learn_many(TURNS[2:], speakers=SPEAKERS[2:])]
    layers, labels = agent.initial_state(CFG, shape=(2, 8, 8))
    for d in deltas:
        layers = apply_delta(layers, d)
        labels += d.labels_added
    assert labels == [f"{s}: {t}" for s, t in zip(SPEAKERS, TURNS, strict=True)]
    assert state_checksum(layers, labels) == agent.checksum()
    assert any(a.any() for a in layers.values())
    # micro-batch boundaries do not change a single bit
    one = _agent(lm)
    one.learn_many(TURNS, speakers=SPEAKERS)
    assert one.checksum() == agent.checksum()
    # a float16 delta is applied as stored, live and rebuilt alike
    h = _agent(lm)
    d16 = h.learn_many(TURNS[:2], speakers=SPEAKERS[:2], delta_dtype=np.float16)
    rebuilt = apply_delta(h.initial_state(CFG, shape=(2, 8, 8))[0], d16)
    assert state_checksum(rebuilt, d16.labels_added) == h.checksum()


def test_forget_by_replay_equals_never_seeing_the_turn(lm):
    full = _agent(lm)
    full.learn_many(TURNS, speakers=SPEAKERS)
    keep = [i for i in range(len(TURNS)) if i != 1]
    replay = _agent(lm)
    for i in keep:  # replayed one event at a time, as the learner would
        replay.learn_many([TURNS[i]], speakers=[SPEAKERS[i]])
    never = _agent(lm)
    never.learn_many([TURNS[i] for i in keep], speakers=[SPEAKERS[i] for i in keep])
    assert replay.checksum() == never.checksum() != full.checksum()


def test_load_state_and_predict_returns_text(lm):
    agent = _agent(lm)
    agent.learn_many(TURNS, speakers=SPEAKERS)
    other = _agent(lm)
    other.load_state(*agent.state)
    assert other.checksum() == agent.checksum()
    out = other.predict_many(["Where does Maya live?", "What is the dog called?"], top_k=2)
    assert len(out) == 2
    for p in out:
        assert isinstance(p["text"], str) and p["label"] == p["text"] and p["score"] == 0.0
        assert len(p["top"]) == 2 and all(t[0] in other.labels for t in p["top"])
    assert other.predict_many(["Where does Maya live?"])[0]["text"] == out[0]["text"]  # greedy
    lines, hits = other.context("Where does Maya live?", 1)
    assert hits[0][0] == 1  # MiniLM finds the turn that says it
    assert lines == [other.labels[1]]  # the default prompt: the retrieved turn alone
    windowed = ChatAgent(CFG, lm=lm, settings=ChatSettings(max_new_tokens=5, recent=4))
    windowed.load_state(*agent.state)
    lines = windowed.context("Where does Maya live?", 1)[0]  # with the last 4 turns too
    assert lines[0] == other.labels[1] and lines[-1] == other.labels[-1]


def test_bad_inputs_rejected_and_change_nothing(lm):
    agent = _agent(lm)
    agent.learn_many(TURNS[:1])
    before = agent.checksum()
    bad = [
        (dict(inputs=[]), "inputs"),
        (dict(inputs="hello"), "inputs"),
        (dict(inputs=["ok", ""]), "inputs[1]"),
        (dict(inputs=["ok", 3]), "inputs[1]"),
        (dict(inputs=["x" * 5000]), "inputs[0]"),
        (dict(inputs=["ok"], speakers=["a", "b"]), "speakers"),
        (dict(inputs=["ok"], speakers=[""]), "speakers[0]"),
        (dict(inputs=["ok"], targets=["label"]), "targets"),
        (dict(inputs=["ok"], betas=[0.5]), "betas"),
    ]
    for kwargs, field in bad:
        with pytest.raises(InputError) as e:
            agent.learn_many(**kwargs)
        assert e.value.field == field
    for q, k, field in [([], None, "inputs"), ([" "], None, "inputs[0]"), (["q"], 0, "top_k"),
                        (["q"], True, "top_k")]:
        with pytest.raises(InputError) as e:
            agent.predict_many(q, top_k=k)
        assert e.value.field == field
    assert agent.checksum() == before
    with pytest.raises(InputError):
        ChatAgent(AgentConfig.from_dict({"kind": "recall", "encoder": "minilm"}), lm=lm)
    with pytest.raises(ValueError):
        agent.load_state({"L00": np.zeros((8, 8))}, [])


def test_eval_agent_without_state_writes_keeps_the_same_explicit_memory(lm):
    from agent.lm.episodes import Episode
    from benchmarks.lm_eval import _agent as eval_agent

    ep = Episode(turns=list(zip(SPEAKERS, TURNS, strict=True)), question="Where does Maya live?",
                 answer="Lisbon", category="fact")
    settings = ChatSettings(max_new_tokens=5)
    written, memory_only = eval_agent(lm, ep, settings), eval_agent(lm, ep, settings, write_state=False)
    assert memory_only.labels == written.labels
    assert memory_only.context(ep.question, 2) == written.context(ep.question, 2)
    assert not any(a.any() for a in memory_only._layers.values())
    assert any(a.any() for a in written._layers.values())


def test_context_shows_a_repeated_turn_once_at_its_latest_place(lm):
    agent = ChatAgent(CFG, lm=lm, settings=ChatSettings(max_new_tokens=5, top_k=3, recent=2))
    agent.learn_many(["I live in Lisbon.", "ok", "I live in Lisbon.", "fine", "ok"],
                     speakers=["Maya", "Sam", "Maya", "Sam", "Sam"])
    lines, hits = agent.context("Where does Maya live?", 3)
    assert len(lines) == len(set(lines))
    assert lines == ["Maya: I live in Lisbon.", "Sam: fine", "Sam: ok"]
