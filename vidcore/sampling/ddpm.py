"""Discrete diffusion: DDPM forward process (Ho et al. 2020), DDIM sampling (Song et al. 2021).

Here the model predicts NOISE: ``model(x_t, t, **extra_args) -> eps`` with ``t`` an int64 tensor [B] of
training timesteps in [0, T). This is separate from the flow-matching samplers (velocity models).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .flow import Denoiser
from .loop import Callback, check_finite, report, step_range


def linear_betas(num_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> Tensor:
    """Linear beta schedule of DDPM (Ho et al. 2020, Sec. 4): beta_1 = 1e-4 ... beta_T = 0.02, float64."""
    if isinstance(num_timesteps, bool) or not isinstance(num_timesteps, int) or num_timesteps < 1:
        raise ValueError(f"num_timesteps={num_timesteps!r} must be an integer >= 1")
    if not 0 < beta_start <= beta_end < 1:
        raise ValueError(
            f"need 0 < beta_start <= beta_end < 1, got beta_start={beta_start}, beta_end={beta_end}"
        )
    return torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float64)


def alphas_cumprod(betas: Tensor) -> Tensor:
    """alpha-bar_t = prod_{s <= t} (1 - beta_s)."""
    return torch.cumprod(1 - betas.double(), dim=0)


def _ab(abar: Tensor, t: Tensor | int, x: Tensor) -> Tensor:
    t = torch.as_tensor(t, device=abar.device, dtype=torch.long)
    if bool((t < 0).any()) or bool((t >= abar.numel()).any()):
        raise ValueError(f"timestep t={t.tolist()} out of range [0, {abar.numel() - 1}]")
    a = abar[t].to(device=x.device, dtype=torch.float32)
    return a.reshape(-1, *([1] * (x.ndim - 1))) if a.ndim == 1 else a


def q_sample(x0: Tensor, t: Tensor | int, noise: Tensor, alphas_cumprod: Tensor) -> Tensor:
    """Sample q(x_t | x_0) = N(sqrt(ab_t) x0, (1 - ab_t) I) as sqrt(ab_t) x0 + sqrt(1 - ab_t) eps (Eq. 4)."""
    a = _ab(alphas_cumprod, t, x0)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def ddim_timesteps(num_steps: int, num_timesteps: int = 1000) -> Tensor:
    """``num_steps`` evenly spaced training timesteps, descending from T - 1 to 0 (int64)."""
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or not 1 <= num_steps <= num_timesteps:
        raise ValueError(f"num_steps={num_steps!r} must be an integer in [1, {num_timesteps}]")
    return torch.linspace(num_timesteps - 1, 0, num_steps, dtype=torch.float64).round().long()


def x0_from_eps(x: Tensor, eps: Tensor, a_t: float) -> Tensor:
    """Clean estimate from a noise prediction: x0 = (x_t - sqrt(1 - ab_t) eps) / sqrt(ab_t)."""
    return (x - (1 - a_t) ** 0.5 * eps) / a_t**0.5


def ddim_sigma(a_t: float, a_prev: float, eta: float) -> float:
    """Std of the fresh noise of a DDIM step (Song et al. 2021, Eq. 16); eta = 1: DDPM's posterior std."""
    return eta * ((1 - a_prev) / (1 - a_t)) ** 0.5 * (1 - a_t / a_prev) ** 0.5


def ddim_step(x0: Tensor, eps: Tensor, a_prev: float, sigma: float, noise: Tensor | None) -> Tensor:
    """DDIM update (Song et al. 2021, Eq. 12): sqrt(ab') x0 + sqrt(1 - ab' - sigma^2) eps + sigma z."""
    x_prev = a_prev**0.5 * x0 + max(1 - a_prev - sigma**2, 0.0) ** 0.5 * eps
    if sigma > 0:
        if noise is None:
            raise ValueError(f"a DDIM step with sigma={sigma} > 0 needs a noise tensor")
        x_prev = x_prev + sigma * noise
    return x_prev


@torch.no_grad()
def sample_ddim(
    model: Denoiser,
    x: Tensor,
    timesteps: Tensor,
    alphas_cumprod: Tensor,
    eta: float = 0.0,
    extra_args: dict[str, Any] | None = None,
    callback: Callback | None = None,
    disable: bool | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """DDIM sampling with an eps-predicting model over descending ``timesteps`` (Song et al. 2021).

    After the last timestep the sample is taken to clean data (alpha-bar = 1). Callback dicts carry
    the usual keys with ``sigma``/``sigma_next`` = sqrt(1 - alpha-bar) before/after the step, plus ``t``
    and ``t_next`` (-1 = clean); cancel by raising from the callback (see vidcore.sampling.loop).
    """
    if eta < 0:
        raise ValueError(f"eta={eta!r} must be >= 0")
    ts = torch.as_tensor(timesteps).long().cpu().tolist()
    decreasing = all(b < a for a, b in zip(ts, ts[1:], strict=False))
    if not ts or not decreasing or ts[-1] < 0 or ts[0] >= alphas_cumprod.numel():
        raise ValueError(
            f"timesteps must be strictly decreasing in [0, {alphas_cumprod.numel() - 1}], got {ts}"
        )
    extra_args = {} if extra_args is None else extra_args
    abar = alphas_cumprod.double().cpu().tolist()
    total = len(ts)
    for i in step_range(total, disable, "ddim"):
        t, t_next = ts[i], ts[i + 1] if i + 1 < total else -1
        a_t, a_prev = abar[t], abar[t_next] if t_next >= 0 else 1.0
        t_batch = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
        eps = model(x, t_batch, **extra_args)
        check_finite(eps, i, (1 - a_t) ** 0.5, what=f"eps prediction (t={t})")
        eps = eps.to(x.dtype)
        denoised = x0_from_eps(x, eps, a_t)
        noise_std = ddim_sigma(a_t, a_prev, eta)
        noise = None
        if noise_std > 0:
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        x = ddim_step(denoised, eps, a_prev, noise_std, noise)
        report(
            callback,
            i=i,
            x=x,
            sigma=(1 - a_t) ** 0.5,
            sigma_next=(1 - a_prev) ** 0.5,
            denoised=denoised,
            total=total,
            t=t,
            t_next=t_next,
        )
    return x
