"""δ-mem training on CUDA against the CPU (``gpu`` marker: needs CuPy and a usable GPU, and a
CUDA build of torch): the same examples give the same objective, gap and gradients."""

from __future__ import annotations

import pytest
import torch

from agent.lm.backbone import tiny_llama
from agent.lm.deltamem import DeltaMem, DeltaMemConfig
from agent.lm.episodes import synthetic_episodes
from agent.lm.examples import prepare
from agent.lm.objective import objective, state_gap
from agent.lm.runtime import MemLM

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="torch has no CUDA here")]


def _run(device: str) -> tuple[float, dict, dict[str, torch.Tensor]]:
    bb = tiny_llama(seed=0)
    bb.model.to(device)
    lm = MemLM(bb, DeltaMem(DeltaMemConfig.for_backbone(bb, delta_init=0.05), seed=1).to(device))
    examples = prepare(lm, synthetic_episodes(6, seed=2), regime="state")
    loss, _ = objective(lm, examples, margin=5.0)
    loss.backward()
    grads = {n: p.grad.detach().cpu() for n, p in lm.mem.named_parameters()}
    return float(loss), state_gap(lm, examples, batch=4), grads


def test_objective_and_gap_on_cuda_match_cpu():
    cpu, cuda = _run("cpu"), _run("cuda")
    assert cuda[0] == pytest.approx(cpu[0], rel=1e-3)
    for key in ("ce_own", "ce_other", "gap"):
        assert cuda[1][key] == pytest.approx(cpu[1][key], rel=1e-3, abs=1e-4)
    for name, g in cpu[2].items():
        assert float((cuda[2][name] - g).norm()) <= 1e-2 * float(g.norm()) + 1e-6, name
