"""Small layers of the Wan transformer: 3-axis RoPE tables, float32 LayerNorm, MLPs, condition embedders.

Module and parameter names follow diffusers src/diffusers/models/transformers/transformer_wan.py so that a
diffusers folder loads as is; the original Wan names are mapped in ``keymaps.py``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidcore.ops.embeddings import sinusoidal_embedding
from vidcore.ops.rope import axis_angles

ROPE_THETA = 10000.0


def wan_rope(
    grid: tuple[int, int, int], dims: tuple[int, int, int], device: torch.device | str | None = None
) -> tuple[Tensor, Tensor]:
    """cos/sin ``[f·h·w, head_dim/2]`` float32 for tokens in (f, h, w) order (RoFormer, Su et al. 2021).

    Each axis rotates its own slice of pairs at frequencies θ^(-2k/d_axis) over integer positions, as
    Wan-Video/Wan2.1 wan/modules/model.py (rope_params / rope_apply). Angles are float64 and cast to float32
    after cos/sin, which is what diffusers' WanRotaryPosEmbed does (the original multiplies complex float64).
    """
    # MPS has no float64: build there on the CPU and move (the tables are small: one row per position).
    on = "cpu" if device is not None and torch.device(device).type == "mps" else device
    f, h, w = grid
    tables = []
    for n, d in zip(grid, dims, strict=True):
        ang = axis_angles(torch.arange(n, device=on, dtype=torch.float64), d, ROPE_THETA)  # [n, d/2]
        tables.append((ang.cos().float(), ang.sin().float()))

    def spread(t: Tensor, th: Tensor, tw: Tensor) -> Tensor:
        # per-axis [n, d/2] tables -> [f·h·w, head_dim/2], token (i, j, k) = cat(t[i], h[j], w[k])
        parts = (t[:, None, None].expand(f, h, w, -1), th[None, :, None].expand(f, h, w, -1))
        return torch.cat([*parts, tw[None, None].expand(f, h, w, -1)], dim=-1).reshape(f * h * w, -1)

    cos = spread(*(c for c, _ in tables))
    sin = spread(*(s for _, s in tables))
    return cos.to(device), sin.to(device)


def layer_norm_fp32(x: Tensor, eps: float, norm: nn.LayerNorm | None = None) -> Tensor:
    """LayerNorm over the last dim computed in float32 (returns float32), affine when ``norm`` is given."""
    w = b = None
    if norm is not None:
        w, b = norm.weight.float(), norm.bias.float()
    return F.layer_norm(x.float(), (x.shape[-1],), w, b, eps)


class _Proj(nn.Module):
    """Linear followed by GELU (exact or tanh), named ``proj`` as diffusers' GELU activation module."""

    def __init__(self, dim_in: int, dim_out: int, approximate: str) -> None:
        super().__init__()
        self.approximate = approximate
        self.proj = nn.Linear(dim_in, dim_out)

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(self.proj(x), approximate=self.approximate)


class GeluMLP(nn.Module):
    """Linear -> GELU -> Linear; ``net.1`` is the (parameter-free) dropout slot of the checkpoints."""

    def __init__(self, dim_in: int, hidden: int, dim_out: int, approximate: str = "tanh") -> None:
        super().__init__()
        self.net = nn.ModuleList(
            [_Proj(dim_in, hidden, approximate), nn.Identity(), nn.Linear(hidden, dim_out)]
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net[2](self.net[0](x))


class _TwoLinear(nn.Module):
    """``linear_2(act(linear_1(x)))`` with act SiLU (time) or GELU-tanh (text)."""

    def __init__(self, dim_in: int, dim: int, act: str) -> None:
        super().__init__()
        self.act = act
        self.linear_1 = nn.Linear(dim_in, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        h = self.linear_1(x)
        h = F.silu(h) if self.act == "silu" else F.gelu(h, approximate="tanh")
        return self.linear_2(h)


class ImageEmbedder(nn.Module):
    """CLIP tokens -> model width: LayerNorm, Linear, GELU (exact), Linear, LayerNorm (Wan's MLPProj;
    LayerNorm eps 1e-5). With ``pos_len`` a learned table is added first (FLF2V: first + last frame)."""

    def __init__(self, image_dim: int, dim: int, pos_len: int | None) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(image_dim)
        self.ff = GeluMLP(image_dim, image_dim, dim, approximate="none")
        self.norm2 = nn.LayerNorm(dim)
        self.pos_embed = nn.Parameter(torch.empty(1, pos_len, image_dim)) if pos_len else None

    def forward(self, x: Tensor) -> Tensor:
        if self.pos_embed is not None:
            x = x + self.pos_embed.to(x.dtype)
        h = layer_norm_fp32(x, self.norm1.eps, self.norm1).to(x.dtype)
        h = self.ff(h)
        return layer_norm_fp32(h, self.norm2.eps, self.norm2).to(h.dtype)


class ConditionEmbedder(nn.Module):
    """Timestep, text and (optionally) image embedders, grouped under one name as in diffusers'
    WanTimeTextImageEmbedding so the checkpoint keys match."""

    def __init__(
        self, dim: int, freq_dim: int, text_dim: int, image_dim: int | None, image_pos_len: int | None
    ) -> None:
        super().__init__()
        self.freq_dim = freq_dim
        self.time_embedder = _TwoLinear(freq_dim, dim, "silu")
        self.time_proj = nn.Linear(dim, 6 * dim)
        self.text_embedder = _TwoLinear(text_dim, dim, "gelu_tanh")
        self.image_embedder = ImageEmbedder(image_dim, dim, image_pos_len) if image_dim else None

    def time(self, t: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """``t [R]`` -> (e [R, D], e0 [R, 6, D]): e feeds the head's modulation, e0 every block's.

        Sinusoid [cos, sin](t·10000^(-i/half)) in float32 and the embedding MLP in its own (float32) weights,
        as diffusers; e is then cast to the model dtype before the projection, as diffusers'
        ``temb.type_as(encoder_hidden_states)``. (Wan-Video/Wan2.1 wan/modules/model.py builds the sinusoid
        in float64 and keeps e and e0 in float32; identical in a float32 model up to float32 rounding.)
        """
        w = self.time_embedder.linear_1.weight
        e = self.time_embedder(sinusoidal_embedding(t.float(), self.freq_dim).to(w.dtype)).to(dtype)
        e0 = self.time_proj(F.silu(e))
        return e, e0.unflatten(-1, (6, -1))
