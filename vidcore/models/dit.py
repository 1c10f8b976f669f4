"""Spacetime DiT: a diffusion transformer over video latents (Peebles & Xie, 2023) with 3D RoPE,
AdaLN-Zero, full or factorized (spatial + temporal) self-attention and cross-attention to text tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from torch import Tensor, nn

from ..config import ConfigMixin, check_choice, check_positive
from ..io.checkpoint import Checkpointed
from ..ops.attention import (
    attention,
    full_attention,
    sequence_is_sharded,
    sequence_shard,
    spatial_attention,
    temporal_attention,
    video_self_attention,
)
from ..ops.embeddings import TimestepEmbedder, check_text_inputs, sincos_3d
from ..ops.modulation import AdaLNZero, modulate
from ..ops.patchify import check_patchable, patchify, unpatchify
from ..ops.rope import apply_rope, rope_3d, split_head_dim

KIND = "vidcore.dit"
LAYOUTS = ("full", "factorized")
PREDICTIONS = ("velocity", "epsilon", "x0")


@dataclass(frozen=True)
class DiTConfig(ConfigMixin):
    """Shape of a :class:`SpacetimeDiT`. Defaults build a small model (1.67 M parameters)."""

    in_channels: int = 8
    out_channels: int = 8
    patch_t: int = 1
    patch_s: int = 1
    width: int = 128
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 4.0
    layout: str = "full"
    text_dim: int = 384
    pooled_text: bool = True
    qk_norm: bool = True
    rope_theta: float = 10000.0
    abs_pos_embed: bool = True
    temporal_causal: bool = False
    prediction: str = "velocity"
    timestep_scale: float = 1000.0

    def __post_init__(self) -> None:
        for name in ("in_channels", "out_channels", "patch_t", "patch_s", "width", "depth", "heads"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"DiTConfig.{name}={value!r} must be a positive integer")
        check_positive("DiTConfig.mlp_ratio", self.mlp_ratio)
        check_positive("DiTConfig.text_dim", self.text_dim)
        check_choice("DiTConfig.layout", self.layout, LAYOUTS)
        check_choice("DiTConfig.prediction", self.prediction, PREDICTIONS)
        if self.width % self.heads:
            raise ValueError(f"DiTConfig.width={self.width} must be divisible by heads={self.heads}")
        split_head_dim(self.head_dim)  # raises for head dims 3D RoPE cannot split

    @property
    def head_dim(self) -> int:
        return self.width // self.heads

    @property
    def mlp_hidden(self) -> int:
        return int(self.width * self.mlp_ratio)

    @property
    def patch_dim(self) -> int:
        return self.in_channels * self.patch_t * self.patch_s**2

    @property
    def num_modulations(self) -> int:
        # shift/scale/gate per residual branch with a norm: (attn | spatial + temporal) and MLP.
        return 9 if self.layout == "factorized" else 6


class SelfAttention(nn.Module):
    def __init__(self, cfg: DiTConfig) -> None:
        super().__init__()
        self.heads = cfg.heads
        self.qkv = nn.Linear(cfg.width, 3 * cfg.width)
        self.q_norm = nn.RMSNorm(cfg.head_dim, eps=1e-6) if cfg.qk_norm else nn.Identity()
        self.k_norm = nn.RMSNorm(cfg.head_dim, eps=1e-6) if cfg.qk_norm else nn.Identity()
        self.proj = nn.Linear(cfg.width, cfg.width)

    def forward(
        self, x: Tensor, grid: tuple[int, int, int], rope: tuple[Tensor, Tensor], pattern: str, causal: bool
    ) -> Tensor:
        t, h, w = grid
        q, k, v = rearrange(self.qkv(x), "b l (three n d) -> three b n l d", three=3, n=self.heads)
        q, k = apply_rope(self.q_norm(q), *rope), apply_rope(self.k_norm(k), *rope)
        if sequence_is_sharded():  # this rank holds a slice of the tokens (vidcore.distributed)
            out = video_self_attention(q, k, v, grid, pattern, causal)
            return self.proj(rearrange(out, "b n l d -> b l (n d)"))
        # The public video-token helpers (the code bench_attention.py times) take [B, T, H, W, heads, d].
        q, k, v = (rearrange(z, "b n (t h w) d -> b t h w n d", t=t, h=h, w=w) for z in (q, k, v))
        if pattern == "full":
            out = full_attention(q, k, v, causal=causal)
        elif pattern == "spatial":
            out = spatial_attention(q, k, v)
        else:  # temporal
            out = temporal_attention(q, k, v, causal=causal)
        return self.proj(rearrange(out, "b t h w n d -> b (t h w) (n d)"))


class CrossAttention(nn.Module):
    def __init__(self, cfg: DiTConfig) -> None:
        super().__init__()
        self.heads = cfg.heads
        self.q = nn.Linear(cfg.width, cfg.width)
        self.kv = nn.Linear(cfg.width, 2 * cfg.width)
        self.q_norm = nn.RMSNorm(cfg.head_dim, eps=1e-6) if cfg.qk_norm else nn.Identity()
        self.k_norm = nn.RMSNorm(cfg.head_dim, eps=1e-6) if cfg.qk_norm else nn.Identity()
        self.proj = nn.Linear(cfg.width, cfg.width)

    def forward(self, x: Tensor, context: Tensor, mask: Tensor | None) -> Tensor:
        q = self.q_norm(rearrange(self.q(x), "b l (n d) -> b n l d", n=self.heads))
        k, v = rearrange(self.kv(context), "b m (two n d) -> two b n m d", two=2, n=self.heads)
        k = self.k_norm(k)
        out = attention(q, k, v, mask=None if mask is None else mask[:, None, None, :])
        return self.proj(rearrange(out, "b n l d -> b l (n d)"))


class DiTBlock(nn.Module):
    """x += g·Attn(mod(norm x)); x += CrossAttn(norm x, text); x += g·MLP(mod(norm x))."""

    def __init__(self, cfg: DiTConfig) -> None:
        super().__init__()
        self.layout = cfg.layout
        self.causal = cfg.temporal_causal
        self.norm_attn = nn.LayerNorm(cfg.width, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(cfg)
        if cfg.layout == "factorized":
            self.norm_temporal = nn.LayerNorm(cfg.width, elementwise_affine=False, eps=1e-6)
            self.attn_temporal = SelfAttention(cfg)
        self.norm_cross = nn.LayerNorm(cfg.width, eps=1e-6)
        self.cross = CrossAttention(cfg)
        self.norm_mlp = nn.LayerNorm(cfg.width, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.width, cfg.mlp_hidden),
            nn.GELU(),
            nn.Linear(cfg.mlp_hidden, cfg.width),
        )
        self.adaln = AdaLNZero(cfg.width, cfg.width, cfg.num_modulations)

    def forward(
        self,
        x: Tensor,
        c: Tensor,
        context: Tensor,
        context_mask: Tensor | None,
        grid: tuple[int, int, int],
        rope: tuple[Tensor, Tensor],
    ) -> Tensor:
        mods = self.adaln(c)
        if self.layout == "full":
            sh_a, sc_a, g_a, sh_m, sc_m, g_m = mods
            x = x + g_a[:, None] * self.attn(
                modulate(self.norm_attn(x), sh_a, sc_a), grid, rope, "full", self.causal
            )
        else:
            sh_a, sc_a, g_a, sh_t, sc_t, g_t, sh_m, sc_m, g_m = mods
            x = x + g_a[:, None] * self.attn(
                modulate(self.norm_attn(x), sh_a, sc_a), grid, rope, "spatial", False
            )
            x = x + g_t[:, None] * self.attn_temporal(
                modulate(self.norm_temporal(x), sh_t, sc_t), grid, rope, "temporal", self.causal
            )
        x = x + self.cross(self.norm_cross(x), context, context_mask)
        return x + g_m[:, None] * self.mlp(modulate(self.norm_mlp(x), sh_m, sc_m))


class SpacetimeDiT(Checkpointed, nn.Module):
    """Patch embed -> DiT blocks -> modulated norm + linear -> unpatchify.

    ``forward(x, sigma, context, context_mask=None, pooled=None)`` maps latents ``[B, C, T, H, W]`` at
    noise level ``sigma`` (flow-matching time in [0, 1]) to the prediction named by ``config.prediction``
    (velocity ``ε - x0`` by default). Runs at any T/H/W divisible by the patch size.
    """

    KIND = KIND  # checkpoint metadata kind (Checkpointed)
    CONFIG_CLASS = DiTConfig

    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        self.config = cfg = config
        self.patch_embed = nn.Linear(cfg.patch_dim, cfg.width)
        self.t_embed = TimestepEmbedder(cfg.width)
        self.text_proj = nn.Sequential(
            nn.Linear(cfg.text_dim, cfg.width), nn.GELU(), nn.Linear(cfg.width, cfg.width)
        )
        if cfg.pooled_text:
            self.pooled_proj = nn.Sequential(
                nn.Linear(cfg.text_dim, cfg.width), nn.SiLU(), nn.Linear(cfg.width, cfg.width)
            )
        self.blocks = nn.ModuleList(DiTBlock(cfg) for _ in range(cfg.depth))
        self.norm_out = nn.LayerNorm(cfg.width, elementwise_affine=False, eps=1e-6)
        self.adaln_out = AdaLNZero(cfg.width, cfg.width, 2)
        self.proj_out = nn.Linear(cfg.width, cfg.out_channels * cfg.patch_t * cfg.patch_s**2)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """Xavier-uniform linears, zero biases; zero-init: every AdaLN-Zero linear (gates start at 0),
        each cross-attention output projection (fresh blocks are the identity) and the output layer.
        """
        if next(self.parameters()).is_meta:
            return
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.t_embed.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embed.mlp[2].weight, std=0.02)
        for block in self.blocks:
            block.adaln.zero_init()
            nn.init.zeros_(block.cross.proj.weight)
            nn.init.zeros_(block.cross.proj.bias)
        self.adaln_out.zero_init()
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def _check_inputs(
        self, x: Tensor, context: Tensor, context_mask: Tensor | None, pooled: Tensor | None
    ) -> None:
        cfg = self.config
        if x.ndim != 5 or x.shape[1] != cfg.in_channels:
            raise ValueError(f"x must be latents [B, {cfg.in_channels}, T, H, W], got shape {tuple(x.shape)}")
        check_patchable(tuple(x.shape), cfg.patch_t, cfg.patch_s)
        check_text_inputs(x.shape[0], context, context_mask, pooled, cfg.text_dim, cfg.pooled_text)

    def forward(
        self,
        x: Tensor,
        sigma: Tensor | float,
        context: Tensor,
        context_mask: Tensor | None = None,
        pooled: Tensor | None = None,
        rope_scale: tuple[float, float, float] = (1.0, 1.0, 1.0),
    ) -> Tensor:
        cfg = self.config
        self._check_inputs(x, context, context_mask, pooled)
        b = x.shape[0]
        sigma = torch.as_tensor(sigma, device=x.device, dtype=torch.float32).reshape(-1).expand(b)
        tokens = patchify(x, cfg.patch_t, cfg.patch_s)
        _, t, h, w, _ = tokens.shape
        grid = (t, h, w)
        hidden = self.patch_embed(rearrange(tokens, "b t h w c -> b (t h w) c"))
        if cfg.abs_pos_embed:
            hidden = hidden + sincos_3d(t, h, w, cfg.width, device=x.device).to(hidden.dtype)
        rope = rope_3d(t, h, w, split_head_dim(cfg.head_dim), cfg.rope_theta, rope_scale, device=x.device)
        sp = sequence_shard(t * h * w)  # the whole sequence on one process; this rank's tokens under SP
        hidden, rope = sp.split(hidden, dim=1), sp.split(rope, dim=0)
        c = self.t_embed(sigma * cfg.timestep_scale)
        if cfg.pooled_text:
            c = c + self.pooled_proj(pooled.to(c.dtype))
        ctx = self.text_proj(context.to(hidden.dtype))
        for block in self.blocks:
            hidden = block(hidden, c, ctx, context_mask, grid, rope)
        shift, scale = self.adaln_out(c)
        out = sp.gather(self.proj_out(modulate(self.norm_out(hidden), shift, scale)), dim=1)
        out = rearrange(out, "b (t h w) c -> b t h w c", t=t, h=h, w=w)
        return unpatchify(out, cfg.patch_t, cfg.patch_s)


def dit_parameter_count(cfg: DiTConfig) -> int:
    """Closed-form parameter count of :class:`SpacetimeDiT` (weights + biases of every layer)."""
    d, dt, hd = cfg.width, cfg.text_dim, cfg.head_dim

    def lin(i: int, o: int) -> int:
        return i * o + o

    qk = 2 * hd if cfg.qk_norm else 0
    self_attn = lin(d, 3 * d) + lin(d, d) + qk
    cross = lin(d, d) + lin(d, 2 * d) + lin(d, d) + qk
    n_self = 2 if cfg.layout == "factorized" else 1
    block = n_self * self_attn + cross + 2 * d + lin(d, cfg.mlp_hidden) + lin(cfg.mlp_hidden, d)
    block += lin(d, cfg.num_modulations * d)
    total = lin(cfg.patch_dim, d) + lin(256, d) + lin(d, d) + lin(dt, d) + lin(d, d)
    if cfg.pooled_text:
        total += lin(dt, d) + lin(d, d)
    total += cfg.depth * block + lin(d, 2 * d) + lin(d, cfg.out_channels * cfg.patch_t * cfg.patch_s**2)
    return total
