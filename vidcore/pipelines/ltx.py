"""LTX-Video (Lightricks) text-to-video: T5 embeddings -> flow matching with CFG over LTX's resolution-
dependent schedule -> causal VAE decode with timestep-conditioned decoding (0.9.1+).

Follows diffusers ``src/diffusers/pipelines/ltx/pipeline_ltx.py`` (LTXPipeline) step for step, so the same
noise gives the same video (tests/test_ltx_pipeline.py checks it). :class:`LTXLatentVAE` gives the LTX VAE
vidcore's VAE interface over normalised latents (what the transformer sees; the ComfyUI LATENT).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor

from ..config import ConfigMixin, check_choice, check_positive, check_positive_int
from ..models.ltx.loading import (
    LTXDistillation,
    LTXLayoutError,
    detect_ltx_layout,
    load_ltx,
    read_ltx_distillation,
    read_shapes,
)
from ..models.ltx.transformer import LTXVideoTransformer, pack_latents, unpack_latents
from ..models.ltx.vae import LTXVideoVAE
from ..sampling import SAMPLERS
from ..sampling.flow import Denoiser
from ..sampling.schedules import check_sigma_list, dynamic_sigmas
from ..text.files import has_tokenizer
from .base import Capabilities, ImageConditioning, LatentVAE, Pipeline, SamplingOptions
from .registry import Family, Parts

CAPABILITIES = Capabilities(
    family="LTX-Video",
    schedules=("flow",),
    samplers=tuple(SAMPLERS),
    fixed_shift=False,
    image_conditioning=True,
    external_text_encoder=True,
    fps_conditioning=True,
)
SUFFIXES = (".safetensors", ".sft")
log = logging.getLogger("vidcore")


class PromptEncoder(Protocol):
    def encode(self, prompts: list[str]) -> tuple[Tensor, Tensor]: ...


@dataclass(frozen=True)
class LTXPipelineConfig(ConfigMixin):
    """Generation defaults of an LTX-Video pipeline (diffusers' LTXPipeline defaults; 25 fps) and its
    decode settings (timestep-conditioned VAEs, 0.9.1+)."""

    name: str = "ltx-video"
    num_frames: int = 161
    height: int = 512
    width: int = 704
    steps: int = 50
    guidance: float = 3.0
    guidance_rescale: float = 0.0
    fps: float = 25.0
    decode_timestep: float = 0.0
    decode_noise_scale: float | None = None
    schedule: str = "flow"  # LTX's own: dynamic shift from the token count + terminal stretch
    sampler: str = "euler"
    # Step-distilled checkpoints: their own noise-level lists (one per trained step count; ``steps`` picks
    # one) and whether CFG was distilled in (guidance 1 as trained; more is warned about).
    step_sigmas: tuple[tuple[float, ...], ...] = ()
    guidance_distilled: bool = False

    def __post_init__(self) -> None:
        for name in ("num_frames", "height", "width", "steps"):
            check_positive_int(f"LTXPipelineConfig.{name}", getattr(self, name))
        check_positive("LTXPipelineConfig.fps", self.fps)
        check_choice("LTXPipelineConfig.schedule", self.schedule, CAPABILITIES.schedules)
        check_choice("LTXPipelineConfig.sampler", self.sampler, CAPABILITIES.samplers)
        lists = tuple(check_sigma_list(v, "LTXPipelineConfig.step_sigmas entry") for v in self.step_sigmas)
        object.__setattr__(self, "step_sigmas", lists)
        if not isinstance(self.guidance_distilled, bool):
            raise ValueError(
                f"LTXPipelineConfig.guidance_distilled={self.guidance_distilled!r} must be true or false"
            )


# Lightricks/LTX-Video configs/ltxv-13b-0.9.7-distilled.yaml first_pass.timesteps (0.9.8: the same list): the
# 0.9.7 / 0.9.8 distilled models' low-resolution pass, run here at the requested size with a last step to 0
# (the 2x latent-upsampler second pass is not implemented). guidance_scale 1, stochastic_sampling false.
LTX_DISTILLED_TIMESTEPS = (1.0, 0.9937, 0.9875, 0.9812, 0.975, 0.9094, 0.725)
# LTX-Video 0.9.6-distilled: "8 (recommended), 4, 2 or 1 diffusion steps", stochastic sampling (release
# notes; configs/ltxv-2b-0.9.6-distilled.yaml: num_inference_steps 8, sampler from_checkpoint).
LTX_096_STEPS = (8, 4, 2, 1)


def linear_quadratic_sigmas(steps: int, threshold: float = 0.025) -> tuple[float, ...]:
    """LTX-Video's "LinearQuadratic" schedule (Lightricks/LTX-Video ltx_video/schedulers/rf.py,
    linear_quadratic_schedule): the first half of the ``steps`` noise levels fall linearly from 1 to
    1 - threshold, the rest quadratically; then 0. At 8 steps these are the 0.9.7 / 0.9.8 distilled timesteps
    (1, .99375, .9875, .98125, .975, .909375, .725, .421875: both passes)."""
    check_positive_int("steps", steps)
    if steps == 1:
        return (1.0, 0.0)
    lin = steps // 2
    quad = steps - lin
    gap = lin - threshold * steps
    a = gap / (lin * quad**2)
    b = threshold / lin - 2 * gap / quad**2
    c = a * lin**2
    drops = [i * threshold / lin for i in range(lin)] + [a * i * i + b * i + c for i in range(lin, steps)]
    return (*(1.0 - d for d in drops), 0.0)


def rounded_timesteps(values: tuple[float, ...]) -> tuple[float, ...]:
    """Timesteps as the Lightricks pipeline compares them with ``allowed_inference_steps``: float32 values
    rounded to 4 decimals (ltx_video/pipelines/pipeline_ltx_video.py)."""
    return tuple(round(v, 4) for v in torch.tensor(values, dtype=torch.float32).tolist())


def distilled_config(
    name: str, distilled: LTXDistillation, layout_version: str | None = None
) -> LTXPipelineConfig:
    """The generation defaults of a step-distilled LTX-Video checkpoint: its noise levels, CFG off (distilled
    in), the deterministic Euler sampler for 0.9.7 / 0.9.8 and the re-noising one for 0.9.6 (its
    ``stochastic_sampling``; a metadata ``stochastic_sampling`` decides when present)."""
    version = distilled.version or layout_version  # layout "0.9.7": a 48-block (13B) transformer
    if version in ("0.9.7", "0.9.8") or (distilled.timesteps is None and version != "0.9.6"):
        # The single-pass list Lightricks published for its distilled models (also for a distilled file that
        # names no version and lists no timesteps); a metadata list here is only checked, not used.
        lists = ((*LTX_DISTILLED_TIMESTEPS, 0.0),)
        stochastic = False
    elif distilled.timesteps is not None:
        # 0.9.6: the list from the checkpoint's metadata for its step count; fewer steps on the
        # LinearQuadratic lists whose levels the metadata allows (the Lightricks pipeline asserts each
        # timestep, rounded to 4 decimals, is in allowed_inference_steps).
        own = (*distilled.timesteps, 0.0)
        allowed = set(rounded_timesteps(distilled.timesteps))
        fewer = [linear_quadratic_sigmas(n) for n in LTX_096_STEPS if n < len(own) - 1]
        lists = (own, *(f for f in fewer if set(rounded_timesteps(f[:-1])) <= allowed))
        stochastic = True
    else:
        # 0.9.6 without a list in its metadata. NOT VERIFIED: that its scheduler config ("sampler:
        # from_checkpoint") is LinearQuadratic; these lists are LTX-Video's LinearQuadratic schedule at 8, 4,
        # 2 and 1 steps, whose 8-step levels are the published 0.9.7 / 0.9.8 distilled timesteps.
        lists = tuple(linear_quadratic_sigmas(n) for n in LTX_096_STEPS)
        stochastic = True
    if distilled.stochastic is not None:
        stochastic = distilled.stochastic
    config = LTXPipelineConfig(
        name=name,
        steps=len(lists[0]) - 1,
        guidance=1.0,
        sampler="renoise" if stochastic else "euler",
        step_sigmas=lists,
        guidance_distilled=True,
    )
    log.info(
        "vidcore: %s is a step-distilled LTX-Video%s checkpoint (%s): %d steps on its own noise levels "
        "(lists for %s steps), guidance 1, sampler %r",
        name,
        f" {version}" if version else "",
        distilled.evidence,
        config.steps,
        sorted(len(s) - 1 for s in lists),
        config.sampler,
    )
    return config


def check_ltx_size(
    num_frames: int, height: int, width: int, temporal_ratio: int = 8, spatial_ratio: int = 32
) -> None:
    """Raise ValueError unless num_frames = 8k + 1 and height, width are multiples of 32 (lists valid)."""
    for name, v in (("num_frames", num_frames), ("height", height), ("width", width)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"{name}={v!r} must be an int")
    if num_frames < 1 or (num_frames - 1) % temporal_ratio:
        k = max(0, (num_frames - 1) // temporal_ratio)
        near = sorted({1 + temporal_ratio * k, 1 + temporal_ratio * (k + 1)})
        raise ValueError(
            f"num_frames={num_frames} must be {temporal_ratio}k + 1 "
            f"(valid: 1, 9, 17, ..., 161, 257; nearest {near})"
        )
    for name, v in (("height", height), ("width", width)):
        if v < spatial_ratio or v % spatial_ratio:
            near = sorted(
                {
                    max(spatial_ratio, v // spatial_ratio * spatial_ratio),
                    (v // spatial_ratio + 1) * spatial_ratio,
                }
            )
            raise ValueError(
                f"{name}={v} must be a positive multiple of {spatial_ratio} (nearest valid: {near})"
            )


def ltx_latent_shape(
    vae: LTXVideoVAE | LTXLatentVAE,
    transformer: LTXVideoTransformer,
    num_frames: int,
    height: int,
    width: int,
    pyramid_levels: int = 1,
) -> tuple[int, int, int, int]:
    """Latent ``(C, F', H', W')`` of an LTX clip; raises listing valid sizes."""
    if isinstance(vae, LTXLatentVAE):
        vae = vae.vae
    if not isinstance(vae, LTXVideoVAE):
        raise TypeError(f"vae must be an LTX-Video VAE to go with an LTX model, got {type(vae).__name__}")
    if pyramid_levels != 1:
        raise ValueError(f"pyramid_levels={pyramid_levels}: LTX-Video has no pyramidal schedule (use 1)")
    tr, sr = vae.temporal_ratio, vae.spatial_ratio
    check_ltx_size(num_frames, height, width, tr, sr)
    cfg = transformer.config
    shape = (vae.config.latent_channels, (num_frames - 1) // tr + 1, height // sr, width // sr)
    if shape[0] != cfg.in_channels:
        raise ValueError(f"VAE latent_channels={shape[0]} != LTX transformer in_channels={cfg.in_channels}")
    patches = (("frames", cfg.patch_size_t), ("height", cfg.patch_size), ("width", cfg.patch_size))
    for (name, p), n in zip(patches, shape[1:], strict=True):
        if n % p:
            raise ValueError(f"latent {name}={n} is not a multiple of the transformer patch size {p}")
    return shape


def _device_generator(generator: torch.Generator | None, device: torch.device) -> torch.Generator | None:
    """The decoder draws its injected noise on the latents' device; derive a generator there (CUDA)."""
    if generator is None or generator.device.type == device.type:
        return generator
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return torch.Generator(device=device).manual_seed(seed)


@torch.no_grad()
def decode_ltx_latents(
    vae: LTXVideoVAE,
    latents: Tensor,
    decode_timestep: float = 0.0,
    decode_noise_scale: float | None = None,
    generator: torch.Generator | None = None,
    temporal_chunk: int | None = None,
) -> Tensor:
    """Normalised latents -> video [B, 3, T, H, W] in about -1..1 (decode timestep/noise: 0.9.1+)."""
    vae_dtype = next(vae.parameters()).dtype
    z = vae.denormalize_latents(latents.float())
    timestep = None
    if vae.config.timestep_conditioning:
        scale = decode_timestep if decode_noise_scale is None else decode_noise_scale
        noise = torch.randn(z.shape, generator=generator).to(z.device)
        z = (1 - scale) * z + scale * noise
        timestep = torch.full((z.shape[0],), float(decode_timestep), device=z.device)
    gen = _device_generator(generator, z.device)
    return vae.decode(z.to(vae_dtype), timestep, generator=gen, temporal_chunk=temporal_chunk)


class LTXLatentVAE(LatentVAE):
    """vidcore's VAE interface over an LTX VAE: ``encode`` video -> normalised latents, ``decode`` back.

    What the ComfyUI VAE Encode / VAE Decode nodes call (LATENT holds normalised latents, as the transformer
    sees them). Decoding of noise-injecting VAEs (0.9.1) draws from a CPU generator seeded with ``seed`` when
    none is given, so one graph gives one video. Spatial tiling is not supported (refused, not ignored).
    """

    def __init__(
        self,
        vae: LTXVideoVAE,
        decode_timestep: float = 0.0,
        decode_noise_scale: float | None = None,
        seed: int = 0,
    ) -> None:
        if not isinstance(vae, LTXVideoVAE):
            raise TypeError(f"vae must be an LTXVideoVAE, got {type(vae).__name__}")
        super().__init__(vae)
        self.decode_timestep = float(decode_timestep)
        self.decode_noise_scale = decode_noise_scale
        self.seed = int(seed)

    def latent_shape(self, num_frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        tr, sr = self.vae.temporal_ratio, self.vae.spatial_ratio
        check_ltx_size(num_frames, height, width, tr, sr)
        return (self.vae.config.latent_channels, (num_frames - 1) // tr + 1, height // sr, width // sr)

    @torch.no_grad()
    def encode(
        self,
        video: Tensor,
        sample: bool = False,
        generator: torch.Generator | None = None,
        temporal_chunk: int | None = None,
        tile_size: int | None = None,
        tile_overlap: int | None = None,
        callback: Any = None,
    ) -> Tensor:
        """Normalised latents [B, 128, F', H/32, W/32] of video [B, 3, 8k+1, H, W] in -1..1."""
        if temporal_chunk is not None:
            raise ValueError(
                f"temporal_chunk={temporal_chunk!r}: the LTX-Video VAE encodes whole clips (leave it unset/0)"
            )
        CAPABILITIES.check_tiling(tile_size, tile_overlap)
        z = self.vae.normalize_latents(self.vae.encode(video.to(self.dtype), sample, generator).float())
        if callback is not None:
            callback(1, 1)
        return z

    @torch.no_grad()
    def decode(
        self,
        latents: Tensor,
        temporal_chunk: int | None = None,
        tile_size: int | None = None,
        tile_overlap: int | None = None,
        callback: Any = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Video [B, 3, T, H, W] (about -1..1) from normalised latents; ``temporal_chunk``: latent frames."""
        CAPABILITIES.check_tiling(tile_size, tile_overlap)
        if generator is None:
            generator = torch.Generator(device="cpu").manual_seed(self.seed)
        device = next(self.vae.parameters()).device
        video = decode_ltx_latents(
            self.vae,
            latents.to(device),
            self.decode_timestep,
            self.decode_noise_scale,
            generator,
            temporal_chunk,
        )
        if callback is not None:
            callback(1, 1)
        return video


class LTXDenoiser:
    """vidcore denoiser over unpacked latents: ``(x [B,C,F,H,W], sigma [B]) -> velocity`` (float32)."""

    def __init__(
        self,
        transformer: LTXVideoTransformer,
        rope_scale: tuple[float, float, float],
        image: ImageConditioning | None = None,
    ) -> None:
        self.transformer = transformer
        self.rope_scale = rope_scale
        self.image = image

    def __call__(self, x: Tensor, sigma: Tensor, context: Tensor, context_mask: Tensor) -> Tensor:
        cfg = self.transformer.config
        b, _, f, h, w = x.shape
        p, pt = cfg.patch_size, cfg.patch_size_t
        dtype = next(self.transformer.parameters()).dtype
        t = (sigma.float() * 1000).to(x.device)  # timesteps are σ·1000, as diffusers' LTXPipeline passes them
        if self.image is not None and self.image.mask is not None:
            # Image-to-video (diffusers pipeline_ltx_image2video.py): the given latent frame enters clean and
            # its tokens get timestep 0, the others t: per-token timesteps t·(1 - mask).
            x = self.image.mix(x)
            keep = pack_latents(self.image.mask.to(x), p, pt).squeeze(-1)  # [1|B, S]
            t = t[:, None] * (1 - keep)
        tokens = pack_latents(x, p, pt).to(dtype)
        out = self.transformer(
            tokens, context.to(dtype), t, context_mask, f // pt, h // p, w // p, rope_scale=self.rope_scale
        )
        return unpack_latents(out.float(), f // pt, h // p, w // p, p, pt)


class LTXPipeline(Pipeline):
    """LTX-Video text-to-video; ``generate`` -> frames [T, H, W, 3] in 0..1. ``vae`` is the
    :class:`LTXLatentVAE` (normalised latents), ``vae.vae`` the LTX VAE module."""

    capabilities = CAPABILITIES

    def __init__(
        self,
        transformer: LTXVideoTransformer,
        vae: LTXVideoVAE | LTXLatentVAE,
        text_encoder: PromptEncoder,
        config: LTXPipelineConfig | None = None,
    ) -> None:
        if not callable(getattr(text_encoder, "encode", None)):
            raise TypeError(
                f"text_encoder must have encode(prompts) -> (emb, mask); got {type(text_encoder).__name__}"
            )
        dim, width = getattr(text_encoder, "dim", None), transformer.config.caption_channels
        if isinstance(dim, int) and dim != width:
            raise ValueError(
                f"text encoder width {dim} does not match the LTX transformer's caption_channels={width} "
                "(released checkpoints take T5-v1.1-XXL, width 4096)"
            )
        self.config = config if config is not None else LTXPipelineConfig()
        raw = vae.vae if isinstance(vae, LTXLatentVAE) else vae
        self.dit = transformer
        self.vae = LTXLatentVAE(raw, self.config.decode_timestep, self.config.decode_noise_scale)
        self.text_encoder = text_encoder

    @property
    def transformer(self) -> LTXVideoTransformer:
        return self.dit

    @property
    def text_dim(self) -> int:
        return self.dit.config.caption_channels

    @property
    def latent_channels(self) -> int:
        return self.dit.config.in_channels

    def latent_rgb(self) -> Any:
        from ..preview import LTX_VIDEO

        return LTX_VIDEO

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike,
        text_encoder: PromptEncoder,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
    ) -> LTXPipeline:
        """Transformer + VAE from one LTX checkpoint (single file or diffusers folder); T5 separately."""
        distilled = read_ltx_distillation(path)  # first: a bad metadata list is refused before loading
        models = load_ltx(path, dtype=dtype, device=device)
        if models.transformer is None or models.vae is None:
            raise ValueError(f"{str(path)!r} must hold both the LTX transformer and VAE to build a pipeline")
        name = Path(path).name.removesuffix(".safetensors") or "ltx-video"
        if distilled is None:
            config = LTXPipelineConfig(name=name)
        else:
            config = distilled_config(name, distilled, models.layout.version)
        return cls(models.transformer, models.vae, text_encoder, config)

    def latent_shape(
        self, num_frames: int, height: int, width: int, *, pyramid_stages: int = 1, vae: Any = None
    ) -> tuple[int, int, int, int]:
        return ltx_latent_shape(
            self.vae if vae is None else vae, self.dit, num_frames, height, width, pyramid_stages
        )

    def flow_sigmas(self, steps: int, latent_shape: tuple[int, ...], options: SamplingOptions) -> Tensor:
        # LTX's schedule: exponential shift from the token count, stretched to a terminal sigma of 0.1.
        f, h, w = latent_shape[-3:]
        return dynamic_sigmas(steps, seq_len=f * h * w)

    @property
    def vae_spatial_ratio(self) -> int:
        return self.vae.vae.spatial_ratio

    def denoiser(
        self,
        options: SamplingOptions,
        latent_shape: tuple[int, ...],
        fps: float | None = None,
        image: ImageConditioning | None = None,
    ) -> Denoiser:
        fps = self.config.fps if fps is None else fps
        if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not fps > 0:
            raise ValueError(f"fps={fps!r} must be a number > 0 (the frame rate LTX-Video conditions on)")
        tr, sr = self.vae.vae.temporal_ratio, self.vae.vae.spatial_ratio
        return LTXDenoiser(self.dit, (tr / fps, float(sr), float(sr)), image)

    def encode_image(
        self,
        image: Tensor,
        last_image: Tensor | None,
        latent_shape: tuple[int, ...],
        generator: torch.Generator,
    ) -> ImageConditioning:
        """First latent frame = the image's latents, sampled from the VAE posterior with the run's
        generator and normalised, as diffusers' LTXImageToVideoPipeline.prepare_latents does."""
        raw = self.vae.vae
        z = raw.encode(image.to(self.device, self.vae.dtype), sample=True, generator=generator).float()
        z = raw.normalize_latents(z).repeat(latent_shape[0], 1, latent_shape[2], 1, 1)
        mask = torch.zeros((latent_shape[0], 1, *latent_shape[2:]), device=z.device)
        mask[:, :, 0] = 1.0
        return ImageConditioning(latents=z, mask=mask)

    def decode(
        self,
        latents: Tensor,
        *,
        generator: torch.Generator | None = None,
        callback: Callable[[int, int], None] | None = None,
    ) -> Tensor:
        return self.vae.decode(latents, callback=callback, generator=generator)


def is_ltx_checkpoint(path: str | os.PathLike) -> bool:
    """True for an LTX-Video checkpoint vidcore can build a pipeline from: a ``.safetensors`` single file
    with transformer and VAE (decided by :func:`detect_ltx_layout`), or a diffusers folder (an LTX
    ``model_index.json``, or ``transformer/`` + ``vae/`` with config.json)."""
    p = Path(path)
    if p.is_file():
        if p.suffix not in SUFFIXES:
            return False
        try:
            layout = detect_ltx_layout(*read_shapes(p), source=str(p))
        except (LTXLayoutError, OSError, ValueError):
            return False
        return layout.transformer_config is not None and layout.vae_config is not None
    if not p.is_dir():
        return False
    index = p / "model_index.json"
    if index.is_file():
        try:
            name = str(json.loads(index.read_text()).get("_class_name", ""))
        except (json.JSONDecodeError, OSError, AttributeError):
            return False
        return name.startswith("LTX")
    parts = [p / c / "config.json" for c in ("transformer", "vae")]
    if not all(c.is_file() for c in parts):
        return False
    try:
        return json.loads(parts[0].read_text()).get("_class_name") == "LTXVideoTransformer3DModel"
    except (json.JSONDecodeError, OSError, AttributeError):
        return False


def _ltx_text_encoder(
    checkpoint: Path,
    text_encoder: str | os.PathLike | PromptEncoder | None,
    device: torch.device,
    dtype: torch.dtype | None,
) -> PromptEncoder:
    """The T5 for an LTX checkpoint: ``text_encoder`` (folder, or an encoder object), else the diffusers
    folder's own ``text_encoder/`` (single or sharded safetensors) with its tokenizer files there or in
    the sibling ``tokenizer/`` (the diffusers repository layout)."""
    from ..text import load_text_encoder

    if text_encoder is not None and not isinstance(text_encoder, (str, os.PathLike)):
        return text_encoder  # an already loaded encoder (checked for encode() and width by LTXPipeline)
    if text_encoder is not None:
        return load_text_encoder(text_encoder, device=device, dtype=dtype)
    folder = checkpoint / "text_encoder" if checkpoint.is_dir() else None
    if folder is None or not (folder / "config.json").is_file():
        where = "a single-file checkpoint" if checkpoint.is_file() else "a folder without text_encoder/"
        raise ValueError(
            f"{str(checkpoint)!r} is an LTX-Video checkpoint ({where}) that carries no text encoder: pass "
            "text_encoder=<T5-v1.1-XXL transformers folder with config.json, model.safetensors and "
            "tokenizer files> (CLI: --text-encoder DIR)"
        )
    if has_tokenizer(folder, "t5"):
        return load_text_encoder(folder, device=device, dtype=dtype)
    tokenizer = checkpoint / "tokenizer"
    if has_tokenizer(tokenizer, "t5"):
        # diffusers keeps the tokenizer beside the encoder; the weights (one file or shards) stay in there.
        return load_text_encoder(folder, device=device, dtype=dtype, tokenizer_path=tokenizer)
    found = "does not exist" if not tokenizer.is_dir() else "has no spiece.model or tokenizer.json either"
    raise ValueError(
        f"{str(folder)!r} has no tokenizer files (spiece.model / tokenizer.json) and {str(tokenizer)!r} "
        f"{found}: copy the tokenizer files into one of them, or pass text_encoder=<T5 folder with its "
        "tokenizer> (CLI: --text-encoder DIR)"
    )


def load_ltx_pipeline(
    path: str | os.PathLike, device: torch.device, dtype: torch.dtype | None, parts: Parts
) -> LTXPipeline:
    """:meth:`LTXPipeline.from_checkpoint` with the T5 resolved (see :func:`_ltx_text_encoder`)."""
    encoder = _ltx_text_encoder(Path(path), parts.text_encoder, device, dtype)
    return LTXPipeline.from_checkpoint(path, encoder, device=device, dtype=dtype)


def explain(path: Path) -> str | None:
    """Why a ``.safetensors`` file is not a loadable LTX-Video checkpoint (None for other paths)."""
    if not (path.is_file() and path.suffix in SUFFIXES):
        return None
    try:
        layout = detect_ltx_layout(*read_shapes(path), source=repr(str(path)))
    except LTXLayoutError as e:
        return str(e)
    except (OSError, ValueError) as e:
        return f"{str(path)!r} could not be read as a safetensors file ({e})"
    missing = "transformer" if layout.transformer_config is None else "VAE"
    return (
        f"{str(path)!r} is an LTX-Video file without the {missing}; load_pipeline needs a checkpoint with "
        "both (an original single file or a diffusers folder)"
    )


FAMILY = Family(
    name="ltx-video",
    capabilities=CAPABILITIES,
    describe="an LTX-Video single .safetensors file (transformer + VAE) or diffusers folder, with a T5",
    detect=is_ltx_checkpoint,
    load=load_ltx_pipeline,
    explain=explain,
    folders=("checkpoints", "diffusion_models"),
    text_encoder_types=("t5", "umt5"),
)
