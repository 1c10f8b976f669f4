"""Small layers shared by the LTX transformer and VAE: sinusoidal timestep MLP, RMS norms."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def timestep_sinusoid(t: Tensor, dim: int = 256, max_period: float = 10000.0) -> Tensor:
    """[cos(t·f), sin(t·f)] with f_i = max_period^(-i/(dim/2)) (DDPM sinusoid, flip_sin_to_cos, shift 0)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([angles.cos(), angles.sin()], dim=-1)


class TimestepMLP(nn.Module):
    """Linear(256 -> dim) -> SiLU -> Linear(dim -> dim) on the timestep sinusoid."""

    def __init__(self, dim: int, in_dim: int = 256) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.linear_1 = nn.Linear(in_dim, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, t: Tensor, dtype: torch.dtype) -> Tensor:
        h = timestep_sinusoid(t, self.in_dim).to(dtype)
        return self.linear_2(F.silu(self.linear_1(h)))


class TimestepEmbedding(nn.Module):
    """Holder so the weights sit at ``<name>.timestep_embedder.linear_{1,2}`` as in the checkpoints."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.timestep_embedder = TimestepMLP(dim)

    def forward(self, t: Tensor, dtype: torch.dtype) -> Tensor:
        return self.timestep_embedder(t, dtype)


def rms_norm_last(x: Tensor, eps: float) -> Tensor:
    """x / sqrt(mean(x², last dim) + eps), statistics in float32, no affine."""
    var = x.float().pow(2).mean(-1, keepdim=True)
    return (x * torch.rsqrt(var + eps)).to(x.dtype)


def rms_norm_channels(x: Tensor, eps: float) -> Tensor:
    """RMSNorm over dim 1 of a [B, C, ...] tensor (per-position, no affine), statistics in float32."""
    var = x.float().pow(2).mean(1, keepdim=True)
    return (x * torch.rsqrt(var + eps)).to(x.dtype)


def layer_norm_channels(x: Tensor, weight: Tensor, bias: Tensor, eps: float) -> Tensor:
    """LayerNorm over dim 1 of a [B, C, ...] tensor with affine weight/bias of shape [C]."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    xf = x.float()
    mean = xf.mean(1, keepdim=True)
    var = (xf - mean).pow(2).mean(1, keepdim=True)
    y = (xf - mean) * torch.rsqrt(var + eps)
    return (y * weight.float().view(shape) + bias.float().view(shape)).to(x.dtype)
