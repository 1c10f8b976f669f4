"""What conditions a run besides the sampling options: text embeddings, image conditioning (held latents and
extra denoiser inputs), the seeded initial state, and the VAE handle families give the ComfyUI nodes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..io.frames import check_frames, frames_to_video


@dataclass
class TextConditioning:
    """Text embeddings ``[B, L, D]``, bool mask ``[B, L]`` and pooled sentence vectors ``[B, D]``."""

    embeddings: Tensor
    mask: Tensor
    pooled: Tensor | None = None

    def model_kwargs(self, device: torch.device | None = None) -> dict[str, Tensor]:
        """Denoiser keyword arguments (``context``, ``context_mask`` and ``pooled`` when present)."""
        out = {"context": self.embeddings, "context_mask": self.mask}
        if self.pooled is not None:
            out["pooled"] = self.pooled
        return out if device is None else {k: v.to(device) for k, v in out.items()}


@dataclass
class ImageConditioning:
    """What a family makes of a first (and last) frame image: clean ``latents`` held where ``mask`` is 1
    (``[B, C, T', H', W']`` and ``[B, 1, T', H', W']``, e.g. LTX-Video's first latent frame), and/or
    denoiser keyword arguments shared by both CFG branches (e.g. Wan I2V's CLIP tokens and ``y``)."""

    latents: Tensor | None = None
    mask: Tensor | None = None
    model_kwargs: dict[str, Tensor] = field(default_factory=dict)

    def mix(self, x: Tensor) -> Tensor:
        """``x`` with the given latents put back where the mask is 1 (nothing to do without a mask)."""
        if self.mask is None or self.latents is None:
            return x
        return self.latents.to(x) * self.mask.to(x) + x * (1 - self.mask.to(x))


class LatentVAE:
    """Base of the VAE handles families give the ComfyUI nodes (``pipe.vae``): vidcore's VAE interface over
    a VAE module in the latents the denoiser sees (families normalise them their own way in ``encode`` /
    ``decode``)."""

    def __init__(self, vae: nn.Module) -> None:
        self.vae = vae

    @property
    def config(self) -> Any:
        return self.vae.config

    @property
    def dtype(self) -> torch.dtype:
        return next(self.vae.parameters()).dtype

    def parameters(self) -> Any:
        return self.vae.parameters()

    def components(self) -> dict[str, nn.Module]:
        """The torch modules this handle runs (what a host such as ComfyUI moves and frees)."""
        return {"vae": self.vae}

    def latent_shape(self, num_frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """(C, T', H', W') of the latents of a ``num_frames x height x width`` video; raises if not valid."""
        return self.vae.latent_shape(num_frames, height, width)


@dataclass
class Prepared:
    """Initial state of a run: float32 noise (already mixed with any held image latents), the generator
    the rest of the run draws from, and the image conditioning."""

    noise: Tensor
    generator: torch.Generator
    image: ImageConditioning | None = None


def image_video(image: Tensor, name: str, height: int, width: int) -> Tensor:
    """A conditioning image (frames ``[1, H, W, 3]`` or ``[H, W, 3]`` in 0..1, a ComfyUI IMAGE) as video
    ``[1, 3, 1, H, W]`` in -1..1; its size must be the video's (never resized silently)."""
    if isinstance(image, Tensor) and image.ndim == 3:
        image = image[None]
    frames = check_frames(image, name)
    if frames.shape[0] != 1:
        raise ValueError(f"{name} holds {frames.shape[0]} frames; give one image [1, H, W, 3]")
    if tuple(frames.shape[1:3]) != (height, width):
        raise ValueError(
            f"{name} is {frames.shape[2]}x{frames.shape[1]} (WxH) but the video is {width}x{height}: resize "
            "the image, or generate at its size (unset height/width take the image's size)"
        )
    return frames_to_video(frames)
