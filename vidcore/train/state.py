"""Training state that survives sessions: model, EMA and AdamW tensors in one safetensors file, with the
step, optimiser hyper-parameters and config as JSON metadata. Nothing is pickled.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from torch import nn

from ..io.checkpoint import write_safetensors


class EMA:
    """Exponential moving average of parameters: ``ema ← d·ema + (1 - d)·θ`` (Polyak averaging)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"ema decay={decay!r} must be in [0, 1)")
        self.decay = decay
        self.shadow = {k: v.detach().clone().float() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        # Warm-up (1 + step) / (10 + step) keeps early averages from being dominated by random init.
        d = min(self.decay, (1 + step) / (10 + step))
        for k, v in model.state_dict().items():
            if v.is_floating_point():
                self.shadow[k].mul_(d).add_(v.detach().float(), alpha=1 - d)
            else:
                self.shadow[k].copy_(v)

    def copy_to(self, model: nn.Module) -> None:
        model.load_state_dict({k: v.to(model.state_dict()[k].dtype) for k, v in self.shadow.items()})


def _flatten_optimizer(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for pid, st in sd["state"].items():
        for name, value in st.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{pid}.{name}"] = value.detach().contiguous().cpu()
            else:
                scalars[f"{pid}.{name}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        _, pid, name = key.split(".", 2)
        state.setdefault(int(pid), {})[name] = value
    for key, value in meta["scalars"].items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def save_training_state(
    path: str | os.PathLike,
    model: nn.Module,
    ema: EMA | None,
    optimizer: torch.optim.Optimizer,
    step: int,
    info: dict[str, Any],
) -> Path:
    """Atomically write everything needed to resume training (replacing the previous state file); ``ema``
    None for a model trained without one (e.g. DMD's fake score)."""
    path = Path(path)
    tensors = {f"model.{k}": v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if ema is not None:
        tensors.update({f"ema.{k}": v.contiguous().cpu() for k, v in ema.shadow.items()})
    opt_tensors, opt_meta = _flatten_optimizer(optimizer)
    tensors.update(opt_tensors)
    metadata = {"step": str(step), "optimizer": json.dumps(opt_meta), "info": json.dumps(info)}
    write_safetensors(path, tensors, metadata)
    return path


def load_training_state(
    path: str | os.PathLike, model: nn.Module, ema: EMA | None, optimizer: torch.optim.Optimizer
) -> tuple[int, dict[str, Any]]:
    """Restore model, EMA and optimiser from :func:`save_training_state`; return ``(step, info)``."""
    groups: dict[str, dict[str, torch.Tensor]] = {"model": {}, "ema": {}, "optim": {}}
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        for key in f.keys():
            head, rest = key.split(".", 1)
            if head == "optim":
                groups["optim"][key] = f.get_tensor(key)
            else:
                groups[head][rest] = f.get_tensor(key)
    if "step" not in meta:
        raise ValueError(f"{str(path)!r} is not a vidcore training state (no 'step' metadata)")
    missing = sorted(set(model.state_dict()) - set(groups["model"]))
    unexpected = sorted(set(groups["model"]) - set(model.state_dict()))
    if missing or unexpected:
        raise ValueError(
            f"training state {str(path)!r} does not fit the model: missing {missing}, unexpected {unexpected}"
        )
    model.load_state_dict(groups["model"])
    if ema is not None:
        ema.shadow = {k: v.float() for k, v in groups["ema"].items()}
    optimizer.load_state_dict(_unflatten_optimizer(groups["optim"], json.loads(meta["optimizer"])))
    return int(meta["step"]), json.loads(meta.get("info", "{}"))
