"""Training checkpoints: δ-mem parameters and AdamW state as float32 safetensors, the rest JSON.

One file holds everything a resumed run needs to continue bit for bit: the parameters (float32,
not the float16 of a shipped adapter), every optimizer state tensor, the optimizer's parameter
groups, and a JSON ``progress`` dict (step, losses, the stop-rule log, elapsed seconds, the
arguments that must match). Batches are drawn from ``(seed, step)`` and the learning rate is a
function of the step, so no random-generator state needs saving. No pickle anywhere.
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch

__all__ = ["save_checkpoint", "load_checkpoint"]


def save_checkpoint(path: str, mem: torch.nn.Module, opt: torch.optim.Optimizer,
                    progress: dict[str, Any]) -> None:
    """Write atomically (a temporary file renamed over ``path``)."""
    from safetensors.torch import save_file

    tensors = {f"param.{k}": v.detach().to("cpu", torch.float32).contiguous()
               for k, v in mem.state_dict().items()}
    sd = opt.state_dict()
    for pid, st in sd["state"].items():
        for key, val in st.items():
            if not isinstance(val, torch.Tensor):
                raise TypeError(f"optimizer state {key!r} is not a tensor")
            tensors[f"opt.{pid}.{key}"] = val.detach().cpu().contiguous()
    meta = {"param_groups": json.dumps(sd["param_groups"]), "progress": json.dumps(progress)}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    save_file(tensors, tmp, metadata=meta)
    os.replace(tmp, path)


def load_checkpoint(path: str, mem: torch.nn.Module, opt: torch.optim.Optimizer) -> dict[str, Any]:
    """Load parameters and optimizer state in place; returns the ``progress`` dict."""
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        meta = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    dev = next(mem.parameters()).device
    params = {k[len("param."):]: v for k, v in tensors.items() if k.startswith("param.")}
    mem.load_state_dict({k: v.to(dev) for k, v in params.items()})
    state: dict[int, dict[str, torch.Tensor]] = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, pid, key = k.split(".", 2)
            state.setdefault(int(pid), {})[key] = v
    opt.load_state_dict({"state": state, "param_groups": json.loads(meta["param_groups"])})
    return dict(json.loads(meta["progress"]))
