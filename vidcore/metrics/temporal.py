"""Pure per-video metrics: TCS (and VBench's variant), flicker, warp error, dynamic degree, PSNR, SSIM.

Frames use the public layout ``[T, H, W, 3]`` float in 0..1; features are ``[T, D]`` (or ``[B, T, D]``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from vidcore.flow.estimate import DEFAULT_METHOD, estimate_flow, gaussian_blur
from vidcore.flow.losses import warp_residual
from vidcore.io.frames import check_frames


def _check_features(features: Tensor) -> Tensor:
    if not isinstance(features, Tensor):
        raise TypeError(f"features must be a torch.Tensor [T, D] or [B, T, D], got {type(features).__name__}")
    if features.ndim not in (2, 3):
        raise ValueError(f"features must be [T, D] or [B, T, D], got shape {tuple(features.shape)}")
    if features.shape[-2] < 2:
        raise ValueError(
            f"features hold T={features.shape[-2]} frame(s); temporal consistency needs at least 2"
        )
    if not bool(torch.isfinite(features).all()):
        raise ValueError("features hold NaN or infinite values; per-frame features must be finite")
    return features.to(torch.float64)


def adjacent_cosine(features: Tensor) -> Tensor:
    """Cosine similarity of consecutive frame features: ``[T-1]`` (or ``[B, T-1]``), float64."""
    f = F.normalize(_check_features(features), dim=-1)
    return (f[..., 1:, :] * f[..., :-1, :]).sum(-1)


def tcs(features: Tensor) -> Tensor:
    """Temporal consistency score: mean cosine similarity of adjacent per-frame features (0-d or ``[B]``)."""
    return adjacent_cosine(features).mean(-1)


def vbench_consistency_per_frame(features: Tensor) -> Tensor:
    """VBench subject/background consistency terms, i >= 1:
    s_i = (max(0, cos(f_{i-1}, f_i)) + max(0, cos(f_0, f_i))) / 2."""
    f = F.normalize(_check_features(features), dim=-1)
    prev = (f[..., 1:, :] * f[..., :-1, :]).sum(-1).clamp_min(0)
    first = (f[..., 1:, :] * f[..., :1, :]).sum(-1).clamp_min(0)
    return (prev + first) / 2


def tcs_vbench(features: Tensor) -> Tensor:
    """VBench-style consistency of one video: mean of s_i, i >= 1 (per video; VBench then frame-weights)."""
    return vbench_consistency_per_frame(features).mean(-1)


def flicker_per_pair(frames: Tensor, quantize: bool = True) -> Tensor:
    """Mean absolute difference of consecutive frames in grey levels (0..255): ``[T-1]`` float64."""
    check_frames(frames, min_frames=2)
    x = frames.to(torch.float64) * 255
    if quantize:
        x = x.round()  # VBench reads 8-bit frames with cv2
    return (x[1:] - x[:-1]).abs().mean(dim=(1, 2, 3))


def flicker(frames: Tensor, quantize: bool = True) -> float:
    """VBench temporal_flickering of one video: ``(255 - mean_t MAE_t) / 255`` (1 = no change at all)."""
    return float((255 - flicker_per_pair(frames, quantize).mean()) / 255)


def video_flows(frames: Tensor, method: str = DEFAULT_METHOD, backward: bool = False) -> Tensor:
    """Flow between consecutive frames, ``[T-1, 2, H, W]`` (t -> t+1, or t+1 -> t with ``backward``)."""
    check_frames(frames, min_frames=2)
    x = rearrange(frames, "t h w c -> t c h w")
    a, b = (x[1:], x[:-1]) if backward else (x[:-1], x[1:])
    return estimate_flow(a, b, method=method)


def warp_error_per_pair(
    frames: Tensor,
    flows: Tensor | None = None,
    flows_back: Tensor | None = None,
    method: str = DEFAULT_METHOD,
) -> Tensor:
    """Warping error (Lai et al. 2018) per pair: masked mean ``||x_t - warp(x_{t+1}, F_t)||^2``, ``[T-1]``.

    Flows are estimated with ``method`` when not given; occluded pixels (forward-backward check) and
    matches leaving the frame are excluded. Frames in 0..1, so the value is in (0..1 units)^2.
    """
    check_frames(frames, min_frames=2)
    t, h, w, _ = frames.shape
    for name, f in (("flows", flows), ("flows_back", flows_back)):
        if f is not None and tuple(f.shape) != (t - 1, 2, h, w):
            raise ValueError(
                f"{name} must have shape {(t - 1, 2, h, w)} ([T-1, 2, H, W]), got {tuple(f.shape)}"
            )
    if flows is None:
        flows = video_flows(frames, method)
    if flows_back is None:
        flows_back = video_flows(frames, method, backward=True)
    x = rearrange(frames.to(torch.float32), "t h w c -> t c h w")
    total, count = warp_residual(x[:-1], x[1:], flows.to(torch.float32), flows_back.to(torch.float32))
    # A pair with no valid pixel (all occluded or leaving the frame) has no warp error: NaN, not 0 (best).
    per_pair = total.to(torch.float64) / count.to(torch.float64)
    return torch.where(count > 0, per_pair, torch.full_like(per_pair, float("nan")))


def warp_error(
    frames: Tensor,
    flows: Tensor | None = None,
    flows_back: Tensor | None = None,
    method: str = DEFAULT_METHOD,
) -> float:
    """Mean warping error over the consecutive pairs that have valid pixels (lower = more temporally
    consistent); NaN when no pair has any."""
    return float(warp_error_per_pair(frames, flows, flows_back, method).nanmean())


def flow_motion_scores(flows: Tensor, top_fraction: float = 0.05) -> Tensor:
    """Per-pair motion score: mean of the top ``top_fraction`` flow magnitudes (VBench), ``[P]``."""
    if flows.ndim != 4 or flows.shape[1] != 2:
        raise ValueError(f"flows must be [P, 2, H, W], got shape {tuple(flows.shape)}")
    if not 0 < top_fraction <= 1:
        raise ValueError(f"top_fraction={top_fraction} must be in (0, 1]")
    mag = flows.to(torch.float64).square().sum(1).sqrt().flatten(1)
    k = max(1, int(mag.shape[1] * top_fraction))
    return mag.topk(k, dim=1).values.mean(1)


def is_dynamic(scores: Tensor, height: int, width: int, fps: float | None = None) -> bool:
    """VBench's rule: dynamic iff #{pairs with score > 6 min(H, W)/256 * max(1, 8/fps)} >= round(4 T / 16).

    ``scores`` holds one value per pair; T is taken as the frame count, ``len(scores) + 1``.
    """
    factor = 1.0 if fps is None else max(1.0, 8.0 / fps)
    thres = factor * 6 * min(height, width) / 256
    needed = round(4 * (scores.numel() + 1) / 16)
    return int((scores > thres).sum()) >= needed


def dynamic_degree(frames: Tensor, method: str = DEFAULT_METHOD) -> float:
    """Mean over consecutive pairs of the top-5 % flow magnitude (px); our flow replaces VBench's RAFT."""
    return float(flow_motion_scores(video_flows(frames, method)).mean())


def _check_pair(a: Tensor, b: Tensor) -> None:
    check_frames(a, "a")
    check_frames(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"a {tuple(a.shape)} and b {tuple(b.shape)} must have the same [T, H, W, 3] shape")


def psnr_per_frame(a: Tensor, b: Tensor, data_range: float = 1.0) -> Tensor:
    """PSNR per frame ``10 log10(R^2 / MSE)`` in dB, ``[T]`` float64 (inf for identical frames)."""
    _check_pair(a, b)
    mse = (a.to(torch.float64) - b.to(torch.float64)).square().mean(dim=(1, 2, 3))
    return 10 * torch.log10(data_range**2 / mse)


def psnr(a: Tensor, b: Tensor, data_range: float = 1.0) -> float:
    """Mean per-frame PSNR (dB) between two videos ``[T, H, W, 3]`` in 0..1."""
    return float(psnr_per_frame(a, b, data_range).mean())


def ssim_per_frame(a: Tensor, b: Tensor, data_range: float = 1.0, sigma: float = 1.5) -> Tensor:
    """SSIM per frame (Wang et al. 2004): Gaussian window sigma 1.5, K1 0.01, K2 0.03, per channel, ``[T]``.

    Statistics use replicate padding at the borders and are averaged over pixels and channels.
    """
    _check_pair(a, b)
    x = rearrange(a.to(torch.float64), "t h w c -> t c h w")
    y = rearrange(b.to(torch.float64), "t h w c -> t c h w")
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = gaussian_blur(x, sigma), gaussian_blur(y, sigma)
    sxx = gaussian_blur(x * x, sigma) - mx * mx
    syy = gaussian_blur(y * y, sigma) - my * my
    sxy = gaussian_blur(x * y, sigma) - mx * my
    ssim_map = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return ssim_map.mean(dim=(1, 2, 3))


def ssim(a: Tensor, b: Tensor, data_range: float = 1.0) -> float:
    """Mean per-frame SSIM between two videos ``[T, H, W, 3]`` in 0..1."""
    return float(ssim_per_frame(a, b, data_range).mean())
