"""Backward warping by a flow field, forward-backward occlusion masks and flow-field helpers.

Convention (OpenCV's, as in ``cv2.calcOpticalFlowFarneback``): a flow ``F`` of shape ``[..., 2, H, W]``
lives on frame a's grid, channel 0 is x (right), channel 1 is y (down), and ``a(p) ≈ b(p + F(p))`` -- so
``warp(b, F) ≈ a``.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor


def check_flow(flow: Tensor, name: str = "flow") -> None:
    """Raise unless ``flow`` is a floating tensor shaped ``[B, 2, H, W]``."""
    if not isinstance(flow, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(flow).__name__}")
    if flow.ndim != 4 or flow.shape[1] != 2:
        raise ValueError(f"{name} must have shape [B, 2, H, W], got {tuple(flow.shape)}")
    if not flow.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor, got dtype {flow.dtype}")
    if not bool(torch.isfinite(flow).all()):
        raise ValueError(f"{name} holds NaN or infinite values; a flow field must be finite")


def pixel_grid(height: int, width: int, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Pixel-centre coordinates ``(x, y)``, each ``[H, W]``, in pixel units (0 .. W-1, 0 .. H-1)."""
    ys = torch.arange(height, device=device, dtype=dtype)
    xs = torch.arange(width, device=device, dtype=dtype)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return gx, gy


def warp_with_mask(b: Tensor, flow: Tensor) -> tuple[Tensor, Tensor]:
    """Bilinear backward warp ``out(p) = b(p + flow(p))`` and its validity mask (sample inside the frame).

    Implemented with explicit gathers in pixel units rather than ``grid_sample`` so that integer flows
    reproduce shifted pixels exactly (no normalised-coordinate round trip). Samples outside the frame
    take the border value and are marked invalid in the boolean mask ``[B, 1, H, W]``.
    """
    if not isinstance(b, Tensor) or b.ndim != 4:
        raise ValueError(f"b must be a tensor [B, C, H, W], got {getattr(b, 'shape', type(b).__name__)}")
    if b.is_floating_point() and not bool(torch.isfinite(b).all()):
        raise ValueError("b holds NaN or infinite values; the frames to warp must be finite")
    check_flow(flow)
    bsz, _, height, width = b.shape
    if flow.shape[0] != bsz or flow.shape[2:] != b.shape[2:]:
        raise ValueError(
            f"flow shape {tuple(flow.shape)} does not match b shape {tuple(b.shape)}: need [B, 2, H, W]"
        )
    dtype = torch.promote_types(b.dtype, flow.dtype)
    gx, gy = pixel_grid(height, width, flow.device, dtype)
    x = gx + flow[:, 0].to(dtype)
    y = gy + flow[:, 1].to(dtype)
    valid = (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)
    x0 = torch.floor(x)
    y0 = torch.floor(y)
    fx = (x - x0).unsqueeze(1)
    fy = (y - y0).unsqueeze(1)
    x0 = x0.long()
    y0 = y0.long()
    x0c, x1c = x0.clamp(0, width - 1), (x0 + 1).clamp(0, width - 1)
    y0c, y1c = y0.clamp(0, height - 1), (y0 + 1).clamp(0, height - 1)
    flat = rearrange(b.to(dtype), "b c h w -> b c (h w)")

    def gather(yi: Tensor, xi: Tensor) -> Tensor:
        idx = rearrange(yi * width + xi, "b h w -> b 1 (h w)").expand(-1, flat.shape[1], -1)
        return rearrange(flat.gather(2, idx), "b c (h w) -> b c h w", h=height)

    top = gather(y0c, x0c) * (1 - fx) + gather(y0c, x1c) * fx
    bottom = gather(y1c, x0c) * (1 - fx) + gather(y1c, x1c) * fx
    out = top * (1 - fy) + bottom * fy
    return out, valid.unsqueeze(1)


def warp(b: Tensor, flow: Tensor) -> Tensor:
    """Bilinear backward warp ``out(p) = b(p + flow(p))`` (``≈ a`` for ``flow = estimate_flow(a, b)``)."""
    return warp_with_mask(b, flow)[0]


def occlusion_mask(flow_fw: Tensor, flow_bw: Tensor, alpha1: float = 0.01, alpha2: float = 0.5) -> Tensor:
    """Forward-backward consistency check (Sundaram et al. 2010): True where a's pixel has no match in b.

    ``flow_fw`` is a->b on a's grid and ``flow_bw`` is b->a on b's grid. A pixel is occluded when
    ``|F_fw + F_bw(p + F_fw)|^2 > alpha1 (|F_fw|^2 + |F_bw(p + F_fw)|^2) + alpha2`` or when
    ``p + F_fw(p)`` leaves the frame. Returns a bool mask ``[B, 1, H, W]``.
    """
    check_flow(flow_fw, "flow_fw")
    check_flow(flow_bw, "flow_bw")
    if flow_fw.shape != flow_bw.shape:
        raise ValueError(f"flow_fw {tuple(flow_fw.shape)} and flow_bw {tuple(flow_bw.shape)} must match")
    if alpha1 < 0 or alpha2 < 0:
        raise ValueError(f"alpha1={alpha1} and alpha2={alpha2} must be >= 0")
    bw_at_target, inside = warp_with_mask(flow_bw, flow_fw)
    mismatch = (flow_fw + bw_at_target).square().sum(1, keepdim=True)
    scale = flow_fw.square().sum(1, keepdim=True) + bw_at_target.square().sum(1, keepdim=True)
    return (mismatch > alpha1 * scale + alpha2) | ~inside


def _color_wheel(device: torch.device) -> Tensor:
    """Middlebury colour wheel (Baker et al. 2007): 55 hues, R->Y->G->C->B->M->R, as [55, 3] in 0..1."""
    segments = ((15, (1, 0, 0), (1, 1, 0)), (6, (1, 1, 0), (0, 1, 0)), (4, (0, 1, 0), (0, 1, 1)))
    segments += ((11, (0, 1, 1), (0, 0, 1)), (13, (0, 0, 1), (1, 0, 1)), (6, (1, 0, 1), (1, 0, 0)))
    rows = []
    for n, start, end in segments:
        t = torch.arange(n, dtype=torch.float64) / n
        s, e = torch.tensor(start, dtype=torch.float64), torch.tensor(end, dtype=torch.float64)
        rows.append(s + t[:, None] * (e - s))
    return torch.cat(rows).to(device)


def flow_to_color(flow: Tensor, max_flow: float | None = None) -> Tensor:
    """Colour-wheel visualisation of ``[B, 2, H, W]`` flow as frames ``[B, H, W, 3]`` in 0..1.

    Hue encodes direction and saturation the magnitude relative to ``max_flow`` (default: the largest
    magnitude in each flow field); magnitudes beyond ``max_flow`` are drawn darker.
    """
    check_flow(flow)
    if max_flow is not None and not max_flow > 0:
        raise ValueError(f"max_flow={max_flow!r} must be a positive number or None")
    f = flow.detach().to(torch.float64)
    u, v = f[:, 0], f[:, 1]
    mag = torch.sqrt(u.square() + v.square())
    if max_flow is None:
        norm = mag.flatten(1).amax(1).clamp_min(1e-12)[:, None, None]
    else:
        norm = torch.full_like(mag[:, :1, :1], float(max_flow))
    rad = mag / norm
    wheel = _color_wheel(flow.device)
    ncols = wheel.shape[0]
    angle = torch.atan2(-v, -u) / torch.pi
    fk = (angle + 1) / 2 * (ncols - 1)
    k0 = torch.floor(fk).long().clamp(0, ncols - 1)
    k1 = (k0 + 1) % ncols
    frac = (fk - k0.to(fk.dtype)).unsqueeze(-1)
    col = (1 - frac) * wheel[k0] + frac * wheel[k1]
    inside = (rad <= 1).unsqueeze(-1)
    col = torch.where(inside, 1 - rad.unsqueeze(-1) * (1 - col), col * 0.75)
    return col.clamp(0, 1).to(torch.float32)


def end_point_error(flow: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Average end-point error ``mean ||flow - target||_2`` over (optionally masked) pixels, 0-d."""
    check_flow(flow)
    check_flow(target, "target")
    if flow.shape != target.shape:
        raise ValueError(f"flow {tuple(flow.shape)} and target {tuple(target.shape)} must match")
    err = (flow - target).square().sum(1, keepdim=True).sqrt()
    if mask is None:
        return err.mean()
    if mask.shape != err.shape:
        raise ValueError(f"mask must have shape {tuple(err.shape)}, got {tuple(mask.shape)}")
    m = mask.to(err.dtype)
    count = m.sum()
    if count == 0:
        raise ValueError("mask selects no pixels")
    return (err * m).sum() / count
