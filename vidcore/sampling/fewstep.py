"""Few-step sampling of distilled flow models: predict x0, then move to the next noise level.

The re-noising form is the multistep consistency sampler of rCM (Zheng et al. 2025, arXiv:2510.08431),
TurboDiffusion (arXiv:2512.16093) and LTX-Video's distilled checkpoints ("stochastic sampling"): at each step
x0 = x - s·v and x <- (1 - s')·x0 + s'·z with FRESH noise z. The deterministic variant re-noises with the
predicted noise eps = x + (1 - s)·v instead, which is exactly an Euler step.
Timesteps are explicit lists (``sigmas``, N + 1 values ending in 0), as distilled students are trained on.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .flow import Denoiser, add_noise, eps_from_velocity, randn_like_on, x0_from_velocity
from .loop import Callback, call_denoiser, report, step_range
from .schedules import check_sigmas


@torch.no_grad()
def sample_renoise(
    model: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    extra_args: dict[str, Any] | None = None,
    callback: Callback | None = None,
    disable: bool | None = None,
    generator: torch.Generator | None = None,
    stochastic: bool = True,
) -> Tensor:
    """Multistep consistency sampling: x0 = x - s v, then x <- (1 - s') x0 + s' z, z fresh noise from
    ``generator`` (``stochastic=False``: z = the predicted noise x + (1 - s) v, i.e. an Euler step)."""
    sig = check_sigmas(sigmas)
    extra_args = {} if extra_args is None else extra_args
    total = len(sig) - 1
    for i in step_range(total, disable, "renoise"):
        s, s_next = sig[i], sig[i + 1]
        v = call_denoiser(model, x, s, i, extra_args).to(x.dtype)
        denoised = x0_from_velocity(x, s, v)
        noise = randn_like_on(x, generator) if stochastic and s_next > 0 else eps_from_velocity(x, s, v)
        x = add_noise(denoised, noise, s_next)
        report(callback, i=i, x=x, sigma=s, sigma_next=s_next, denoised=denoised, total=total)
    return x


def check_sigma_list(values: Any, name: str = "sigmas") -> tuple[float, ...]:
    """An explicit noise-level list: at least 2 numbers in [0, 1], strictly decreasing, ending in 0."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise ValueError(f"{name}={values!r} must be a list of noise levels, e.g. [1.0, 0.75, 0.5, 0.0]")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"{name} entry {v!r} must be a number")
        out.append(float(v))
    if len(out) < 2:
        raise ValueError(f"{name}={out} needs at least 2 values (one step)")
    if not all(0.0 <= v <= 1.0 for v in out):
        raise ValueError(f"{name}={out} must lie in [0, 1] (flow matching noise levels, 1 = pure noise)")
    if any(b >= a for a, b in zip(out, out[1:], strict=False)):
        raise ValueError(f"{name}={out} must be strictly decreasing (noise -> data)")
    if out[-1] != 0.0:
        raise ValueError(f"{name}={out} must end in 0 (the last step lands on clean data)")
    return tuple(out)
