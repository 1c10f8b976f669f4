"""Building blocks of the causal 3D VAE: causal convs with a chunk carry, per-position RMS norm, res blocks,
space-to-depth down/up sampling, and the encoder/decoder stacks.

Every block takes ``cache``: ``None`` processes a whole clip; a dict (one per stream, shared by all blocks)
carries state between temporal chunks so that chunked processing equals the whole-clip result. Nothing here
ever looks at a later frame, and nothing mixes statistics across time or space (hence no GroupNorm).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn


def is_int(value: object, minimum: int) -> bool:
    """True for a plain int (not bool) >= ``minimum``."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


# Per-stream carry: causal convs store their last k_t-1 input frames; resamplers store None as a
# "first chunk already seen" marker.
StreamCache = dict[nn.Module, Tensor | None]


class CausalConv3d(nn.Module):
    """3D conv that is causal in time: k_t-1 frames of left padding that replicate frame 0 (or the carry)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        temporal_kernel: int = 3,
        spatial_kernel: int = 3,
        spatial_padding: str = "zeros",
    ) -> None:
        super().__init__()
        self.time_pad = temporal_kernel - 1
        self.conv = nn.Conv3d(
            in_channels,
            out_channels,
            (temporal_kernel, spatial_kernel, spatial_kernel),
            padding=(0, spatial_kernel // 2, spatial_kernel // 2),
            padding_mode=spatial_padding,
        )

    def forward(self, x: Tensor, cache: StreamCache | None = None) -> Tensor:
        if self.time_pad:
            past = None if cache is None else cache.get(self)
            if past is None:
                # First (or only) chunk: frame 0 stands in for the frames before the clip.
                past = x[:, :, :1].expand(-1, -1, self.time_pad, -1, -1)
            x = torch.cat([past, x], dim=2)
            if cache is not None:
                # clone() so the carry does not keep the whole concatenated chunk alive.
                cache[self] = x[:, :, -self.time_pad :].clone()
        return conv3d(self.conv, x)


def _use_onednn(x: Tensor) -> bool:
    return x.device.type == "cpu" and x.dtype == torch.float32 and torch.backends.mkldnn.is_available()


def conv3d(conv: nn.Conv3d, x: Tensor) -> Tensor:
    """``conv(x)``, but always through oneDNN for fp32 CPU inputs.

    PyTorch's CPU dispatch sends a batch of 1 with B*C*T*H <= 20480 to ``slow_conv3d`` (vol2col: a column
    buffer k^3 times the input and 5-10x slower). That hits exactly the short chunks of streamed decoding,
    which would then be slower and use more memory than decoding the whole clip at once.
    """
    if not (torch.backends.mkldnn.enabled and _use_onednn(x)):
        return conv(x)
    if conv.padding_mode != "zeros":
        _, ph, pw = conv.padding
        x, padding = F.pad(x, (pw, pw, ph, ph, 0, 0), mode=conv.padding_mode), (0, 0, 0)
    else:
        padding = conv.padding
    return torch.mkldnn_convolution(
        x.contiguous(), conv.weight, conv.bias, padding, conv.stride, conv.dilation, 1
    )


class ChannelRMSNorm(nn.Module):
    """RMSNorm over channels at each (t, h, w) position (Zhang & Sennrich 2019); causal and tile-local."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))

    def forward(self, x: Tensor) -> Tensor:
        xf = x.float()  # statistics in fp32 so bf16/fp16 models stay stable
        xf = xf * torch.rsqrt(xf.pow(2).mean(dim=1, keepdim=True) + self.eps)
        return xf.to(x.dtype) * self.weight.view(1, -1, 1, 1, 1)


class ResBlock3d(nn.Module):
    """Pre-norm residual block: x + conv2(silu(norm2(conv1(silu(norm1(x))))))."""

    def __init__(
        self, channels: int, temporal_kernel: int, spatial_kernel: int, spatial_padding: str, eps: float
    ) -> None:
        super().__init__()
        self.norm1 = ChannelRMSNorm(channels, eps)
        self.conv1 = CausalConv3d(channels, channels, temporal_kernel, spatial_kernel, spatial_padding)
        self.norm2 = ChannelRMSNorm(channels, eps)
        self.conv2 = CausalConv3d(channels, channels, temporal_kernel, spatial_kernel, spatial_padding)

    def forward(self, x: Tensor, cache: StreamCache | None = None) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)), cache)
        h = self.conv2(F.silu(self.norm2(h)), cache)
        return x + h


class Downsample3d(nn.Module):
    """Space-to-depth by (2 in time?, 2x2 in space?) then a 1x1x1 projection.

    Time keeps the first frame alone: the first chunk is left-padded with one copy of frame 0, so the
    groups are (x0, x0), (x1, x2), (x3, x4), ... and 1 + 2k frames become 1 + k. Later chunks are already
    aligned (even length) and need no carry.
    """

    def __init__(self, in_channels: int, out_channels: int, temporal: bool, spatial: bool) -> None:
        super().__init__()
        self.pt = 2 if temporal else 1
        self.ps = 2 if spatial else 1
        factor = self.pt * self.ps * self.ps
        self.proj = CausalConv3d(in_channels * factor, out_channels, 1, 1)

    def forward(self, x: Tensor, cache: StreamCache | None = None) -> Tensor:
        if self.pt == 2:
            if cache is None or self not in cache:
                x = torch.cat([x[:, :, :1], x], dim=2)
            if cache is not None:
                cache[self] = None
        x = rearrange(
            x, "b c (t pt) (h ph) (w pw) -> b (c pt ph pw) t h w", pt=self.pt, ph=self.ps, pw=self.ps
        )
        return self.proj(x)


class Upsample3d(nn.Module):
    """1x1x1 projection, then depth-to-space; in time the first chunk drops its first frame (1+k -> 1+2k)."""

    def __init__(self, in_channels: int, out_channels: int, temporal: bool, spatial: bool) -> None:
        super().__init__()
        self.pt = 2 if temporal else 1
        self.ps = 2 if spatial else 1
        self.factor = self.pt * self.ps * self.ps
        self.proj = CausalConv3d(in_channels, out_channels * self.factor, 1, 1)

    def forward(self, x: Tensor, cache: StreamCache | None = None) -> Tensor:
        x = self.proj(x)
        x = rearrange(
            x, "b (c pt ph pw) t h w -> b c (t pt) (h ph) (w pw)", pt=self.pt, ph=self.ps, pw=self.ps
        )
        if self.pt == 2:
            if cache is None or self not in cache:
                x = x[:, :, 1:]  # latent frame 0 decodes to pixel frame 0 alone
            if cache is not None:
                cache[self] = None
        return x


def _resample_plan(num_levels: int, n_spatial: int, n_temporal: int) -> list[tuple[bool, bool]]:
    """(temporal, spatial) halving at each of the num_levels-1 transitions, earliest transitions first."""
    return [(i < n_temporal, i < n_spatial) for i in range(num_levels - 1)]


class Encoder3d(nn.Module):
    """Pixel-unshuffle, causal conv stack with space-to-depth downsampling, then mean and logvar."""

    def __init__(
        self,
        patch_size: int,
        channels: tuple[int, ...],
        num_res_blocks: int,
        mid_res_blocks: int,
        latent_channels: int,
        n_spatial: int,
        n_temporal: int,
        temporal_kernel: int,
        spatial_kernel: int,
        spatial_padding: str,
        eps: float,
    ) -> None:
        super().__init__()
        self.patch_size = patch_size
        conv_args = (temporal_kernel, spatial_kernel, spatial_padding)
        self.conv_in = CausalConv3d(3 * patch_size * patch_size, channels[0], *conv_args)
        self.levels = nn.ModuleList(
            nn.ModuleList(ResBlock3d(c, *conv_args, eps) for _ in range(num_res_blocks)) for c in channels
        )
        self.downs = nn.ModuleList(
            Downsample3d(channels[i], channels[i + 1], t, s)
            for i, (t, s) in enumerate(_resample_plan(len(channels), n_spatial, n_temporal))
        )
        self.mid = nn.ModuleList(ResBlock3d(channels[-1], *conv_args, eps) for _ in range(mid_res_blocks))
        self.norm_out = ChannelRMSNorm(channels[-1], eps)
        self.conv_out = CausalConv3d(channels[-1], 2 * latent_channels, *conv_args)

    def forward(self, video: Tensor, cache: StreamCache | None = None) -> Tensor:
        p = self.patch_size
        x = rearrange(video, "b c t (h p1) (w p2) -> b (c p1 p2) t h w", p1=p, p2=p)
        x = self.conv_in(x, cache)
        for i, blocks in enumerate(self.levels):
            for block in blocks:
                x = block(x, cache)
            if i < len(self.downs):
                x = self.downs[i](x, cache)
        for block in self.mid:
            x = block(x, cache)
        return self.conv_out(F.silu(self.norm_out(x)), cache)


class Decoder3d(nn.Module):
    """Mirror of :class:`Encoder3d`: causal conv stack with depth-to-space upsampling, then pixel-shuffle."""

    def __init__(
        self,
        patch_size: int,
        channels: tuple[int, ...],
        num_res_blocks: int,
        mid_res_blocks: int,
        latent_channels: int,
        n_spatial: int,
        n_temporal: int,
        temporal_kernel: int,
        spatial_kernel: int,
        spatial_padding: str,
        eps: float,
    ) -> None:
        super().__init__()
        self.patch_size = patch_size
        conv_args = (temporal_kernel, spatial_kernel, spatial_padding)
        self.conv_in = CausalConv3d(latent_channels, channels[-1], *conv_args)
        self.mid = nn.ModuleList(ResBlock3d(channels[-1], *conv_args, eps) for _ in range(mid_res_blocks))
        # levels[i] and ups[i] are stored in encoder order (shallow first) and run deepest first.
        self.levels = nn.ModuleList(
            nn.ModuleList(ResBlock3d(c, *conv_args, eps) for _ in range(num_res_blocks)) for c in channels
        )
        self.ups = nn.ModuleList(
            Upsample3d(channels[i + 1], channels[i], t, s)
            for i, (t, s) in enumerate(_resample_plan(len(channels), n_spatial, n_temporal))
        )
        self.norm_out = ChannelRMSNorm(channels[0], eps)
        self.conv_out = CausalConv3d(channels[0], 3 * patch_size * patch_size, *conv_args)

    def forward(self, z: Tensor, cache: StreamCache | None = None) -> Tensor:
        x = self.conv_in(z, cache)
        for block in self.mid:
            x = block(x, cache)
        for i in reversed(range(len(self.levels))):
            for block in self.levels[i]:
                x = block(x, cache)
            if i > 0:
                x = self.ups[i - 1](x, cache)
        x = self.conv_out(F.silu(self.norm_out(x)), cache)
        p = self.patch_size
        return rearrange(x, "b (c p1 p2) t h w -> b c t (h p1) (w p2)", p1=p, p2=p)


# ------------------------------------------------------------------------------------------ spatial tiling
def check_tiling(tile_size: int, tile_overlap: int | None, factor: int) -> tuple[int, int]:
    """Validate pixel tile size/overlap (multiples of ``factor``); overlap defaults to a quarter tile."""
    if (
        isinstance(tile_size, bool)
        or not isinstance(tile_size, int)
        or tile_size < factor
        or tile_size % factor
    ):
        raise ValueError(
            f"tile_size={tile_size!r} must be a positive multiple of the spatial factor {factor}"
        )
    if tile_overlap is None:
        tile_overlap = (tile_size // 4) // factor * factor
    if not is_int(tile_overlap, 0) or tile_overlap % factor or tile_overlap >= tile_size:
        raise ValueError(
            f"tile_overlap={tile_overlap!r} must be a multiple of {factor} in [0, tile_size={tile_size})"
        )
    return tile_size, tile_overlap


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of length ``tile`` covering ``size``; the last tile is flush with the end."""
    if size <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, size - tile, stride))
    return starts + [size - tile]


def _ramp(length: int, overlap: int, left: bool, right: bool, ref: Tensor) -> Tensor:
    """Blend weight along one axis: linear ramps of ``overlap`` samples on sides that have a neighbour."""
    w = torch.ones(length, dtype=ref.dtype, device=ref.device)
    n = min(overlap, length)
    if n:
        ramp = torch.arange(1, n + 1, dtype=ref.dtype, device=ref.device) / (n + 1)
        if left:
            w[:n] = torch.minimum(w[:n], ramp)
        if right:
            w[-n:] = torch.minimum(w[-n:], ramp.flip(0))
    return w


def blend_tiles(tiles: list[tuple[int, int, Tensor]], size: tuple[int, int], overlap: int) -> Tensor:
    """Weighted average of overlapping tiles ``(y0, x0, [B, C, T, h, w])`` into a ``size`` = (H, W) frame."""
    height, width = size
    ref = tiles[0][2]
    out = ref.new_zeros((*ref.shape[:3], height, width))
    weight = ref.new_zeros((height, width))
    for y0, x0, t in tiles:
        th, tw = t.shape[-2:]
        wy = _ramp(th, overlap, y0 > 0, y0 + th < height, t)
        wx = _ramp(tw, overlap, x0 > 0, x0 + tw < width, t)
        w2 = wy[:, None] * wx[None, :]
        out[..., y0 : y0 + th, x0 : x0 + tw] += t * w2
        weight[y0 : y0 + th, x0 : x0 + tw] += w2
    return out / weight


# --------------------------------------------------------------------------------- chunked, tiled runs
def stream_chunks(
    net: nn.Module,
    x: Tensor,
    chunk: int | None,
    out_frames: Callable[[int, bool], int],
    callback: Callable[[int, int], None] | None,
    progress: list[int],
) -> Tensor:
    """Run ``net`` over time chunks [0, 1 + chunk), then ``chunk`` frames each, carrying causal state.

    ``out_frames(n, first)`` is the output length of an n-frame chunk; ``progress`` = [done, total].
    """
    t = x.shape[2]
    if chunk is None or 1 + chunk >= t:
        bounds = [(0, t)]
    else:
        bounds = [(0, 1 + chunk)] + [(a, min(a + chunk, t)) for a in range(1 + chunk, t, chunk)]
    cache: StreamCache | None = None if len(bounds) == 1 else {}
    out: Tensor | None = None
    pos = 0
    for a, b in bounds:
        y = net(x[:, :, a:b], cache)
        if len(bounds) == 1:
            out = y
        else:
            if out is None:
                # Preallocate so chunks are written in place instead of concatenated at the end.
                total = sum(out_frames(bb - aa, j == 0) for j, (aa, bb) in enumerate(bounds))
                out = y.new_empty((*y.shape[:2], total, *y.shape[3:]))
            out[:, :, pos : pos + y.shape[2]] = y
        pos += y.shape[2]
        del y
        progress[0] += 1
        if callback is not None:
            callback(progress[0], progress[1])
    assert out is not None
    return out


def run_tiled(
    net: nn.Module,
    x: Tensor,
    chunk: int | None,
    out_frames: Callable[[int, bool], int],
    ratio: tuple[int, int],
    tile: int | None,
    overlap: int | None,
    callback: Callable[[int, int], None] | None,
) -> Tensor:
    """Spatial tiles (outer loop, sizes on ``x``'s grid) x temporal chunks (inner loop), blended linearly.

    ``ratio`` = (out, in): output pixels per input pixel along H and W.
    """
    t, h, w = x.shape[2:]
    num, den = ratio
    starts_h = [0] if tile is None else tile_starts(h, tile, overlap or 0)
    starts_w = [0] if tile is None else tile_starts(w, tile, overlap or 0)
    n_chunks = 1 if chunk is None or 1 + chunk >= t else 1 + math.ceil((t - 1 - chunk) / chunk)
    progress = [0, len(starts_h) * len(starts_w) * n_chunks]
    if len(starts_h) == 1 and len(starts_w) == 1:
        return stream_chunks(net, x, chunk, out_frames, callback, progress)
    assert tile is not None and overlap is not None
    results = []
    for y0 in starts_h:
        for x0 in starts_w:
            part = x[:, :, :, y0 : y0 + tile, x0 : x0 + tile]
            out = stream_chunks(net, part, chunk, out_frames, callback, progress)
            results.append((y0 * num // den, x0 * num // den, out))
    return blend_tiles(results, (h * num // den, w * num // den), overlap * num // den)
