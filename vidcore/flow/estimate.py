"""Dense optical flow in pure torch: pyramidal Lucas-Kanade and Horn-Schunck with warping.

Both estimators return ``F`` with ``a(p) ≈ b(p + F(p))`` (OpenCV Farneback's convention), shape
``[B, 2, H, W]``, channel 0 = x (right), channel 1 = y (down), in pixels of the input resolution.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from vidcore.flow.warping import pixel_grid

METHODS = ("lucas_kanade", "horn_schunck")
DEFAULT_METHOD = "lucas_kanade"
# ITU-R BT.601 luma, the weights OpenCV's RGB->GRAY uses.
_LUMA = (0.299, 0.587, 0.114)
# Coarsest pyramid level kept at least this many pixels on its short side: on smaller levels the
# linearisation has too little support and Horn-Schunck diverges.
_MIN_LEVEL_SIZE = 16


@contextlib.contextmanager
def flush_denormal(device: torch.device) -> Iterator[None]:
    """Flush denormals to zero on CPU while iterating (iterative solvers run 5-13x slower otherwise)."""
    if device.type != "cpu":
        yield
        return
    # torch exposes no getter, so the previous state is unknown; restoring "off" is torch's default.
    changed = torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if changed:
            torch.set_flush_denormal(False)


def _gaussian_kernel(sigma: float, device: torch.device, dtype: torch.dtype) -> Tensor:
    radius = max(1, int(math.ceil(3 * sigma)))
    x = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of ``[B, C, H, W]`` with replicate padding (per channel)."""
    if sigma <= 0:
        return x
    k = _gaussian_kernel(sigma, x.device, x.dtype)
    r = k.numel() // 2
    c = x.shape[1]
    kx = k.view(1, 1, 1, -1).expand(c, 1, 1, -1)
    ky = k.view(1, 1, -1, 1).expand(c, 1, -1, 1)
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), kx, groups=c)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), ky, groups=c)


def _gradients(x: Tensor) -> tuple[Tensor, Tensor]:
    """Five-point central differences (1, -8, 0, 8, -1)/12 along x and y, replicate padding.

    Written with slices: for these tiny single-channel stencils it is several times faster than conv2d.
    """
    p = F.pad(x, (2, 2, 2, 2), mode="replicate")
    r = p[:, :, 2:-2]  # rows of the frame, padded columns
    c = p[..., 2:-2]  # columns of the frame, padded rows
    gx = (r[..., :-4] - r[..., 4:] + 8 * (r[..., 3:-1] - r[..., 1:-3])) / 12
    gy = (c[:, :, :-4] - c[:, :, 4:] + 8 * (c[:, :, 3:-1] - c[:, :, 1:-3])) / 12
    return gx, gy


def to_gray(frames: Tensor, name: str) -> Tensor:
    """Validate ``[B, C, H, W]`` / ``[C, H, W]`` frames in 0..1 (C 1 or 3); return luma ``[B, 1, H, W]``."""
    if not isinstance(frames, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(frames).__name__}")
    if frames.ndim == 3:
        frames = frames.unsqueeze(0)
    if frames.ndim != 4 or frames.shape[1] not in (1, 3):
        raise ValueError(
            f"{name} must be [B, C, H, W] or [C, H, W] with C in (1, 3), got {tuple(frames.shape)}"
        )
    if not frames.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor in 0..1, got dtype {frames.dtype}")
    if not bool(torch.isfinite(frames).all()):
        raise ValueError(f"{name} holds NaN or infinite values; frames must be finite, in 0..1")
    lo, hi = float(frames.min()), float(frames.max())
    if lo < -1e-3 or hi > 1 + 1e-3:
        raise ValueError(f"{name} values must lie in 0..1, got range [{lo:.4g}, {hi:.4g}]")
    if frames.shape[1] == 1:
        return frames
    w = torch.tensor(_LUMA, device=frames.device, dtype=frames.dtype).view(1, 3, 1, 1)
    return (frames * w).sum(1, keepdim=True)


def _pyramid(x: Tensor, levels: int) -> list[Tensor]:
    """Gaussian pyramid, finest first; each level blurs (sigma 1) and halves the previous one."""
    out = [x]
    for _ in range(levels - 1):
        prev = out[-1]
        size = ((prev.shape[2] + 1) // 2, (prev.shape[3] + 1) // 2)
        out.append(F.interpolate(gaussian_blur(prev, 1.0), size=size, mode="bilinear", align_corners=False))
    return out


def _resize_flow(flow: Tensor, size: tuple[int, int]) -> Tensor:
    """Resample flow to ``size`` and rescale its x / y components to the new pixel units."""
    h, w = flow.shape[2:]
    out = F.interpolate(flow, size=size, mode="bilinear", align_corners=False)
    scale = torch.tensor([size[1] / w, size[0] / h], device=flow.device, dtype=flow.dtype)
    return out * scale.view(1, 2, 1, 1)


def _sample(b: Tensor, flow: Tensor) -> tuple[Tensor, Tensor]:
    """Fast bilinear ``b(p + flow(p))`` via one ``grid_sample`` (border values) and the in-frame mask.

    The solvers use this instead of :func:`warp_with_mask`: same sampling up to float rounding of the
    normalised coordinates, in one kernel instead of four gathers (torch per-op overhead dominates here).
    """
    _, _, h, w = b.shape
    gx, gy = pixel_grid(h, w, b.device, b.dtype)
    x = gx + flow[:, 0]
    y = gy + flow[:, 1]
    grid = torch.stack([x * (2 / max(w - 1, 1)) - 1, y * (2 / max(h - 1, 1)) - 1], dim=-1)
    out = F.grid_sample(b, grid, mode="bilinear", padding_mode="border", align_corners=True)
    valid = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
    return out, valid.unsqueeze(1)


def _linearise(a: Tensor, b: Tensor, flow: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Spatial derivatives (averaged over a and warped b) and temporal residual around ``flow``."""
    bw, valid = _sample(b, flow)
    gx, gy = _gradients(torch.cat([a, bw]))
    n = a.shape[0]
    ix, iy = 0.5 * (gx[:n] + gx[n:]), 0.5 * (gy[:n] + gy[n:])
    # Pixels whose match left the frame carry no data term: zero their derivatives.
    v = valid.to(a.dtype)
    return ix * v, iy * v, (bw - a) * v


def _lk_step(a: Tensor, b: Tensor, flow: Tensor, window_sigma: float, reg: float) -> Tensor:
    """One Gauss-Newton Lucas-Kanade increment (Lucas & Kanade 1981) with a Gaussian window."""
    ix, iy, it = _linearise(a, b, flow)
    prods = torch.cat([ix * ix, ix * iy, iy * iy, ix * it, iy * it], dim=1)
    sxx, sxy, syy, sxt, syt = gaussian_blur(prods, window_sigma).unbind(1)
    sxx = sxx + reg
    syy = syy + reg
    det = sxx * syy - sxy * sxy
    du = (-syy * sxt + sxy * syt) / det
    dv = (sxy * sxt - sxx * syt) / det
    return flow + torch.stack([du, dv], dim=1)


def _hs_solve(a: Tensor, b: Tensor, flow: Tensor, alpha: float, iterations: int) -> Tensor:
    """Horn & Schunck (1981) Jacobi iterations on the energy linearised around ``flow``.

    u <- u_bar - Ix (Ix u_bar + Iy v_bar + c) / (alpha^2 + Ix^2 + Iy^2), with c = It - Ix u0 - Iy v0,
    where u_bar is the weighted neighbour mean (1/6 edges, 1/12 corners).
    """
    ix, iy, it = _linearise(a, b, flow)
    c = it - ix * flow[:, :1] - iy * flow[:, 1:]
    denom = alpha * alpha + ix * ix + iy * iy
    grad = torch.cat([ix, iy], dim=1)
    step = grad / denom
    uv = flow
    for _ in range(iterations):
        # Neighbour mean with weights 1/6 (edges) and 1/12 (corners) = ((1,2,1) x (1,2,1) - 4 delta) / 12,
        # written with slices: cheaper than a grouped conv2d for this 3x3 stencil.
        p = F.pad(uv, (1, 1, 1, 1), mode="replicate")
        h = p[..., :-2] + 2 * p[..., 1:-1] + p[..., 2:]
        avg = (h[:, :, :-2] + 2 * h[:, :, 1:-1] + h[:, :, 2:] - 4 * uv) / 12
        r = (grad * avg).sum(1, keepdim=True) + c
        uv = avg - step * r
    return uv


def _auto_levels(height: int, width: int, levels: int) -> int:
    n = 1
    short = min(height, width)
    while n < levels and short // (2**n) >= _MIN_LEVEL_SIZE:
        n += 1
    return n


def estimate_flow(
    a: Tensor,
    b: Tensor,
    method: str = DEFAULT_METHOD,
    levels: int = 3,
    warps: int | None = None,
    presmooth: float = 1.0,
    window_sigma: float = 3.0,
    alpha: float = 0.08,
    iterations: int = 40,
) -> Tensor:
    """Dense flow ``F`` with ``a(p) ≈ b(p + F(p))`` for frames ``[B, C, H, W]`` or ``[C, H, W]`` in 0..1.

    Coarse-to-fine over a Gaussian pyramid (``levels``, reduced so the coarsest side stays >= 16 px),
    re-linearising around the current flow ``warps`` times per level (default 1 for Lucas-Kanade,
    3 for Horn-Schunck). ``window_sigma`` is the Lucas-Kanade Gaussian window; ``alpha`` (intensity
    units of 0..1 frames) and ``iterations`` (Jacobi steps per warp) are Horn-Schunck's smoothness
    weight and iteration count. Returns ``[B, 2, H, W]`` in input pixels, in a's dtype (float32 at least).
    Runs under ``no_grad``: the estimate is a measurement, not a differentiable layer.
    """
    if method not in METHODS:
        raise ValueError(f"method={method!r} must be one of {list(METHODS)}")
    ga = to_gray(a, "a")
    gb = to_gray(b, "b")
    if a.shape != b.shape:  # also channels: a colour frame against a grey one is a caller's mix-up
        raise ValueError(f"a and b must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 1:
        raise ValueError(f"levels={levels!r} must be an integer >= 1")
    if warps is None:
        warps = 1 if method == "lucas_kanade" else 3
    if isinstance(warps, bool) or not isinstance(warps, int) or warps < 1:
        raise ValueError(f"warps={warps!r} must be an integer >= 1")
    if presmooth < 0:
        raise ValueError(f"presmooth={presmooth!r} must be >= 0")
    if not window_sigma > 0:
        raise ValueError(f"window_sigma={window_sigma!r} must be > 0")
    if not alpha > 0:
        raise ValueError(f"alpha={alpha!r} must be > 0")
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations={iterations!r} must be an integer >= 1")
    dtype = torch.promote_types(ga.dtype, torch.float32)
    ga, gb = ga.to(dtype), gb.to(dtype)
    height, width = ga.shape[2:]
    n_levels = _auto_levels(height, width, levels)
    with flush_denormal(ga.device), torch.no_grad():
        # One pyramid for both frames: half the (overhead-bound) ops.
        n = ga.shape[0]
        pyramid = _pyramid(gaussian_blur(torch.cat([ga, gb]), presmooth), n_levels)
        flow = torch.zeros(n, 2, *pyramid[-1].shape[2:], device=ga.device, dtype=dtype)
        for level in reversed(pyramid):
            la, lb = level[:n], level[n:]
            if flow.shape[2:] != la.shape[2:]:
                flow = _resize_flow(flow, tuple(la.shape[2:]))
            for _ in range(warps):
                if method == "lucas_kanade":
                    flow = _lk_step(la, lb, flow, window_sigma, reg=1e-6)
                else:
                    flow = _hs_solve(la, lb, flow, alpha, iterations)
    return flow
