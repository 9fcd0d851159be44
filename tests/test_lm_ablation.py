"""``deltamem eval lm`` on a tiny Llama: every condition of the ablation is printed with n and a
standard error for recall and token F1, with the tokens/s rows; the conditions are wired as
documented (zero state = retrieval replies; the other-state control reads the states given)."""

from __future__ import annotations

import json

import pytest
import torch

from agent.lm.backbone import tiny_llama
from agent.lm.chat import ChatSettings
from agent.lm.deltamem import DeltaMem, DeltaMemConfig
from agent.lm.episodes import synthetic_episodes
from agent.lm.runtime import MemLM
from benchmarks.lm_eval import CONDITIONS, _agent, evaluate_episodes, run_condition
from workers.cli.main import main as cli_main

torch.set_num_threads(1)


def test_eval_lm_prints_every_condition_with_n_and_se(tmp_path, capsys):
    out = tmp_path / "eval.json"
    rc = cli_main(["eval", "lm", "--model", "tiny", "--synthetic", "3", "--filler-tokens", "40",
                   "--locomo-convs", "", "--speed-repeats", "1", "--threads", "1", "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    for metric in ("recall", "token F1"):
        assert f": {metric}, mean ± s.e. (n)" in text
    for cond in CONDITIONS:
        rows = [line for line in text.splitlines() if line.startswith(f"| {cond} |")]
        assert len(rows) == 2, cond  # one row in the recall table, one in the F1 table
        if cond != "full":  # the whole history does not fit the tiny model's 512 positions
            assert all("±" in r and "(n=3)" in r for r in rows), rows
    for row in ("prefill_base tok/s", "prefill_delta_read tok/s", "decode_base tok/s",
                "decode_delta_read tok/s", "decode_overhead_read"):
        assert f"| {row} |" in text
    figures = json.loads(out.read_text())
    summary = figures["synthetic"]["summary"]
    assert set(summary) == {"recall", "f1"} and set(summary["f1"]) == set(CONDITIONS)
    assert summary["recall"]["agent"]["n"] == 3 and summary["recall"]["full"]["n"] == 0
    assert "LoCoMo dev: no conversations selected" in text


def test_conditions_are_wired_as_documented():
    bb = tiny_llama(seed=0)
    lm = MemLM(bb, DeltaMem(DeltaMemConfig.for_backbone(bb, delta_init=0.3), seed=4))
    settings = ChatSettings(max_new_tokens=6, max_prompt_tokens=200)
    eps = synthetic_episodes(2, seed=6)
    a, b = (_agent(lm, ep, settings) for ep in eps)
    ep = eps[0]
    assert run_condition(lm, a, ep, "agent-zero", 6) == run_condition(lm, a, ep, "retrieval", 6)
    assert run_condition(lm, a, ep, "agent-other", 6, other=a._states()) == \
        run_condition(lm, a, ep, "agent", 6)  # the own states passed as "other": the agent's reply
    assert run_condition(lm, a, ep, "agent-other", 6, other=None) is None
    ids, _ = a.prompt(ep.question, settings.top_k)
    with torch.no_grad():
        x = torch.tensor([ids])
        with lm.mem.reading(a._states()):
            own = lm.bb.model(input_ids=x).logits
        with lm.mem.reading(b._states()):
            other = lm.bb.model(input_ids=x).logits
    assert not torch.equal(own, other)  # another conversation's state reads differently
    one = evaluate_episodes(lm, eps[:1], ["agent-other", "agent"], settings)
    assert one["recall"]["agent-other"].get("all", []) == []  # one history: no other state
    assert len(one["f1"]["agent"]["all"]) == 1


def test_missing_adapter_file_is_one_clear_line_naming_it(tmp_path, capsys):
    """A wrong ``--adapter`` fails before any model is loaded, with the file named (it used to
    print ``error: None: None``: safetensors raises FileNotFoundError without a filename)."""
    from agent.lm.runtime import get_lm
    from workers.cli.commands import user_error_line

    missing = tmp_path / "no-such-adapter.safetensors"
    for model in ("tiny", "smollm2"):
        rc = cli_main(["eval", "lm", "--model", model, "--adapter", str(missing), "--quick"])
        assert rc == 1
        captured = capsys.readouterr()
        assert captured.err.strip() == f"error: {missing}: δ-mem adapter file not found"
        assert "backbone" not in captured.out  # nothing was loaded
    with pytest.raises(FileNotFoundError) as e:  # the chat agent's loader, before the backbone
        get_lm(str(missing))
    assert e.value.filename == str(missing)
    from safetensors import safe_open

    with pytest.raises(FileNotFoundError) as raw:  # a library's error without errno/filename
        safe_open(str(missing), framework="pt")
    assert user_error_line(raw.value) == f"No such file or directory: {missing}"


def _reference_lines(bb, labels: list[str], order: list[int], budget: int) -> list[str]:
    """The prompt lines, plainly: from the end of ``order`` (nearest the question) back, each
    text once, until one does not fit the token budget."""
    want: list[str] = []
    for i in reversed(order):
        if labels[i] in want:
            continue
        n = len(bb.encode(labels[i])) + 1
        if n > budget:
            break
        budget -= n
        want.insert(0, labels[i])
    return want


def test_recent_window_flag_and_retrieved_only_prompt():
    """``deltamem eval lm --recent 0``: the prompt holds the retrieved turns alone, in
    conversation order (the misses after 10k tokens copied a name from the recent window)."""
    from benchmarks.lm_eval import _parser

    assert _parser().parse_args(["--recent", "0"]).recent == 0
    assert _parser().parse_args([]).recent is None
    with pytest.raises(SystemExit):
        _parser().parse_args(["--recent", "-1"])
    bb = tiny_llama(seed=0)
    lm = MemLM(bb, DeltaMem(DeltaMemConfig.for_backbone(bb), seed=4))
    ep = synthetic_episodes(1, seed=6, filler_words=60)[0]
    for recent in (0, 4):
        a = _agent(lm, ep, ChatSettings(max_new_tokens=6, max_prompt_tokens=400, recent=recent),
                   write_state=False)
        lines, hits = a.context(ep.question, 2)
        labels = a.labels
        idx = sorted({i for i, _ in hits} | set(range(len(labels) - recent, len(labels))))
        assert lines == _reference_lines(bb, labels, idx, 400)
        if recent == 0:
            assert set(lines) == {labels[i] for i, _ in hits}


def test_hits_last_puts_the_retrieved_turns_nearest_the_question():
    """``ChatSettings.hits_last``: the recent turns that are not hits, in order, then the hits
    in conversation order; a text said twice is shown once, nearest the question; a tight budget
    drops the lines farthest from the question. Against a plain reference on random episodes."""
    from dataclasses import replace

    bb = tiny_llama(seed=0)
    lm = MemLM(bb, DeltaMem(DeltaMemConfig.for_backbone(bb), seed=4))
    differs = 0
    for seed in range(6):
        ep = synthetic_episodes(1, seed=seed, filler_words=40 + 30 * seed)[0]
        base = ChatSettings(max_new_tokens=6, max_prompt_tokens=400, recent=1 + seed % 4,
                            hits_last=True)
        a = _agent(lm, ep, base, write_state=False)
        labels = a.labels
        for k in (1, 2, 3):
            for budget in (400, 40, 12):
                a.settings = replace(base, max_prompt_tokens=budget)
                lines, hits = a.context(ep.question, k)
                hit = sorted(i for i, _ in hits)
                order = [i for i in range(len(labels) - base.recent, len(labels)) if i not in hit] + hit
                assert lines == _reference_lines(bb, labels, order, budget), (seed, k, budget)
                a.settings = replace(a.settings, hits_last=False)
                differs += a.context(ep.question, k)[0] != lines
    assert differs  # the order is not the conversation order everywhere


def test_prompt_variant_conditions_are_the_agent_with_those_settings():
    """``agent-norecent``, ``agent-recent4`` and ``agent-hitslast`` build their prompts as an agent
    with ``recent=0``, ``recent=4`` or ``hits_last=True`` does, and leave the agent's own
    settings as they were. (The tiny model's replies do not depend on the prompt, so the
    prompts are what is compared.)"""
    from agent.lm.chat import ChatAgent

    class Recording(ChatAgent):
        seen: list

        def context(self, question, k):
            out = super().context(question, k)
            self.seen.append(out[0])
            return out

    bb = tiny_llama(seed=0)
    lm = MemLM(bb, DeltaMem(DeltaMemConfig.for_backbone(bb, delta_init=0.3), seed=4))
    settings = ChatSettings(max_new_tokens=6, max_prompt_tokens=300, recent=3)
    ep = synthetic_episodes(1, seed=2, filler_words=80)[0]
    a = _agent(lm, ep, settings)
    a.__class__, a.seen = Recording, []
    prompts = {}
    for cond, kw in (("agent", {}), ("agent-norecent", {"recent": 0}),
                     ("agent-recent4", {"recent": 4}), ("agent-hitslast", {"hits_last": True})):
        b = _agent(lm, ep, ChatSettings(max_new_tokens=6, max_prompt_tokens=300, **{"recent": 3, **kw}))
        assert run_condition(lm, a, ep, cond, 6) == b.predict_many([ep.question])[0]["text"]
        prompts[cond] = a.seen[-1]
        assert prompts[cond] == b.context(ep.question, settings.top_k)[0]
        assert a.settings == settings
    assert len({tuple(p) for p in prompts.values()}) == 4  # four different prompts
