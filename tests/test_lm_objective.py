"""The objective that must use the state, on a tiny Llama: the contrastive term's gradient
reaches the key/query/value projections, the stop statistic equals a slow reference, the
learning-rate schedule, and a resumed training run continues bit for bit."""

from __future__ import annotations

import json
import math

import pytest
import torch

from agent.lm.backbone import tiny_llama
from agent.lm.deltamem import DeltaMem, DeltaMemConfig
from agent.lm.episodes import Episode, synthetic_episodes
from agent.lm.examples import prepare
from agent.lm.objective import (
    lr_at,
    micro_batches,
    objective,
    objective_backward,
    partners,
    state_gap,
    state_gap_reference,
)
from agent.lm.runtime import MemLM
from benchmarks.lm_train import main

torch.set_num_threads(1)
PROJECTIONS = ("W_mq", "W_mk", "W_mv", "W_b")


def _lm(delta_init: float) -> MemLM:
    bb = tiny_llama(seed=0)
    return MemLM(bb, DeltaMem(DeltaMemConfig.for_backbone(bb, delta_init=delta_init), seed=1))


def _grads(lm: MemLM, batch, weight: float) -> dict[str, torch.Tensor]:
    lm.mem.zero_grad(set_to_none=True)
    loss, _ = objective(lm, batch, margin=5.0, weight=weight)  # a margin the hinge cannot meet
    loss.backward()
    return {n: torch.zeros_like(p) if p.grad is None else p.grad.clone()
            for n, p in lm.mem.named_parameters()}


def test_contrastive_term_gradient_reaches_key_query_value_projections():
    lm = _lm(delta_init=0.05)
    batch = prepare(lm, synthetic_episodes(4, seed=3), regime="state")
    both, ce_only = _grads(lm, batch, 1.0), _grads(lm, batch, 0.0)
    for name in PROJECTIONS + ("W_dq", "W_do"):
        contrast = both[name] - ce_only[name]  # the gradient of the hinge term alone
        assert float(contrast.abs().sum()) > 0, name
    # with exactly zero corrections (the default init) the projections get no gradient at all
    zero = _lm(delta_init=0.0)
    g = _grads(zero, prepare(zero, synthetic_episodes(4, seed=3), regime="state"), 1.0)
    assert all(float(g[n].abs().sum()) == 0.0 for n in PROJECTIONS)
    assert float(g["W_dq"].abs().sum()) > 0


def test_partners_pick_another_history():
    assert partners([0, 0, 1]) == [2, 2, 0]
    assert partners([3, 1, 3, 2]) == [1, 2, 3, 0]
    assert partners([5, 5]) == [None, None]
    assert partners([]) == []


def test_gap_statistic_equals_slow_reference():
    lm = _lm(delta_init=0.2)
    eps = synthetic_episodes(5, seed=4)
    shared = Episode(eps[0].turns, "What did Maya say?", "nothing")  # two questions, one history
    examples = prepare(lm, eps + [shared], regime="state")
    fast = state_gap(lm, examples, batch=4, z=3.0)
    ref = state_gap_reference(lm, examples, z=3.0)
    assert fast["n"] == ref["n"] == 6
    for key in ("ce_own", "ce_other", "gap", "se"):
        assert math.isclose(fast[key], ref[key], rel_tol=1e-4, abs_tol=1e-5), (key, fast, ref)
    assert fast["reached"] == (fast["gap"] > 3.0 * fast["se"])
    assert abs(fast["gap"]) > 1e-4  # the states really change the answer's likelihood


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_micro_batched_gradient_equals_one_graph(seed):
    """The bounded-memory training step (read passes in micro-batches, the states' gradient
    accumulated on a detached copy) gives the one-graph objective's loss parts and gradients."""
    lm = _lm(delta_init=0.1)
    rng = torch.Generator().manual_seed(seed)
    eps = synthetic_episodes(7, seed=20 + seed, distractor_prob=0.5)
    batch = prepare(lm, eps, regime="state")
    perm = torch.randperm(len(batch), generator=rng).tolist()
    batch = [batch[i] for i in perm]
    lm.mem.zero_grad(set_to_none=True)
    loss, ref_stats = objective(lm, batch, margin=0.7, weight=0.8)
    loss.backward()
    ref = {n: p.grad.clone() for n, p in lm.mem.named_parameters()}
    longest = max(len(ex.ids) for ex in batch)
    for max_tokens in (0, 2 * longest, 5 * longest):  # one group, one row per group, a few rows
        groups = micro_batches(batch, max_tokens)
        assert sorted(i for g in groups for i in g) == list(range(len(batch)))
        assert max_tokens == 0 or all(
            len(g) == 1 or 2 * len(g) * max(len(batch[i].ids) for i in g) <= max_tokens for g in groups)
        lm.mem.zero_grad(set_to_none=True)
        stats = objective_backward(lm, batch, margin=0.7, weight=0.8, max_tokens=max_tokens)
        for k, v in ref_stats.items():
            assert math.isclose(stats[k], v, rel_tol=1e-5, abs_tol=1e-6), (max_tokens, k)
        for n, p in lm.mem.named_parameters():
            torch.testing.assert_close(p.grad, ref[n], rtol=1e-4, atol=1e-6, msg=f"{n} at {max_tokens}")
    assert len(micro_batches(batch, 2 * longest)) == len(batch)


def test_schedule_values():
    assert lr_at(1, 1.0, 10, 110) == pytest.approx(0.1)
    assert lr_at(5, 2.0, 10, 110) == pytest.approx(1.0)
    assert lr_at(10, 1.0, 10, 110) == pytest.approx(1.0)
    assert lr_at(60, 1.0, 10, 110) == pytest.approx(0.1 + 0.9 * 0.5)  # half-way down the cosine
    assert lr_at(35, 1.0, 10, 110) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4)))
    assert lr_at(110, 1.0, 10, 110) == pytest.approx(0.1)
    assert lr_at(500, 1.0, 10, 110) == pytest.approx(0.1)
    assert lr_at(1, 1.0, 0, 100, min_ratio=0.0) == pytest.approx(0.5 * (1 + math.cos(math.pi / 100)))
    values = [lr_at(s, 1.0, 10, 110) for s in range(1, 111)]
    assert values[:10] == sorted(values[:10]) and values[9:] == sorted(values[9:], reverse=True)


def _params(path: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(path)


def test_resume_continues_bit_for_bit(tmp_path):
    common = ["--model", "tiny", "--synthetic", "8", "--heldout", "4", "--gap-n", "4",
              "--recall-eval", "0", "--steps", "4", "--batch", "3", "--warmup", "2",
              "--eval-every", "2", "--regime", "state", "--seed", "3", "--delta-init", "0.05",
              "--no-early-stop"]
    whole = str(tmp_path / "whole.safetensors")
    assert main(["--out", whole] + common) == 0
    part = str(tmp_path / "part.safetensors")
    ckpt = str(tmp_path / "part.ckpt.safetensors")
    assert main(["--out", part, "--stop-after", "2"] + common) == 0
    assert json.load(open(tmp_path / "part.json"))["stopped"] == "stop_after"
    assert main(["--out", part, "--resume", ckpt] + common) == 0
    a, b = _params(str(tmp_path / "whole.ckpt.safetensors")), _params(ckpt)
    assert sorted(a) == sorted(b) and any(k.startswith("opt.") for k in a)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    ca, cb = json.load(open(tmp_path / "whole.json")), json.load(open(tmp_path / "part.json"))
    assert ca["steps"] == cb["steps"] == 4 and ca["after"] == cb["after"]
    assert ca["stop_rule"]["log"] == cb["stop_rule"]["log"] and len(ca["stop_rule"]["log"]) == 2
    with pytest.raises(SystemExit, match="--batch"):  # a different run cannot resume it
        main(["--out", part, "--resume", ckpt] + common + ["--batch", "2"])


def test_batches_take_one_question_per_history_while_they_last():
    from agent.lm.examples import Example, MessageBank
    from benchmarks.lm_train import draw

    bank = MessageBank()
    # a long conversation with 20 questions (LoCoMo-like) and 5 one-question histories
    examples = [Example(bank, [], [0], 1, history=0) for _ in range(20)]
    examples += [Example(bank, [], [0], 1, history=h) for h in range(1, 6)]
    for step in range(1, 30):
        b = draw(examples, 4, seed=7, step=step)
        assert len({ex.history for ex in b}) == 4 and len({id(ex) for ex in b}) == 4
        assert [id(ex) for ex in b] == [id(ex) for ex in draw(examples, 4, seed=7, step=step)]
    big = draw(examples, 8, seed=7, step=1)  # only 6 histories: the rest filled, no repeats
    assert len({ex.history for ex in big}) == 6 and len({id(ex) for ex in big}) == 8
    assert len(draw(examples, 100, seed=7, step=1)) == len(examples)
    picks = {id(draw(examples, 4, seed=7, step=s)[0]) for s in range(1, 40)}
    assert len(picks) > 5  # the steps draw different batches


def test_max_minutes_bounds_the_whole_run_and_leaves_a_checkpoint(tmp_path):
    out = str(tmp_path / "bounded.safetensors")
    argv = ["--out", out, "--model", "tiny", "--synthetic", "4", "--heldout", "2", "--gap-n", "2",
            "--recall-eval", "0", "--steps", "50", "--batch", "2", "--regime", "state",
            "--max-minutes", "0.0001"]  # spent while preparing: not a single step
    assert main(argv) == 0
    card = json.load(open(tmp_path / "bounded.json"))
    assert card["stopped"] == "max_minutes" and card["steps"] == 0 and card["trained"] is False
    assert card["stop_rule"]["reached_at_step"] is None
    assert main(argv[:-2] + ["--steps", "50", "--stop-after", "1", "--resume",
                             str(tmp_path / "bounded.ckpt.safetensors")]) == 0
    assert json.load(open(tmp_path / "bounded.json"))["steps"] == 1  # resumed, then one step
