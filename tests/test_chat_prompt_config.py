"""A chat agent's prompt settings (``"prompt"`` in its config, agent.config.PromptConfig):
validated naming the field, for chat agents only, shown in the agent's JSON, and the settings
its learner and readers build prompts with (workers/actors/factory.make_learner)."""

from __future__ import annotations

import pytest

from agent.config import AgentConfig, PromptConfig
from agent.errors import InputError

CHAT = {"kind": "chat", "encoder": "minilm"}
DEFAULTS = {"top_k": 2, "recent": 0, "hits_last": False}


@pytest.mark.parametrize("prompt,field", [
    ({"recent": -1}, "prompt.recent"), ({"recent": 33}, "prompt.recent"),
    ({"recent": 1.5}, "prompt.recent"), ({"recent": True}, "prompt.recent"),
    ({"recent": "4"}, "prompt.recent"), ({"top_k": -1}, "prompt.top_k"),
    ({"top_k": 100}, "prompt.top_k"), ({"top_k": None}, "prompt.top_k"),
    ({"hits_last": 1}, "prompt.hits_last"), ({"hits_last": "yes"}, "prompt.hits_last"),
    ({"recnt": 2}, "prompt.recnt"), ([], "prompt"), ("recent", "prompt")])
def test_prompt_is_validated_naming_the_field(prompt, field):
    with pytest.raises(InputError) as e:
        AgentConfig.from_dict({**CHAT, "prompt": prompt})
    assert e.value.field == field


def test_prompt_is_for_chat_agents_only():
    vector = {"kind": "classifier", "encoder": "none", "dim": 3}
    with pytest.raises(InputError) as e:
        AgentConfig.from_dict({**vector, "prompt": {"recent": 2}})
    assert e.value.field == "prompt"
    assert "prompt" not in AgentConfig.from_dict({**vector, "prompt": None}).to_dict()


@pytest.mark.parametrize("prompt", [None, {}, {"recent": 0}, {"top_k": 32, "hits_last": True},
                                    {"top_k": 0, "recent": 32, "hits_last": False}])
def test_the_json_shows_every_setting_and_round_trips(prompt):
    cfg = AgentConfig.from_dict({**CHAT, **({} if prompt is None else {"prompt": prompt})})
    shown = cfg.to_dict()["prompt"]
    assert shown == {**DEFAULTS, **(prompt or {})}
    assert AgentConfig.from_dict(cfg.to_dict()) == cfg
    assert PromptConfig.from_dict(shown) == cfg.prompt


def test_agents_build_prompts_with_their_settings():
    """The learner the workers make for the config (make_learner: the learner shards and the
    serving replicas) reads its settings from the config; the other settings stay."""
    from agent.lm.chat import ChatAgent, ChatSettings
    from workers.actors.factory import make_learner

    for prompt in ({"recent": 0, "top_k": 5}, {"hits_last": True}, None):
        cfg = {**CHAT, **({} if prompt is None else {"prompt": prompt})}
        learner = make_learner(cfg)
        assert isinstance(learner, ChatAgent)
        want = {**DEFAULTS, **(prompt or {})}
        got = learner.settings
        assert (got.top_k, got.recent, got.hits_last) == (want["top_k"], want["recent"],
                                                          want["hits_last"])
        assert got.max_prompt_tokens == ChatSettings().max_prompt_tokens


def test_an_agent_without_a_recent_window_shows_only_the_retrieved_turns():
    """With ``recent`` 0 the context is the retrieved turns alone; with the default window the
    last turns join them (the real MiniLM retrieves: its top hit is the Lisbon turn)."""
    import torch

    from agent.lm.backbone import tiny_llama
    from agent.lm.chat import ChatAgent
    from agent.lm.deltamem import DeltaMem, DeltaMemConfig
    from agent.lm.runtime import MemLM

    torch.set_num_threads(1)
    bb = tiny_llama(seed=0)
    lm = MemLM(bb, DeltaMem(DeltaMemConfig.for_backbone(bb), seed=3))
    turns = ["I live in Lisbon.", "ok", "My dog is called Mochi.", "fine", "see you"]
    speakers = ["Maya", "Sam", "Maya", "Sam", "Sam"]
    got = {}
    for recent in (0, 2):
        cfg = AgentConfig.from_dict({**CHAT, "prompt": {"top_k": 1, "recent": recent}})
        agent = ChatAgent(cfg, lm=lm)
        agent.learn_many(turns, speakers=speakers)
        got[recent] = agent.context("Where does Maya live?", agent.settings.top_k)[0]
    assert got[0] == ["Maya: I live in Lisbon."]
    assert got[2] == ["Maya: I live in Lisbon.", "Sam: fine", "Sam: see you"]
