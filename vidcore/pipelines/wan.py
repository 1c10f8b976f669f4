"""Wan 2.1 / 2.2 (Wan-Video): text-to-video, image-to-video (2.1 I2V-14B with CLIP tokens, FLF2V first+last
frame, 2.2 I2V-A14B) and TI2V-5B, from a diffusers folder, with UniPC over Wan's flow schedule.

Follows diffusers src/diffusers/pipelines/wan/pipeline_wan.py and pipeline_wan_i2v.py step for step, so the
same noise gives the same video (tests/test_wan_pipeline.py): umT5 states zero-padded to 512 rows and
attended without a mask, CFG as uncond + g (cond - uncond) with a scale per expert for 2.2 A14B (the
high-noise expert while timestep >= boundary·1000), the transformer fed the scheduler's int64 timesteps
(not sigma·1000: see vidcore.sampling.schedules.wan_flow_timesteps), VAE latents normalised with the
checkpoint's per-channel mean/std. Differences from the original Wan code (Wan-Video/Wan2.1 generate.py):
its UniPC grid starts at sigma 0.999 instead of 1 (the last timesteps differ by about 3 at 50 steps) and it
pads text tokens inside the model rather than in the encoder; we match diffusers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..config import ConfigMixin, check_choice, check_positive, check_positive_int
from ..models.wan.transformer import WanTransformer
from ..sampling import SAMPLERS
from ..sampling.flow import Denoiser
from ..sampling.schedules import (
    check_sigma_list,
    rcm_times,
    timesteps_on_grid,
    wan_flow_sigmas,
    wan_flow_timesteps,
)
from .base import Capabilities, ImageConditioning, LatentVAE, Pipeline, SamplingOptions

# Wan-Video/Wan2.1 wan/configs/shared_config.py: the negative prompt every Wan task samples with.
WAN_NEGATIVE_PROMPT = (
    "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，"
    "JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，"
    "手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走"
)
VARIANTS = ("t2v", "i2v", "flf2v", "t2v_a14b", "i2v_a14b", "ti2v")
# Wan 2.1 I2V / FLF2V prefix the shared negative prompt (Wan-Video/Wan2.1 wan/configs/wan_i2v_14B.py,
# wan_flf2v_14B.py: "camera shake", "shot change"); Wan 2.2 does not.
NEGATIVE_PREFIX = {"i2v": "镜头晃动，", "flf2v": "镜头切换，"}


def default_negative_prompt(variant: str) -> str:
    """Wan's default negative prompt for a variant."""
    return NEGATIVE_PREFIX.get(variant, "") + WAN_NEGATIVE_PROMPT


I2V_KINDS = "Wan I2V-14B, FLF2V-14B, 2.2 I2V-A14B or TI2V-5B (or LTX-Video)"
TEXT_LEN = 512

# TurboDiffusion's rCM students (thu-ml/TurboDiffusion inference/wan2.1_t2v_infer.py, wan2.2_i2v_infer.py):
# 1-4 steps from sigma_max 80 (T2V) or 200 (I2V), no CFG, re-noising sampler; the 2.2 I2V-A14B pair switches
# to its low-noise expert once t < 0.9 (--boundary).
TURBO_SIGMA_MAX = {"t2v": 80.0, "i2v": 200.0}
TURBO_STEPS = (1, 2, 3, 4)
TURBO_BOUNDARY = 0.9


def turbo_sigmas(steps: int, sigma_max: float) -> tuple[float, ...]:
    """rCM's ``steps``-step noise levels (Zheng et al. 2025, arXiv:2510.08431; NVlabs/rcm
    rcm/inference/wan2pt1_t2v_rcm_infer.py): TrigFlow times [atan(sigma_max), 1.5, 1.4, 1.0][:steps] in RF
    time t = sin s / (cos s + sin s), then 0."""
    if isinstance(steps, bool) or steps not in TURBO_STEPS:
        raise ValueError(f"steps={steps!r}: TurboDiffusion's rCM lists exist for {list(TURBO_STEPS)} steps")
    return (*rcm_times(steps, sigma_max), 0.0)


@dataclass(frozen=True)
class WanPipelineConfig(ConfigMixin):
    """Generation defaults of a Wan checkpoint (Wan-Video/Wan2.1 generate.py; 2.2 configs) and its kind."""

    name: str = "wan"
    variant: str = "t2v"
    num_frames: int = 81
    height: int = 480
    width: int = 832
    steps: int = 50
    guidance: float = 5.0
    guidance_2: float | None = None
    shift: float = 5.0
    sampler: str = "unipc"
    schedule: str = "flow"
    fps: float = 16.0
    boundary_ratio: float | None = None
    negative_prompt: str = WAN_NEGATIVE_PROMPT
    # Distilled students (TurboWan): their own noise-level lists (one per trained step count; ``steps`` picks
    # one), whether CFG was distilled in, and whether the network is fed sigma·1000 rounded to bfloat16 (as
    # TurboDiffusion's inference scripts feed it) on an explicit list.
    step_sigmas: tuple[tuple[float, ...], ...] = ()
    guidance_distilled: bool = False
    bf16_timesteps: bool = False

    def __post_init__(self) -> None:
        lists = tuple(check_sigma_list(v, "WanPipelineConfig.step_sigmas entry") for v in self.step_sigmas)
        object.__setattr__(self, "step_sigmas", lists)
        for name in ("guidance_distilled", "bf16_timesteps"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"WanPipelineConfig.{name}={getattr(self, name)!r} must be true or false")
        check_choice("WanPipelineConfig.variant", self.variant, VARIANTS)
        for name in ("num_frames", "height", "width", "steps"):
            check_positive_int(f"WanPipelineConfig.{name}", getattr(self, name))
        for name in ("guidance", "shift", "fps"):
            check_positive(f"WanPipelineConfig.{name}", getattr(self, name))
        check_choice("WanPipelineConfig.sampler", self.sampler, tuple(SAMPLERS))
        experts = self.variant in ("t2v_a14b", "i2v_a14b")
        if experts != (self.boundary_ratio is not None):
            raise ValueError(
                f"WanPipelineConfig.boundary_ratio={self.boundary_ratio!r}: two-expert variants (t2v_a14b, "
                f"i2v_a14b) need it in (0, 1), the others none (variant={self.variant!r})"
            )
        if experts and not 0 < self.boundary_ratio < 1:
            raise ValueError(f"WanPipelineConfig.boundary_ratio={self.boundary_ratio!r} must lie in (0, 1)")


def capabilities_of(variant: str) -> Capabilities:
    """What a Wan variant can do; refusals name the image-to-video kinds."""
    image = variant in ("i2v", "flf2v", "i2v_a14b", "ti2v")
    return Capabilities(
        family=f"Wan {variant}",
        schedules=("flow",),
        samplers=tuple(SAMPLERS),
        image_conditioning=image,
        last_image_conditioning=variant == "flf2v",
        requires_image=variant in ("i2v", "flf2v", "i2v_a14b"),
        image_hint=f"image-to-video needs a {I2V_KINDS} checkpoint",
        external_text_encoder=True,
        external_vae=True,
        external_image_encoder=True,
        expert_guidance=variant in ("t2v_a14b", "i2v_a14b"),
    )


class WanLatentVAE(LatentVAE):
    """vidcore's VAE interface over a Wan VAE in normalised latents (what the transformer sees; LATENT)."""

    @torch.no_grad()
    def encode(
        self,
        video: Tensor,
        temporal_chunk: int | None = None,
        tile_size: int | None = None,
        tile_overlap: int | None = None,
        callback: Callable[[int, int], None] | None = None,
    ) -> Tensor:
        """Normalised posterior mean of video ``[B, 3, 4k+1, H, W]`` in -1..1."""
        _no_chunks(temporal_chunk, tile_size, tile_overlap)
        z = self.vae.normalize(self.vae.encode(video.to(self.dtype)).float())
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
        callback: Callable[[int, int], None] | None = None,
    ) -> Tensor:
        """Video ``[B, 3, T, H, W]`` in -1..1 from normalised latents (decoded latent frame by latent frame
        with a feature cache: memory flat in the frame count)."""
        _no_chunks(temporal_chunk, tile_size, tile_overlap)
        device = next(self.vae.parameters()).device
        return self.vae.decode(self.vae.denormalize(latents.to(device).float()).to(self.dtype), callback)


def _no_chunks(temporal_chunk: int | None, tile_size: int | None, tile_overlap: int | None) -> None:
    given = (("temporal_chunk", temporal_chunk), ("tile_size", tile_size), ("tile_overlap", tile_overlap))
    for name, value in given:
        if value is not None:
            raise ValueError(
                f"{name}={value!r}: the Wan VAE always streams latent frames one by one and has no spatial "
                "tiling (leave it unset / 0)"
            )


class WanDenoiser:
    """Velocity of the Wan transformer(s) on float32 latents: the scheduler's timestep for each sigma, the
    high-noise expert while timestep >= boundary, text rows past the prompt zeroed, the image held."""

    def __init__(
        self,
        experts: tuple[WanTransformer, WanTransformer | None],
        sigmas: Tensor,
        timesteps: Tensor,
        boundary: float | None,
        image: ImageConditioning | None,
        per_token: bool,
    ) -> None:
        self.experts, self.sigmas, self.timesteps = experts, sigmas, timesteps
        self.boundary, self.image, self.per_token = boundary, image, per_token

    def expert(self, t: Tensor) -> WanTransformer:
        high, low = self.experts
        if self.boundary is None or low is None:
            return high
        return high if float(t.reshape(-1)[0]) >= self.boundary * 1000 else low

    def __call__(
        self,
        x: Tensor,
        sigma: Tensor,
        context: Tensor,
        context_mask: Tensor | None = None,
        clip_fea: Tensor | None = None,
        y: Tensor | None = None,
    ) -> Tensor:
        t = timesteps_on_grid(sigma, self.sigmas, self.timesteps)
        model = self.expert(t)
        dtype = next(model.parameters()).dtype
        if context_mask is not None:
            # umT5 states past the prompt are zeros in Wan (diffusers _get_t5_prompt_embeds), attended
            # without a mask.
            context = context * context_mask[..., None].to(context.dtype)
        if self.image is not None and self.image.mask is not None:
            x = self.image.mix(x)
            if self.per_token:
                # TI2V: the given first frame's tokens get timestep 0 (Wan-Video/Wan2.2 textimage2video.py).
                ph, pw = model.config.patch[1:]
                keep = self.image.mask[:, 0, :, ::ph, ::pw].flatten(1).to(x.device)
                t = t[:, None] * (1 - keep)
        out = model(x.to(dtype), t, context.to(dtype), clip_fea=clip_fea, y=y)
        return out.float()


class WanPipeline(Pipeline):
    """Wan text-to-video / image-to-video; ``vae`` is a :class:`WanLatentVAE` over normalised latents."""

    capabilities = capabilities_of("t2v")

    def __init__(
        self,
        transformer: WanTransformer,
        vae: nn.Module,
        text_encoder: Any,
        config: WanPipelineConfig,
        transformer_2: WanTransformer | None = None,
        image_encoder: Any = None,
    ) -> None:
        self.config = config
        self.capabilities = capabilities_of(config.variant)
        if (transformer_2 is None) != (config.boundary_ratio is None):
            raise ValueError(
                f"variant {config.variant!r}: a 2.2 A14B model needs both experts (transformer = high noise, "
                "transformer_2 = low noise) and a boundary ratio; got "
                f"{'one expert' if transformer_2 is None else 'two experts without a boundary'}"
            )
        needs_clip = transformer.config.image_dim is not None
        if needs_clip and image_encoder is None:
            raise ValueError(
                f"this Wan {config.variant} transformer takes CLIP image tokens (image_dim="
                f"{transformer.config.image_dim}) but no image encoder was given (image_encoder/ folder)"
            )
        dim = getattr(text_encoder, "dim", None)
        if isinstance(dim, int) and dim != transformer.config.text_dim:
            raise ValueError(
                f"text encoder width {dim} does not match the Wan transformer's text_dim="
                f"{transformer.config.text_dim} (released checkpoints take umT5-XXL, width 4096)"
            )
        self.dit, self.transformer_2 = transformer, transformer_2
        self.vae = vae if isinstance(vae, WanLatentVAE) else WanLatentVAE(vae)
        self.text_encoder, self.image_encoder = text_encoder, image_encoder

    @property
    def text_dim(self) -> int:
        return self.dit.config.text_dim

    @property
    def latent_channels(self) -> int:
        return self.dit.config.out_channels

    def latent_rgb(self) -> Any:
        from ..preview import WAN21, WAN22

        factors = {16: WAN21, 48: WAN22}  # Wan 2.1 and Wan 2.2 TI2V-5B latents
        if self.latent_channels not in factors:
            raise NotImplementedError(f"no preview factors for {self.latent_channels}-channel Wan latents")
        return factors[self.latent_channels]

    @property
    def vae_spatial_ratio(self) -> int:
        return self.vae.vae.spatial_ratio

    def components(self) -> dict[str, nn.Module]:
        out = super().components()
        if self.transformer_2 is not None:
            out["transformer_2"] = self.transformer_2
        if self.image_encoder is not None:
            out.update(self.image_encoder.components())
        return out

    def latent_shape(
        self, num_frames: int, height: int, width: int, *, pyramid_stages: int = 1, vae: Any = None
    ) -> tuple[int, int, int, int]:
        shape = super().latent_shape(num_frames, height, width, pyramid_stages=pyramid_stages, vae=vae)
        ph, pw = self.dit.config.patch[1:]
        s = self.vae_spatial_ratio
        for name, value, p in (("height", height, ph), ("width", width, pw)):
            if (value // s) % p:
                step = s * p
                lo = max(step, value // step * step)
                raise ValueError(
                    f"{name}={value} must be a multiple of {step} for this Wan model (e.g. {lo}, {lo + step})"
                )
        return shape

    def _grid(self, options: SamplingOptions) -> tuple[Tensor, Tensor]:
        """(sigmas, the timesteps the transformer gets at them): diffusers' UniPC grid, or an explicit list
        (few-step students, e.g. TurboWan's rCM times) fed as sigma·1000."""
        if options.sigmas is not None:
            sigmas = torch.tensor(options.sigmas, dtype=torch.float32)
            if self.config.bf16_timesteps:
                # TurboDiffusion (inference/wan2.1_t2v_infer.py): (t.float() * 1000) in the bf16 model dtype.
                return sigmas, (sigmas[:-1] * 1000).to(torch.bfloat16).double()
            return sigmas, sigmas[:-1].double() * 1000
        return wan_flow_sigmas(options.steps, options.shift), wan_flow_timesteps(options.steps, options.shift)

    def flow_sigmas(self, steps: int, latent_shape: tuple[int, ...], options: SamplingOptions) -> Tensor:
        return wan_flow_sigmas(steps, options.shift)

    def guidance_schedule(self, options: SamplingOptions) -> Callable[[Tensor], float] | None:
        if self.config.boundary_ratio is None:  # one expert: guidance_2 below guidance_boundary, if set
            return super().guidance_schedule(options)
        low = options.guidance if options.guidance_2 is None else options.guidance_2
        sigmas, timesteps = self._grid(options)
        boundary = self.config.boundary_ratio * 1000

        def scale(sigma: Tensor) -> float:
            t = timesteps_on_grid(sigma.reshape(-1)[:1].cpu(), sigmas, timesteps)
            return options.guidance if float(t[0]) >= boundary else low

        return scale

    def denoiser(
        self,
        options: SamplingOptions,
        latent_shape: tuple[int, ...],
        fps: float | None = None,
        image: ImageConditioning | None = None,
    ) -> Denoiser:
        sigmas, timesteps = self._grid(options)
        return WanDenoiser(
            (self.dit, self.transformer_2),
            sigmas,
            timesteps,
            self.config.boundary_ratio,
            image,
            per_token=self.config.variant == "ti2v",
        )

    def encode_image(
        self,
        image: Tensor,
        last_image: Tensor | None,
        latent_shape: tuple[int, ...],
        generator: torch.Generator,
    ) -> ImageConditioning:
        """As diffusers' WanImageToVideoPipeline.prepare_latents: TI2V holds the image's latent frame; the
        others get ``y`` = [mask 4, latents of (image, zeros..., [last])] and, with CLIP, its tokens."""
        if self.config.variant == "flf2v" and last_image is None:
            raise ValueError(
                "Wan flf2v models are first-last-frame-to-video: pass last_image= as well "
                "(CLI: --last-image LAST.png)"
            )
        b, _, f, h, w = latent_shape
        raw = self.vae.vae
        device, dtype = next(raw.parameters()).device, self.vae.dtype
        if self.config.variant == "ti2v":
            z = self.vae.encode(image.to(device, dtype)).float()  # one latent frame
            held = z.repeat(b, 1, f, 1, 1)
            mask = torch.zeros((b, 1, f, h, w), device=z.device)
            mask[:, :, 0] = 1.0
            return ImageConditioning(latents=held, mask=mask)
        tr = raw.temporal_ratio
        frames = 1 + tr * (f - 1)
        zeros = image.new_zeros(1, 3, frames - (1 if last_image is None else 2), *image.shape[-2:])
        parts = [image, zeros] if last_image is None else [image, zeros, last_image]
        cond = self.vae.encode(torch.cat(parts, dim=2).to(device, dtype)).float().repeat(b, 1, 1, 1, 1)
        given = torch.zeros(b, 1, frames, h, w)
        given[:, :, 0] = 1.0
        if last_image is not None:
            given[:, :, -1] = 1.0
        # Pixel-frame mask -> 4 channels per latent frame: frame 0 repeated tr times, then groups of tr.
        given = torch.cat([given[:, :, :1].repeat(1, 1, tr, 1, 1), given[:, :, 1:]], dim=2)
        mask = given.view(b, -1, tr, h, w).transpose(1, 2).to(cond.device)
        kwargs = {"y": torch.cat([mask, cond], dim=1)}
        if self.image_encoder is not None:
            pics = [image] if last_image is None else [image, last_image]
            frames01 = torch.cat([(p[:, :, 0].permute(0, 2, 3, 1) + 1) / 2 for p in pics])
            clip = self.image_encoder.encode(frames01.clamp(0, 1))
            kwargs["clip_fea"] = clip.reshape(1, -1, clip.shape[-1]).repeat(b, 1, 1)
        return ImageConditioning(model_kwargs=kwargs)
