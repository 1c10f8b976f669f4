"""vidcore's 3D U-Net family: a :class:`UNet3D` denoiser with the built-in family's VAE, text encoder and
latent layout. A model folder is ``pipeline.json`` naming ``"denoiser": "unet3d"`` + ``unet.safetensors`` +
``vae.safetensors``; everything else (sampling, CFG, pyramidal stages, video-to-video) is
:class:`~vidcore.pipelines.builtin.VideoPipeline`'s."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..config import check_choice, config_from_file
from ..models.unet3d import UNet3D
from ..models.vae import CausalVAE3D
from ..sampling import as_velocity_denoiser
from ..sampling.flow import Denoiser
from . import builtin
from .base import ImageConditioning, SamplingOptions
from .builtin import CAPABILITIES as DIT_CAPABILITIES
from .builtin import PIPELINE_FILE, PipelineConfig, VideoPipeline, declared_denoiser
from .registry import Family, Parts

DENOISER = "unet3d"
WEIGHTS_FILE = "unet.safetensors"
CAPABILITIES = dataclasses.replace(DIT_CAPABILITIES, family="vidcore 3D U-Net")


@dataclass(frozen=True)
class UNetPipelineConfig(PipelineConfig):
    """:class:`PipelineConfig` plus the ``denoiser`` field that marks a U-Net model folder."""

    denoiser: str = DENOISER

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("pipeline.json denoiser", self.denoiser, (DENOISER,))


def unet_denoiser(unet: UNet3D) -> Denoiser:
    """The U-Net as a velocity denoiser ``model(x, sigma, **cond)``; it runs at any latent size its
    ``grid_multiple`` divides, so pyramid stages call it on their own (smaller) latents unchanged."""
    dtype = next(unet.parameters()).dtype

    def model(x: Tensor, sigma: Tensor, **kwargs: Any) -> Tensor:
        # The sampler state stays float32; only the network runs in the model's dtype.
        return unet(x.to(dtype), sigma, **kwargs).to(x.dtype)

    return as_velocity_denoiser(model, unet.config.prediction)


class UNetPipeline(VideoPipeline):
    """Text-to-video (and video-to-video) with a :class:`UNet3D` (held as ``dit``, the contract's name for
    the denoising network; also ``unet``), a :class:`CausalVAE3D` and a text encoder."""

    capabilities = CAPABILITIES

    def __init__(self, unet: UNet3D, vae: CausalVAE3D, text_encoder: Any, config: PipelineConfig) -> None:
        if not isinstance(unet, UNet3D):
            raise TypeError(f"unet must be a UNet3D, got {type(unet).__name__}")
        super().__init__(unet, vae, text_encoder, config)

    @property
    def unet(self) -> UNet3D:
        return self.dit

    def denoiser(
        self,
        options: SamplingOptions,
        latent_shape: tuple[int, ...],
        fps: float | None = None,
        image: ImageConditioning | None = None,
    ) -> Denoiser:
        return unet_denoiser(self.dit)


def load_folder(folder: Path, device: torch.device, dtype: torch.dtype | None, parts: Parts) -> UNetPipeline:
    """A U-Net model folder -> :class:`UNetPipeline` (the text encoder is the one its config names)."""
    from ..text import load_text_encoder

    folder = Path(folder)
    config = config_from_file(UNetPipelineConfig, folder / PIPELINE_FILE)
    for name in (WEIGHTS_FILE, "vae.safetensors"):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{str(folder)!r} is a 3D U-Net model folder but has no {name}")
    unet = UNet3D.from_checkpoint(folder / WEIGHTS_FILE, device=device, dtype=dtype)
    vae = CausalVAE3D.from_checkpoint(folder / "vae.safetensors", device=device, dtype=dtype)
    return UNetPipeline(unet, vae, load_text_encoder(config.text_encoder, device=device), config)


def is_model_folder(path: Path) -> bool:
    """A folder whose pipeline.json names a denoiser: this family's (a misspelt name is refused on load,
    naming the one accepted)."""
    return path.is_dir() and (path / PIPELINE_FILE).is_file() and declared_denoiser(path) is not None


def builtin_models() -> dict[str, Path]:
    """U-Net models shipped inside the package: name -> folder under ``vidcore/weights`` (a shipped ``tiny``
    whose pipeline.json names the U-Net resolves here, not to the DiT family)."""
    weights = builtin.WEIGHTS_DIR
    if not weights.is_dir():
        return {}
    return {p.name: p for p in sorted(weights.iterdir()) if is_model_folder(p)}


FAMILY = Family(
    name="unet3d",
    capabilities=CAPABILITIES,
    describe=f'a folder with {PIPELINE_FILE} ("denoiser": "{DENOISER}"), {WEIGHTS_FILE} and vae.safetensors',
    detect=is_model_folder,
    load=load_folder,
    builtins=builtin_models,
    folders=("vidcore", "diffusion_models"),
)
