"""Training δ-mem on a tiny Llama: loss goes down, only δ-mem parameters move, the CLI writes
an adapter with its card."""

from __future__ import annotations

import json

import torch

from agent.lm.backbone import tiny_llama
from agent.lm.deltamem import DeltaMem, DeltaMemConfig
from agent.lm.episodes import locomo_episodes, synthetic_episodes
from agent.lm.runtime import MemLM
from benchmarks.lm_train import batch_loss, main, prepare, train_step

torch.set_num_threads(1)


def test_training_reduces_loss_and_touches_only_delta_mem():
    torch.manual_seed(0)
    bb = tiny_llama(seed=0)
    lm = MemLM(bb, DeltaMem(DeltaMemConfig.for_backbone(bb), seed=0))
    examples = prepare(lm, synthetic_episodes(4, seed=1))
    base_before = {k: v.clone() for k, v in bb.model.state_dict().items()}
    mem_before = {k: v.clone() for k, v in lm.mem.state_dict().items()}
    with torch.no_grad():
        before = float(batch_loss(lm, examples))
    opt = torch.optim.AdamW(lm.mem.parameters(), lr=1e-2, weight_decay=0.0)
    for _ in range(12):
        train_step(lm, opt, examples)
    with torch.no_grad():
        after = float(batch_loss(lm, examples))
    assert after < before - 0.05, (before, after)
    assert all(torch.equal(v, base_before[k]) for k, v in bb.model.state_dict().items())
    moved = [k for k, v in lm.mem.state_dict().items() if not torch.equal(v, mem_before[k])]
    assert {"W_dq", "W_do", "W_mq", "W_mk", "W_mv"} <= set(moved)
    assert all(not p.requires_grad for p in bb.model.parameters())


def test_history_gradient_reaches_write_parameters():
    bb = tiny_llama(seed=0)
    lm = MemLM(bb, DeltaMem(DeltaMemConfig.for_backbone(bb), seed=0))
    with torch.no_grad():
        lm.mem.W_dq.normal_(std=0.1)
        lm.mem.W_do.normal_(std=0.1)
    loss = batch_loss(lm, prepare(lm, synthetic_episodes(2, seed=2)))
    loss.backward()
    for name in ("W_mk", "W_mv", "W_b", "b_b", "W_mq"):
        g = getattr(lm.mem, name).grad
        assert g is not None and float(g.abs().sum()) > 0, name


def test_cli_writes_adapter_and_card(tmp_path):
    out = str(tmp_path / "tiny.safetensors")
    argv = ["--out", out, "--model", "tiny", "--synthetic", "6", "--heldout", "2", "--recall-eval", "2",
            "--steps", "3", "--batch", "2", "--seed", "5", "--log-every", "1"]
    assert main(argv) == 0
    mem, card = DeltaMem.load(out)
    assert card["steps"] == 3 and card["seed"] == 5 and card["command"].endswith("--log-every 1")
    assert card["data"]["synthetic"] == 6 and card["trained"] is True
    with open(out.replace(".safetensors", ".json")) as f:
        assert json.load(f) == card
    assert mem.cfg.n_layers == 2


def test_synthetic_episodes_state_latest_value_and_locomo_loader():
    eps = synthetic_episodes(40, seed=7, change_prob=1.0)
    for ep in eps:
        assert ep.category == "changed"
        assert ep.answer in ep.turns[ep.evidence[0]][1]  # the evidence turn holds the latest value
    long = synthetic_episodes(1, seed=8, filler_words=2000)[0]
    assert sum(len(t.split()) for _, t in long.turns) > 2000
    loc = locomo_episodes()
    if loc:  # ../shared/data present
        assert {e.category for e in loc} <= {"multi-hop", "temporal", "open-domain", "single-hop"}
        assert all(e.turns and e.question and e.answer for e in loc[:20])
    assert locomo_episodes("/nonexistent/locomo.json") == []
