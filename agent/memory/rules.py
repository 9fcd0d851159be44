"""The write rules by name (``memory.rule``): one :class:`~agent.memory.rule.WriteRule` class
each, in its folder beside its oracle and kernels."""

from __future__ import annotations

import numpy as np

from agent.config import AgentConfig
from agent.memory.delta_rule.rule import DeltaRule
from agent.memory.rls.rule import RlsRule
from agent.memory.rule import WriteRule
from agent.memory.softmax.rule import SoftmaxRule

__all__ = ["RULES", "write_rule"]

RULES: dict[str, type[WriteRule]] = {"delta": DeltaRule, "rls": RlsRule, "softmax": SoftmaxRule}


def write_rule(config: AgentConfig, dtype: np.dtype | str) -> WriteRule:
    """The rule ``config.memory.rule`` for a state of ``dtype`` (its settings checked)."""
    return RULES[config.memory.rule](config, np.dtype(dtype))
