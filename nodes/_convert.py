"""Type conversions between ComfyUI values (IMAGE, LATENT, CONDITIONING) and vidcore tensors/dataclasses.

Only layout and container changes live here; every formula stays in vidcore.
"""

from __future__ import annotations

from typing import Any

import torch
from einops import rearrange
from torch import Tensor

from vidcore.io.frames import check_frames, frames_to_video, video_to_frames
from vidcore.pipelines import TextConditioning


def check_image(images: Any, name: str = "images", min_frames: int = 1) -> Tensor:
    """A ComfyUI IMAGE ``[T, H, W, 3]`` float in 0..1 (the frames of one video)."""
    return check_frames(images, name, min_frames=min_frames)


def image_to_video(images: Tensor, device: torch.device, dtype: torch.dtype) -> Tensor:
    """IMAGE ``[T, H, W, 3]`` 0..1 -> vidcore video ``[1, 3, T, H, W]`` in -1..1."""
    return frames_to_video(check_image(images)).to(device, dtype)


def video_to_image(video: Tensor, device: torch.device) -> Tensor:
    """vidcore video ``[B, 3, T, H, W]`` -> IMAGE; B videos end to end ``[B*T, H, W, 3]``."""
    frames = video_to_frames(video)  # [B, T, H, W, 3], clamped to 0..1
    return rearrange(frames, "b t h w c -> (b t) h w c").to(device)


def image_to_frames_first(images: Tensor) -> Tensor:
    """IMAGE ``[T, H, W, 3]`` -> ``[1, 3, T, H, W]`` in 0..1 (the layout of vidcore.flow losses)."""
    return rearrange(check_image(images), "t h w c -> 1 c t h w").float()


def make_latent(samples: Tensor) -> dict[str, Tensor]:
    return {"samples": samples}


def latent_samples(latent: Any, name: str = "latent") -> Tensor:
    """The ``[B, C, T', H', W']`` tensor of a LATENT dict; refuses features we do not support."""
    if not isinstance(latent, dict) or not isinstance(latent.get("samples"), Tensor):
        raise TypeError(f"{name} must be a LATENT dict with a 'samples' tensor, got {type(latent).__name__}")
    samples = latent["samples"]
    if samples.ndim != 5:
        raise ValueError(
            f"{name}['samples'] has shape {tuple(samples.shape)}; VidCore needs video latents "
            "[B, C, T, H, W] (image latents [B, C, H, W] come from image models)"
        )
    if latent.get("noise_mask") is not None:
        raise ValueError(f"{name} carries a noise_mask; VidCore samplers do not support masked sampling yet")
    return samples


def to_conditioning(cond: TextConditioning) -> list:
    """vidcore TextConditioning -> ComfyUI CONDITIONING ``[[emb, {"attention_mask", "pooled_output"}]]``."""
    extras: dict[str, Tensor] = {"attention_mask": cond.mask}
    if cond.pooled is not None:
        extras["pooled_output"] = cond.pooled
    return [[cond.embeddings, extras]]


def from_conditioning(
    conditioning: Any,
    name: str,
    text_dim: int,
    needs_pooled: bool,
    batch: int,
    device: torch.device,
    dtype: torch.dtype,
) -> TextConditioning:
    """ComfyUI CONDITIONING (ours or a core text encoder's, one entry) -> TextConditioning for the DiT."""
    if not isinstance(conditioning, list) or not conditioning:
        raise TypeError(
            f"{name} must be a CONDITIONING list [[embeddings, {{...}}]], got {conditioning!r:.60}"
        )
    if len(conditioning) != 1:
        raise ValueError(
            f"{name} holds {len(conditioning)} conditioning entries (combined/area conditioning); "
            "VidCore samplers take exactly one"
        )
    entry = conditioning[0]
    if not (isinstance(entry, (list, tuple)) and len(entry) == 2 and isinstance(entry[0], Tensor)):
        raise TypeError(f"{name}[0] must be [embeddings tensor, dict]")
    emb, extras = entry[0], entry[1] or {}
    if emb.ndim != 3:
        raise ValueError(f"{name} embeddings must be [B, L, D], got shape {tuple(emb.shape)}")
    if emb.shape[-1] != text_dim:
        raise ValueError(
            f"{name} embeddings have width D={emb.shape[-1]} but the model expects text_dim={text_dim}; "
            "use the text encoder that came with the model"
        )
    mask = extras.get("attention_mask")
    if mask is None:
        mask = torch.ones(emb.shape[:2], dtype=torch.bool)
    mask = mask.reshape(mask.shape[0], -1)
    if mask.shape != emb.shape[:2]:
        raise ValueError(
            f"{name} attention_mask {tuple(mask.shape)} does not match embeddings {tuple(emb.shape)}"
        )
    pooled = extras.get("pooled_output") if needs_pooled else None
    if needs_pooled and pooled is None:
        raise ValueError(
            f"{name} has no pooled_output, but this model is conditioned on the pooled text vector"
        )
    if emb.shape[0] not in (1, batch):
        raise ValueError(
            f"{name} has batch {emb.shape[0]} but the latent has batch {batch} (use 1 or {batch})"
        )

    def fit(t: Tensor) -> Tensor:
        return t.expand(batch, *t.shape[1:]) if t.shape[0] == 1 and batch > 1 else t

    return TextConditioning(
        fit(emb).to(device, dtype),
        fit(mask.bool()).to(device),
        None if pooled is None else fit(pooled.reshape(pooled.shape[0], -1)).to(device, dtype),
    )


def pad_pair(
    a: TextConditioning, b: TextConditioning | None
) -> tuple[TextConditioning, TextConditioning | None]:
    """Pad the shorter of two conditionings with masked-out zero tokens to a common length L.

    Masked tokens are ignored by the DiT's attention, so the result is unchanged, but CFG can then run the
    conditional and unconditional branch as one batch (vidcore.sampling.CFGDenoiser) instead of two.
    """
    if b is None or a.embeddings.shape[1] == b.embeddings.shape[1]:
        return a, b
    length = max(a.embeddings.shape[1], b.embeddings.shape[1])

    def pad(c: TextConditioning) -> TextConditioning:
        extra = length - c.embeddings.shape[1]
        if extra == 0:
            return c
        emb = torch.nn.functional.pad(c.embeddings, (0, 0, 0, extra))
        mask = torch.nn.functional.pad(c.mask, (0, extra), value=False)
        return TextConditioning(emb, mask, c.pooled)

    return pad(a), pad(b)
