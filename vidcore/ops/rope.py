"""3D rotary position embedding over (t, h, w) token grids (Su et al., 2021, RoFormer, eq. 34).

The head dimension is split into three even parts, one per axis; each part rotates adjacent pairs
(x0, x1) by angle ``pos · θ^(-2i/d_axis)``. Scores then depend only on relative offsets, so a model
runs at any T/H/W without a position table.
"""

from __future__ import annotations

import torch
from torch import Tensor


def split_head_dim(head_dim: int) -> tuple[int, int, int]:
    """Default (d_t, d_h, d_w): about 1/4 for time and 3/8 for each spatial axis, all even."""
    if head_dim < 6 or head_dim % 2:
        raise ValueError(f"head_dim={head_dim} must be even and >= 6 for 3D RoPE")
    d_s = 2 * max(1, (head_dim * 3 // 8) // 2)
    d_t = head_dim - 2 * d_s
    return d_t, d_s, d_s


def axis_angles(positions: Tensor, dim: int, theta: float = 10000.0) -> Tensor:
    """Angles ``[N, dim/2]`` for 1-D ``positions`` (float) on one axis."""
    inv_freq = theta ** (-torch.arange(0, dim, 2, dtype=torch.float64, device=positions.device) / dim)
    return positions.to(torch.float64)[:, None] * inv_freq[None, :]


def rope_3d(
    t: int,
    h: int,
    w: int,
    axes_dims: tuple[int, int, int],
    theta: float = 10000.0,
    scale: tuple[float, float, float] = (1.0, 1.0, 1.0),
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    """(cos, sin), each ``[t·h·w, sum(axes_dims)/2]`` float32, tokens ordered t-major then h then w.

    ``scale`` multiplies the integer positions of each axis (e.g. 2.0 maps a half-resolution grid
    onto the full-resolution one, as Pyramid Flow's interpolated positions do).
    """
    for name, d in zip("thw", axes_dims, strict=True):
        if d % 2:
            raise ValueError(f"rope axis dim for {name} is {d}; every axis dim must be even")
    # float64 angles on the target device; MPS has no float64, so there on the CPU and moved after.
    on = "cpu" if device is not None and torch.device(device).type == "mps" else device
    grids = torch.meshgrid(
        torch.arange(t, device=on), torch.arange(h, device=on), torch.arange(w, device=on), indexing="ij"
    )
    angles = [
        axis_angles(g.reshape(-1).to(torch.float64) * s, d, theta)
        for g, d, s in zip(grids, axes_dims, scale, strict=True)
    ]
    ang = torch.cat(angles, dim=-1)
    return ang.cos().float().to(device), ang.sin().float().to(device)


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate adjacent channel pairs of ``x [..., L, D]`` by the angles behind ``cos/sin [L, D/2]``."""
    if x.shape[-1] != 2 * cos.shape[-1] or x.shape[-2] != cos.shape[0]:
        raise ValueError(
            f"apply_rope: x{tuple(x.shape)} needs cos/sin of shape [{x.shape[-2]}, {x.shape[-1] // 2}], "
            f"got {tuple(cos.shape)}"
        )
    xf = x.float().unflatten(-1, (-1, 2))  # [..., L, D/2, 2]
    x0, x1 = xf[..., 0], xf[..., 1]
    out = torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1)
    return out.flatten(-2).to(x.dtype)
