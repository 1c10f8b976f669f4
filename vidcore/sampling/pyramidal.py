"""Pyramidal flow matching sampler (Jin et al. 2024, "Pyramidal Flow Matching", arXiv:2410.05954).

Spatial pyramid only: every latent frame goes through the same K resolution stages (1/2^(K-1) ... full);
the temporal autoregression of Pyramid Flow (history units at lower resolutions) is left out, the
whole clip is denoised jointly. As in Pyramid Flow, each stage runs Euler with a LOCAL sigma 1 -> 0
while the model is given the GLOBAL noise level of the stage's slice of the original schedule (in
[0, 1]: Pyramid Flow's timestep / 1000); velocity="global" instead drives a model trained with plain
flow matching on the true noise level (and may take ancestral steps within a stage). Between stages the
latent is upsampled 2x (nearest) and re-noised with correlated block noise so the noise is i.i.d. again
(Sec. 3.3 of the paper; constants in closed form).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import Tensor

from .flow import Denoiser, euler_step, x0_from_velocity
from .loop import Callback, call_denoiser, report, step_range
from .samplers import ancestral_fresh_part, renoising_step
from .schedules import time_shift

VELOCITY_KINDS = ("local", "global")
# Samplers a stage can integrate with: Euler (the ODE) and, for velocity="global", the ancestral (DDPM
# posterior) step, which is defined on the true noise level only.
PYRAMIDAL_SAMPLERS = ("euler", "euler_ancestral")


@dataclass(frozen=True)
class PyramidStage:
    """Constants of one pyramid stage. Noise levels are global sigmas in [0, 1]."""

    index: int
    ori_start: float  # global sigma where the stage begins on the original (shifted) grid
    start: float  # noise level right after the corrective renoise (1 for stage 0)
    end: float  # global sigma where the stage ends (0 for the last stage)
    alpha: float  # renoise gain on the upsampled latent (1 for stage 0)
    beta: float  # renoise gain on the block noise (0 for stage 0)
    t_first: float  # global model sigma (= timestep / T) at the stage's first step
    t_last: float  # global model sigma at the stage's last step (for a 1000-step grid)


def renoise_coefficients(signal: float, gamma: float) -> tuple[float, float]:
    """Corrective renoise x <- alpha x + beta n_block for a latent with signal coefficient ``signal``
    (Pyramid Flow Sec. 3.3): alpha = 1 / (sqrt(1 + 1/g)(1 - s) + s), beta = alpha (1 - s) / sqrt(g)."""
    _check_gamma(gamma)
    alpha = 1 / (math.sqrt(1 + 1 / gamma) * (1 - signal) + signal)
    return alpha, alpha * (1 - signal) / math.sqrt(gamma)


def _check_gamma(gamma: float) -> None:
    # The closed-form block sampler needs 1 - 3 gamma >= 0 (covariance (1+g)I - g 11^T is PSD only then).
    if not 0 < gamma <= 1 / 3 + 1e-12:
        raise ValueError(f"gamma={gamma!r} must lie in (0, 1/3] (block-noise covariance must be PSD)")


def pyramid_stages(
    num_stages: int = 3,
    stage_range: Sequence[float] | None = None,
    gamma: float = 1 / 3,
    shift: float = 1.0,
    num_train_timesteps: int = 1000,
) -> tuple[PyramidStage, ...]:
    """Closed-form stage constants of Pyramid Flow's scheduler (``init_sigmas_for_each_stage``)."""
    if isinstance(num_stages, bool) or not isinstance(num_stages, int) or num_stages < 1:
        raise ValueError(f"num_stages={num_stages!r} must be an integer >= 1")
    _check_gamma(gamma)
    total_t = num_train_timesteps
    rng = [k / num_stages for k in range(num_stages + 1)] if stage_range is None else list(stage_range)
    increasing = all(b > a for a, b in zip(rng, rng[1:], strict=False))
    if len(rng) != num_stages + 1 or rng[0] != 0 or rng[-1] != 1 or not increasing:
        raise ValueError(
            f"stage_range={rng} must be {num_stages + 1} increasing values from 0 to 1 "
            f"for {num_stages} stages"
        )
    # Global grid t_j = T, T-1, ..., 1 (j = 0..T-1), sigma_j = t_j / T, shifted; model timesteps follow sigma.
    sigma = time_shift(torch.linspace(total_t, 1, total_t, dtype=torch.float64) / total_t, shift).tolist()
    ori = [sigma[int(r * total_t)] for r in rng[:-1]]
    ends = ori[1:] + [0.0]
    coeffs = [(1.0, 0.0)] + [renoise_coefficients(1 - o, gamma) for o in ori[1:]]
    starts = [1.0] + [1 - a * (1 - o) for (a, _), o in zip(coeffs[1:], ori[1:], strict=True)]
    dist = [s - e for s, e in zip(starts, ends, strict=True)]
    cum = [sum(dist[:k]) / sum(dist) for k in range(num_stages + 1)]
    stages = []
    for k in range(num_stages):
        t_a = sigma[int(cum[k] * total_t)]
        t_b = sigma[min(int(cum[k + 1] * total_t), total_t - 1)]
        # The stage's dense grid is linspace(t_a, t_b, T + 1) without its last point.
        t_last = t_a + (t_b - t_a) * (total_t - 1) / total_t
        alpha, beta = coeffs[k]
        stages.append(PyramidStage(k, ori[k], starts[k], ends[k], alpha, beta, t_a, t_last))
    return tuple(stages)


def split_steps(steps: int, stages: int) -> list[int]:
    """Split a total step budget over pyramid stages, the remainder going to the earliest (cheapest) ones."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < stages:
        raise ValueError(f"steps={steps!r} must be an integer >= the number of pyramid stages ({stages})")
    base, extra = divmod(steps, stages)
    return [base + (1 if k < extra else 0) for k in range(stages)]


def stage_sigmas(
    stage: PyramidStage, steps: int, velocity: str = "local", num_train_timesteps: int = 1000
) -> tuple[Tensor, Tensor]:
    """(Euler sigmas [n + 1], model sigmas [n]) of one stage.

    velocity="local" (Pyramid Flow): Euler on the local sigma linspace(1, 1/T, n) then 0, model given
    linspace(t_first, t_last, n). velocity="global" (a model trained with plain flow matching at every
    resolution): Euler on the true noise level linspace(start, end, n + 1), model given the same levels.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps={steps!r} for stage {stage.index} must be an integer >= 1")
    if velocity not in VELOCITY_KINDS:
        raise ValueError(f"velocity={velocity!r} must be one of {list(VELOCITY_KINDS)}")
    if velocity == "global":
        levels = torch.linspace(stage.start, stage.end, steps + 1, dtype=torch.float64)
        return levels, levels[:-1]
    local = torch.linspace(1, 1 / num_train_timesteps, steps, dtype=torch.float64)
    local = torch.cat([local, local.new_zeros(1)])
    return local, torch.linspace(stage.t_first, stage.t_last, steps, dtype=torch.float64)


def sample_block_noise(
    shape: Sequence[int],
    gamma: float = 1 / 3,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Noise [..., H, W], independent per 2x2 block with covariance (1+g)I - g 11^T, in closed form:
    n = sqrt(1+g)(z - mean(z)) + sqrt(1-3g) mean(z) for z ~ N(0, I_4) (no MultivariateNormal).

    z is drawn on the generator's device (a CPU generator gives the same noise on every device)."""
    _check_gamma(gamma)
    *lead, h, w = shape
    if h % 2 or w % 2:
        raise ValueError(f"block noise needs even height and width, got {h}x{w}")
    draw_on = device if generator is None else generator.device
    z = torch.randn(*lead, h // 2, w // 2, 4, generator=generator, device=draw_on, dtype=torch.float32)
    z = z.to(device, dtype)
    m = z.mean(dim=-1, keepdim=True)
    n = math.sqrt(1 + gamma) * (z - m) + math.sqrt(max(1 - 3 * gamma, 0.0)) * m
    return rearrange(n, "... h w (p q) -> ... (h p) (w q)", p=2, q=2)


def upsample_nearest(x: Tensor) -> Tensor:
    """Nearest-neighbour 2x spatial upsampling of [..., H, W] (each value copied into a 2x2 block)."""
    return repeat(x, "... h w -> ... (h p) (w q)", p=2, q=2)


def renoise(x: Tensor, block_noise: Tensor, alpha: float, beta: float) -> Tensor:
    """Corrective renoise alpha x + beta n_block after upsampling (Pyramid Flow Sec. 3.3)."""
    return alpha * x + beta * block_noise.to(x.dtype)


def _half(x: Tensor, gain: float) -> Tensor:
    # Bilinear at exactly half size (align_corners=False) averages each 2x2 block; frames independently.
    b = x.shape[0]
    frames = rearrange(x, "b c t h w -> (b t) c h w")
    frames = F.interpolate(frames, size=(x.shape[-2] // 2, x.shape[-1] // 2), mode="bilinear")
    return gain * rearrange(frames, "(b t) c h w -> b c t h w", b=b)


def noise_pyramid(noise: Tensor, num_stages: int) -> list[Tensor]:
    """Unit-variance noise at each stage resolution, low -> high: repeated bilinear /2 times 2."""
    _check_video(noise, num_stages, "noise")
    levels = [noise]
    for _ in range(num_stages - 1):
        levels.append(_half(levels[-1], 2.0))
    return levels[::-1]


def latent_pyramid(x: Tensor, num_stages: int) -> list[Tensor]:
    """Clean latents at each stage resolution, low -> high: repeated bilinear /2 (``get_pyramid_latent``)."""
    _check_video(x, num_stages, "x")
    levels = [x]
    for _ in range(num_stages - 1):
        levels.append(_half(levels[-1], 1.0))
    return levels[::-1]


def _check_video(x: Tensor, num_stages: int, name: str) -> None:
    if not isinstance(x, Tensor) or x.ndim != 5:
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a video latent [B, C, T, H, W] (unsqueeze(2) an image), got {got}")
    factor = 2 ** (num_stages - 1)
    for axis, size in (("height", x.shape[-2]), ("width", x.shape[-1])):
        if size % factor or size == 0:
            low = max(factor, size // factor * factor)
            raise ValueError(
                f"latent {axis}={size} must be divisible by {factor} for {num_stages} pyramid stages; "
                f"valid sizes near it: {low}, {low + factor}"
            )


@torch.no_grad()
def sample_pyramidal(
    model: Denoiser,
    noise: Tensor,
    stage_steps: Sequence[int] = (20, 20, 20),
    gamma: float = 1 / 3,
    stage_range: Sequence[float] | None = None,
    shift: float = 1.0,
    extra_args: dict[str, Any] | None = None,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    disable: bool | None = None,
    block_noises: Sequence[Tensor] | None = None,
    velocity: str = "local",
    sampler: str = "euler",
) -> Tensor:
    """Pyramidal flow matching inference (spatial stages) from full-resolution ``noise`` [B, C, T, H, W].

    ``model(x, sigma, **extra_args)`` gets x at the stage resolution and a global sigma (float32 [B],
    in [0, 1]). ``velocity`` says what it returns:
    - "local" (Pyramid Flow checkpoints): the stage velocity (start point - end point), given the
      upstream model timestep / 1000; Euler runs on the local sigma 1 -> 0 of each stage.
    - "global" (a model trained with plain flow matching, v = eps - x0, at every resolution): it is
      given the true noise level of x, and Euler runs on that level from the stage's start to its end.
    The number of stages is len(stage_steps). ``block_noises`` (one tensor per stage transition, at the
    new stage's shape) replaces the drawn block noise, for parity tests. ``sampler``: "euler" or, with
    velocity "global", "euler_ancestral" (each step re-noises x0 with the DDPM posterior's share of
    fresh noise from ``generator``, as ``sample_euler_ancestral`` at eta = 1). Callback dicts add ``stage``
    and ``timestep`` (the sigma given to the model); ``sigma``/``sigma_next`` are the Euler step's
    sigmas (local or global as above), ``denoised`` is x - sigma * v (the stage end point for "local",
    x0 for "global") and ``x`` changes resolution between stages. Returns full-resolution latents.
    """
    if sampler not in PYRAMIDAL_SAMPLERS:
        raise ValueError(f"sampler={sampler!r}: a pyramid stage integrates with {list(PYRAMIDAL_SAMPLERS)}")
    if sampler != "euler" and velocity != "global":
        raise ValueError(f"sampler={sampler!r} needs velocity='global' (true noise levels), not {velocity!r}")
    steps = list(stage_steps)
    if not steps:
        raise ValueError("stage_steps must name at least one stage")
    stages = pyramid_stages(len(steps), stage_range, gamma, shift)
    x = noise_pyramid(noise, len(steps))[0]
    if block_noises is not None and len(block_noises) != len(steps) - 1:
        raise ValueError(f"block_noises needs {len(steps) - 1} tensors (one per stage transition)")
    schedule = [stage_sigmas(stage, n, velocity) for stage, n in zip(stages, steps, strict=True)]
    plan = [(k, j) for k, n in enumerate(steps) for j in range(n)]
    extra_args = {} if extra_args is None else extra_args
    for i in step_range(len(plan), disable, "pyramidal"):
        k, j = plan[i]
        stage = stages[k]
        if j == 0 and k > 0:
            x = upsample_nearest(x)
            if block_noises is None:
                n_block = sample_block_noise(x.shape, gamma, generator, x.device, x.dtype)
            else:
                n_block = block_noises[k - 1]
                if n_block.shape != x.shape:
                    raise ValueError(
                        f"block_noises[{k - 1}] has shape {tuple(n_block.shape)}, "
                        f"stage {k} needs {tuple(x.shape)}"
                    )
            x = renoise(x, n_block, stage.alpha, stage.beta)
        local, model_sigma = schedule[k]
        s, s_next, t = local[j].item(), local[j + 1].item(), model_sigma[j].item()
        v = call_denoiser(model, x, t, i, extra_args, f"denoiser output (stage {k}, model sigma {t:.6g})", s)
        if sampler == "euler":
            denoised = x0_from_velocity(x, s, v)
            x = euler_step(x, v, s, s_next)
        else:
            fresh = ancestral_fresh_part(s, s_next)
            x, denoised = renoising_step(x, v.to(x.dtype), s, s_next, fresh, generator)
        report(
            callback,
            i=i,
            x=x,
            sigma=s,
            sigma_next=s_next,
            denoised=denoised,
            total=len(plan),
            stage=k,
            timestep=t,
        )
    return x
