"""vidcore's own family: a :class:`SpacetimeDiT` + :class:`CausalVAE3D` + a text encoder, from a model folder
(``pipeline.json`` + ``dit.safetensors`` + ``vae.safetensors``) or a built-in name such as ``"tiny"``."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..config import ConfigMixin, check_choice, check_positive_int, config_from_file
from ..models.dit import SpacetimeDiT
from ..models.vae import CausalVAE3D
from ..sampling import SAMPLERS, SCHEDULES, as_velocity_denoiser, check_sigma_list
from ..sampling.flow import Denoiser
from .base import Capabilities, ImageConditioning, Pipeline, SamplingOptions
from .options import check_option, check_stage_range
from .registry import Family, Parts

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
PIPELINE_FILE = "pipeline.json"
CAPABILITIES = Capabilities(
    family="vidcore",
    image_hint="image-to-video needs an LTX-Video or a Wan I2V / FLF2V / TI2V checkpoint",
    schedules=tuple(SCHEDULES),
    samplers=tuple(SAMPLERS),
    video_to_video=True,
    tiling=True,
)


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
    # A scale that steps down at low noise: guidance_2 at noise levels below guidance_boundary (None: off).
    guidance_2: float | None = None
    guidance_boundary: float | None = None
    guidance_rescale: float = 0.0
    shift: float = 1.0
    sampler: str = "euler"
    schedule: str = "flow"
    pyramid_stages: int = 3
    pyramid_stage_range: tuple[float, ...] | None = None  # None: even stages
    fps: float = 8.0
    # Distilled students: their own noise-level lists (one per trained step count; `steps` picks one) and
    # whether CFG was distilled in (then guidance 1 is as trained, and more is warned about).
    step_sigmas: tuple[tuple[float, ...], ...] = ()
    guidance_distilled: bool = False

    def __post_init__(self) -> None:
        check_choice("PipelineConfig.schedule", self.schedule, tuple(SCHEDULES))
        check_choice("PipelineConfig.sampler", self.sampler, tuple(SAMPLERS))
        for name in ("num_frames", "height", "width", "steps", "pyramid_stages"):
            check_positive_int(f"PipelineConfig.{name}", getattr(self, name))
        if not (math.isfinite(self.guidance) and self.guidance >= 1.0):
            raise ValueError(f"PipelineConfig.guidance={self.guidance!r} must be >= 1 (1 = no guidance)")
        if not 0.0 <= self.guidance_rescale <= 1.0:
            raise ValueError(f"PipelineConfig.guidance_rescale={self.guidance_rescale!r} must be in [0, 1]")
        for name in ("guidance_2", "guidance_boundary"):
            object.__setattr__(self, name, check_option(name, getattr(self, name)))
        if (self.guidance_2 is None) != (self.guidance_boundary is None):
            raise ValueError(
                f"PipelineConfig.guidance_2={self.guidance_2!r} and guidance_boundary="
                f"{self.guidance_boundary!r} go together (the scale below the boundary; both or neither)"
            )
        if self.pyramid_stage_range is not None:
            rng = check_stage_range(self.pyramid_stage_range, "PipelineConfig.pyramid_stage_range")
            if len(rng) != self.pyramid_stages + 1:
                raise ValueError(
                    f"PipelineConfig.pyramid_stage_range={list(rng)} needs pyramid_stages + 1 = "
                    f"{self.pyramid_stages + 1} values"
                )
            object.__setattr__(self, "pyramid_stage_range", rng)
        lists = tuple(check_sigma_list(v, "PipelineConfig.step_sigmas entry") for v in self.step_sigmas)
        object.__setattr__(self, "step_sigmas", lists)
        if not isinstance(self.guidance_distilled, bool):
            raise ValueError(
                f"PipelineConfig.guidance_distilled={self.guidance_distilled!r} must be true or false"
            )
        for name in ("shift", "fps"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"PipelineConfig.{name}={value!r} must be a finite number > 0")


def builtin_models() -> dict[str, Path]:
    """Models of this family shipped inside the package: name -> folder under ``vidcore/weights``."""
    if not WEIGHTS_DIR.is_dir():
        return {}
    return {p.name: p for p in sorted(WEIGHTS_DIR.iterdir()) if is_model_folder(p)}


def declared_denoiser(folder: Path) -> str | None:
    """The ``"denoiser"`` a model folder's ``pipeline.json`` names (another family's network, e.g. "unet3d"),
    or None: none named (a DiT folder) or the file unreadable (the loader reports it)."""
    try:
        data = json.loads((Path(folder) / PIPELINE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return str(data["denoiser"]) if isinstance(data, dict) and "denoiser" in data else None


def grid_multiple(denoiser: nn.Module) -> tuple[int, int]:
    """(latent frames, latent height / width) a denoiser's input must be multiples of: a DiT's patch
    size, else what the network declares as ``grid_multiple`` (e.g. a U-Net's total downsampling)."""
    if isinstance(denoiser, SpacetimeDiT):
        return denoiser.config.patch_t, denoiser.config.patch_s
    return denoiser.grid_multiple


def check_generation_size(
    vae: CausalVAE3D, dit: nn.Module, num_frames: int, height: int, width: int, pyramid_levels: int = 1
) -> tuple[int, int, int, int]:
    """Latent ``(C, T', H', W')`` of a clip; raises naming the combined rule of the VAE, the denoiser's grid
    and the pyramid stages, with examples that satisfy all of them."""
    p_t, p_s = grid_multiple(dit)
    r, s = vae.config.temporal_compression, vae.config.spatial_compression
    step = s * p_s * 2 ** (pyramid_levels - 1)
    why = f" ({pyramid_levels} pyramid stages)" if pyramid_levels > 1 else ""
    for name, value in (("height", height), ("width", width)):
        whole = isinstance(value, int) and not isinstance(value, bool)
        if not whole or value < step or value % step:
            lo = max(step, value // step * step) if whole else step
            near = sorted({lo, lo + step}) if lo != value else [lo]
            raise ValueError(
                f"{name}={value!r} must be a multiple of {step} for this model{why} "
                f"(e.g. {', '.join(map(str, near))})"
            )
    # Valid frame counts: 1 + r·(t' - 1) with t' latent frames a multiple of the temporal patch p_t.
    if not isinstance(num_frames, bool) and isinstance(num_frames, int) and num_frames >= 1:
        t = (num_frames - 1) / r + 1
        if t != int(t) or int(t) % p_t:
            k = max(1, int(t // p_t))
            near = [1 + r * (p_t * j - 1) for j in (k, k + 1) if j >= 1]
            rule = f"1 + {r}k" if p_t == 1 else f"1 + {r}·({p_t}k - 1)"
            raise ValueError(
                f"num_frames={num_frames} must be {rule} for this {'VAE' if p_t == 1 else 'model'} "
                f"(e.g. {', '.join(map(str, near))})"
            )
    return vae.latent_shape(num_frames, height, width)


def prediction_denoiser(dit: SpacetimeDiT, full_hw: tuple[int, int] | None = None) -> Denoiser:
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


class VideoPipeline(Pipeline):
    """Text-to-video (and video-to-video) with a :class:`SpacetimeDiT`, a :class:`CausalVAE3D` and a text
    encoder."""

    capabilities = CAPABILITIES

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
    def text_dim(self) -> int:
        return self.dit.config.text_dim

    @property
    def pooled_text(self) -> bool:
        return self.dit.config.pooled_text

    @property
    def latent_channels(self) -> int:
        return self.dit.config.in_channels

    def latent_shape(
        self, num_frames: int, height: int, width: int, *, pyramid_stages: int = 1, vae: Any = None
    ) -> tuple[int, int, int, int]:
        vae = self.vae if vae is None else vae
        if not isinstance(vae, CausalVAE3D):
            raise TypeError(f"vae must be a vidcore CausalVAE3D for this model, got {type(vae).__name__}")
        return check_generation_size(vae, self.dit, num_frames, height, width, pyramid_stages)

    @property
    def vae_spatial_ratio(self) -> int:
        return self.vae.config.spatial_compression

    def latent_rgb(self) -> Any:
        from ..preview import latent_rgb_for_vae

        return latent_rgb_for_vae(self.vae)  # stored for the shipped tiny VAE, else fitted once

    def denoiser(
        self,
        options: SamplingOptions,
        latent_shape: tuple[int, ...],
        fps: float | None = None,
        image: ImageConditioning | None = None,
    ) -> Denoiser:
        full_hw = (latent_shape[-2], latent_shape[-1]) if options.schedule == "pyramidal" else None
        return prediction_denoiser(self.dit, full_hw)


def load_folder(folder: Path, device: torch.device, dtype: torch.dtype | None, parts: Parts) -> VideoPipeline:
    """A vidcore model folder -> :class:`VideoPipeline` (the text encoder is the one its config names)."""
    from ..text import load_text_encoder

    config = config_from_file(PipelineConfig, Path(folder) / PIPELINE_FILE)
    # Weights may be stored in half precision (tiny-turbo); unless a dtype is asked for they run in float32.
    dtype = dtype if dtype is not None else torch.float32
    dit = SpacetimeDiT.from_checkpoint(folder / "dit.safetensors", device=device, dtype=dtype)
    vae = CausalVAE3D.from_checkpoint(folder / "vae.safetensors", device=device, dtype=dtype)
    return VideoPipeline(dit, vae, load_text_encoder(config.text_encoder, device=device), config)


def is_model_folder(path: Path) -> bool:
    # A folder whose pipeline.json names another denoiser belongs to that family (vidcore.pipelines.unet).
    return path.is_dir() and (path / PIPELINE_FILE).is_file() and declared_denoiser(path) is None


def explain(path: Path) -> str | None:
    if not path.is_dir():
        return None
    return (
        f"{str(path)!r} is not a vidcore model folder (it needs {PIPELINE_FILE}, dit.safetensors and "
        "vae.safetensors)"
    )


FAMILY = Family(
    name="vidcore",
    capabilities=CAPABILITIES,
    describe=f"a folder with {PIPELINE_FILE}, dit.safetensors and vae.safetensors",
    detect=is_model_folder,
    load=load_folder,
    explain=explain,
    builtins=builtin_models,
    folders=("vidcore", "diffusion_models"),
)
