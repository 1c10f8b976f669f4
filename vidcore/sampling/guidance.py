"""Classifier-free guidance (Ho & Salimans 2022) as a wrapper around a denoiser, plus guidance rescale.

Two spellings of the same combination (both linear, so they hold for velocity, eps or x0 predictions):

    Ho & Salimans (2022), Eq. 6:   pred = (1 + w) * pred_c - w * pred_u
    usual scale g:                 pred = pred_u + g * (pred_c - pred_u)          with g = 1 + w

so g = 1 (w = 0) is the plain conditional prediction and g = 0 (w = -1) the unconditional one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from .flow import Denoiser


def cfg_combine(cond: Tensor, uncond: Tensor, scale: float) -> Tensor:
    """Guided prediction u + g (c - u), in float32 as c + (g - 1)(c - u) so that g = 1 returns c exactly."""
    cond, uncond = cond.float(), uncond.float()
    return cond + (scale - 1) * (cond - uncond)


def rescale_guidance(guided: Tensor, cond: Tensor, phi: float) -> Tensor:
    """Guidance rescale (Lin et al. 2023, Eq. 15-16): v_r = v * std(v_c) / std(v) per sample over the
    non-batch dims, v <- phi v_r + (1 - phi) v; phi = 0 returns ``guided`` unchanged."""
    if not 0 <= phi <= 1:
        raise ValueError(f"rescale phi={phi!r} must lie in [0, 1]")
    if phi == 0:
        return guided
    dims = tuple(range(1, guided.ndim))
    guided, cond = guided.float(), cond.float()
    rescaled = guided * (cond.std(dim=dims, keepdim=True) / guided.std(dim=dims, keepdim=True))
    return phi * rescaled + (1 - phi) * guided


def _batchable(a: Any, b: Any) -> bool:
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        return a.shape == b.shape and a.dtype == b.dtype and a.device == b.device
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        return False
    if a is b:
        return True
    try:
        return bool(type(a) is type(b) and a == b)
    except (TypeError, ValueError, RuntimeError):  # e.g. containers of tensors: compare by identity only
        return False


def _cat(u: Any, c: Any) -> Any:
    # Batch order [uncond; cond]; batch-compatible non-tensors are equal, so either one will do.
    return torch.cat([u, c]) if isinstance(c, Tensor) else c


class CFGDenoiser:
    """Wrap a denoiser with classifier-free guidance; call it as ``guided(x, sigma, **extra_args)``.

    ``cond`` / ``uncond`` are the model keyword arguments of the conditional and unconditional branch
    (e.g. {"context": emb [B, L, D], "context_mask": mask [B, L]}). Keyword arguments given at call
    time (the sampler's ``extra_args``) are shared by both branches and must not repeat their keys.
    When both branches have the same keys and batch-compatible values (tensors of equal shape, dtype
    and device; other values equal), the model runs ONCE on the batch [uncond; cond]; otherwise twice.
    ``scale`` is the usual g (1 = no guidance: only the conditional branch is evaluated); ``scale_fn``,
    when given, picks the scale from the step's sigma instead (e.g. one scale per expert of Wan 2.2).
    ``rescale`` is phi of guidance rescale. The result is float32.
    """

    def __init__(
        self,
        model: Denoiser,
        cond: dict[str, Any],
        uncond: dict[str, Any],
        scale: float,
        rescale: float = 0.0,
        scale_fn: Callable[[Tensor], float] | None = None,
    ) -> None:
        if not callable(model):
            raise TypeError(f"model must be callable, got {type(model).__name__}")
        for name, value in (("cond", cond), ("uncond", uncond)):
            if not isinstance(value, dict):
                raise TypeError(f"{name} must be a dict of model keyword args, got {type(value).__name__}")
        if not math.isfinite(scale):
            raise ValueError(f"scale={scale!r} must be a finite number")
        if not 0 <= rescale <= 1:
            raise ValueError(f"rescale={rescale!r} must lie in [0, 1]")
        self.model = model
        self.cond = dict(cond)
        self.uncond = dict(uncond)
        self.scale = float(scale)
        self.rescale = float(rescale)
        self.scale_fn = scale_fn
        self.batched = set(cond) == set(uncond) and all(_batchable(uncond[k], cond[k]) for k in cond)

    def __call__(self, x: Tensor, sigma: Tensor, **extra_args: Any) -> Tensor:
        clash = sorted(set(extra_args) & (set(self.cond) | set(self.uncond)))
        if clash:
            raise ValueError(f"extra_args {clash} are already set per branch in cond/uncond; pass them once")
        cond = {**self.cond, **extra_args}
        scale = self.scale if self.scale_fn is None else float(self.scale_fn(sigma))
        if scale == 1:
            return self.model(x, sigma, **cond).float()
        uncond = {**self.uncond, **extra_args}
        if self.batched:
            both = {k: _cat(uncond[k], cond[k]) for k in cond}
            sigma2 = torch.cat([sigma, sigma]) if isinstance(sigma, Tensor) and sigma.ndim == 1 else sigma
            out_u, out_c = self.model(torch.cat([x, x]), sigma2, **both).float().chunk(2)
        else:
            out_c = self.model(x, sigma, **cond).float()
            out_u = self.model(x, sigma, **uncond).float()
        return rescale_guidance(cfg_combine(out_c, out_u, scale), out_c, self.rescale)
