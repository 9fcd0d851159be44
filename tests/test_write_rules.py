"""The write rules as classes (agent/memory/<rule>/rule.py) behind MemoryAgent.

Every rule the config accepts has a class; each rule's state is ``S`` plus the layers its class
declares; a serving replica's reads-only view (fed ``for_reads`` deltas) drops exactly the
rule's write-only layers and predicts as the learner does, for every rule and variant."""

from __future__ import annotations

import numpy as np
import pytest

from agent import config as agent_config
from agent.config import AgentConfig
from agent.learner import learns_labels
from agent.memory.rules import RULES, write_rule
from agent.model import MemoryAgent

# (memory settings, dim): the plain rules and their variants (rls with pending rows needs
# d_k ≥ 1024 and forget 1; softmax unbounded and with the bounded reservoir)
VARIANTS = [
    ({"rule": "delta", "beta": 0.8, "decay": 0.99}, 6),
    ({"rule": "rls", "forget": 0.999}, 6),
    ({"rule": "rls"}, 1024),
    ({"rule": "softmax", "replay": 3, "reservoir": None}, 6),
    ({"rule": "softmax", "replay": 3, "reservoir": 2}, 6),
]


def _config(memory: dict, dim: int) -> AgentConfig:
    return AgentConfig.from_dict({"kind": "classifier", "encoder": "none", "dim": dim,
                                  "memory": dict(memory)})


def test_every_rule_the_config_accepts_has_a_class():
    assert set(RULES) == set(agent_config.RULES)
    for name, cls in RULES.items():
        assert cls.name == name


@pytest.mark.parametrize("memory,dim", VARIANTS)
def test_the_state_is_s_and_the_rules_layers(memory, dim):
    cfg = _config(memory, dim)
    agent = MemoryAgent(cfg)
    rule = write_rule(cfg, agent.dtype)
    layers, labels = MemoryAgent.initial_state(cfg)
    assert set(layers) == {"S"} | set(rule.initial_layers(cfg.key_dim)) and labels == []
    assert set(agent.state[0]) == set(layers)
    assert learns_labels(agent) and not agent.is_chat


@pytest.mark.parametrize("memory,dim", VARIANTS)
def test_a_reads_only_view_drops_the_write_only_layers_and_predicts_alike(memory, dim):
    cfg = _config(memory, dim)
    rng = np.random.default_rng(dim)
    X = rng.standard_normal((48, dim))
    y = [f"c{int(i)}" for i in rng.integers(0, 5, 48)]
    agent, view = MemoryAgent(cfg), MemoryAgent(cfg)
    view.keep_reads_only()
    for s in range(0, 48, 12):
        delta = agent.learn_many(X[s:s + 12], y[s:s + 12])
        view.apply(view.for_reads(delta))
    rule = write_rule(cfg, agent.dtype)
    full = set(agent.state[0])
    assert set(view.state[0]) == full - set(rule.write_only)
    assert full & set(rule.write_only) == full - {"S"}  # every other layer only writes need
    assert view.predict_many(X[:16], top_k=3) == agent.predict_many(X[:16], top_k=3)
    with pytest.raises(RuntimeError):
        view.learn_many(X[:1], y[:1])
