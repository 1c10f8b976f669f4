"""Sampling: flow-matching conventions, sigma schedules, samplers, guidance, DDPM/DDIM, pyramidal flow.

Convention: denoisers are callables ``model(x, sigma, **extra_args) -> velocity`` (v = eps - x0 for
x_s = (1 - s) x0 + s eps; sigma a float32 tensor [B]); samplers are pure functions of the k-diffusion
shape ``sample_x(model, x, sigmas, extra_args=None, callback=None, disable=None, generator=None)``. A
callback gets a dict after every step and cancels sampling by raising; see vidcore.sampling.loop.
Registries: ``SAMPLERS`` (name -> sampler) and ``SCHEDULES`` (name -> description).
"""

from .ddpm import (
    alphas_cumprod,
    ddim_sigma,
    ddim_step,
    ddim_timesteps,
    linear_betas,
    q_sample,
    sample_ddim,
    x0_from_eps,
)
from .flow import (
    add_noise,
    as_prediction_denoiser,
    as_velocity_denoiser,
    eps_from_velocity,
    euler_step,
    velocity_from_eps,
    velocity_from_x0,
    velocity_target,
    x0_from_velocity,
)
from .guidance import CFGDenoiser, cfg_combine, rescale_guidance
from .pyramidal import (
    VELOCITY_KINDS,
    PyramidStage,
    latent_pyramid,
    noise_pyramid,
    pyramid_stages,
    renoise,
    renoise_coefficients,
    sample_block_noise,
    sample_pyramidal,
    split_steps,
    stage_sigmas,
    upsample_nearest,
)
from .samplers import (
    SAMPLERS,
    ancestral_noise_std,
    sample_euler,
    sample_euler_ancestral,
    sample_heun,
    sample_renoise,
)
from .schedules import (
    SCHEDULES,
    check_sigma_list,
    dynamic_shift_mu,
    dynamic_sigmas,
    linear_sigmas,
    shifted_sigmas,
    stretch_to_terminal,
    time_shift,
    timesteps_on_grid,
    wan_flow_sigmas,
    wan_flow_timesteps,
)
from .unipc import half_log_snr, sample_unipc, unipc_update

__all__ = [
    "SAMPLERS",
    "SCHEDULES",
    "CFGDenoiser",
    "VELOCITY_KINDS",
    "PyramidStage",
    "add_noise",
    "alphas_cumprod",
    "ancestral_noise_std",
    "as_prediction_denoiser",
    "as_velocity_denoiser",
    "cfg_combine",
    "check_sigma_list",
    "ddim_sigma",
    "ddim_step",
    "ddim_timesteps",
    "dynamic_shift_mu",
    "dynamic_sigmas",
    "eps_from_velocity",
    "euler_step",
    "half_log_snr",
    "latent_pyramid",
    "linear_betas",
    "linear_sigmas",
    "noise_pyramid",
    "pyramid_stages",
    "q_sample",
    "renoise",
    "renoise_coefficients",
    "rescale_guidance",
    "sample_block_noise",
    "sample_ddim",
    "sample_euler",
    "sample_euler_ancestral",
    "sample_heun",
    "sample_pyramidal",
    "sample_renoise",
    "sample_unipc",
    "shifted_sigmas",
    "split_steps",
    "stage_sigmas",
    "stretch_to_terminal",
    "time_shift",
    "timesteps_on_grid",
    "unipc_update",
    "upsample_nearest",
    "velocity_from_eps",
    "velocity_from_x0",
    "velocity_target",
    "wan_flow_sigmas",
    "wan_flow_timesteps",
    "x0_from_eps",
    "x0_from_velocity",
]
