"""Building blocks of the Wan video VAEs (Wan-Video/Wan2.1 wan/modules/vae.py, Wan-Video/Wan2.2
wan/modules/vae2_2.py), with the parameter names of diffusers
src/diffusers/models/autoencoders/autoencoder_kl_wan.py.

Every temporal convolution is causal and runs in chunks: a :class:`FrameStream` carries, per module, the last
frames it saw (2 for a kernel-3 conv, Wan's CACHE_T), so a clip is processed a few frames at a time with the
result of one pass over the whole clip and a working set that does not grow with the frame count.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import Tensor, nn

from vidcore.ops.attention import attention

_LOW_PRECISION = (torch.float16, torch.bfloat16)


@dataclass
class FrameStream:
    """State carried from one temporal chunk to the next during one encode or decode (Wan's feat_cache).

    ``first_chunk``: the chunk holds the clip's first frame (the encoder's single first frame, the decoder's
    first latent frame), which the temporal resamplers pass through without resampling.
    ``frames``: per module, the trailing frames it needs from the previous chunk.
    """

    first_chunk: bool = True
    frames: dict[nn.Module, Tensor] = field(default_factory=dict)


class CausalConv3d(nn.Conv3d):
    """Conv3d zero-padded in space and only on the past side in time (2·padding_t frames).

    With a stream, the past frames are the previous chunk's last ones (zeros before the first chunk), so
    chunked and one-shot convolution agree. The padding is written explicitly into one buffer: PyTorch's CPU
    conv3d is ~10% slower with its own padding at these sizes.
    """

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel: int | tuple[int, int, int],
        stride: int | tuple[int, int, int] = 1,
        padding: int | tuple[int, int, int] = 0,
    ) -> None:
        super().__init__(c_in, c_out, kernel, stride=stride)
        pt, ph, pw = (padding,) * 3 if isinstance(padding, int) else padding
        self.context = 2 * pt
        self.pad_hw = (ph, pw)

    def forward(self, x: Tensor, stream: FrameStream | None = None) -> Tensor:
        ctx, (ph, pw) = self.context, self.pad_hw
        if ctx or ph or pw:
            prev = stream.frames.get(self) if stream is not None and ctx else None
            b, c, t, h, w = x.shape
            padded = x.new_zeros(b, c, ctx + t, h + 2 * ph, w + 2 * pw)
            if prev is not None:
                padded[:, :, :ctx, ph : ph + h, pw : pw + w] = prev
            padded[:, :, ctx:, ph : ph + h, pw : pw + w] = x
            if stream is not None and ctx:
                # clone: a view would keep the whole padded chunk alive until the next one
                stream.frames[self] = padded[:, :, -ctx:, ph : ph + h, pw : pw + w].clone()
            x = padded
        return super().forward(x)


class RMSNorm(nn.Module):
    """x / ‖x‖₂ · √C · γ over the channel axis (dim 1): Wan's RMS_norm via F.normalize (eps 1e-12)."""

    def __init__(self, dim: int, video: bool = True) -> None:
        super().__init__()
        self.scale = dim**0.5
        # gamma [C, 1, 1, 1] for [B, C, T, H, W], [C, 1, 1] for per-frame [N, C, H, W] (checkpoint shapes)
        self.gamma = nn.Parameter(torch.ones(dim, 1, 1, 1) if video else torch.ones(dim, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        # Half precision: normalise in fp32 (as diffusers' WanRMS_norm) so ‖x‖² cannot overflow.
        y = F.normalize(x.float() if x.dtype in _LOW_PRECISION else x, dim=1).to(x.dtype)
        return y * self.scale * self.gamma


class ResidualBlock(nn.Module):
    """(RMSNorm, SiLU, causal conv 3³) twice, plus a 1³ conv shortcut when the width changes."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.norm1 = RMSNorm(c_in)
        self.conv1 = CausalConv3d(c_in, c_out, 3, padding=1)
        self.norm2 = RMSNorm(c_out)
        self.conv2 = CausalConv3d(c_out, c_out, 3, padding=1)
        self.conv_shortcut = CausalConv3d(c_in, c_out, 1) if c_in != c_out else None

    def forward(self, x: Tensor, stream: FrameStream) -> Tensor:
        skip = x if self.conv_shortcut is None else self.conv_shortcut(x)
        h = self.conv1(F.silu(self.norm1(x)), stream)
        h = self.conv2(F.silu(self.norm2(h)), stream)
        return h + skip


class AttentionBlock(nn.Module):
    """Single-head self-attention inside each frame (tokens = the frame's H·W cells), residual."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = RMSNorm(dim, video=False)
        self.to_qkv = nn.Conv2d(dim, 3 * dim, 1)
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, _, _, h, _ = x.shape
        y = self.to_qkv(self.norm(rearrange(x, "b c t h w -> (b t) c h w")))
        # Tokens x (q|k|v) channels in one contiguous buffer: the layout Wan and diffusers hand to SDPA, so
        # its kernel (and rounding) is theirs.
        q, k, v = rearrange(y, "n c3 h w -> n 1 (h w) c3").contiguous().chunk(3, dim=-1)
        y = rearrange(attention(q, k, v), "n 1 (h w) c -> n c h w", h=h)
        return x + rearrange(self.proj(y), "(b t) c h w -> b c t h w", b=b)


class MidBlock(nn.Module):
    """Residual block, attention, residual block."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.resnets = nn.ModuleList([ResidualBlock(dim, dim), ResidualBlock(dim, dim)])
        self.attentions = nn.ModuleList([AttentionBlock(dim)])

    def forward(self, x: Tensor, stream: FrameStream) -> Tensor:
        x = self.resnets[0](x, stream)
        x = self.attentions[0](x)
        return self.resnets[1](x, stream)


class NearestUp2d(nn.Module):
    """2x nearest-exact upsampling of [N, C, H, W], computed in fp32 (nearest is not bf16-safe everywhere)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.interpolate(x.float(), scale_factor=2.0, mode="nearest-exact").to(x.dtype)


class Resample(nn.Module):
    """2x spatial down/up-sampling per frame, optionally with 2x temporal resampling (a causal time conv).

    ``downsample3d``: frame 0 passes alone; later frames go through a stride-2 kernel-3 time conv whose window
    starts at the previous chunk's last frame, so chunks of 2k frames halve exactly.
    ``upsample3d``: the first latent frame stays one frame; later frames each become two, from a time conv
    with 2·dim outputs whose halves are interleaved in time.
    """

    MODES = ("downsample2d", "downsample3d", "upsample2d", "upsample3d")

    def __init__(self, dim: int, mode: str, upsample_out_dim: int | None = None) -> None:
        super().__init__()
        if mode not in self.MODES:
            raise ValueError(f"mode={mode!r} must be one of {list(self.MODES)}")
        self.mode = mode
        self.time_conv: CausalConv3d | None = None
        if mode.startswith("up"):
            self.resample = nn.Sequential(
                NearestUp2d(), nn.Conv2d(dim, upsample_out_dim or dim, 3, padding=1)
            )
            if mode == "upsample3d":
                self.time_conv = CausalConv3d(dim, 2 * dim, (3, 1, 1), padding=(1, 0, 0))
        else:
            # Pad right/bottom only, then a stride-2 3x3 conv: H, W -> H/2, W/2 for even sizes.
            self.resample = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(dim, dim, 3, stride=2))
            if mode == "downsample3d":
                self.time_conv = CausalConv3d(dim, dim, (3, 1, 1), stride=(2, 1, 1))

    def forward(self, x: Tensor, stream: FrameStream) -> Tensor:
        if self.mode == "upsample3d" and not stream.first_chunk:
            assert self.time_conv is not None
            x = rearrange(self.time_conv(x, stream), "b (two c) t h w -> b c (t two) h w", two=2)
        b = x.shape[0]
        x = self.resample(rearrange(x, "b c t h w -> (b t) c h w"))
        x = rearrange(x, "(b t) c h w -> b c t h w", b=b)
        if self.mode == "downsample3d":
            assert self.time_conv is not None
            prev = stream.frames.get(self)
            stream.frames[self] = x[:, :, -1:].clone()
            if prev is not None:
                x = self.time_conv(torch.cat([prev, x], dim=2))
        return x


def avg_down(x: Tensor, c_out: int, factor_t: int, factor_s: int) -> Tensor:
    """Wan 2.2's AvgDown3D shortcut: zero-pad time at the front to a multiple of ``factor_t``, fold
    (factor_t, factor_s, factor_s) blocks into channels (order c, t, h, w) and average groups of channels."""
    pad_t = -x.shape[2] % factor_t
    if pad_t:
        x = F.pad(x, (0, 0, 0, 0, pad_t, 0))
    x = rearrange(
        x, "b c (t ft) (h fh) (w fw) -> b (c ft fh fw) t h w", ft=factor_t, fh=factor_s, fw=factor_s
    )
    return rearrange(x, "b (o g) t h w -> b o g t h w", o=c_out).mean(dim=2)


def dup_up(x: Tensor, c_out: int, factor_t: int, factor_s: int, first_chunk: bool) -> Tensor:
    """Wan 2.2's DupUp3D shortcut, the inverse layout of :func:`avg_down`: repeat each channel, unfold
    channels into (factor_t, factor_s, factor_s) blocks; the first chunk keeps only its last frame."""
    reps = c_out * factor_t * factor_s**2 // x.shape[1]
    x = repeat(x, "b c t h w -> b (c r) t h w", r=reps)
    x = rearrange(
        x, "b (o ft fh fw) t h w -> b o (t ft) (h fh) (w fw)", ft=factor_t, fh=factor_s, fw=factor_s
    )
    return x[:, :, factor_t - 1 :] if first_chunk else x


class ResidualDownBlock(nn.Module):
    """Wan 2.2 encoder stage: residual blocks and a resampler, plus an AvgDown3D shortcut around them."""

    def __init__(self, c_in: int, c_out: int, num_res_blocks: int, down_t: bool, down_s: bool) -> None:
        super().__init__()
        self.c_out = c_out
        self.factor_t = 2 if down_t else 1
        self.factor_s = 2 if down_s else 1
        self.resnets = nn.ModuleList(
            [ResidualBlock(c_in if i == 0 else c_out, c_out) for i in range(num_res_blocks)]
        )
        self.downsampler: Resample | None = None
        if down_s:
            self.downsampler = Resample(c_out, "downsample3d" if down_t else "downsample2d")

    def forward(self, x: Tensor, stream: FrameStream) -> Tensor:
        skip = avg_down(x, self.c_out, self.factor_t, self.factor_s)
        for resnet in self.resnets:
            x = resnet(x, stream)
        if self.downsampler is not None:
            x = self.downsampler(x, stream)
        return x + skip


class UpBlock(nn.Module):
    """Wan 2.1 decoder stage: residual blocks, then a resampler whose conv halves the width."""

    def __init__(self, c_in: int, c_out: int, num_res_blocks: int, mode: str | None) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(
            [ResidualBlock(c_in if i == 0 else c_out, c_out) for i in range(num_res_blocks + 1)]
        )
        self.upsamplers = None
        if mode is not None:
            self.upsamplers = nn.ModuleList([Resample(c_out, mode, upsample_out_dim=c_out // 2)])

    def forward(self, x: Tensor, stream: FrameStream) -> Tensor:
        for resnet in self.resnets:
            x = resnet(x, stream)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x, stream)
        return x


class ResidualUpBlock(nn.Module):
    """Wan 2.2 decoder stage: residual blocks and a width-keeping resampler, plus a DupUp3D shortcut."""

    def __init__(self, c_in: int, c_out: int, num_res_blocks: int, up_t: bool, up_s: bool) -> None:
        super().__init__()
        self.c_out = c_out
        self.factor_t = 2 if up_t else 1
        self.resnets = nn.ModuleList(
            [ResidualBlock(c_in if i == 0 else c_out, c_out) for i in range(num_res_blocks + 1)]
        )
        self.upsampler: Resample | None = None
        if up_s:
            self.upsampler = Resample(c_out, "upsample3d" if up_t else "upsample2d", upsample_out_dim=c_out)

    def forward(self, x: Tensor, stream: FrameStream) -> Tensor:
        h = x
        for resnet in self.resnets:
            h = resnet(h, stream)
        if self.upsampler is None:
            return h
        # The shortcut is 8x the input's size: build it last so it is not held during the residual blocks.
        return self.upsampler(h, stream) + dup_up(x, self.c_out, self.factor_t, 2, stream.first_chunk)
