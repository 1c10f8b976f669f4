"""LTX-Video transformer (HaCohen et al., 2024, "LTX-Video: Realtime Video Latent Diffusion",
arXiv:2501.00103), a port of diffusers src/diffusers/models/transformers/transformer_ltx.py.

Parameter names follow the diffusers layout (``transformer_blocks.N.attn1.to_q`` ...) so a diffusers folder
loads as is; the original single-file names are mapped in ``loading.py``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from vidcore.models.ltx.config import LTXTransformerConfig
from vidcore.models.ltx.layers import TimestepEmbedding, rms_norm_last
from vidcore.ops.attention import attention, sequence_attention, sequence_shard

ROPE_BASE = (20.0, 2048.0, 2048.0)  # (frames, height, width) normalisers of the RoPE grid
ROPE_THETA = 10000.0
# The text mask is an additive -1e4 as in diffusers transformer_ltx.py, not -inf: an all-padding row stays
# finite (softmax of all -inf is NaN).
MASK_BIAS = -10000.0


def pack_latents(z: Tensor, patch_size: int = 1, patch_size_t: int = 1) -> Tensor:
    """[B, C, F, H, W] -> [B, F'·H'·W', C·pt·p·p] tokens, f-major then h then w (as diffusers
    src/diffusers/pipelines/ltx/pipeline_ltx.py, LTXPipeline._pack_latents)."""
    return rearrange(
        z, "b c (f pt) (h ph) (w pw) -> b (f h w) (c pt ph pw)", pt=patch_size_t, ph=patch_size, pw=patch_size
    )


def unpack_latents(
    x: Tensor, num_frames: int, height: int, width: int, patch_size: int = 1, patch_size_t: int = 1
) -> Tensor:
    """Inverse of :func:`pack_latents`; ``num_frames/height/width`` are the token-grid sizes."""
    return rearrange(
        x,
        "b (f h w) (c pt ph pw) -> b c (f pt) (h ph) (w pw)",
        f=num_frames,
        h=height,
        w=width,
        pt=patch_size_t,
        ph=patch_size,
        pw=patch_size,
    )


def rope_grid(
    batch: int,
    num_frames: int,
    height: int,
    width: int,
    scale: tuple[float, float, float] | Tensor | None,
    patch_size: int,
    patch_size_t: int,
    device: torch.device,
) -> Tensor:
    """Token coordinates [B, S, 3] (f, h, w); with ``scale`` they are scaled and divided by ROPE_BASE."""
    f, h, w = (torch.arange(n, dtype=torch.float32, device=device) for n in (num_frames, height, width))
    grid = torch.stack(torch.meshgrid(f, h, w, indexing="ij"), dim=-1).reshape(1, -1, 3).repeat(batch, 1, 1)
    if scale is not None:
        # Without a scale diffusers uses the raw indices, with no /base normalisation.
        patch = (patch_size_t, patch_size, patch_size)
        grid = torch.stack([grid[..., i] * scale[i] * patch[i] / ROPE_BASE[i] for i in range(3)], dim=-1)
    return grid


def rope_cos_sin(grid: Tensor, dim: int) -> tuple[Tensor, Tensor]:
    """cos/sin [B, S, dim] of LTX's 3-axis RoPE: freqs (π/2)·θ^(k/(n-1)), angles freq·(2g-1) (as diffusers
    transformer_ltx.py, LTXVideoRotaryPosEmbed)."""
    n = dim // 6
    freqs = ROPE_THETA ** torch.linspace(0.0, 1.0, n, dtype=torch.float32, device=grid.device) * (math.pi / 2)
    angles = freqs * (grid.unsqueeze(-1) * 2 - 1)  # [B, S, 3, n]
    # Frequencies interleave the axes: (k, axis) flattened, each value used for one adjacent pair.
    angles = rearrange(angles, "b s a k -> b s (k a)")
    cos = angles.cos().repeat_interleave(2, dim=-1)
    sin = angles.sin().repeat_interleave(2, dim=-1)
    pad = dim % 6
    if pad:
        # Channels not covered by the 3 axes come first and are left unrotated.
        cos = torch.cat([torch.ones_like(cos[..., :pad]), cos], dim=-1)
        sin = torch.cat([torch.zeros_like(sin[..., :pad]), sin], dim=-1)
    return cos, sin


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate adjacent pairs (x0, x1) -> x·cos + (-x1, x0)·sin over the full inner dim, in float32."""
    pairs = rearrange(x.float(), "b s (d two) -> b s d two", two=2)
    rotated = torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).flatten(-2)
    return (x.float() * cos + rotated * sin).to(x.dtype)


class LTXAttention(nn.Module):
    """Multi-head attention with q/k RMSNorm across heads (eps 1e-5, affine) and optional RoPE."""

    def __init__(
        self, dim: int, context_dim: int, heads: int, head_dim: int, bias: bool, out_bias: bool
    ) -> None:
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.to_q = nn.Linear(dim, inner, bias=bias)
        self.to_k = nn.Linear(context_dim, inner, bias=bias)
        self.to_v = nn.Linear(context_dim, inner, bias=bias)
        self.norm_q = nn.RMSNorm(inner, eps=1e-5)
        self.norm_k = nn.RMSNorm(inner, eps=1e-5)
        self.to_out = nn.ModuleList([nn.Linear(inner, dim, bias=out_bias)])

    def forward(
        self,
        x: Tensor,
        context: Tensor | None = None,
        bias: Tensor | None = None,
        rope: tuple[Tensor, Tensor] | None = None,
    ) -> Tensor:
        context = x if context is None else context
        q = self.norm_q(self.to_q(x))
        k = self.norm_k(self.to_k(context))
        v = self.to_v(context)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        q, k, v = (rearrange(t, "b l (h d) -> b h l d", h=self.heads) for t in (q, k, v))
        out = (sequence_attention if context is x else attention)(q, k, v, mask=bias)
        return self.to_out[0](rearrange(out, "b h l d -> b l (h d)"))


class _GeluProj(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, hidden)

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(self.proj(x), approximate="tanh")


class FeedForward(nn.Module):
    """Linear(D -> 4D) -> GELU(tanh) -> Linear(4D -> D); ``net.1`` is the (parameter-free) dropout slot."""

    def __init__(self, dim: int, mult: int = 4) -> None:
        super().__init__()
        self.net = nn.ModuleList([_GeluProj(dim, dim * mult), nn.Identity(), nn.Linear(dim * mult, dim)])

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.net:
            x = layer(x)
        return x


class LTXTransformerBlock(nn.Module):
    """adaLN-single block: gated self-attn with RoPE, ungated cross-attn on un-normalised x, gated FF."""

    def __init__(self, cfg: LTXTransformerConfig) -> None:
        super().__init__()
        d = cfg.inner_dim
        self.eps = cfg.norm_eps
        self.attn1 = LTXAttention(
            d, d, cfg.num_attention_heads, cfg.attention_head_dim, cfg.attention_bias, cfg.attention_out_bias
        )
        self.attn2 = LTXAttention(
            d,
            cfg.cross_attention_dim,
            cfg.num_attention_heads,
            cfg.attention_head_dim,
            cfg.attention_bias,
            cfg.attention_out_bias,
        )
        self.ff = FeedForward(d)
        self.scale_shift_table = nn.Parameter(torch.empty(6, d))

    def forward(
        self, x: Tensor, context: Tensor, temb: Tensor, rope: tuple[Tensor, Tensor], bias: Tensor | None
    ) -> Tensor:
        # temb: [B, S|1, 6, D]
        mod = self.scale_shift_table.to(temb.dtype) + temb
        shift1, scale1, gate1, shift2, scale2, gate2 = mod.unbind(dim=2)
        h = rms_norm_last(x, self.eps) * (1 + scale1) + shift1
        x = x + self.attn1(h, rope=rope) * gate1
        x = x + self.attn2(x, context=context, bias=bias)
        h = rms_norm_last(x, self.eps) * (1 + scale2) + shift2
        return x + self.ff(h) * gate2


class _AdaLNSingle(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.emb = TimestepEmbedding(dim)
        self.linear = nn.Linear(dim, 6 * dim)


class _CaptionProjection(nn.Module):
    def __init__(self, in_dim: int, dim: int) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear_2(F.gelu(self.linear_1(x), approximate="tanh"))


class LTXVideoTransformer(nn.Module):
    """LTX-Video denoiser: packed latent tokens + T5 states -> velocity tokens (as diffusers
    LTXVideoTransformer3DModel)."""

    def __init__(self, cfg: LTXTransformerConfig) -> None:
        super().__init__()
        self.config = cfg
        d = cfg.inner_dim
        self.proj_in = nn.Linear(cfg.in_channels, d)
        self.time_embed = _AdaLNSingle(d)
        self.caption_projection = _CaptionProjection(cfg.caption_channels, d)
        self.transformer_blocks = nn.ModuleList([LTXTransformerBlock(cfg) for _ in range(cfg.num_layers)])
        self.scale_shift_table = nn.Parameter(torch.empty(2, d))
        self.proj_out = nn.Linear(d, cfg.out_channels)

    def initialize_weights(self, generator: torch.Generator | None = None) -> None:
        """Random init for tests/training: Linear default init, modulation tables ~ N(0, 1/D)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                m.reset_parameters()
            elif isinstance(m, nn.RMSNorm):
                m.reset_parameters()
        d = self.config.inner_dim
        for p in [self.scale_shift_table] + [b.scale_shift_table for b in self.transformer_blocks]:
            with torch.no_grad():
                p.copy_(torch.randn(p.shape, generator=generator) / math.sqrt(d))

    def forward(
        self,
        x: Tensor,
        context: Tensor,
        timestep: Tensor,
        context_mask: Tensor | None,
        num_frames: int,
        height: int,
        width: int,
        rope_scale: tuple[float, float, float] | Tensor | None = None,
        video_coords: Tensor | None = None,
    ) -> Tensor:
        """x [B,S,C_in], context [B,L,caption], timestep σ·1000 [B] or per-token [B,S], mask [B,L] (1=keep).

        ``num_frames/height/width`` give the token grid (latent size / patch); ``rope_scale`` is
        (temporal_ratio/fps, spatial_ratio, spatial_ratio) in the pipelines; ``video_coords`` [B,3,S]
        overrides the grid (condition pipelines).
        """
        cfg = self.config
        b, s, c = x.shape
        if c != cfg.in_channels:
            raise ValueError(f"x has {c} channels, the transformer expects in_channels={cfg.in_channels}")
        if s != num_frames * height * width:
            raise ValueError(f"x has {s} tokens but num_frames*height*width = {num_frames * height * width}")
        if context.shape[-1] != cfg.caption_channels:
            raise ValueError(
                f"context width {context.shape[-1]} does not match caption_channels={cfg.caption_channels} "
                "(text encoder and transformer do not fit)"
            )
        if video_coords is None:
            grid = rope_grid(
                b, num_frames, height, width, rope_scale, cfg.patch_size, cfg.patch_size_t, x.device
            )
        else:
            grid = video_coords.float().transpose(1, 2) / torch.tensor(ROPE_BASE, device=x.device)
        rope = rope_cos_sin(grid, cfg.inner_dim)

        bias = None
        if context_mask is not None:
            # [B, L] keep-mask -> additive [B, 1, 1, L] bias broadcast over heads and queries.
            bias = ((1 - context_mask.to(x.dtype)) * MASK_BIAS)[:, None, None, :]

        x = self.proj_in(x)
        e = self.time_embed.emb(timestep.flatten(), x.dtype)  # [B·(S|1), D] "embedded timestep"
        temb = self.time_embed.linear(F.silu(e))
        temb = rearrange(temb, "(b s) (six d) -> b s six d", b=b, six=6)
        e = rearrange(e, "(b s) d -> b s d", b=b)
        ctx = self.caption_projection(context)
        sp = sequence_shard(s)  # the whole sequence on one process; this rank's tokens under SP
        x, rope, temb, e = (sp.split(z, dim=1) for z in (x, rope, temb, e))
        for block in self.transformer_blocks:
            x = block(x, ctx, temb, rope, bias)
        # The final modulation reads e (before time_embed.linear), not temb, as diffusers transformer_ltx.py
        # (`scale_shift_table[None, None] + embedded_timestep[:, :, None]`).
        mod = self.scale_shift_table.to(e.dtype)[None, None] + e[:, :, None]
        shift, scale = mod[:, :, 0], mod[:, :, 1]
        x = F.layer_norm(x, (x.shape[-1],), eps=1e-6) * (1 + scale) + shift
        return sp.gather(self.proj_out(x), dim=1)
