"""Flow-matching interpolation and conversions between prediction types.

Convention (rectified flow, Liu et al. 2022; Lipman et al. 2022, Eq. 20 with sigma_min = 0):

    x_s = (1 - s) * x0 + s * eps          s = sigma in [0, 1], 1 = pure noise, 0 = data
    v   = d x_s / d s = eps - x0           the velocity our denoisers predict

so from any one of (x0, eps, v) and x_s the other two follow:

    x0  = x - s * v                  eps = x + (1 - s) * v
    v   = (x - x0) / s               (x0-prediction, singular at s = 0)
    v   = (eps - x) / (1 - s)        (eps-prediction, singular at s = 1)

A "denoiser" in vidcore is a callable ``model(x, sigma, **extra_args) -> velocity`` where ``sigma``
is a float32 tensor of shape [B] (one noise level per sample).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

Denoiser = Callable[..., Tensor]
PREDICTION_TYPES = ("velocity", "x0", "epsilon")


def expand_sigma(sigma: Tensor | float, x: Tensor) -> Tensor | float:
    """Broadcast a per-sample sigma of shape [B] (or a scalar) against x of shape [B, ...]."""
    if isinstance(sigma, Tensor) and sigma.ndim == 1:
        return sigma.reshape(sigma.shape[0], *([1] * (x.ndim - 1)))
    return sigma


def add_noise(x0: Tensor, noise: Tensor, sigma: Tensor | float) -> Tensor:
    """Forward flow-matching path x_s = (1 - s) x0 + s eps (rectified flow)."""
    s = expand_sigma(sigma, x0)
    return (1 - s) * x0 + s * noise


def velocity_target(x0: Tensor, noise: Tensor) -> Tensor:
    """Training target of a velocity denoiser: v = d x_s / d s = eps - x0."""
    return noise - x0


def x0_from_velocity(x: Tensor, sigma: Tensor | float, v: Tensor) -> Tensor:
    """Clean estimate x0 = x - s v."""
    return x - expand_sigma(sigma, x) * v


def eps_from_velocity(x: Tensor, sigma: Tensor | float, v: Tensor) -> Tensor:
    """Noise estimate eps = x + (1 - s) v."""
    return x + (1 - expand_sigma(sigma, x)) * v


def velocity_from_x0(x: Tensor, sigma: Tensor | float, x0: Tensor) -> Tensor:
    """Velocity from an x0 prediction: v = (x - x0) / s (undefined at s = 0)."""
    return (x - x0) / expand_sigma(sigma, x)


def velocity_from_eps(x: Tensor, sigma: Tensor | float, eps: Tensor) -> Tensor:
    """Velocity from an epsilon prediction: v = (eps - x) / (1 - s) (undefined at s = 1)."""
    return (eps - x) / (1 - expand_sigma(sigma, x))


def euler_step(x: Tensor, v: Tensor, sigma: float, sigma_next: float) -> Tensor:
    """One explicit Euler step of the flow ODE dx/ds = v from s = sigma to s = sigma_next."""
    return x + (sigma_next - sigma) * v.to(x.dtype)


def randn_like_on(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """Standard normal noise shaped like ``x`` on its device and dtype, drawn float32 on the generator's
    device (a CPU generator gives the same noise on every device) and then moved."""
    device = x.device if generator is None else generator.device
    return torch.randn(x.shape, generator=generator, device=device, dtype=torch.float32).to(x.device, x.dtype)


def as_velocity_denoiser(model: Denoiser, prediction: str) -> Denoiser:
    """Wrap a denoiser predicting ``prediction`` ("velocity", "x0" or "epsilon") so it returns velocity."""
    if prediction not in PREDICTION_TYPES:
        raise ValueError(f"prediction={prediction!r} must be one of {list(PREDICTION_TYPES)}")
    if prediction == "velocity":
        return model
    convert = velocity_from_x0 if prediction == "x0" else velocity_from_eps

    def velocity_model(x: Tensor, sigma: Tensor, **extra_args) -> Tensor:
        return convert(x, sigma, model(x, sigma, **extra_args))

    return velocity_model


def as_prediction_denoiser(model: Denoiser, prediction: str) -> Denoiser:
    """Wrap a velocity denoiser so it returns ``prediction`` ("velocity", "x0" or "epsilon")."""
    if prediction not in PREDICTION_TYPES:
        raise ValueError(f"prediction={prediction!r} must be one of {list(PREDICTION_TYPES)}")
    if prediction == "velocity":
        return model
    convert = x0_from_velocity if prediction == "x0" else eps_from_velocity

    def prediction_model(x: Tensor, sigma: Tensor, **extra_args) -> Tensor:
        return convert(x, sigma, model(x, sigma, **extra_args))

    return prediction_model


def sigma_batch(sigma: float, x: Tensor) -> Tensor:
    """The per-sample sigma tensor handed to a denoiser: float32 [B] on x's device."""
    return torch.full((x.shape[0],), float(sigma), dtype=torch.float32, device=x.device)
