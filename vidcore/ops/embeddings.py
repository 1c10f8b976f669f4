"""Sinusoidal embeddings for timesteps, frame indices and 3D positions (Vaswani et al., 2017, §3.5)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def sinusoidal_embedding(
    positions: Tensor, dim: int, max_period: float = 10000.0, flip_sin_to_cos: bool = True
) -> Tensor:
    """``[N, dim]`` embedding of float ``positions [N]``: cos/sin at ``dim/2`` geometric frequencies."""
    if dim % 2:
        raise ValueError(f"sinusoidal embedding dim={dim} must be even")
    if positions.ndim != 1:
        raise ValueError(f"positions must be 1-D, got shape {tuple(positions.shape)}")
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    args = positions.float()[:, None] * freqs.to(positions.device)[None]
    parts = (torch.cos(args), torch.sin(args)) if flip_sin_to_cos else (torch.sin(args), torch.cos(args))
    return torch.cat(parts, dim=-1)


def frame_position_embedding(num_frames: int, dim: int, device: torch.device | str | None = None) -> Tensor:
    """``[num_frames, dim]`` sinusoidal embedding of frame indices 0..T-1."""
    return sinusoidal_embedding(torch.arange(num_frames, device=device, dtype=torch.float32), dim)


def sincos_3d(t: int, h: int, w: int, dim: int, device: torch.device | str | None = None) -> Tensor:
    """``[t·h·w, dim]`` additive 3D sin-cos position embedding (dim split t:h:w as 2:3:3, even parts)."""
    d_s = 2 * ((dim * 3 // 8) // 2)
    d_t = dim - 2 * d_s
    if d_t <= 0 or d_t % 2:
        raise ValueError(f"sincos_3d needs dim divisible into even parts, got dim={dim}")
    gt, gh, gw = torch.meshgrid(
        torch.arange(t, device=device),
        torch.arange(h, device=device),
        torch.arange(w, device=device),
        indexing="ij",
    )
    return torch.cat(
        [
            sinusoidal_embedding(gt.reshape(-1).float(), d_t),
            sinusoidal_embedding(gh.reshape(-1).float(), d_s),
            sinusoidal_embedding(gw.reshape(-1).float(), d_s),
        ],
        dim=-1,
    )


class TimestepEmbedder(nn.Module):
    """Sinusoid(256) -> Linear -> SiLU -> Linear, as in DiT (Peebles & Xie, 2023)."""

    def __init__(self, dim: int, freq_dim: int = 256) -> None:
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: Tensor) -> Tensor:
        emb = sinusoidal_embedding(t, self.freq_dim).to(self.mlp[0].weight.dtype)
        return self.mlp(emb)


def check_text_inputs(
    batch: int,
    context: Tensor,
    context_mask: Tensor | None,
    pooled: Tensor | None,
    text_dim: int,
    pooled_text: bool,
) -> None:
    """The text conditioning a denoiser takes: token embeddings ``context`` [B, L, text_dim], an optional
    bool keep-mask [B, L], and pooled embeddings [B, text_dim] when ``pooled_text``; else a ValueError."""
    if context.ndim != 3 or context.shape[-1] != text_dim or context.shape[0] != batch:
        raise ValueError(
            f"context must be text embeddings [B={batch}, L, {text_dim}], got {tuple(context.shape)}"
        )
    if context_mask is not None and (
        context_mask.dtype != torch.bool or context_mask.shape != context.shape[:2]
    ):
        raise ValueError(
            f"context_mask must be a bool tensor of shape {tuple(context.shape[:2])}, got "
            f"{context_mask.dtype} {tuple(context_mask.shape)}"
        )
    if pooled_text and (pooled is None or pooled.shape != (batch, text_dim)):
        got = None if pooled is None else tuple(pooled.shape)
        raise ValueError(f"this model needs pooled text embeddings [B, {text_dim}], got {got}")
