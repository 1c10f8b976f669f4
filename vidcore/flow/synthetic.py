"""Synthetic frame pairs with exact ground-truth flow, for tests and benchmarks.

frame1 is a crop of a smooth random texture; frame0(p) = bilinear(texture, p + w(p)), so the flow
frame0 -> frame1 is exactly ``w`` in the ``a(p) ≈ b(p + F(p))`` convention.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from vidcore.flow.estimate import gaussian_blur
from vidcore.flow.warping import pixel_grid, warp

MOTIONS = ("translation", "rotation", "smooth", "mixed")
MARGIN = 8


def smooth_texture(height: int, width: int, generator: torch.Generator) -> Tensor:
    """Multi-scale random texture ``[1, 1, H, W]`` (blurred noise, sigma 1.5-12): mean 128/255, std 40/255."""
    acc = torch.zeros(1, 1, height, width, dtype=torch.float64)
    for sigma in (1.5, 3.0, 6.0, 12.0):
        noise = torch.randn(1, 1, height, width, generator=generator, dtype=torch.float64)
        layer = gaussian_blur(noise, sigma)
        acc += layer / layer.std()
    acc = (acc - acc.mean()) / acc.std()
    return ((128 + 40 * acc) / 255).clamp(0, 1)


def synthetic_flow(
    motion: str, height: int, width: int, max_disp: float, generator: torch.Generator
) -> Tensor:
    """A ground-truth flow ``[1, 2, H, W]`` (float64) of ``motion`` with max magnitude ``max_disp``."""
    if motion not in MOTIONS:
        raise ValueError(f"motion={motion!r} must be one of {list(MOTIONS)}")
    gx, gy = pixel_grid(height, width, torch.device("cpu"), torch.float64)
    cx, cy = (width - 1) / 2, (height - 1) / 2

    def translation() -> Tensor:
        angle = float(torch.rand((), generator=generator, dtype=torch.float64)) * 2 * math.pi
        return torch.stack([torch.full_like(gx, math.cos(angle)), torch.full_like(gy, math.sin(angle))])

    def rotation() -> Tensor:
        theta = 0.05 * (1 if float(torch.rand((), generator=generator)) > 0.5 else -1)
        # Exact rotation about the centre: p + w(p) = R (p - c) + c.
        rx = math.cos(theta) * (gx - cx) - math.sin(theta) * (gy - cy) + cx - gx
        ry = math.sin(theta) * (gx - cx) + math.cos(theta) * (gy - cy) + cy - gy
        return torch.stack([rx, ry])

    def smooth() -> Tensor:
        noise = torch.randn(1, 2, height, width, generator=generator, dtype=torch.float64)
        return gaussian_blur(noise, max(height, width) / 6)[0]

    parts = {"translation": translation, "rotation": rotation, "smooth": smooth}
    if motion == "mixed":
        weights = torch.rand(3, generator=generator, dtype=torch.float64) + 0.2
        fields = [p() for p in parts.values()]  # one draw each, normalised by its own peak
        field = sum(w * (f / f.abs().max()) for w, f in zip(weights, fields, strict=True))
    else:
        field = parts[motion]()
    mag = field.square().sum(0).sqrt().max()
    return (field * (max_disp / mag)).unsqueeze(0)


def synthetic_pair(
    height: int,
    width: int,
    motion: str = "mixed",
    max_disp: float | None = None,
    seed: int = 0,
    quantize: bool = True,
    noise_std: float = 0.0,
) -> tuple[Tensor, Tensor, Tensor]:
    """Return ``(frame0, frame1, flow)``: frames ``[1, 1, H, W]`` in 0..1, exact flow ``[1, 2, H, W]``.

    ``max_disp`` defaults to a random value in [2, 4] px; ``quantize`` rounds frames to 8 bit (as video
    is); ``noise_std`` adds Gaussian noise in grey levels (0..255 units) before quantisation.
    """
    if max_disp is not None and not 0 < max_disp <= MARGIN:
        raise ValueError(f"max_disp={max_disp!r} must be in (0, {MARGIN}] px")
    g = torch.Generator().manual_seed(seed)
    if max_disp is None:
        max_disp = 2 + 2 * float(torch.rand((), generator=g, dtype=torch.float64))
    canvas = smooth_texture(height + 2 * MARGIN, width + 2 * MARGIN, g)
    flow = synthetic_flow(motion, height, width, max_disp, g)
    frame1 = canvas[:, :, MARGIN : MARGIN + height, MARGIN : MARGIN + width]
    # Sample the canvas at p + MARGIN + w(p): pad the flow field onto the canvas grid.
    big = torch.zeros(1, 2, height + 2 * MARGIN, width + 2 * MARGIN, dtype=torch.float64)
    big[:, :, MARGIN : MARGIN + height, MARGIN : MARGIN + width] = flow
    frame0 = warp(canvas, big)[:, :, MARGIN : MARGIN + height, MARGIN : MARGIN + width]
    frames = []
    for f in (frame0, frame1):
        f = f * 255
        if noise_std > 0:
            f = f + noise_std * torch.randn(f.shape, generator=g, dtype=torch.float64)
        if quantize:
            f = f.round()
        frames.append((f.clamp(0, 255) / 255).to(torch.float32))
    return frames[0], frames[1], flow.to(torch.float32)
