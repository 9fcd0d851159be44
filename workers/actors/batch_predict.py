"""Predict for many agents at once: one batched read over the stacked states of all agents.

The serving actor answers a batch of requests ``(learner, inputs, top_k)`` — one learner per
agent, at the version it resolved — with :func:`predict_many_agents`. Keys are computed per agent
(each agent has its own encoder/lift and validation), then every query whose agent decodes by
``argmax_row (S k)`` (classifiers, and recall agents without an encoder) is read in one
:func:`agent.memory.delta_rule.many.batched_read` call per key dimension ``d_k``:

    states  (m, d_v_max, d_k)   agent j's S in rows [0, d_v_j), zeros below
    idx     (q,)                which state each query reads
    Q       (q, d_k)            the unit keys, in request order
    Y       (q, d_v_max)        Y[i] = states[idx[i]] @ Q[i]

Padded rows read as zeros; decoding looks only at ``Y[i, :d_v_j]`` (the padded labels are masked
out of the argmax and the top-k), so the answers are those of
:meth:`agent.model.MemoryAgent.predict_many` on each agent alone, up to float rounding of the
dot products. Everything else reads per agent (the slow reference path):

* recall agents with MiniLM answers (decoded by cosine against the stored answer embeddings),
  chat agents, anything that is not a ``MemoryAgent``;
* an agent with more than ``stack_max_queries`` queries: ``batched_read`` gathers one copy of the
  state per query, which pays off for few queries per agent (the many-agents case), while many
  queries of one agent are one matrix product on their own.

``max_gather_bytes`` bounds the gathered ``(q, d_v_max, d_k)`` block; a larger batch is read in
several calls of that size.

Examples
--------
>>> from agent.config import AgentConfig
>>> from agent.model import MemoryAgent
>>> a = MemoryAgent(AgentConfig.from_dict({"kind": "classifier", "encoder": "none", "dim": 2}))
>>> _ = a.learn_many([[1.0, 0.0], [0.0, 1.0]], ["x", "y"], betas=[1.0, 1.0])
>>> b = MemoryAgent(AgentConfig.from_dict({"kind": "classifier", "encoder": "none", "dim": 2}))
>>> out = predict_many_agents([(a, [[0.0, 2.0]], None), (b, [[1.0, 1.0]], 1)])
>>> out[0][0]["label"], out[1][0]
('y', {'label': None, 'score': 0.0, 'top': []})
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any, TypeGuard

import numpy as np

from agent.errors import InputError
from agent.learner import LabelLearner, Learner
from agent.memory.delta_rule.many import batched_read
from agent.model import MemoryAgent, check_top_k, decode_row

__all__ = ["predict_many_agents", "stackable", "decode_row"]

Request = tuple[Learner, Sequence[Any], int | None]  # (learner, inputs, top_k)


def stackable(learner: Learner) -> TypeGuard[LabelLearner]:
    """True if ``learner`` decodes ``argmax_row (S k)`` over one row per label."""
    if not isinstance(learner, MemoryAgent):
        return False
    cfg = learner.config
    return not (cfg.kind == "recall" and cfg.encoder == "minilm")


def _read_group(states: list[np.ndarray], idx: np.ndarray, Q: np.ndarray,
                max_gather_bytes: int) -> np.ndarray:
    """``Y[i] = states[idx[i]] @ Q[i]`` with the states zero-padded to one height."""
    d_k = Q.shape[1]
    d_v = max(s.shape[0] for s in states)
    Y = np.zeros((Q.shape[0], d_v))  # (q, d_v_max)
    if d_v == 0 or Q.shape[0] == 0:
        return Y
    stacked = np.zeros((len(states), d_v, d_k))  # (m, d_v_max, d_k)
    for j, S in enumerate(states):
        stacked[j, : S.shape[0]] = S
    step = max(1, max_gather_bytes // (d_v * d_k * 8))
    for lo in range(0, Q.shape[0], step):
        Y[lo : lo + step] = batched_read(stacked, idx[lo : lo + step], Q[lo : lo + step])
    return Y


def predict_many_agents(requests: Sequence[Request], *, stack_max_queries: int = 8,
                        max_gather_bytes: int = 64 * 2**20) -> list[list[dict[str, Any]]]:
    """Answers for every request, in order: ``[[{"label", "score", "top"?}, ...], ...]``.

    Parameters
    ----------
    requests : ``(learner, inputs, top_k)`` per request; several may share a learner.
    stack_max_queries : agents with at most this many queries in a request go through the
        batched read; larger requests read on their own.
    max_gather_bytes : bound on the block one ``batched_read`` call gathers.

    Raises
    ------
    InputError
        For a bad ``top_k`` or input; its ``field`` is prefixed with ``requests[r].``.
    """
    out: list[list[dict[str, Any]] | None] = [None] * len(requests)
    groups: dict[int, list[tuple[int, LabelLearner, np.ndarray]]] = defaultdict(list)  # d_k -> requests
    for r, (learner, inputs, top_k) in enumerate(requests):
        try:
            check_top_k(top_k)
            if stackable(learner) and len(inputs) <= stack_max_queries:
                K = learner.keys(inputs)  # (n, d_k), validated and unit
                groups[K.shape[1]].append((r, learner, K))
            else:
                out[r] = learner.predict_many(inputs, top_k=top_k)
        except InputError as e:
            raise InputError(f"requests[{r}].{e.field}", e.message) from None
    for members in groups.values():
        slot: dict[int, int] = {}  # id(learner) -> state index
        states: list[np.ndarray] = []
        labels: list[list[str]] = []
        for _, learner, _ in members:
            if id(learner) not in slot:
                layers, labs = learner.state
                slot[id(learner)] = len(states)
                states.append(np.asarray(layers["S"], dtype=np.float64))  # (d_v_j, d_k)
                labels.append(labs)
        idx = np.concatenate([np.full(K.shape[0], slot[id(learner)], dtype=np.int64)
                              for _, learner, K in members])  # (q,)
        Q = np.concatenate([K for _, _, K in members], axis=0)  # (q, d_k)
        Y = _read_group(states, idx, Q, max_gather_bytes)  # (q, d_v_max)
        row = 0
        for r, learner, K in members:
            j = slot[id(learner)]
            m = len(labels[j])
            top_k = requests[r][2]
            out[r] = [decode_row(Y[row + i, :m], labels[j], top_k) for i in range(K.shape[0])]
            row += K.shape[0]
    return [o if o is not None else [] for o in out]
