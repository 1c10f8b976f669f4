"""Sampler nodes: flow-matching sampling (text-to-video, video-to-video) and pyramidal flow."""

from __future__ import annotations

import torch

from . import _host
from ._convert import from_conditioning, latent_samples, make_latent, pad_pair

SEED_MAX = 0xFFFFFFFFFFFFFFFF


def _samplers() -> list[str]:
    from vidcore.sampling import SAMPLERS

    return list(SAMPLERS)


def _schedules() -> list[str]:
    from vidcore.pipeline import SCHEDULES

    return list(SCHEDULES)


def _common_inputs() -> dict:
    return {
        "model": ("VIDCORE_MODEL", {"tooltip": "VidCore diffusion transformer."}),
        "positive": ("CONDITIONING", {"tooltip": "Prompt conditioning (VidCore Text Encode)."}),
        "negative": (
            "CONDITIONING",
            {"tooltip": "Negative / unconditional conditioning (used when guidance != 1)."},
        ),
        "latent_image": (
            "LATENT",
            {"tooltip": "Empty latents (text-to-video) or encoded video (with denoise < 1)."},
        ),
        "seed": (
            "INT",
            {
                "default": 0,
                "min": 0,
                "max": SEED_MAX,
                "control_after_generate": True,
                "tooltip": "Noise seed (CPU generator: same seed, same noise on every device).",
            },
        ),
    }


def _guidance_input() -> tuple:
    return (
        "FLOAT",
        {
            "default": 4.0,
            "min": 1.0,
            "max": 30.0,
            "step": 0.1,
            "round": 0.01,
            "tooltip": "CFG scale g (1 = no guidance, negative unused).",
        },
    )


def _shift_input() -> tuple:
    return (
        "FLOAT",
        {
            "default": 1.0,
            "min": 0.01,
            "max": 100.0,
            "step": 0.05,
            "tooltip": "Sigma schedule shift (SD3-style; 1 = none, >1 = more high-noise steps).",
        },
    )


def _rescale_input() -> tuple:
    return (
        "FLOAT",
        {
            "default": 0.0,
            "min": 0.0,
            "max": 1.0,
            "step": 0.05,
            "tooltip": "Guidance rescale phi (Lin et al. 2023); 0 = off.",
        },
    )


def _prepare(latent_image, positive, negative, seed: int, guidance: float, in_channels: int, **conv):
    """Conversions both model families share: checked latents, conditioning pair, seeded CPU noise."""
    samples = latent_samples(latent_image, "latent_image")
    if samples.shape[1] != in_channels:
        raise ValueError(
            f"latent_image has {samples.shape[1]} channels but the model takes in_channels={in_channels}; "
            "use latents made with this model's VAE"
        )
    conv["batch"] = samples.shape[0]
    cond = from_conditioning(positive, "positive", **conv)
    uncond = from_conditioning(negative, "negative", **conv) if guidance != 1.0 else None
    cond, uncond = pad_pair(cond, uncond)
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    noise = torch.randn(samples.shape, generator=generator, dtype=torch.float32)
    return samples, cond, uncond, noise, generator


def run_sampler(
    model,
    positive,
    negative,
    latent_image,
    seed: int,
    steps: int,
    guidance: float,
    schedule: str,
    shift: float,
    sampler: str,
    denoise: float,
    guidance_rescale: float,
    levels: int,
):
    """Shared body of both sampler nodes: convert types, draw seeded noise, call vidcore.sample_latents;
    LTX-Video models run their own LTXPipeline.sample (a pyramidal schedule, a shift != 1 or denoise < 1
    are refused there by name)."""
    from vidcore.models.ltx.pipeline import LTXPipeline
    from vidcore.pipeline import sample_latents

    ltx = isinstance(model, LTXPipeline)
    net = model.transformer if ltx else model.dit
    param = next(net.parameters())
    device, dtype = param.device, param.dtype
    if ltx:
        conv = dict(text_dim=net.config.caption_channels, needs_pooled=False)
    else:
        conv = dict(text_dim=net.config.text_dim, needs_pooled=net.config.pooled_text)
    samples, cond, uncond, noise, generator = _prepare(
        latent_image,
        positive,
        negative,
        seed,
        guidance,
        net.config.in_channels,
        device=device,
        dtype=dtype,
        **conv,
    )
    label = "vidcore sampling (LTX-Video)" if ltx else "vidcore sampling"
    with _host.Progress(steps, label) as bar, torch.no_grad():
        if ltx:
            # LTX's own schedule at the model's frame rate.
            out = model.sample(
                noise,
                cond,
                uncond,
                steps,
                guidance,
                guidance_rescale,
                sampler=sampler,
                callback=bar.sampler_callback(),
                schedule=schedule,
                shift=shift,
                denoise=denoise,
            )
        else:
            out = sample_latents(
                net,
                noise.to(device, dtype),
                cond,
                uncond,
                steps,
                guidance,
                schedule,
                shift,
                sampler,
                guidance_rescale,
                levels,
                samples.to(device, dtype) if denoise < 1.0 else None,
                denoise,
                generator,
                bar.sampler_callback(),
                disable=True,
            )
    return (make_latent(out.float().to(_host.intermediate_device())),)


class VidCoreSampler:
    DESCRIPTION = (
        "Flow-matching sampler for VidCore models: text-to-video from empty latents, or video-to-video "
        "from encoded video with denoise < 1 (SDEdit). Progress and cancel every step. LTX-Video models "
        "run their own schedule here (keep schedule 'flow' and shift 1.0; denoise < 1 is not supported)."
    )
    CATEGORY = "VidCore/sampling"
    FUNCTION = "sample"
    RETURN_TYPES = ("LATENT",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                **_common_inputs(),
                "steps": ("INT", {"default": 20, "min": 1, "max": 1000, "tooltip": "Sampling steps."}),
                "guidance": _guidance_input(),
                "schedule": (
                    _schedules(),
                    {
                        "default": "flow",
                        "tooltip": "flow = plain flow matching; "
                        "pyramidal = pyramidal flow with the model's default stage count.",
                    },
                ),
                "shift": _shift_input(),
                "sampler": (_samplers(), {"default": "euler", "tooltip": "ODE/SDE solver."}),
                "denoise": (
                    "FLOAT",
                    {
                        "default": 1.0,
                        "min": 0.01,
                        "max": 1.0,
                        "step": 0.01,
                        "tooltip": "1 = from pure noise; < 1 keeps that much of the input latents.",
                    },
                ),
                "guidance_rescale": _rescale_input(),
            }
        }

    def sample(
        self,
        model,
        positive,
        negative,
        latent_image,
        seed,
        steps,
        guidance,
        schedule,
        shift,
        sampler,
        denoise,
        guidance_rescale,
    ):
        # LTX-Video configs have no pyramid stages (its sampler refuses schedule='pyramidal' by name).
        levels = getattr(model.config, "pyramid_stages", 1) if schedule == "pyramidal" else 1
        return run_sampler(
            model,
            positive,
            negative,
            latent_image,
            seed,
            steps,
            guidance,
            schedule,
            shift,
            sampler,
            denoise,
            guidance_rescale,
            levels,
        )


class VidCorePyramidalSampler:
    DESCRIPTION = (
        "Pyramidal flow sampler (Jin et al. 2024): early steps run at reduced resolution and are upsampled "
        "and re-noised stage by stage, which is cheaper than full-resolution sampling. The latent height and "
        "width must be divisible by 2^(stages-1)."
    )
    CATEGORY = "VidCore/sampling"
    FUNCTION = "sample"
    RETURN_TYPES = ("LATENT",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                **_common_inputs(),
                "stages": (
                    "INT",
                    {"default": 3, "min": 1, "max": 5, "tooltip": "Resolution stages (x2 each)."},
                ),
                "steps_per_stage": (
                    "INT",
                    {"default": 7, "min": 1, "max": 500, "tooltip": "Euler steps per stage."},
                ),
                "guidance": _guidance_input(),
                "shift": _shift_input(),
                "guidance_rescale": _rescale_input(),
            }
        }

    def sample(
        self,
        model,
        positive,
        negative,
        latent_image,
        seed,
        stages,
        steps_per_stage,
        guidance,
        shift,
        guidance_rescale,
    ):
        return run_sampler(
            model,
            positive,
            negative,
            latent_image,
            seed,
            stages * steps_per_stage,
            guidance,
            "pyramidal",
            shift,
            "euler",
            1.0,
            guidance_rescale,
            stages,
        )
