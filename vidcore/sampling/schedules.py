"""Flow-matching sigma schedules: linear, shifted, resolution-dependent (dynamic) shift, terminal stretch.

Every schedule is a 1-D float32 tensor of N + 1 noise levels going from 1 to 0 (the last is exactly 0),
i.e. N sampler steps. Values are computed in float64 and rounded once.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

# LTX-Video scheduler constants (diffusers FlowMatchEulerDiscreteScheduler config of LTX-Video).
LTX_BASE_SHIFT = 0.95
LTX_MAX_SHIFT = 2.05
LTX_BASE_SEQ_LEN = 1024
LTX_MAX_SEQ_LEN = 4096
LTX_SHIFT_TERMINAL = 0.1

# Wan 2.1 / 2.2 (diffusers UniPCMultistepScheduler with use_flow_sigmas=True): training timesteps and the
# offset taken off sigma_0 = 1 so that log((1 - sigma) / sigma) stays finite.
WAN_TRAIN_TIMESTEPS = 1000
WAN_SIGMA_EPS = 1e-6

# The schedule registry: name -> what it does (CLI help, node tooltips). Families declare in their
# capabilities which of these they run; "flow" is their own sigma schedule (shifted for vidcore models,
# resolution-dependent for LTX-Video) integrated by any registered sampler.
SCHEDULES = {
    "flow": "one flow-matching sigma schedule at full resolution, integrated by the chosen sampler",
    "pyramidal": "pyramidal flow matching (Jin et al. 2024): early steps at low resolution, Euler per stage",
}


def _check_steps(n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n={n!r} must be an integer number of steps >= 1")


def time_shift(sigma: Tensor, shift: float) -> Tensor:
    """Timestep shift s*sigma / (1 + (s - 1)*sigma) (SD3, Esser et al. 2024, Eq. 23); keeps 0 and 1 fixed.

    The "exponential" dynamic shift of Flux/LTX, e^mu / (e^mu + (1/sigma - 1)), is this with s = e^mu.
    """
    if not math.isfinite(shift) or shift <= 0:
        raise ValueError(f"shift={shift!r} must be a finite number > 0")
    return shift * sigma / (1 + (shift - 1) * sigma)


def dynamic_shift_mu(
    seq_len: int,
    base_seq_len: int = LTX_BASE_SEQ_LEN,
    max_seq_len: int = LTX_MAX_SEQ_LEN,
    base_shift: float = LTX_BASE_SHIFT,
    max_shift: float = LTX_MAX_SHIFT,
) -> float:
    """Resolution-dependent log-shift mu, linear in the token count through (base_seq_len, base_shift) and
    (max_seq_len, max_shift); not clamped outside that range (as in Flux/LTX)."""
    if seq_len < 1:
        raise ValueError(f"seq_len={seq_len!r} must be a positive token count")
    if max_seq_len == base_seq_len:
        raise ValueError(f"max_seq_len={max_seq_len} must differ from base_seq_len={base_seq_len}")
    slope = (max_shift - base_shift) / (max_seq_len - base_seq_len)
    return slope * seq_len + (base_shift - slope * base_seq_len)


def stretch_to_terminal(sigmas: Tensor, shift_terminal: float) -> Tensor:
    """Rescale 1 - sigma of the nonzero sigmas so the last nonzero one becomes exactly ``shift_terminal``."""
    if not 0 < shift_terminal < 1:
        raise ValueError(f"shift_terminal={shift_terminal!r} must lie strictly between 0 and 1")
    nonzero = sigmas > 0
    last = sigmas[nonzero][-1]
    if last >= 1:
        raise ValueError("stretch_to_terminal needs a nonzero sigma below 1 to stretch; got only sigma = 1")
    one_minus = 1 - sigmas
    stretched = 1 - one_minus * ((1 - shift_terminal) / (1 - last))
    return torch.where(nonzero, stretched, sigmas)


def linear_sigmas(n: int) -> Tensor:
    """N + 1 evenly spaced sigmas 1, 1 - 1/N, ..., 1/N, 0."""
    _check_steps(n)
    return torch.linspace(1, 0, n + 1, dtype=torch.float64).float()


def shifted_sigmas(n: int, shift: float) -> Tensor:
    """Linear sigmas passed through ``time_shift`` with a constant shift (shift=1 gives linear_sigmas)."""
    _check_steps(n)
    return time_shift(torch.linspace(1, 0, n + 1, dtype=torch.float64), shift).float()


def dynamic_sigmas(
    n: int,
    seq_len: int,
    base_seq_len: int = LTX_BASE_SEQ_LEN,
    max_seq_len: int = LTX_MAX_SEQ_LEN,
    base_shift: float = LTX_BASE_SHIFT,
    max_shift: float = LTX_MAX_SHIFT,
    shift_terminal: float | None = LTX_SHIFT_TERMINAL,
) -> Tensor:
    """Resolution-dependent schedule (defaults = LTX-Video): linspace(1, 1/N, N), exponential time shift
    with mu = dynamic_shift_mu(seq_len), optional terminal stretch, then a final 0.

    ``seq_len`` is the number of latent tokens (latent_T * latent_H * latent_W after patchify).
    """
    _check_steps(n)
    mu = dynamic_shift_mu(seq_len, base_seq_len, max_seq_len, base_shift, max_shift)
    sigmas = time_shift(torch.linspace(1, 1 / n, n, dtype=torch.float64), math.exp(mu))
    if shift_terminal is not None:
        sigmas = stretch_to_terminal(sigmas, shift_terminal)
    return torch.cat([sigmas, sigmas.new_zeros(1)]).float()


def check_sigmas(sigmas: Tensor) -> list[float]:
    """Validate a flow schedule (1-D, >= 2 values in [0, 1], non-increasing); return it as floats."""
    if not isinstance(sigmas, Tensor) or sigmas.ndim != 1 or sigmas.numel() < 2:
        shape = tuple(sigmas.shape) if isinstance(sigmas, Tensor) else type(sigmas).__name__
        raise ValueError(f"sigmas must be a 1-D tensor with at least 2 values, got {shape}")
    values = sigmas.detach().double().cpu().tolist()
    if not all(math.isfinite(s) and 0 <= s <= 1 for s in values):
        raise ValueError(f"sigmas must be finite and in [0, 1] (flow matching), got {values}")
    if any(b > a for a, b in zip(values, values[1:], strict=False)):
        raise ValueError(f"sigmas must be non-increasing (noise -> data), got {values}")
    return values


def _wan_flow_grid(n: int, shift: float) -> Tensor:
    """The N nonzero float64 sigmas of ``wan_flow_sigmas`` (before the float32 rounding)."""
    _check_steps(n)
    # np.linspace, not torch.linspace: the two can differ in the last bit, and the timesteps truncate.
    sigmas = time_shift(torch.from_numpy(np.linspace(1.0, 1.0 / WAN_TRAIN_TIMESTEPS, n + 1)[:-1]), shift)
    if abs(sigmas[0].item() - 1) < WAN_SIGMA_EPS:
        sigmas[0] -= WAN_SIGMA_EPS
    return sigmas


def wan_flow_sigmas(n: int, shift: float) -> Tensor:
    """Wan's flow schedule as diffusers builds it: linspace(1, 1/1000, N + 1)[:-1], time-shifted, the first
    sigma lowered by 1e-6, then a final 0; float32, N + 1 values.

    Bit-for-bit ``UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
    flow_shift=shift).set_timesteps(n).sigmas`` (diffusers
    src/diffusers/schedulers/scheduling_unipc_multistep.py, ``set_timesteps``, ``use_flow_sigmas`` branch).
    The original grid (Wan-Video/Wan2.1 wan/utils/fm_solvers_unipc.py, ``FlowUniPCMultistepScheduler.
    set_timesteps``) is linspace(0.999, 0, N + 1)[:-1] (0.999 rounded to float32) with the same shift and
    no 1e-6 offset, so it starts at shift(0.999) < 1 and ends lower: at N = 50 the last timesteps are
    [241, 172, 92] for shift 5 ([160, 111, 57] for shift 3) against diffusers' [244, 175, 96]
    ([162, 113, 60]).
    """
    sigmas = _wan_flow_grid(n, shift)
    return torch.cat([sigmas, sigmas.new_zeros(1)]).float()


def wan_flow_timesteps(n: int, shift: float) -> Tensor:
    """The int64 timesteps diffusers feeds the Wan transformer at the N steps of ``wan_flow_sigmas``:
    trunc(sigma * 1000) of the float64 sigmas (``scheduler.timesteps``, cast with ``.to(torch.int64)``).

    They are not sigma * 1000: truncation drops up to one unit (sigma_0 = 1 - 1e-6 gives 999, not
    999.999), and the float32 sigmas a sampler hands its denoiser can truncate one lower still (e.g.
    N = 3, shift 1: timestep 667 but float32 sigma 0.66699999...). A Wan denoiser that must match diffusers
    therefore looks its timestep up with ``timesteps_on_grid`` rather than computing it from sigma.
    """
    return (_wan_flow_grid(n, shift) * WAN_TRAIN_TIMESTEPS).long()


def timesteps_on_grid(sigma: Tensor, sigmas: Tensor, timesteps: Tensor, atol: float = 1e-6) -> Tensor:
    """The timestep of each per-sample ``sigma`` [B] on a schedule: ``timesteps[k]`` for the nearest
    ``sigmas[k]`` (``sigmas`` may carry the final 0, which has no timestep). Result on sigma's device."""
    if timesteps.ndim != 1 or sigmas.ndim != 1 or not 0 <= sigmas.numel() - timesteps.numel() <= 1:
        raise ValueError(
            f"sigmas {tuple(sigmas.shape)} and timesteps {tuple(timesteps.shape)} must be 1-D, with one "
            "timestep per sigma (a final sigma 0 may have none)"
        )
    grid = sigmas[: timesteps.numel()].to(device=sigma.device, dtype=torch.float64)
    gap, index = (sigma.double().reshape(-1, 1) - grid).abs().min(dim=1)
    if bool((gap > atol).any()):
        raise ValueError(
            f"sigma={sigma.tolist()} is not on the schedule {grid.tolist()} (tolerance {atol}); look "
            "timesteps up only for the sigmas the sampler was given"
        )
    return timesteps.to(sigma.device)[index]


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


# ---- rCM / TrigFlow times (few-step distilled students) ---------------------------------------------------

# rCM's sampling times in TrigFlow (NVlabs/rcm rcm/inference/wan2pt1_t2v_rcm_infer.py): the first is
# atan(sigma_max), then mid_t = [1.5, 1.4, 1.0] "for better visual quality".
RCM_SIGMA_MAX = 80.0
RCM_MID_T = (1.5, 1.4, 1.0)


def trig_to_rf(s: float) -> float:
    """TrigFlow time s in [0, pi/2] -> RF time t = sin s / (cos s + sin s) = tan s / (1 + tan s)."""
    return math.sin(s) / (math.cos(s) + math.sin(s))


def rf_to_trig(t: float) -> float:
    """Rectified-flow time t in [0, 1] -> TrigFlow time s = atan(t / (1 - t))."""
    return math.atan2(t, 1.0 - t)


def rcm_times(steps: int, sigma_max: float = RCM_SIGMA_MAX) -> tuple[float, ...]:
    """rCM's RF times for ``steps`` <= 4 steps (Zheng et al. 2025, arXiv:2510.08431): TrigFlow
    [atan(sigma_max), 1.5, 1.4, 1.0][:steps], first (noisiest) to last; the final step to 0 is implied."""
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= len(RCM_MID_T) + 1:
        raise ValueError(f"steps={steps!r}: rCM's lists exist for 1 to {len(RCM_MID_T) + 1} steps")
    return tuple(trig_to_rf(s) for s in (math.atan(sigma_max), *RCM_MID_T[: steps - 1]))
