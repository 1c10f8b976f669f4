"""Flow-matching ODE/SDE samplers: pure functions over a velocity denoiser (k-diffusion call shape).

``model(x, sigma, **extra_args)`` returns the velocity v = eps - x0 at noise level sigma (float32 [B]),
for the path x_s = (1 - s) x0 + s eps; see vidcore.sampling.flow. The flow ODE is dx/ds = v, so Karras
et al. (2022)'s d = (x - D(x)) / sigma is exactly v here. ``sigmas`` is a schedule from
vidcore.sampling.schedules (N + 1 values, noise -> 0). The state keeps the dtype of ``x``: pass float32
latents (the model may compute in lower precision inside). Callback / cancel / progress contract: see
vidcore.sampling.loop. Every sampler takes ``generator`` (keyword): the stochastic ones draw their fresh
noise from it, the deterministic ones accept and ignore it, so callers never inspect signatures.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from .flow import Denoiser, add_noise, eps_from_velocity, euler_step, randn_like_on, x0_from_velocity
from .loop import Callback, call_denoiser, report, step_range
from .schedules import check_sigmas
from .unipc import sample_unipc


@torch.no_grad()
def sample_euler(
    model: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    extra_args: dict[str, Any] | None = None,
    callback: Callback | None = None,
    disable: bool | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Euler steps of the flow ODE dx/ds = v (Karras et al. 2022, Algorithm 2 without churn)."""
    sig = check_sigmas(sigmas)
    extra_args = {} if extra_args is None else extra_args
    total = len(sig) - 1
    for i in step_range(total, disable, "euler"):
        v = call_denoiser(model, x, sig[i], i, extra_args)
        denoised = x0_from_velocity(x, sig[i], v)
        x = euler_step(x, v, sig[i], sig[i + 1])
        report(callback, i=i, x=x, sigma=sig[i], sigma_next=sig[i + 1], denoised=denoised, total=total)
    return x


@torch.no_grad()
def sample_heun(
    model: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    extra_args: dict[str, Any] | None = None,
    callback: Callback | None = None,
    disable: bool | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Heun's second-order method on the flow ODE (Karras et al. 2022, Algorithm 1); the step to
    sigma = 0 is a plain Euler step. Costs 2 model calls per step except the last."""
    sig = check_sigmas(sigmas)
    extra_args = {} if extra_args is None else extra_args
    total = len(sig) - 1
    for i in step_range(total, disable, "heun"):
        s, s_next = sig[i], sig[i + 1]
        v = call_denoiser(model, x, s, i, extra_args)
        denoised = x0_from_velocity(x, s, v)
        x_euler = euler_step(x, v, s, s_next)
        if s_next == 0:
            x = x_euler
        else:
            v_next = call_denoiser(model, x_euler, s_next, i, extra_args)
            # Trapezoidal rule: average the slopes at both ends of the step.
            dtype = torch.promote_types(v.dtype, torch.float32)
            x = euler_step(x, (v.to(dtype) + v_next.to(dtype)) / 2, s, s_next)
        report(callback, i=i, x=x, sigma=s, sigma_next=s_next, denoised=denoised, total=total)
    return x


def ancestral_noise_std(sigma: float, sigma_next: float, eta: float) -> float:
    """Std c of the fresh noise of a stochastic step sigma -> sigma_next on the path a = 1 - s, b = s:
    c = eta * s' * sqrt(1 - ((1 - s) s' / ((1 - s') s))^2), the DDPM posterior std at eta = 1
    (Song et al. 2021, Eq. 16, written for the flow path)."""
    if sigma_next == 0:
        return 0.0
    ratio = (1 - sigma) * sigma_next / ((1 - sigma_next) * sigma)
    return eta * sigma_next * max(1 - ratio**2, 0.0) ** 0.5


@torch.no_grad()
def sample_euler_ancestral(
    model: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    extra_args: dict[str, Any] | None = None,
    callback: Callback | None = None,
    disable: bool | None = None,
    eta: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Stochastic (ancestral) flow sampler: DDIM's generalised step (Song et al. 2021, Eq. 12) on the flow
    path, x <- (1 - s') x0 + sqrt(s'^2 - c^2) eps + c z with c = ancestral_noise_std(s, s', eta).

    eta = 0 is exactly the Euler step; eta = 1 samples the DDPM posterior. (diffusers' LTX
    ``stochastic_sampling`` is the case c = s', which shrinks the variance even with an exact denoiser.)
    """
    if not 0 <= eta <= 1:
        raise ValueError(f"eta={eta!r} must lie in [0, 1]")

    def fresh(s: float, s_next: float) -> float:
        return ancestral_fresh_part(s, s_next, eta)

    return _sample_renoising(
        model, x, sigmas, fresh, extra_args, callback, disable, generator, "euler-ancestral"
    )


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
    """Multistep consistency sampling of distilled students (rCM, Zheng et al. 2025, arXiv:2510.08431;
    TurboDiffusion; LTX-Video's distilled "stochastic sampling"): x0 = x - s v, then x <- (1 - s') x0 + s' z
    with z fresh noise from ``generator``, i.e. the ancestral step with all of the noise fresh
    (``stochastic=False``: none of it fresh, which is an Euler step)."""

    def fresh(s: float, s_next: float) -> float:
        return 1.0 if stochastic and s_next > 0 else 0.0

    return _sample_renoising(model, x, sigmas, fresh, extra_args, callback, disable, generator, "renoise")


def _sample_renoising(
    model: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    fresh_part: Callable[[float, float], float],
    extra_args: dict[str, Any] | None,
    callback: Callback | None,
    disable: bool | None,
    generator: torch.Generator | None,
    desc: str,
) -> Tensor:
    """Predict x0, then re-noise to the next level with unit-variance noise of which ``fresh_part(s, s')``
    is fresh (drawn from ``generator``) and the rest the predicted noise eps = x + (1 - s) v."""
    sig = check_sigmas(sigmas)
    extra_args = {} if extra_args is None else extra_args
    total = len(sig) - 1
    for i in step_range(total, disable, desc):
        s, s_next = sig[i], sig[i + 1]
        v = call_denoiser(model, x, s, i, extra_args).to(x.dtype)
        x, denoised = renoising_step(x, v, s, s_next, fresh_part(s, s_next), generator)
        report(callback, i=i, x=x, sigma=s, sigma_next=s_next, denoised=denoised, total=total)
    return x


def renoising_step(
    x: Tensor, v: Tensor, sigma: float, sigma_next: float, fresh: float, generator: torch.Generator | None
) -> tuple[Tensor, Tensor]:
    """One step sigma -> sigma_next of the re-noising family: x0 = x - s v, then x0 re-noised to s' with
    unit-variance noise of which ``fresh`` (in [0, 1]) is drawn from ``generator`` and the rest is the
    predicted noise eps = x + (1 - s) v (``fresh`` = 0 is an Euler step; no noise is drawn then).
    Returns (the next x, x0), x0 for the caller's progress report."""
    denoised = x0_from_velocity(x, sigma, v)
    noise = eps_from_velocity(x, sigma, v)
    if fresh > 0:
        z = randn_like_on(x, generator)
        noise = (1 - fresh**2) ** 0.5 * noise + fresh * z
    return add_noise(denoised, noise, sigma_next), denoised


def ancestral_fresh_part(sigma: float, sigma_next: float, eta: float = 1.0) -> float:
    """The fresh share of the noise of an ancestral step (``renoising_step``'s ``fresh``)."""
    return ancestral_noise_std(sigma, sigma_next, eta) / sigma_next if sigma_next > 0 else 0.0


# The sampler registry: name -> sampler. Every entry has the signature
# (model, x, sigmas, extra_args=None, callback=None, disable=None, generator=None) -> x.
SAMPLERS = {
    "euler": sample_euler,
    "heun": sample_heun,
    "euler_ancestral": sample_euler_ancestral,
    "unipc": sample_unipc,
    "renoise": sample_renoise,
}
