"""The two tensor layouts at vidcore's edges, checked one way: frames ``[T, H, W, 3]`` float in 0..1 (the
public API, ComfyUI's IMAGE) and videos ``[B, 3, T, H, W]`` in -1..1 (inside vidcore), and the conversions.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

# Values this far outside [0, 1] are rounding noise (e.g. bf16 decodes, resampling) and accepted;
# anything further is an error, never a silent clamp.
RANGE_EPS = 1e-3


def _layout(batched: bool) -> str:
    return "[B, T, H, W, 3]" if batched else "[T, H, W, 3]"


def check_frames(
    frames: Any,
    name: str = "frames",
    *,
    min_frames: int = 1,
    batched: bool = False,
    allow_uint8: bool = False,
) -> Tensor:
    """Return ``frames`` if it is a float ``[T, H, W, 3]`` tensor in 0..1; else raise, naming ``name``.

    ``batched=True`` expects ``[B, T, H, W, 3]``. ``min_frames`` bounds T. Values may stray
    ``RANGE_EPS`` outside 0..1; NaN and inf are refused. ``allow_uint8`` also accepts uint8 frames
    (0..255, every value valid).
    """
    layout = _layout(batched)
    if not isinstance(frames, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor {layout}, got {type(frames).__name__}")
    shape = tuple(frames.shape)
    if frames.ndim != (5 if batched else 4) or shape[-1] != 3:
        raise ValueError(f"{name} must have the layout {layout} (RGB last), got shape {shape}")
    t, h, w = shape[-4:-1]
    if t < min_frames:
        count = "zero frames" if t == 0 else f"T={t} frame(s)"
        need = "at least one frame is" if min_frames == 1 else f"at least {min_frames} frames are"
        raise ValueError(f"{name} has {count}; {need} needed")
    if h < 1 or w < 1 or (batched and shape[0] < 1):
        raise ValueError(f"{name} must hold at least one 1x1 frame, got shape {shape}")
    if allow_uint8 and frames.dtype == torch.uint8:
        return frames
    if not frames.is_floating_point():
        kinds = "floating point in 0..1" + (" or uint8" if allow_uint8 else "")
        raise TypeError(f"{name} must be {kinds}, got dtype {frames.dtype}")
    if frames.device.type == "meta":
        return frames
    finite = torch.isfinite(frames)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise ValueError(
            f"{name} contain NaN or infinite values ({bad} of {frames.numel()}); expected floats in 0..1"
        )
    lo, hi = (float(v) for v in frames.aminmax())
    if lo < -RANGE_EPS or hi > 1 + RANGE_EPS:
        raise ValueError(
            f"{name} values span min {lo:.4g} and max {hi:.4g}; expected 0..1 (tolerance {RANGE_EPS}): "
            "convert from [-1, 1] with (x + 1) / 2 or clamp explicitly"
        )
    return frames


def check_video(video: Any, name: str = "video") -> Tensor:
    """Return ``video`` unchanged if it is a float ``[B, 3, T, H, W]`` tensor with B, T, H, W >= 1.

    Values are not bounded here: decoders overshoot -1..1 (:func:`video_to_frames` clamps), and a VAE
    bounds what it encodes itself.
    """
    if not isinstance(video, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor [B, 3, T, H, W], got {type(video).__name__}")
    shape = tuple(video.shape)
    if video.ndim != 5 or shape[1] != 3 or min(shape) < 1:
        raise ValueError(f"{name} shape={shape} must be [B, 3, T, H, W] with B, T, H, W >= 1")
    if not video.is_floating_point():
        raise TypeError(f"{name} dtype={video.dtype} must be floating point (values in -1..1)")
    return video


def frames_to_video(frames: Tensor) -> Tensor:
    """Frames ``[T, H, W, 3]`` (or ``[B, T, H, W, 3]``) in 0..1 -> video ``[B, 3, T, H, W]`` in -1..1."""
    if not isinstance(frames, Tensor):
        raise TypeError(f"frames must be a torch.Tensor [T, H, W, 3], got {type(frames).__name__}")
    if frames.ndim == 4:
        frames = frames[None]
    if frames.ndim != 5 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be [T, H, W, 3] or [B, T, H, W, 3], got {tuple(frames.shape)}")
    check_frames(frames, batched=True)
    return frames.permute(0, 4, 1, 2, 3) * 2 - 1  # [B, T, H, W, 3] -> [B, 3, T, H, W]


def video_to_frames(video: Tensor) -> Tensor:
    """Video ``[B, 3, T, H, W]`` in -1..1 -> frames ``[B, T, H, W, 3]`` float32 in 0..1, clamped."""
    check_video(video)
    # Clamped, not checked: VAE decodes overshoot -1..1 a little.
    return ((video.float() + 1) / 2).clamp(0, 1).permute(0, 2, 3, 4, 1).contiguous()
