"""Text -> latents -> video: the one place that wires text encoder, DiT, sampler and VAE together."""

from __future__ import annotations

import inspect
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from .config import ConfigMixin, check_choice
from .models.dit import SpacetimeDiT
from .models.vae import CausalVAE3D
from .sampling import (
    SAMPLERS,
    CFGDenoiser,
    as_velocity_denoiser,
    pyramid_stages,
    sample_pyramidal,
    shifted_sigmas,
)
from .sampling.loop import Callback

if TYPE_CHECKING:
    from .models.ltx.pipeline import LTXPipeline

log = logging.getLogger("vidcore")

SCHEDULES = ("flow", "pyramidal")
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
PIPELINE_FILE = "pipeline.json"


@dataclass(frozen=True)
class PipelineConfig(ConfigMixin):
    """What a model folder declares besides its weights: text encoder and generation defaults."""

    name: str = "tiny"
    text_encoder: str = "minilm"
    num_frames: int = 17
    height: int = 64
    width: int = 64
    steps: int = 20
    guidance: float = 4.0
    guidance_rescale: float = 0.0
    shift: float = 1.0
    sampler: str = "euler"
    schedule: str = "flow"
    pyramid_stages: int = 3
    fps: float = 8.0

    def __post_init__(self) -> None:
        check_choice("PipelineConfig.schedule", self.schedule, SCHEDULES)
        check_choice("PipelineConfig.sampler", self.sampler, tuple(SAMPLERS))
        for name in ("num_frames", "height", "width", "steps", "pyramid_stages"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"PipelineConfig.{name}={value!r} must be a positive integer")
        if not (math.isfinite(self.guidance) and self.guidance >= 1.0):
            raise ValueError(f"PipelineConfig.guidance={self.guidance!r} must be >= 1 (1 = no guidance)")
        if not 0.0 <= self.guidance_rescale <= 1.0:
            raise ValueError(f"PipelineConfig.guidance_rescale={self.guidance_rescale!r} must be in [0, 1]")
        for name in ("shift", "fps"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"PipelineConfig.{name}={value!r} must be a finite number > 0")


def check_seed(seed: object) -> None:
    """Seeds are integers in [0, 2**64); floats and bools are refused rather than truncated."""
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**64:
        raise ValueError(f"seed={seed!r} must be an integer in [0, 2**64)")


@dataclass
class TextConditioning:
    """Text embeddings ``[B, L, D]``, bool mask ``[B, L]`` and pooled sentence vectors ``[B, D]``."""

    embeddings: Tensor
    mask: Tensor
    pooled: Tensor | None = None

    def model_kwargs(self) -> dict[str, Tensor | None]:
        return {"context": self.embeddings, "context_mask": self.mask, "pooled": self.pooled}


def builtin_models() -> list[str]:
    """Names of the models shipped inside the package (folders under ``vidcore/weights``)."""
    if not WEIGHTS_DIR.is_dir():
        return []
    return sorted(p.name for p in WEIGHTS_DIR.iterdir() if (p / PIPELINE_FILE).is_file())


def resolve_model_path(name_or_path: str | Path) -> Path:
    """A built-in model name, or a folder with ``pipeline.json``, ``dit.safetensors``, ``vae.safetensors``."""
    path = Path(name_or_path)
    if (path / PIPELINE_FILE).is_file():
        return path
    if isinstance(name_or_path, str) and (WEIGHTS_DIR / name_or_path / PIPELINE_FILE).is_file():
        return WEIGHTS_DIR / name_or_path
    if path.exists():
        raise ValueError(
            f"{str(path)!r} is not a vidcore model folder (it needs {PIPELINE_FILE}, dit.safetensors and "
            "vae.safetensors)"
        )
    raise ValueError(f"unknown model {str(name_or_path)!r}; available built-in models: {builtin_models()}")


def check_generation_size(
    vae: CausalVAE3D, dit: SpacetimeDiT, num_frames: int, height: int, width: int, pyramid_levels: int = 1
) -> tuple[int, int, int, int]:
    """Latent ``(C, T', H', W')`` of a clip; raises listing valid sizes when the model can't take it."""
    if not isinstance(dit, SpacetimeDiT):
        from .models.ltx.pipeline import ltx_latent_shape  # LTX-Video model handles (nodes, scripts)

        return ltx_latent_shape(vae, dit, num_frames, height, width, pyramid_levels)
    c, t, h, w = vae.latent_shape(num_frames, height, width)
    p_t, p_s = dit.config.patch_t, dit.config.patch_s
    step = vae.config.spatial_compression * p_s * 2 ** (pyramid_levels - 1)
    for name, value in (("height", height), ("width", width)):
        if value % step:
            lo = max(step, value // step * step)
            why = f" ({pyramid_levels} pyramid stages)" if pyramid_levels > 1 else ""
            raise ValueError(
                f"{name}={value} must be a multiple of {step} for this model{why} (e.g. {lo}, {lo + step})"
            )
    if t % p_t:
        r = vae.config.temporal_compression
        valid = [1 + r * (p_t * k - 1) for k in range(1, 6)]
        raise ValueError(
            f"num_frames={num_frames} gives {t} latent frames, not a multiple of {p_t} (try {valid})"
        )
    return c, t, h, w


def prediction_denoiser(dit: SpacetimeDiT, full_hw: tuple[int, int] | None = None) -> Callable[..., Tensor]:
    """The DiT as a velocity denoiser ``model(x, sigma, **cond)``; at reduced resolution (pyramid stages)
    RoPE positions are scaled onto the full-resolution grid the model was trained on."""

    dtype = next(dit.parameters()).dtype

    def model(x: Tensor, sigma: Tensor, **kwargs: Any) -> Tensor:
        scale = (1.0, 1.0, 1.0)
        if full_hw is not None:
            scale = (1.0, full_hw[0] / x.shape[-2], full_hw[1] / x.shape[-1])
        # The sampler state stays float32; only the network runs in the model's dtype.
        return dit(x.to(dtype), sigma, rope_scale=scale, **kwargs).to(x.dtype)

    return as_velocity_denoiser(model, dit.config.prediction)


def sample_latents(
    dit: SpacetimeDiT,
    noise: Tensor,
    cond: TextConditioning,
    uncond: TextConditioning | None,
    steps: int,
    guidance: float,
    schedule: str = "flow",
    shift: float = 1.0,
    sampler: str = "euler",
    guidance_rescale: float = 0.0,
    pyramid_levels: int = 3,
    init_latents: Tensor | None = None,
    denoise: float = 1.0,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    disable: bool | None = None,
) -> Tensor:
    """Run the sampler from ``noise`` (and optionally ``init_latents`` for video-to-video) to clean latents.

    ``denoise`` < 1 starts from ``init_latents`` noised to the first kept sigma (SDEdit, Meng et al. 2021).
    """
    check_choice("schedule", schedule, SCHEDULES)
    check_choice("sampler", sampler, tuple(SAMPLERS))
    if not (isinstance(steps, int) and steps >= 1):
        raise ValueError(f"steps={steps!r} must be a positive integer")
    if not math.isfinite(guidance) or guidance < 1.0:
        raise ValueError(f"guidance={guidance!r} must be >= 1 (1 = no guidance; CFG w = guidance - 1)")
    if not 0.0 < denoise <= 1.0:
        raise ValueError(f"denoise={denoise!r} must be in (0, 1]")
    if uncond is None and guidance != 1.0:
        raise ValueError("guidance != 1 needs the unconditional (negative prompt) conditioning")
    if schedule == "pyramidal" and sampler != "euler":
        raise ValueError(f"sampler={sampler!r}: schedule='pyramidal' integrates each stage with 'euler' only")
    full_hw = (noise.shape[-2], noise.shape[-1])
    base = prediction_denoiser(dit, full_hw if schedule == "pyramidal" else None)
    model = CFGDenoiser(
        base, cond.model_kwargs(), uncond.model_kwargs() if uncond else {}, guidance, guidance_rescale
    )
    if schedule == "pyramidal":
        if init_latents is not None or denoise != 1.0:
            raise ValueError("video-to-video (init_latents / denoise < 1) needs schedule='flow'")
        stage_steps = split_steps(steps, pyramid_levels)
        return sample_pyramidal(
            model,
            noise,
            stage_steps,
            shift=shift,
            generator=generator,
            callback=callback,
            disable=disable,
            velocity="global",
        )
    sigmas = (
        shifted_sigmas(int(math.ceil(steps / denoise)), shift)
        if denoise < 1
        else shifted_sigmas(steps, shift)
    )
    sigmas = sigmas[-(steps + 1) :]
    x = noise
    if init_latents is not None:
        if init_latents.shape != noise.shape:
            raise ValueError(
                f"init_latents {tuple(init_latents.shape)} must match noise {tuple(noise.shape)}"
            )
        s0 = float(sigmas[0])
        x = (1 - s0) * init_latents + s0 * noise
    elif denoise != 1.0:
        raise ValueError("denoise < 1 needs init_latents (the latents of the input video)")
    solver = SAMPLERS[sampler]
    # Stochastic samplers draw their per-step noise from the caller's generator (reproducible by seed).
    extra = {"generator": generator} if "generator" in inspect.signature(solver).parameters else {}
    return solver(model, x, sigmas.to(noise.device), callback=callback, disable=disable, **extra)


def split_steps(steps: int, stages: int) -> list[int]:
    """Split a total step budget over pyramid stages, the remainder going to the earliest (cheapest) ones."""
    if steps < stages:
        raise ValueError(f"steps={steps} must be >= the number of pyramid stages ({stages})")
    base, extra = divmod(steps, stages)
    return [base + (1 if k < extra else 0) for k in range(stages)]


def latents_to_frames(video: Tensor) -> Tensor:
    """``[B, 3, T, H, W]`` in [-1, 1] -> frames ``[B, T, H, W, 3]`` in [0, 1] (clamped: VAEs overshoot)."""
    return ((video.float() + 1) / 2).clamp(0, 1).permute(0, 2, 3, 4, 1).contiguous()


def frames_to_video(frames: Tensor) -> Tensor:
    """Frames ``[T, H, W, 3]`` (or ``[B, T, H, W, 3]``) in [0, 1] -> video ``[B, 3, T, H, W]`` in [-1, 1]."""
    if frames.ndim == 4:
        frames = frames[None]
    if frames.ndim != 5 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be [T, H, W, 3] or [B, T, H, W, 3], got {tuple(frames.shape)}")
    if not frames.is_floating_point():
        raise TypeError(f"frames must be float in [0, 1], got dtype {frames.dtype}")
    if not bool(torch.isfinite(frames).all()):
        raise ValueError("frames contain NaN or infinite values; expected floats in [0, 1]")
    lo, hi = float(frames.min()), float(frames.max())
    if lo < -1e-3 or hi > 1 + 1e-3:
        raise ValueError(f"frames must lie in [0, 1], got values in [{lo:.4g}, {hi:.4g}]")
    return frames.permute(0, 4, 1, 2, 3) * 2 - 1


class VideoPipeline:
    """Text-to-video with a :class:`SpacetimeDiT`, a :class:`CausalVAE3D` and a text encoder."""

    def __init__(
        self, dit: SpacetimeDiT, vae: CausalVAE3D, text_encoder: Any, config: PipelineConfig
    ) -> None:
        if text_encoder.dim != dit.config.text_dim:
            raise ValueError(
                f"text encoder width {text_encoder.dim} does not match the DiT's "
                f"text_dim={dit.config.text_dim}"
            )
        if vae.config.latent_channels != dit.config.in_channels:
            raise ValueError(
                f"VAE latent_channels={vae.config.latent_channels} != "
                f"DiT in_channels={dit.config.in_channels}"
            )
        self.dit, self.vae, self.text_encoder, self.config = dit, vae, text_encoder, config

    @property
    def device(self) -> torch.device:
        return next(self.dit.parameters()).device

    def encode_text(self, prompts: list[str]) -> TextConditioning:
        """Token embeddings, mask and (when the DiT uses it) the pooled sentence embedding of ``prompts``."""
        emb, mask = self.text_encoder.encode(prompts)
        pooled = self.text_encoder.encode_pooled(prompts) if self.dit.config.pooled_text else None
        dtype = next(self.dit.parameters()).dtype
        return TextConditioning(
            emb.to(self.device, dtype),
            mask.to(self.device),
            None if pooled is None else pooled.to(self.device, dtype),
        )

    def encode_pair(
        self, prompt: str, negative_prompt: str, batch: int = 1
    ) -> tuple[TextConditioning, TextConditioning]:
        """Positive and negative conditioning padded to one length (so CFG runs as one batched forward)."""
        both = self.encode_text([negative_prompt] * batch + [prompt] * batch)
        split = lambda t: None if t is None else (t[:batch], t[batch:])  # noqa: E731
        e, m, p = split(both.embeddings), split(both.mask), split(both.pooled)
        return (
            TextConditioning(e[1], m[1], None if p is None else p[1]),
            TextConditioning(e[0], m[0], None if p is None else p[0]),
        )

    def generate(
        self,
        prompt: str,
        negative_prompt: str = "",
        num_frames: int | None = None,
        height: int | None = None,
        width: int | None = None,
        steps: int | None = None,
        guidance: float | None = None,
        seed: int = 0,
        schedule: str | None = None,
        shift: float | None = None,
        sampler: str | None = None,
        guidance_rescale: float | None = None,
        init_frames: Tensor | None = None,
        denoise: float = 1.0,
        callback: Callback | None = None,
        decode_callback: Callable[[int, int], None] | None = None,
        progress: bool = False,
    ) -> Tensor:
        """Frames ``[T, H, W, 3]`` in [0, 1] for ``prompt``; unset arguments take the model's defaults.

        The empty prompt is allowed (unconditional generation). ``guidance`` is the usual scale g
        (CFG ``(1+w)·v_c - w·v_u`` with ``w = g - 1``). Same seed, same machine -> identical frames.
        """
        cfg = self.config
        if not isinstance(prompt, str) or not isinstance(negative_prompt, str):
            raise TypeError("prompt and negative_prompt must be strings")
        if prompt.strip() == "":
            log.info("vidcore: empty prompt -> unconditional generation")
        num_frames = cfg.num_frames if num_frames is None else num_frames
        height = cfg.height if height is None else height
        width = cfg.width if width is None else width
        schedule = cfg.schedule if schedule is None else schedule
        check_choice("schedule", schedule, SCHEDULES)
        levels = cfg.pyramid_stages if schedule == "pyramidal" else 1
        shape = check_generation_size(self.vae, self.dit, num_frames, height, width, levels)
        check_seed(seed)
        generator = torch.Generator(device="cpu").manual_seed(seed)
        # float32 sampler state on the model's device; the DiT casts to its own dtype inside.
        noise = torch.randn((1, *shape), generator=generator).to(self.device)
        guidance = cfg.guidance if guidance is None else float(guidance)
        with torch.no_grad():
            cond, uncond = self.encode_pair(prompt, negative_prompt)
            init_latents = None
            if init_frames is not None:
                video = frames_to_video(init_frames).to(self.device, self.vae.dtype)
                init_latents = self.vae.encode(video).float()
            latents = sample_latents(
                self.dit,
                noise,
                cond,
                uncond if guidance != 1.0 else None,
                cfg.steps if steps is None else steps,
                guidance,
                schedule,
                cfg.shift if shift is None else shift,
                cfg.sampler if sampler is None else sampler,
                cfg.guidance_rescale if guidance_rescale is None else guidance_rescale,
                levels,
                init_latents,
                denoise,
                generator,
                callback,
                disable=not progress,
            )
            video = self.vae.decode(latents.to(self.vae.dtype), callback=decode_callback)
        return latents_to_frames(video)[0]


def load_pipeline(
    name_or_path: str | Path = "tiny",
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    text_encoder: str | Path | Any | None = None,
) -> VideoPipeline | LTXPipeline:
    """Load a built-in model by name (``"tiny"``), a vidcore model folder, or an LTX-Video checkpoint
    (single ``.safetensors`` or diffusers folder); everything offline.

    ``text_encoder`` (LTX only): a T5 folder (or a loaded encoder) for checkpoints that carry none; a
    diffusers folder's own ``text_encoder/`` is used when it is unset. vidcore folders name their text
    encoder in ``pipeline.json``.
    """
    from .text import load_text_encoder

    path = Path(name_or_path)
    if path.exists() and not (path / PIPELINE_FILE).is_file():
        from .models.ltx.entrypoints import is_ltx_checkpoint, load_ltx_pipeline

        if is_ltx_checkpoint(path):
            return load_ltx_pipeline(path, device, dtype, text_encoder)
        if path.is_file() and path.suffix in (".safetensors", ".sft"):
            from .models.ltx.loading import detect_ltx_layout, read_shapes

            # Says what was found (not LTX at all, or an LTX file lacking the transformer or the VAE).
            layout = detect_ltx_layout(*read_shapes(path), source=repr(str(path)))
            missing = "transformer" if layout.transformer_config is None else "VAE"
            raise ValueError(
                f"{str(path)!r} is an LTX-Video file without the {missing}; load_pipeline "
                "needs a checkpoint with both (an original single file or a diffusers folder)"
            )
    folder = resolve_model_path(name_or_path)
    if text_encoder is not None:
        raise ValueError(
            f"text_encoder={str(text_encoder)!r} is only for LTX-Video checkpoints; {str(name_or_path)!r} "
            f"is a vidcore model, whose text encoder is named in its {PIPELINE_FILE}"
        )
    config = PipelineConfig.from_dict(json.loads((folder / PIPELINE_FILE).read_text()))
    device = torch.device(device) if device is not None else torch.device("cpu")
    dit = SpacetimeDiT.from_checkpoint(folder / "dit.safetensors", device=device, dtype=dtype)
    vae = CausalVAE3D.from_checkpoint(folder / "vae.safetensors", device=device, dtype=dtype)
    text_encoder = load_text_encoder(config.text_encoder, device=device)
    return VideoPipeline(dit, vae, text_encoder, config)


__all__ = [
    "PipelineConfig",
    "TextConditioning",
    "VideoPipeline",
    "builtin_models",
    "check_generation_size",
    "latents_to_frames",
    "frames_to_video",
    "load_pipeline",
    "pyramid_stages",
    "sample_latents",
    "split_steps",
]
