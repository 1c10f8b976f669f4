"""Sampler nodes: flow-matching sampling (text-to-video, video-to-video) and pyramidal flow."""

from __future__ import annotations

import torch

from . import _host
from ._convert import from_conditioning, latent_samples, make_latent, pad_pair

SEED_MAX = 0xFFFFFFFFFFFFFFFF
DEFAULT = "default"  # combo entry: the model's own setting


def _samplers() -> list[str]:
    from vidcore.sampling import SAMPLERS

    return list(SAMPLERS)


def _pyramidal_samplers() -> list[str]:
    from vidcore.sampling import PYRAMIDAL_SAMPLERS

    return list(PYRAMIDAL_SAMPLERS)


def _pyramidal_sampler(widget: str | None, own: str) -> str:
    """The Pyramidal Sampler's stage solver: unset (workflows saved before the input) euler, "default" the
    model's own when the stages take it, else euler."""
    if widget is None:
        return "euler"
    if widget == DEFAULT:
        return own if own in _pyramidal_samplers() else "euler"
    return widget


def _schedules() -> list[str]:
    from vidcore.sampling import SCHEDULES

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


GUIDANCE_2_DEFAULT = 2.0  # the low-noise scale widget's default


def _stepped_guidance_inputs() -> dict:
    """Optional inputs: a CFG scale for the low-noise steps (appended, so saved workflows still validate)."""
    return {
        "guidance_2": (
            "FLOAT",
            {
                "default": GUIDANCE_2_DEFAULT,
                "min": 1.0,
                "max": 30.0,
                "step": 0.1,
                "round": 0.01,
                "tooltip": "CFG scale of the steps whose noise level is below guidance_boundary (unused "
                "while guidance_boundary is 0).",
            },
        ),
        "guidance_boundary": (
            "FLOAT",
            {
                "default": 0.0,
                "min": 0.0,
                "max": 0.99,
                "step": 0.05,
                "tooltip": "Noise level (0..1) below which guidance_2 replaces guidance (a guidance "
                "schedule, Kynkäänniemi et al. 2024); 0 = one scale throughout.",
            },
        ),
    }


def _stepped_guidance(guidance_2: float | None, guidance_boundary: float | None) -> dict:
    """SamplingOptions keywords of the optional stepped-guidance inputs (boundary 0 or unset: off)."""
    if not guidance_boundary:
        return {}
    return {
        "guidance_2": GUIDANCE_2_DEFAULT if guidance_2 is None else guidance_2,
        "guidance_boundary": guidance_boundary,
    }


def _sigma_list(text: str | None, own: tuple[float, ...] | None) -> tuple[float, ...] | None:
    """The widget's comma-separated noise levels; empty: the model's own list for ``steps`` steps (``own``,
    None when it has none: the schedule widget's)."""
    if text is None or not text.strip():
        return own
    return _numbers("sigmas", text, "1,0.75,0.5,0")


def _numbers(name: str, text: str, example: str) -> tuple[float, ...]:
    """A text widget's comma-separated numbers; an error names the widget and shows ``example``."""
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"{name}={text!r} must be comma-separated numbers, e.g. {example}") from None


def run_sampler(model, positive, negative, latent_image, options, image=None, last_image=None):
    """Shared body of both sampler nodes: convert ComfyUI types, prepare the seeded initial latents (and the
    image conditioning), run the model's ``sample`` (every family's; what a family cannot do is refused
    there by name)."""
    from vidcore.pipelines import needs_uncond

    samples = latent_samples(latent_image, "latent_image")
    if samples.shape[1] != model.latent_channels:
        raise ValueError(
            f"latent_image has {samples.shape[1]} channels but the model takes "
            f"in_channels={model.latent_channels}; use latents made with this model's VAE"
        )
    # Sampling runs the denoiser only; an image is first encoded by the model's VAE (and image encoder).
    _host.use(model if image is not None else model.dit)
    conv = dict(
        text_dim=model.text_dim,
        needs_pooled=model.pooled_text,
        batch=samples.shape[0],
        device=model.device,
        dtype=model.dtype,
    )
    cond = from_conditioning(positive, "positive", **conv)
    uncond = from_conditioning(negative, "negative", **conv) if needs_uncond(options) else None
    cond, uncond = pad_pair(cond, uncond)
    prep = model.prepare_latents(tuple(samples.shape), options.seed, image=image, last_image=last_image)
    init = samples if options.denoise < 1.0 else None
    label = f"vidcore sampling ({model.capabilities.family})"
    with _host.Progress(options.steps, label) as bar, torch.no_grad():
        out = model.sample(
            prep.noise,
            cond,
            uncond,
            options,
            init_latents=init,
            generator=prep.generator,
            image=prep.image,
            callback=bar.sampler_callback(preview=model.latent_preview),
        )
    return (make_latent(out.float().to(_host.intermediate_device())),)


class VidCoreSampler:
    DESCRIPTION = (
        "Flow-matching sampler for VidCore models: text-to-video from empty latents, or video-to-video "
        "from encoded video with denoise < 1 (SDEdit). Progress and cancel every step. Each model family "
        "runs its own schedule and refuses by name what it cannot do (LTX-Video: schedule 'flow' with "
        "shift 1.0, no denoise < 1)."
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
                    [DEFAULT, *_schedules()],
                    {
                        "default": DEFAULT,
                        "tooltip": "default = the model's own where it can run this request (the "
                        "built-in tiny: pyramidal; flow for denoise < 1, sigmas, a flow-only sampler, fewer "
                        "steps than its stages or a size its pyramid cannot halve); flow = plain flow "
                        "matching; pyramidal = pyramidal flow with the model's default stage count.",
                    },
                ),
                "shift": _shift_input(),
                "sampler": (
                    [DEFAULT, *_samplers()],
                    {
                        "default": DEFAULT,
                        "tooltip": "ODE/SDE solver; default = the model's own (tiny: euler_ancestral, "
                        "tiny-turbo: renoise, LTX-Video: euler, Wan: unipc).",
                    },
                ),
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
            },
            # Appended (optional, so saved workflows without them still validate).
            "optional": {
                "image": (
                    "IMAGE",
                    {
                        "tooltip": "First frame for image-to-video models (its size must be the video's); "
                        "models without image conditioning refuse it by name."
                    },
                ),
                "last_image": (
                    "IMAGE",
                    {"tooltip": "Last frame, for first-last-frame models (needs image as well)."},
                ),
                "sigmas": (
                    "STRING",
                    {
                        "default": "",
                        "tooltip": "Explicit noise levels, comma separated, decreasing to 0 (e.g. "
                        "1,0.93,0.85,0.61,0); sets the step count. Empty = the model's schedule (a distilled "
                        "model's own list when steps match it).",
                    },
                ),
                **_stepped_guidance_inputs(),
            },
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
        image=None,
        last_image=None,
        sigmas=None,
        guidance_2=None,
        guidance_boundary=None,
    ):
        from vidcore.pipelines import SamplingOptions

        # The model's own stages for schedule="pyramidal" (the Pyramidal Sampler sets them explicitly).
        own = model.default_options()
        if schedule == DEFAULT:  # the model's own where it can run this request (tiny: its pyramid)
            shape = tuple(latent_samples(latent_image, "latent_image").shape)
            schedule = model.default_schedule(
                steps=steps,
                sampler=None if sampler == DEFAULT else sampler,
                sigmas=_sigma_list(sigmas, None),
                video_to_video=denoise < 1.0,
                # The pyramid constrains height and width only; the frame count is the model's own.
                size=(model.config.num_frames, *model.pixel_size(shape)),
            )
        options = SamplingOptions(
            steps=steps,
            guidance=guidance,
            guidance_rescale=guidance_rescale,
            shift=shift,
            schedule=schedule,
            sampler=own.sampler if sampler == DEFAULT else sampler,
            pyramid_stages=own.pyramid_stages,
            pyramid_stage_range=own.pyramid_stage_range,
            denoise=denoise,
            seed=seed,
            sigmas=_sigma_list(sigmas, model.model_sigmas(steps)),
            **_stepped_guidance(guidance_2, guidance_boundary),
        )
        return run_sampler(model, positive, negative, latent_image, options, image, last_image)


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
                    {"default": 7, "min": 1, "max": 500, "tooltip": "Steps per stage."},
                ),
                "guidance": _guidance_input(),
                "shift": _shift_input(),
                "guidance_rescale": _rescale_input(),
            },
            # Appended (optional, so saved workflows without it still validate and keep Euler).
            "optional": {
                "sampler": (
                    [DEFAULT, *_pyramidal_samplers()],
                    {
                        "default": DEFAULT,
                        "tooltip": "Solver within each stage: euler (the ODE) or euler_ancestral (fresh "
                        "noise each step, drawn from the seed); default = the model's own when it is one of "
                        "those (tiny: euler_ancestral), else euler.",
                    },
                ),
                "stage_range": (
                    "STRING",
                    {
                        "default": "",
                        "tooltip": "Where the stages change, as fractions of the noise schedule: stages + 1 "
                        "comma-separated numbers from 0 to 1 (e.g. 0,0.05,0.2,1). Empty = the model's own "
                        "split when stages is its stage count, else even stages.",
                    },
                ),
                **_stepped_guidance_inputs(),
            },
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
        sampler=None,
        stage_range=None,
        guidance_2=None,
        guidance_boundary=None,
    ):
        from vidcore.pipelines import SamplingOptions

        own = model.default_options()
        if stage_range is not None and stage_range.strip():
            rng = _numbers("stage_range", stage_range, "0,0.05,0.2,1")
        else:
            rng = own.pyramid_stage_range if stages == own.pyramid_stages else None
        options = SamplingOptions(
            steps=stages * steps_per_stage,
            guidance=guidance,
            guidance_rescale=guidance_rescale,
            shift=shift,
            schedule="pyramidal",
            sampler=_pyramidal_sampler(sampler, own.sampler),
            pyramid_stages=stages,
            pyramid_stage_range=rng,
            seed=seed,
            **_stepped_guidance(guidance_2, guidance_boundary),
        )
        return run_sampler(model, positive, negative, latent_image, options)
