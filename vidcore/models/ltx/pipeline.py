"""LTX-Video text-to-video: T5 embeddings -> flow-matching Euler with CFG -> causal VAE decode (§8, §9).

:class:`LTXPipeline` duck-types vidcore's :class:`~vidcore.pipeline.VideoPipeline` (``generate``, ``config``,
``dit``, ``vae``, ``text_encoder``) so ``load_pipeline`` and ``vidcore generate`` take LTX checkpoints;
:class:`LTXLatentVAE` gives the LTX VAE vidcore's VAE interface over normalised latents (the ComfyUI nodes).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import Tensor

from vidcore.config import ConfigMixin, check_choice, check_positive
from vidcore.models.ltx.loading import load_ltx
from vidcore.models.ltx.transformer import LTXVideoTransformer, pack_latents, unpack_latents
from vidcore.models.ltx.vae import LTXVideoVAE
from vidcore.sampling.guidance import CFGDenoiser
from vidcore.sampling.samplers import SAMPLERS
from vidcore.sampling.schedules import dynamic_sigmas

if TYPE_CHECKING:
    from vidcore.pipeline import TextConditioning


class PromptEncoder(Protocol):
    def encode(self, prompts: list[str]) -> tuple[Tensor, Tensor]: ...


@dataclass(frozen=True)
class LTXPipelineConfig(ConfigMixin):
    """Generation defaults of an LTX-Video pipeline (diffusers' LTXPipeline defaults; 25 fps)."""

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

    def __post_init__(self) -> None:
        for name in ("num_frames", "height", "width", "steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"LTXPipelineConfig.{name}={value!r} must be a positive integer")
        check_positive("LTXPipelineConfig.fps", self.fps)
        check_choice("LTXPipelineConfig.schedule", self.schedule, ("flow",))
        check_choice("LTXPipelineConfig.sampler", self.sampler, tuple(SAMPLERS))


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
    """Latent ``(C, F', H', W')`` of an LTX clip (what :func:`vidcore.pipeline.check_generation_size` gives
    for LTX models); raises listing valid sizes."""
    if not isinstance(transformer, LTXVideoTransformer):
        raise TypeError(f"model must be an LTX-Video transformer, got {type(transformer).__name__}")
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
    """Normalised latents -> video [B, 3, T, H, W] in about -1..1 (decode timestep/noise: 0.9.1+, §9)."""
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


class LTXLatentVAE:
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
        self.vae = vae
        self.decode_timestep = float(decode_timestep)
        self.decode_noise_scale = decode_noise_scale
        self.seed = int(seed)

    @property
    def config(self) -> Any:
        return self.vae.config

    @property
    def dtype(self) -> torch.dtype:
        return next(self.vae.parameters()).dtype

    def parameters(self) -> Any:
        return self.vae.parameters()

    def latent_shape(self, num_frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """(C, F', H', W') of the latents of a ``num_frames x height x width`` video; raises if not valid."""
        tr, sr = self.vae.temporal_ratio, self.vae.spatial_ratio
        check_ltx_size(num_frames, height, width, tr, sr)
        return (self.vae.config.latent_channels, (num_frames - 1) // tr + 1, height // sr, width // sr)

    @staticmethod
    def _no_tiling(tile_size: int | None, tile_overlap: int | None) -> None:
        for name, value in (("tile_size", tile_size), ("tile_overlap", tile_overlap)):
            if value is not None:
                raise ValueError(f"{name}={value!r}: the LTX-Video VAE has no spatial tiling (leave unset/0)")

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
        self._no_tiling(tile_size, tile_overlap)
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
        self._no_tiling(tile_size, tile_overlap)
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

    def __init__(self, transformer: LTXVideoTransformer, rope_scale: tuple[float, float, float]) -> None:
        self.transformer = transformer
        self.rope_scale = rope_scale

    def __call__(self, x: Tensor, sigma: Tensor, context: Tensor, context_mask: Tensor) -> Tensor:
        cfg = self.transformer.config
        b, _, f, h, w = x.shape
        p, pt = cfg.patch_size, cfg.patch_size_t
        dtype = next(self.transformer.parameters()).dtype
        tokens = pack_latents(x, p, pt).to(dtype)
        t = (sigma.float() * 1000).to(x.device)  # the model reads σ·1000 (trap 5)
        out = self.transformer(
            tokens, context.to(dtype), t, context_mask, f // pt, h // p, w // p, rope_scale=self.rope_scale
        )
        return unpack_latents(out.float(), f // pt, h // p, w // p, p, pt)


def check_ltx_options(schedule: str | None, shift: float | None, denoise: float = 1.0) -> None:
    """Refuse, by name, the VideoPipeline options LTX-Video does not have (never ignore them silently)."""
    if schedule is not None and schedule != "flow":
        raise ValueError(
            f"schedule={schedule!r} is not supported by LTX-Video models: they run their own flow schedule "
            "(dynamic shift from the token count + terminal stretch); use schedule='flow'"
        )
    if shift is not None and shift != 1.0:
        raise ValueError(
            f"shift={shift!r} is not supported by LTX-Video models: the shift is computed from the token "
            "count (dynamic shift); leave shift unset (1.0)"
        )
    if denoise != 1.0:
        raise ValueError(
            f"denoise={denoise!r}: video-to-video (denoise < 1, init_frames) is not supported by LTX-Video "
            "models yet; use denoise=1.0"
        )


class LTXPipeline:
    """LTX-Video text-to-video with the VideoPipeline surface; ``generate`` -> frames [T, H, W, 3], 0..1."""

    def __init__(
        self,
        transformer: LTXVideoTransformer,
        vae: LTXVideoVAE,
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
        self.transformer = transformer
        self.vae = vae
        self.text_encoder = text_encoder
        self.config = config if config is not None else LTXPipelineConfig()
        self._latent_vae: LTXLatentVAE | None = None

    @property
    def dit(self) -> LTXVideoTransformer:
        return self.transformer

    @property
    def device(self) -> torch.device:
        return next(self.transformer.parameters()).device

    @property
    def latent_vae(self) -> LTXLatentVAE:
        """The VAE over normalised latents (vidcore's VAE interface; what the ComfyUI loader hands out)."""
        if self._latent_vae is None:
            cfg = self.config
            self._latent_vae = LTXLatentVAE(self.vae, cfg.decode_timestep, cfg.decode_noise_scale)
        return self._latent_vae

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike,
        text_encoder: PromptEncoder,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
    ) -> LTXPipeline:
        """Transformer + VAE from one LTX checkpoint (single file or diffusers folder); T5 separately."""
        models = load_ltx(path, dtype=dtype, device=device)
        if models.transformer is None or models.vae is None:
            raise ValueError(f"{str(path)!r} must hold both the LTX transformer and VAE to build a pipeline")
        name = Path(path).name.removesuffix(".safetensors") or "ltx-video"
        return cls(models.transformer, models.vae, text_encoder, LTXPipelineConfig(name=name))

    def encode_prompts(self, prompt: str, negative_prompt: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        emb, mask = self.text_encoder.encode([negative_prompt, prompt])
        width = self.transformer.config.caption_channels
        if emb.ndim != 3 or emb.shape[-1] != width:
            raise ValueError(
                f"text encoder gives embeddings {tuple(emb.shape)} but the LTX transformer expects width "
                f"{width} (T5-v1.1-XXL for released checkpoints)"
            )
        return emb[1:], mask[1:], emb[:1], mask[:1]

    @torch.no_grad()
    def sample(
        self,
        noise: Tensor,
        cond: TextConditioning,
        uncond: TextConditioning | None,
        steps: int,
        guidance: float,
        guidance_rescale: float = 0.0,
        frame_rate: float | None = None,
        sampler: str | None = None,
        callback: Any = None,
        progress: bool = False,
        schedule: str | None = None,
        shift: float | None = None,
        denoise: float = 1.0,
    ) -> Tensor:
        """Sample over LTX's dynamic-shift schedule from ``noise`` [B, C, F', H', W'] (normalised latent
        space) with CFG; returns clean normalised latents (float32). ``uncond`` None needs guidance 1.
        ``sampler``: one of vidcore's SAMPLERS (LTX's own is Euler, the default)."""
        check_ltx_options(schedule, shift, denoise)
        sampler = self.config.sampler if sampler is None else sampler
        check_choice("sampler", sampler, tuple(SAMPLERS))
        if not (isinstance(steps, int) and not isinstance(steps, bool) and steps >= 1):
            raise ValueError(f"steps={steps!r} must be a positive integer")
        if uncond is None and guidance != 1.0:
            raise ValueError("guidance != 1 needs the unconditional (negative prompt) conditioning")
        frame_rate = self.config.fps if frame_rate is None else frame_rate
        if not frame_rate > 0:
            raise ValueError(f"frame_rate={frame_rate!r} must be > 0")
        channels = self.transformer.config.in_channels
        if noise.ndim != 5 or noise.shape[1] != channels:
            raise ValueError(f"latents must be [B, {channels}, F', H', W'], got {tuple(noise.shape)}")
        tr, sr = self.vae.temporal_ratio, self.vae.spatial_ratio
        x = noise.to(device=self.device, dtype=torch.float32)
        sigmas = dynamic_sigmas(steps, seq_len=x.shape[2] * x.shape[3] * x.shape[4])
        model = LTXDenoiser(self.transformer, (tr / frame_rate, float(sr), float(sr)))

        def kwargs(c: TextConditioning | None) -> dict[str, Tensor]:
            if c is None:
                return {}
            return {"context": c.embeddings.to(self.device), "context_mask": c.mask.to(self.device)}

        denoiser = CFGDenoiser(model, kwargs(cond), kwargs(uncond), scale=guidance, rescale=guidance_rescale)
        return SAMPLERS[sampler](denoiser, x, sigmas, callback=callback, disable=not progress)

    @torch.no_grad()
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
        guidance_rescale: float | None = None,
        frame_rate: float | None = None,
        decode_timestep: float | None = None,
        decode_noise_scale: float | None = None,
        latents: Tensor | None = None,
        callback: Any = None,
        progress: bool = False,
        schedule: str | None = None,
        shift: float | None = None,
        sampler: str | None = None,
        init_frames: Tensor | None = None,
        denoise: float = 1.0,
        decode_callback: Any = None,
    ) -> Tensor:
        """Frames [T, H, W, 3] in 0..1; unset arguments take ``self.config`` (diffusers LTXPipeline defaults).

        ``latents``: optional initial noise [1, 128, F', H/32, W/32] (normalised space); otherwise drawn
        from ``seed``. ``schedule``/``shift``/``sampler``/``init_frames``/``denoise`` exist for the
        VideoPipeline surface: a pyramidal schedule, a fixed shift and video-to-video are refused by name.
        """
        if not isinstance(prompt, str) or not isinstance(negative_prompt, str):
            raise TypeError("prompt and negative_prompt must be strings")
        check_ltx_options(schedule, shift, denoise)
        if init_frames is not None:
            raise ValueError("init_frames (video-to-video) is not supported by LTX-Video models yet")
        cfg = self.config
        num_frames = cfg.num_frames if num_frames is None else num_frames
        height = cfg.height if height is None else height
        width = cfg.width if width is None else width
        steps = cfg.steps if steps is None else steps
        guidance = cfg.guidance if guidance is None else float(guidance)
        rescale = cfg.guidance_rescale if guidance_rescale is None else guidance_rescale
        decode_timestep = cfg.decode_timestep if decode_timestep is None else decode_timestep
        if decode_noise_scale is None:
            decode_noise_scale = cfg.decode_noise_scale
        tr, sr = self.vae.temporal_ratio, self.vae.spatial_ratio
        check_ltx_size(num_frames, height, width, tr, sr)
        shape = (1, self.vae.config.latent_channels, (num_frames - 1) // tr + 1, height // sr, width // sr)
        generator = torch.Generator(device="cpu").manual_seed(int(seed))
        if latents is None:
            # Drawn unpacked [B, C, F, H, W] as diffusers does, so seeds give the same noise.
            latents = torch.randn(shape, generator=generator)
        elif tuple(latents.shape) != shape:
            raise ValueError(f"latents have shape {tuple(latents.shape)}, expected {shape}")
        from vidcore.pipeline import TextConditioning

        emb, mask, neg_emb, neg_mask = self.encode_prompts(prompt, negative_prompt)
        x = self.sample(
            latents,
            TextConditioning(emb, mask),
            TextConditioning(neg_emb, neg_mask),
            steps,
            guidance,
            rescale,
            frame_rate,
            sampler,
            callback,
            progress,
        )
        video = self.decode(x, decode_timestep, decode_noise_scale, generator)
        if decode_callback is not None:
            decode_callback(1, 1)
        return (video[0] / 2 + 0.5).clamp(0, 1).permute(1, 2, 3, 0).float().cpu()

    def decode(
        self,
        latents: Tensor,
        decode_timestep: float = 0.0,
        decode_noise_scale: float | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Normalised latents -> video [B, 3, T, H, W] in about -1..1 (decode timestep/noise: 0.9.1+)."""
        return decode_ltx_latents(self.vae, latents, decode_timestep, decode_noise_scale, generator)
