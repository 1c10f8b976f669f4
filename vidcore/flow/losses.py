"""Flow-based losses: the temporal warp loss over a video and the multi-scale flow supervision loss."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from vidcore.flow.warping import check_flow, occlusion_mask, warp_with_mask


def warp_residual(
    x_t: Tensor, x_next: Tensor, flow: Tensor, flow_back: Tensor | None = None, mask: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Per-pair masked ``||x_t - warp(x_next, F)||^2``: -> ``(sum of squares, pixel count)``, each ``[B]``.

    ``x_t``/``x_next`` are ``[B, C, H, W]``, ``flow`` is F_{t->t+1} ``[B, 2, H, W]``. Pixels whose match
    leaves the frame are excluded; with ``flow_back`` (F_{t+1->t}) occluded pixels are excluded too; an
    extra boolean ``mask`` ``[B, 1, H, W]`` (True = use) is combined with both.
    """
    if x_t.ndim != 4 or x_t.shape != x_next.shape:
        raise ValueError(
            f"x_t {tuple(x_t.shape)} and x_next {tuple(x_next.shape)} must be equal [B, C, H, W] shapes"
        )
    check_flow(flow)
    if flow.shape[0] != x_t.shape[0] or flow.shape[2:] != x_t.shape[2:]:
        raise ValueError(
            f"flow {tuple(flow.shape)} does not match frames {tuple(x_t.shape)}: need [B, 2, H, W]"
        )
    warped, valid = warp_with_mask(x_next, flow)
    if flow_back is not None:
        valid = valid & ~occlusion_mask(flow, flow_back)
    if mask is not None:
        if mask.shape != valid.shape or mask.dtype != torch.bool:
            raise ValueError(
                f"mask must be a bool tensor {tuple(valid.shape)}, got {mask.dtype} {tuple(mask.shape)}"
            )
        valid = valid & mask
    weight = valid.to(warped.dtype)
    sq = (x_t.to(warped.dtype) - warped).square().sum(1, keepdim=True)
    return (sq * weight).flatten(1).sum(1), weight.flatten(1).sum(1)


def flow_loss(
    video: Tensor, flows: Tensor, flows_back: Tensor | None = None, mask: Tensor | None = None
) -> Tensor:
    """Temporal warp loss ``mean_t ||x_t - warp(x_{t+1}, F_{t->t+1})||^2`` over a video, occlusion-masked.

    ``video`` is ``[B, C, T, H, W]``; ``flows`` (and optional backward ``flows_back``) are
    ``[B, T-1, 2, H, W]``; optional ``mask`` is bool ``[B, T-1, 1, H, W]`` (True = use). The squared norm
    is summed over channels and averaged over all valid pixels of all pairs. Differentiable in ``video``.
    """
    if not isinstance(video, Tensor) or video.ndim != 5:
        raise ValueError(
            f"video must be [B, C, T, H, W], got {getattr(video, 'shape', type(video).__name__)}"
        )
    b, _, t, h, w = video.shape
    if t < 2:
        raise ValueError(f"video has T={t} frames; the flow loss needs at least 2")
    expected = (b, t - 1, 2, h, w)
    for name, f in (("flows", flows), ("flows_back", flows_back)):
        if f is not None and tuple(f.shape) != expected:
            raise ValueError(f"{name} must have shape {expected} ([B, T-1, 2, H, W]), got {tuple(f.shape)}")
    pairs = rearrange(video[:, :, :-1], "b c t h w -> (b t) c h w")
    nexts = rearrange(video[:, :, 1:], "b c t h w -> (b t) c h w")
    flat = rearrange(flows, "b t two h w -> (b t) two h w")
    back = None if flows_back is None else rearrange(flows_back, "b t two h w -> (b t) two h w")
    m = None if mask is None else rearrange(mask, "b t one h w -> (b t) one h w")
    total, count = warp_residual(pairs, nexts, flat, back, m)
    n = count.sum()
    if n == 0:
        raise ValueError("no valid pixel left after masking: every match is occluded or out of the frame")
    return total.sum() / n


def downsample_flow(flow: Tensor, size: tuple[int, int]) -> Tensor:
    """Area-resample ``[B, 2, H, W]`` flow to ``size`` and rescale it to the new pixel units."""
    check_flow(flow)
    h, w = flow.shape[2:]
    out = F.interpolate(flow, size=size, mode="area")
    scale = torch.tensor([size[1] / w, size[0] / h], device=flow.device, dtype=flow.dtype)
    return out * scale.view(1, 2, 1, 1)


def multiscale_flow_loss(
    predictions: Sequence[Tensor], target: Tensor, weights: Sequence[float] | None = None
) -> Tensor:
    """Multi-scale flow loss ``sum_l lambda_l mean ||f_l - f_gt^(l)||^2`` (FlowNet-style supervision).

    ``predictions`` are ``[B, 2, h_l, w_l]`` flows at any resolutions, in their own pixel units;
    ``f_gt^(l)`` is ``target`` ``[B, 2, H, W]`` area-resampled to level l and rescaled. ``weights``
    (lambda_l, one per prediction) default to 1 each.
    """
    check_flow(target, "target")
    if len(predictions) == 0:
        raise ValueError("predictions is empty: give at least one [B, 2, h, w] flow")
    if weights is None:
        weights = [1.0] * len(predictions)
    if len(weights) != len(predictions):
        raise ValueError(f"weights has {len(weights)} entries but predictions has {len(predictions)}")
    total = target.new_zeros(())
    for level, (pred, lam) in enumerate(zip(predictions, weights, strict=True)):
        check_flow(pred, f"predictions[{level}]")
        if pred.shape[0] != target.shape[0]:
            raise ValueError(f"predictions[{level}] batch {pred.shape[0]} != target batch {target.shape[0]}")
        gt = downsample_flow(target, tuple(pred.shape[2:]))
        total = total + lam * (pred - gt).square().sum(1).mean()
    return total
