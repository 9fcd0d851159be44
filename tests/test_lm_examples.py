"""Training examples are built in the chat agent's regime: the prompt tokens are exactly what the
agent sends at predict time, the state is the one it writes; synthetic distractors."""

from __future__ import annotations

import re

import torch

from agent.config import AgentConfig
from agent.lm.backbone import tiny_llama
from agent.lm.chat import ChatAgent, ChatSettings
from agent.lm.deltamem import DeltaMem, DeltaMemConfig
from agent.lm.episodes import FACTS, OLDER, Episode, synthetic_episodes
from agent.lm.examples import prepare
from agent.lm.objective import write_states
from agent.lm.runtime import MemLM

torch.set_num_threads(1)


class RecordingLM(MemLM):
    """The real MemLM, keeping the token ids of every prompt it is asked to continue."""

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.sent: list[list[int]] = []

    def generate(self, ids, states=None, max_new_tokens=32, fused=True):
        self.sent.append(list(ids))
        return super().generate(ids, states, max_new_tokens, fused)


def test_training_prompt_equals_what_the_chat_agent_sends():
    bb = tiny_llama(seed=0)
    lm = RecordingLM(bb, DeltaMem(DeltaMemConfig.for_backbone(bb, delta_init=0.05), seed=2))
    settings = ChatSettings(top_k=2, recent=3, max_new_tokens=3, max_prompt_tokens=200)
    eps = synthetic_episodes(3, seed=11, distractor_prob=1.0)
    eps.append(Episode(eps[0].turns, "What is Maya's job?", "pilot"))  # a second question, same history
    examples = prepare(lm, eps, regime="agent", settings=settings)
    for ep, ex in zip(eps, examples, strict=True):
        agent = ChatAgent(AgentConfig.from_dict({"kind": "chat"}), lm=lm, settings=settings)
        agent.learn_many([t for _, t in ep.turns], speakers=[s for s, _ in ep.turns])
        lm.sent.clear()
        agent.predict_many([ep.question])
        assert lm.sent == [ex.ids[: len(ex.ids) - ex.n_target]]
        assert ex.ids[len(ex.ids) - ex.n_target:] == bb.encode(ep.answer) + [bb.im_end]
        assert [ex.bank.index[label] for label in agent.labels] == ex.msgs
        # the state written in training is the state the agent wrote (batched vs one turn at a time)
        S = write_states(lm, [ex])
        assert torch.allclose(S.cpu(), agent._states(), rtol=1e-4, atol=1e-5)
    assert examples[0].history == examples[3].history != examples[1].history
    assert examples[0].msgs == examples[3].msgs


def test_state_regime_prompt_is_the_question_alone():
    bb = tiny_llama(seed=0)
    lm = MemLM(bb, DeltaMem(DeltaMemConfig.for_backbone(bb), seed=2))
    ep = synthetic_episodes(1, seed=5)[0]
    (ex,) = prepare(lm, [ep], regime="state")
    assert ex.ids[: len(ex.ids) - ex.n_target] == lm.prompt(ep.question, None)


def _says(text: str, value: str) -> bool:
    return re.search(rf"\b{re.escape(value)}\b", text) is not None


def test_distractors_are_close_to_the_fact_and_change_nothing_else():
    plain = synthetic_episodes(60, seed=9)
    hard = synthetic_episodes(60, seed=9, distractor_prob=1.0)
    for p, h in zip(plain, hard, strict=True):
        assert (p.question, p.answer, p.category) == (h.question, h.answer, h.category)
        assert len(h.turns) == len(p.turns) + 4
        assert h.answer in h.turns[h.evidence[0]][1]
        person = h.turns[h.evidence[0]][0]
        attr = next(a for a, f in FACTS.items() if f[3].format(p=person) == h.question)
        older = [i for i, (s, t) in enumerate(h.turns)
                 if s == person and t.startswith(OLDER[attr].split("{v}")[0])]
        assert len(older) == 1 and not _says(h.turns[older[0]][1], h.answer)
        first = older[0] + 2  # the fact's first statement follows the older value at once
        assert h.turns[first][0] == person
        partner_says = h.turns[first + 2]  # the partner's own value after the fact's reply
        assert partner_says[0] != person and not _says(partner_says[1], h.answer)
    assert synthetic_episodes(5, seed=1) == synthetic_episodes(5, seed=1, distractor_prob=0.0)
