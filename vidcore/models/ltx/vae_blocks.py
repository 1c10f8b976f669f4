"""Building blocks of LTX-Video's causal video VAE, ported from diffusers
src/diffusers/models/autoencoders/autoencoder_kl_ltx.py (its parameter names)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from vidcore.models.ltx.config import DOWNSAMPLE_STRIDES
from vidcore.models.ltx.layers import TimestepEmbedding, layer_norm_channels, rms_norm_channels

NORM_EPS = 1e-8  # the resnets' RMSNorm eps (resnet_norm_eps only reaches the shortcut LayerNorm)


class CausalConv3d(nn.Module):
    """Conv3d with zero padding in space and frame replication in time (causal: left only)."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel: int = 3,
        stride: tuple[int, int, int] = (1, 1, 1),
        causal: bool = True,
    ) -> None:
        super().__init__()
        self.kernel_t = kernel
        self.causal = causal
        self.conv = nn.Conv3d(c_in, c_out, kernel, stride=stride, padding=(0, kernel // 2, kernel // 2))

    def forward(self, x: Tensor) -> Tensor:
        k = self.kernel_t
        if k > 1:
            if self.causal:
                x = torch.cat([x[:, :, :1].expand(-1, -1, k - 1, -1, -1), x], dim=2)
            else:
                pad = (k - 1) // 2
                first = x[:, :, :1].expand(-1, -1, pad, -1, -1)
                last = x[:, :, -1:].expand(-1, -1, pad, -1, -1)
                x = torch.cat([first, x, last], dim=2)
        return self.conv(x)


class ResnetBlock3d(nn.Module):
    """RMSNorm -> [adaLN] -> SiLU -> conv -> [+noise] twice, plus a (LayerNorm + 1x1 conv) shortcut."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        eps: float,
        causal: bool,
        inject_noise: bool = False,
        timestep_conditioning: bool = False,
    ) -> None:
        super().__init__()
        self.conv1 = CausalConv3d(c_in, c_out, causal=causal)
        self.conv2 = CausalConv3d(c_out, c_out, causal=causal)
        self.eps = eps
        self.norm3: nn.LayerNorm | None = None
        self.conv_shortcut: CausalConv3d | None = None
        if c_in != c_out:
            self.norm3 = nn.LayerNorm(c_in, eps=eps)
            self.conv_shortcut = CausalConv3d(c_in, c_out, kernel=1, causal=causal)
        self.per_channel_scale1: nn.Parameter | None = None
        self.per_channel_scale2: nn.Parameter | None = None
        if inject_noise:
            self.per_channel_scale1 = nn.Parameter(torch.zeros(c_in, 1, 1))
            self.per_channel_scale2 = nn.Parameter(torch.zeros(c_in, 1, 1))
        self.scale_shift_table: nn.Parameter | None = None
        if timestep_conditioning:
            self.scale_shift_table = nn.Parameter(torch.randn(4, c_in) / math.sqrt(c_in))

    @staticmethod
    def _noise(h: Tensor, scale: Tensor, generator: torch.Generator | None) -> Tensor:
        # One randn(H, W) per call, shared over batch, channels (scaled) and time: diffusers' draw order.
        noise = torch.randn(h.shape[-2:], generator=generator, device=h.device, dtype=h.dtype)
        return h + (scale * noise)[None, :, None]

    def forward(
        self, x: Tensor, temb: Tensor | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        h = rms_norm_channels(x, NORM_EPS)
        if self.scale_shift_table is not None:
            if temb is None:
                raise ValueError("this timestep-conditioned VAE block needs a decode timestep (got None)")
            # temb: [B, 4C, 1, 1, 1] -> (shift1, scale1, shift2, scale2), each [B, C, 1, 1, 1]
            mod = rearrange(temb, "b (four c) t h w -> b four c t h w", four=4)
            mod = mod + self.scale_shift_table[None, :, :, None, None, None].to(mod.dtype)
            shift1, scale1, shift2, scale2 = mod.unbind(dim=1)
            h = h * (1 + scale1) + shift1
        h = self.conv1(F.silu(h))
        if self.per_channel_scale1 is not None:
            h = self._noise(h, self.per_channel_scale1, generator)
        h = rms_norm_channels(h, NORM_EPS)
        if self.scale_shift_table is not None:
            h = h * (1 + scale2) + shift2
        h = self.conv2(F.silu(h))
        if self.per_channel_scale2 is not None:
            h = self._noise(h, self.per_channel_scale2, generator)
        if self.norm3 is not None and self.conv_shortcut is not None:
            x = self.conv_shortcut(layer_norm_channels(x, self.norm3.weight, self.norm3.bias, self.norm3.eps))
        return x + h


def space_to_depth(x: Tensor, stride: tuple[int, int, int]) -> Tensor:
    """[B, C, T·st, H·sh, W·sw] -> [B, C·st·sh·sw, T, H, W], channel order (c, st, sh, sw)."""
    st, sh, sw = stride
    return rearrange(x, "b c (t st) (h sh) (w sw) -> b (c st sh sw) t h w", st=st, sh=sh, sw=sw)


def depth_to_space(x: Tensor, stride: tuple[int, int, int]) -> Tensor:
    """Inverse of :func:`space_to_depth`."""
    st, sh, sw = stride
    return rearrange(x, "b (c st sh sw) t h w -> b c (t st) (h sh) (w sw)", st=st, sh=sh, sw=sw)


class Downsampler3d(nn.Module):
    """0.9.5 downsampler: conv to C_out/(st·sh·sw) then space-to-depth, plus a grouped-mean residual."""

    def __init__(self, c_in: int, c_out: int, stride: tuple[int, int, int], causal: bool) -> None:
        super().__init__()
        self.stride = stride
        factor = stride[0] * stride[1] * stride[2]
        self.group_size = c_in * factor // c_out
        self.conv = CausalConv3d(c_in, c_out // factor, causal=causal)

    def forward(self, x: Tensor) -> Tensor:
        # (stride_t - 1) copies of frame 0 in front keep the 1 + k·stride_t frame rule.
        x = torch.cat([x[:, :, : self.stride[0] - 1], x], dim=2)
        residual = rearrange(
            space_to_depth(x, self.stride), "b (c g) t h w -> b c g t h w", g=self.group_size
        )
        return space_to_depth(self.conv(x), self.stride) + residual.mean(dim=2)


class Upsampler3d(nn.Module):
    """Conv to C·st·sh·sw/f channels, depth-to-space, drop the first st-1 frames (T -> 2T-1); +residual."""

    def __init__(
        self, c_in: int, stride: tuple[int, int, int], causal: bool, residual: bool, factor: int
    ) -> None:
        super().__init__()
        self.stride = stride
        self.residual = residual
        self.repeats = stride[0] * stride[1] * stride[2] // factor
        self.conv = CausalConv3d(c_in, c_in * self.repeats, causal=causal)

    def forward(self, x: Tensor) -> Tensor:
        drop = self.stride[0] - 1
        h = depth_to_space(self.conv(x), self.stride)[:, :, drop:]
        if self.residual:
            # channel-tiled (repeat, not interleave) depth-to-space of the input
            res = depth_to_space(x, self.stride)[:, :, drop:]
            h = h + res.repeat(1, self.repeats, 1, 1, 1)
        return h


class DownBlock3d(nn.Module):
    """Encoder block: resnets -> downsampler -> channel-changing resnet ``conv_out`` (0.9.0 style only)."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        layers: int,
        eps: float,
        causal: bool,
        scaling: bool,
        kind: str,
        is_095: bool,
    ) -> None:
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock3d(c_in, c_in, eps, causal) for _ in range(layers)])
        self.downsamplers: nn.ModuleList | None = None
        if scaling:
            if kind == "conv":
                down: nn.Module = CausalConv3d(c_in, c_in, stride=(2, 2, 2), causal=causal)
            else:
                down = Downsampler3d(c_in, c_out, DOWNSAMPLE_STRIDES[kind], causal)
            self.downsamplers = nn.ModuleList([down])
        self.conv_out: ResnetBlock3d | None = None
        if not is_095 and c_in != c_out:
            self.conv_out = ResnetBlock3d(c_in, c_out, eps, causal)

    def forward(self, x: Tensor) -> Tensor:
        for r in self.resnets:
            x = r(x)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
        if self.conv_out is not None:
            x = self.conv_out(x)
        return x


class MidBlock3d(nn.Module):
    """Resnet stack at constant width; owns a timestep MLP (sinusoid -> 4C) when timestep-conditioned."""

    def __init__(
        self, c: int, layers: int, eps: float, causal: bool, inject_noise: bool, timestep_conditioning: bool
    ) -> None:
        super().__init__()
        self.time_embedder = TimestepEmbedding(4 * c) if timestep_conditioning else None
        self.resnets = nn.ModuleList(
            [ResnetBlock3d(c, c, eps, causal, inject_noise, timestep_conditioning) for _ in range(layers)]
        )

    def embed(self, t: Tensor | None, batch: int, dtype: torch.dtype) -> Tensor | None:
        if self.time_embedder is None or t is None:
            return None
        return self.time_embedder(t.flatten(), dtype).view(batch, -1, 1, 1, 1)

    def forward(self, x: Tensor, t: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        temb = self.embed(t, x.shape[0], x.dtype)
        for r in self.resnets:
            x = r(x, temb, generator)
        return x


class UpBlock3d(nn.Module):
    """Decoder block: channel-changing resnet ``conv_in`` -> upsampler -> resnets."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        layers: int,
        eps: float,
        causal: bool,
        scaling: bool,
        inject_noise: bool,
        timestep_conditioning: bool,
        residual: bool,
        factor: int,
    ) -> None:
        super().__init__()
        self.time_embedder = TimestepEmbedding(4 * c_in) if timestep_conditioning else None
        self.conv_in: ResnetBlock3d | None = None
        if c_in != c_out:
            self.conv_in = ResnetBlock3d(c_in, c_out, eps, causal, inject_noise, timestep_conditioning)
        self.upsamplers: nn.ModuleList | None = None
        if scaling:
            self.upsamplers = nn.ModuleList(
                [Upsampler3d(c_out * factor, (2, 2, 2), causal, residual, factor)]
            )
        self.resnets = nn.ModuleList(
            [
                ResnetBlock3d(c_out, c_out, eps, causal, inject_noise, timestep_conditioning)
                for _ in range(layers)
            ]
        )

    def forward(self, x: Tensor, t: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        # diffusers feeds conv_in the raw timestep tensor, not its embedding; conv_in is never
        # timestep-conditioned in released checkpoints (0.9.1+ widen through the upsamplers instead).
        if self.conv_in is not None:
            x = self.conv_in(x, t, generator)
        temb = None
        if self.time_embedder is not None and t is not None:
            temb = self.time_embedder(t.flatten(), x.dtype).view(x.shape[0], -1, 1, 1, 1)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x)
        for r in self.resnets:
            x = r(x, temb, generator)
        return x
