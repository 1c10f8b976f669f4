"""3D U-Net denoiser over video latents: the convolutional paradigm of video diffusion (Ho et al., 2022,
"Video Diffusion Models"), with the ADM layout of Dhariwal & Nichol (2021): residual blocks whose second
GroupNorm is modulated by the timestep (AdaGN, their §3), skip connections at every block, and attention
only at low resolution.

Convolutions are full 3x3x3 or factorized (2+1)D (Tran et al., 2018, "A Closer Look at Spatiotemporal
Convolutions": a 1x3x3 spatial conv, a nonlinearity, then a 3x1x1 temporal conv). Resolution changes are
spatial only (latent frames are kept). Temporal self-attention and masked cross-attention to the text tokens
run at the levels ``temporal_attn_levels`` / ``cross_attn_levels`` and in the middle block. Same call and
prediction convention as :class:`vidcore.models.dit.SpacetimeDiT`, so the same samplers, CFG and pyramidal
schedule drive it; it runs at any latent height/width divisible by ``grid_multiple``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ..config import ConfigMixin, check_choice, check_positive
from ..io.checkpoint import Checkpointed
from ..ops.attention import attention, temporal_attention
from ..ops.embeddings import TimestepEmbedder, check_text_inputs, frame_position_embedding

KIND = "vidcore.unet3d"
LAYOUTS = ("full", "factorized")
PREDICTIONS = ("velocity", "epsilon", "x0")


@dataclass(frozen=True)
class UNet3DConfig(ConfigMixin):
    """Shape of a :class:`UNet3D`. Level ``k`` runs at 1/2^k of the latent height and width with
    ``channels[k]`` channels; defaults build a small model (about 2 M parameters)."""

    in_channels: int = 8
    out_channels: int = 8
    channels: tuple[int, ...] = (64, 96, 128)
    blocks_per_level: int = 1
    layout: str = "full"  # "full" 3x3x3 convolutions or "factorized" (2+1)D
    temporal_attn_levels: tuple[int, ...] = (2,)  # levels with temporal self-attention (+ the middle)
    cross_attn_levels: tuple[int, ...] = (1, 2)  # levels with text cross-attention (+ the middle)
    heads: int = 4
    groups: int = 8  # GroupNorm groups
    emb_dim: int = 128  # width of the timestep (+ pooled text) embedding and of the projected text tokens
    text_dim: int = 384
    pooled_text: bool = True
    qk_norm: bool = True
    prediction: str = "velocity"
    timestep_scale: float = 1000.0

    def __post_init__(self) -> None:
        for name in (
            "in_channels",
            "out_channels",
            "blocks_per_level",
            "heads",
            "groups",
            "emb_dim",
            "text_dim",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"UNet3DConfig.{name}={value!r} must be a positive integer")
        chans = self.channels
        if (
            not isinstance(chans, tuple)
            or not chans
            or any(isinstance(c, bool) or not isinstance(c, int) or c <= 0 for c in chans)
        ):
            raise ValueError(f"UNet3DConfig.channels={chans!r} must be a non-empty list of positive integers")
        for c in chans:
            if c % self.groups:
                raise ValueError(
                    f"UNet3DConfig.channels={list(chans)}: every width must be divisible by "
                    f"groups={self.groups}"
                )
        for name in ("temporal_attn_levels", "cross_attn_levels"):
            levels = getattr(self, name)
            if not isinstance(levels, tuple) or any(
                isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < len(chans) for k in levels
            ):
                raise ValueError(
                    f"UNet3DConfig.{name}={levels!r} must list level indices in 0..{len(chans) - 1} "
                    f"(one per entry of channels={list(chans)})"
                )
        for k in sorted({*self.temporal_attn_levels, *self.cross_attn_levels, len(chans) - 1}):
            if chans[k] % self.heads or (chans[k] // self.heads) % 2:
                raise ValueError(
                    f"UNet3DConfig.channels[{k}]={chans[k]} must split into heads={self.heads} heads of an "
                    "even width (attention runs at that level)"
                )
        check_choice("UNet3DConfig.layout", self.layout, LAYOUTS)
        check_choice("UNet3DConfig.prediction", self.prediction, PREDICTIONS)
        check_positive("UNet3DConfig.timestep_scale", self.timestep_scale)

    @property
    def levels(self) -> int:
        return len(self.channels)

    @property
    def spatial_multiple(self) -> int:
        """Latent height and width must be multiples of this (one 2x downsampling per extra level)."""
        return 2 ** (self.levels - 1)


# ---- blocks ---------------------------------------------------------------------------------------------


class Conv(nn.Module):
    """3x3x3 convolution ("full"), or (2+1)D: 1x3x3 spatial -> SiLU -> 3x1x1 temporal ("factorized")."""

    def __init__(self, c_in: int, c_out: int, layout: str) -> None:
        super().__init__()
        if layout == "full":
            self.spatial = nn.Conv3d(c_in, c_out, 3, padding=1)
            self.temporal = None
        else:
            self.spatial = nn.Conv3d(c_in, c_out, (1, 3, 3), padding=(0, 1, 1))
            self.temporal = nn.Conv3d(c_out, c_out, (3, 1, 1), padding=(1, 0, 0))

    @property
    def last(self) -> nn.Conv3d:
        """The convolution whose output is the block's output (zero-initialised where a block must start
        as the identity)."""
        return self.spatial if self.temporal is None else self.temporal

    def forward(self, x: Tensor) -> Tensor:
        x = self.spatial(x)
        return x if self.temporal is None else self.temporal(F.silu(x))


class ResBlock(nn.Module):
    """GN -> SiLU -> conv -> AdaGN(emb) -> SiLU -> conv, plus a (1x1x1-projected) skip.

    AdaGN (Dhariwal & Nichol, 2021, §3): ``(1 + y_s)·GroupNorm(h) + y_b`` with ``(y_s, y_b)`` a linear map of
    the timestep (+ pooled text) embedding.
    """

    def __init__(self, c_in: int, c_out: int, cfg: UNet3DConfig) -> None:
        super().__init__()
        self.norm_in = nn.GroupNorm(cfg.groups, c_in, eps=1e-6)
        self.conv_in = Conv(c_in, c_out, cfg.layout)
        self.emb = nn.Linear(cfg.emb_dim, 2 * c_out)
        self.norm_out = nn.GroupNorm(cfg.groups, c_out, eps=1e-6, affine=False)
        self.conv_out = Conv(c_out, c_out, cfg.layout)
        self.skip = nn.Conv3d(c_in, c_out, 1) if c_in != c_out else None

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv_in(F.silu(self.norm_in(x)))
        scale, shift = self.emb(F.silu(emb))[:, :, None, None, None].chunk(2, dim=1)  # [B, C, 1, 1, 1] each
        h = self.conv_out(F.silu(self.norm_out(h) * (1 + scale) + shift))
        return (x if self.skip is None else self.skip(x)) + h


class TemporalAttention(nn.Module):
    """Each latent position attends across frames (Ho et al., 2022, §3: factorized space-time attention),
    with a sinusoidal frame-index embedding on the queries' and keys' input."""

    def __init__(self, ch: int, cfg: UNet3DConfig) -> None:
        super().__init__()
        self.heads = cfg.heads
        self.norm = nn.GroupNorm(cfg.groups, ch, eps=1e-6)
        self.qkv = nn.Linear(ch, 3 * ch)
        head_dim = ch // cfg.heads
        self.q_norm = nn.RMSNorm(head_dim, eps=1e-6) if cfg.qk_norm else nn.Identity()
        self.k_norm = nn.RMSNorm(head_dim, eps=1e-6) if cfg.qk_norm else nn.Identity()
        self.proj = nn.Linear(ch, ch)

    def forward(self, x: Tensor) -> Tensor:
        b, c, t, h, w = x.shape
        tokens = rearrange(self.norm(x), "b c t h w -> b t h w c")
        tokens = tokens + frame_position_embedding(t, c, device=x.device).to(x.dtype)[:, None, None]
        q, k, v = rearrange(
            self.qkv(tokens), "b t h w (three n d) -> three b t h w n d", three=3, n=self.heads
        )
        out = temporal_attention(self.q_norm(q), self.k_norm(k), v)
        out = self.proj(rearrange(out, "b t h w n d -> b t h w (n d)"))
        return x + rearrange(out, "b t h w c -> b c t h w")


class CrossAttention(nn.Module):
    """Every latent position attends to the (masked) text tokens."""

    def __init__(self, ch: int, cfg: UNet3DConfig) -> None:
        super().__init__()
        self.heads = cfg.heads
        self.norm = nn.GroupNorm(cfg.groups, ch, eps=1e-6)
        self.q = nn.Linear(ch, ch)
        self.kv = nn.Linear(cfg.emb_dim, 2 * ch)
        head_dim = ch // cfg.heads
        self.q_norm = nn.RMSNorm(head_dim, eps=1e-6) if cfg.qk_norm else nn.Identity()
        self.k_norm = nn.RMSNorm(head_dim, eps=1e-6) if cfg.qk_norm else nn.Identity()
        self.proj = nn.Linear(ch, ch)

    def forward(self, x: Tensor, context: Tensor, mask: Tensor | None) -> Tensor:
        b, c, t, h, w = x.shape
        q = rearrange(
            self.q(rearrange(self.norm(x), "b c t h w -> b (t h w) c")), "b l (n d) -> b n l d", n=self.heads
        )
        k, v = rearrange(self.kv(context), "b m (two n d) -> two b n m d", two=2, n=self.heads)
        out = attention(
            self.q_norm(q), self.k_norm(k), v, mask=None if mask is None else mask[:, None, None, :]
        )
        out = self.proj(rearrange(out, "b n l d -> b l (n d)"))
        return x + rearrange(out, "b (t h w) c -> b c t h w", t=t, h=h, w=w)


class Stage(nn.Module):
    """A residual block followed by the attention layers of its level."""

    def __init__(self, c_in: int, c_out: int, cfg: UNet3DConfig, temporal: bool, cross: bool) -> None:
        super().__init__()
        self.res = ResBlock(c_in, c_out, cfg)
        self.temporal = TemporalAttention(c_out, cfg) if temporal else None
        self.cross = CrossAttention(c_out, cfg) if cross else None

    def forward(self, x: Tensor, emb: Tensor, context: Tensor, mask: Tensor | None) -> Tensor:
        x = self.res(x, emb)
        if self.temporal is not None:
            x = self.temporal(x)
        if self.cross is not None:
            x = self.cross(x, context, mask)
        return x


class Downsample(nn.Module):
    """Stride-2 1x3x3 convolution: halves height and width, keeps frames."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(ch, ch, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest 2x in height and width, then a 1x3x3 convolution."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(ch, ch, (1, 3, 3), padding=(0, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=(1.0, 2.0, 2.0), mode="nearest"))


def _skip_widths(cfg: UNet3DConfig) -> list[int]:
    """Channels of every tensor the down path keeps for the up path, in push order (ADM layout)."""
    widths = [cfg.channels[0]]
    for level, ch in enumerate(cfg.channels):
        widths += [ch] * cfg.blocks_per_level
        if level < cfg.levels - 1:
            widths.append(ch)
    return widths


# ---- the model ------------------------------------------------------------------------------------------


class UNet3D(Checkpointed, nn.Module):
    """conv_in -> down levels (ResBlocks [+ attention], stride-2 convs) -> middle (ResBlock, temporal
    attention, cross-attention, ResBlock) -> up levels (ResBlocks on [h, skip] [+ attention], upsampling)
    -> GN, SiLU, zero-initialised conv_out.

    ``forward(x, sigma, context, context_mask=None, pooled=None)`` maps latents ``[B, C, T, H, W]`` at noise
    level ``sigma`` (flow-matching time in [0, 1]) to the prediction named by ``config.prediction``
    (velocity ``ε - x0`` by default).
    """

    KIND = KIND  # checkpoint metadata kind (Checkpointed)
    CONFIG_CLASS = UNet3DConfig

    def __init__(self, config: UNet3DConfig) -> None:
        super().__init__()
        self.config = cfg = config
        chans, last = cfg.channels, cfg.levels - 1
        self.t_embed = TimestepEmbedder(cfg.emb_dim)
        if cfg.pooled_text:
            self.pooled_proj = nn.Sequential(
                nn.Linear(cfg.text_dim, cfg.emb_dim), nn.SiLU(), nn.Linear(cfg.emb_dim, cfg.emb_dim)
            )
        self.text_proj = nn.Sequential(
            nn.Linear(cfg.text_dim, cfg.emb_dim), nn.GELU(), nn.Linear(cfg.emb_dim, cfg.emb_dim)
        )
        self.conv_in = Conv(cfg.in_channels, chans[0], cfg.layout)

        def stage(c_in: int, c_out: int, level: int) -> Stage:
            return Stage(c_in, c_out, cfg, level in cfg.temporal_attn_levels, level in cfg.cross_attn_levels)

        self.down = nn.ModuleList()
        prev = chans[0]
        for level, ch in enumerate(chans):
            for _ in range(cfg.blocks_per_level):
                self.down.append(stage(prev, ch, level))
                prev = ch
            if level < last:
                self.down.append(Downsample(ch))
        self.mid_in = ResBlock(prev, prev, cfg)
        self.mid_temporal = TemporalAttention(prev, cfg)
        self.mid_cross = CrossAttention(prev, cfg)
        self.mid_out = ResBlock(prev, prev, cfg)
        skips = _skip_widths(cfg)
        self.up = nn.ModuleList()
        for level in reversed(range(cfg.levels)):
            for _ in range(cfg.blocks_per_level + 1):
                self.up.append(stage(prev + skips.pop(), chans[level], level))
                prev = chans[level]
            if level > 0:
                self.up.append(Upsample(prev))
        self.norm_out = nn.GroupNorm(cfg.groups, prev, eps=1e-6)
        self.conv_out = Conv(prev, cfg.out_channels, cfg.layout)
        self.initialize_weights()

    @property
    def grid_multiple(self) -> tuple[int, int]:
        """(latent frames, latent height / width) the input sizes must be multiples of."""
        return 1, self.config.spatial_multiple

    def initialize_weights(self) -> None:
        """PyTorch's default conv init; linears Xavier-uniform with zero biases, the timestep MLP N(0, 0.02).
        Zero-init: the last conv of every ResBlock and each attention output projection (fresh blocks are
        the identity, as in ADM) and the output conv (the untrained model predicts 0).
        """
        if next(self.parameters()).is_meta:
            return
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.t_embed.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embed.mlp[2].weight, std=0.02)
        for m in self.modules():
            if isinstance(m, ResBlock):
                _zero(m.conv_out.last)
            elif isinstance(m, (TemporalAttention, CrossAttention)):
                _zero(m.proj)
        _zero(self.conv_out.last)

    def _check_inputs(
        self, x: Tensor, context: Tensor, context_mask: Tensor | None, pooled: Tensor | None
    ) -> None:
        cfg = self.config
        if x.ndim != 5 or x.shape[1] != cfg.in_channels:
            raise ValueError(f"x must be latents [B, {cfg.in_channels}, T, H, W], got shape {tuple(x.shape)}")
        m = cfg.spatial_multiple
        if x.shape[-2] % m or x.shape[-1] % m:
            raise ValueError(
                f"latent height x width {x.shape[-2]}x{x.shape[-1]} must be multiples of {m} for this U-Net "
                f"({cfg.levels - 1} downsampling levels)"
            )
        check_text_inputs(x.shape[0], context, context_mask, pooled, cfg.text_dim, cfg.pooled_text)

    def forward(
        self,
        x: Tensor,
        sigma: Tensor | float,
        context: Tensor,
        context_mask: Tensor | None = None,
        pooled: Tensor | None = None,
    ) -> Tensor:
        cfg = self.config
        self._check_inputs(x, context, context_mask, pooled)
        sigma = torch.as_tensor(sigma, device=x.device, dtype=torch.float32).reshape(-1).expand(x.shape[0])
        emb = self.t_embed(sigma * cfg.timestep_scale)
        if cfg.pooled_text:
            emb = emb + self.pooled_proj(pooled.to(emb.dtype))
        ctx = self.text_proj(context.to(emb.dtype))
        h = self.conv_in(x)
        skips = [h]
        for layer in self.down:
            h = layer(h) if isinstance(layer, Downsample) else layer(h, emb, ctx, context_mask)
            skips.append(h)
        h = self.mid_out(self.mid_cross(self.mid_temporal(self.mid_in(h, emb)), ctx, context_mask), emb)
        for layer in self.up:
            if isinstance(layer, Upsample):
                h = layer(h)
            else:
                h = layer(torch.cat([h, skips.pop()], dim=1), emb, ctx, context_mask)
        return self.conv_out(F.silu(self.norm_out(h)))


def _zero(m: nn.Module) -> None:
    nn.init.zeros_(m.weight)
    nn.init.zeros_(m.bias)


# ---- counting -------------------------------------------------------------------------------------------


def unet3d_parameter_count(cfg: UNet3DConfig) -> int:
    """Closed-form parameter count of :class:`UNet3D` (weights + biases of every layer).

    The lecture's rule of thumb: a full 3x3x3 conv layer of width C holds 27·C² weights, a factorized one
    9·C² + 3·C², against 12·C² per transformer block (attention 4·C², MLP 8·C²).
    """
    e, dt = cfg.emb_dim, cfg.text_dim

    def lin(i: int, o: int) -> int:
        return i * o + o

    def conv(i: int, o: int) -> int:
        if cfg.layout == "full":
            return 27 * i * o + o
        return 9 * i * o + o + 3 * o * o + o

    def res(i: int, o: int) -> int:
        return 2 * i + conv(i, o) + lin(e, 2 * o) + conv(o, o) + (i * o + o if i != o else 0)

    def attn(c: int, temporal: bool) -> int:
        qk = 2 * (c // cfg.heads) if cfg.qk_norm else 0
        inner = lin(c, 3 * c) if temporal else lin(c, c) + lin(e, 2 * c)
        return 2 * c + inner + qk + lin(c, c)

    def stage(i: int, o: int, level: int) -> int:
        n = res(i, o)
        n += attn(o, True) if level in cfg.temporal_attn_levels else 0
        return n + (attn(o, False) if level in cfg.cross_attn_levels else 0)

    total = lin(256, e) + lin(e, e) + lin(dt, e) + lin(e, e)
    if cfg.pooled_text:
        total += lin(dt, e) + lin(e, e)
    chans = cfg.channels
    total += conv(cfg.in_channels, chans[0])
    prev = chans[0]
    for level, ch in enumerate(chans):
        for _ in range(cfg.blocks_per_level):
            total += stage(prev, ch, level)
            prev = ch
        if level < cfg.levels - 1:
            total += 9 * ch * ch + ch
    total += 2 * res(prev, prev) + attn(prev, True) + attn(prev, False)
    skips = _skip_widths(cfg)
    for level in reversed(range(cfg.levels)):
        for _ in range(cfg.blocks_per_level + 1):
            total += stage(prev + skips.pop(), chans[level], level)
            prev = chans[level]
        if level > 0:
            total += 9 * prev * prev + prev
    return total + 2 * prev + conv(prev, cfg.out_channels)


def _sdpa_cpu_flops(query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, **kwargs: Any) -> int:
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query_shape, key_shape, value_shape)


def forward_flops(model: nn.Module | Callable[..., Tensor], *args: Any, **kwargs: Any) -> int:
    """Floating-point operations (2 per multiply-add) of one call ``model(*args, **kwargs)``, counted op by op
    with ``torch.utils.flop_counter`` (convolutions, matmuls, attention; elementwise ops and norms are not
    counted). Works for any denoiser (e.g. ``forward_flops(dit, x, sigma, context, mask, pooled)``)."""
    from torch.utils.flop_counter import FlopCounterMode

    # The CPU flash-attention kernel SDPA dispatches to has no registered formula: count it as SDPA.
    custom = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu_flops}
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=custom) as counter:
        model(*args, **kwargs)
    return int(counter.get_total_flops())
