"""Fréchet Video Distance (Unterthiner et al. 2018) with the Kinetics-400 I3D logits as features.

Protocol (stated so numbers can be compared): each video's first ``num_frames`` frames (16 by default,
``None`` = all) are stretched to 224x224 with bilinear ``align_corners=False`` resampling without
antialiasing (as cd-fvd; the original TF code uses TF1 legacy bilinear, identical on constant frames),
mapped from 0..1 to [-1, 1], and fed to I3D; the feature is the 400-d logit vector averaged over time.
Covariances divide by N - 1 (TF-GAN / original FVD) unless ``ddof=0`` (StyleGAN-V, cd-fvd).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from vidcore.io.frames import check_frames
from vidcore.metrics.frechet import frechet_distance
from vidcore.metrics.i3d import I3D, MIN_FRAMES, load_i3d

I3D_SIZE = 224


def preprocess_for_i3d(videos: Tensor, num_frames: int | None = 16) -> Tensor:
    """``[N, T, H, W, 3]`` in 0..1 -> ``[N, 3, T', 224, 224]`` in [-1, 1] (first num_frames, stretched)."""
    check_frames(videos, "videos", batched=True)
    t = videos.shape[1]
    if num_frames is not None:
        if num_frames < MIN_FRAMES:
            raise ValueError(f"num_frames={num_frames} must be >= {MIN_FRAMES} for I3D")
        if t < num_frames:
            raise ValueError(f"videos have T={t} frames but num_frames={num_frames} are needed")
        videos = videos[:, :num_frames]
    elif t < MIN_FRAMES:
        raise ValueError(f"videos have T={t} frames; I3D needs at least {MIN_FRAMES}")
    n, t = videos.shape[:2]
    frames = rearrange(videos.to(torch.float32), "n t h w c -> (n t) c h w")
    if frames.shape[-2:] != (I3D_SIZE, I3D_SIZE):
        frames = F.interpolate(frames, size=(I3D_SIZE, I3D_SIZE), mode="bilinear", align_corners=False)
    frames = (frames * 2 - 1).clamp(-1, 1)
    return rearrange(frames, "(n t) c h w -> n c t h w", n=n)


@torch.no_grad()
def i3d_features(
    videos: Tensor, model: I3D | None = None, num_frames: int | None = 16, batch_size: int = 4
) -> Tensor:
    """I3D Kinetics-400 logits ``[N, 400]`` (float32, CPU) for videos ``[N, T, H, W, 3]`` in 0..1."""
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1")
    model = model if model is not None else load_i3d()
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    out = []
    for start in range(0, videos.shape[0], batch_size):
        chunk = preprocess_for_i3d(videos[start : start + batch_size], num_frames)
        out.append(model(chunk.to(device=device, dtype=dtype)).float().cpu())
    return torch.cat(out)


def fvd_from_features(features_a: Tensor, features_b: Tensor, ddof: int = 1, method: str = "auto") -> float:
    """FVD from precomputed I3D features ``[N, 400]``: the Fréchet distance of their Gaussian fits."""
    return frechet_distance(features_a, features_b, ddof=ddof, method=method)


def fvd(
    videos_a: Tensor,
    videos_b: Tensor,
    model: I3D | None = None,
    num_frames: int | None = 16,
    ddof: int = 1,
    batch_size: int = 4,
) -> float:
    """FVD between two sets of videos ``[N, T, H, W, 3]`` in 0..1 (>= 2 videos each; N >= 400 is sound)."""
    for name, v in (("videos_a", videos_a), ("videos_b", videos_b)):
        check_frames(v, name, batched=True)
        if v.shape[0] < 2:
            raise ValueError(f"{name} holds N={v.shape[0]} video(s); FVD needs at least 2 per set")
    model = model if model is not None else load_i3d()
    fa = i3d_features(videos_a, model, num_frames, batch_size)
    fb = i3d_features(videos_b, model, num_frames, batch_size)
    return fvd_from_features(fa, fb, ddof=ddof)
