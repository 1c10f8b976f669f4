"""The Wan 2.1 and Wan 2.2 causal video VAEs (Wan Team, "Wan: Open and Advanced Large-Scale Video Generative
Models", arXiv:2503.20314, sec. 3.1), numerically equal to diffusers' AutoencoderKLWan in fp32.

Encoding runs in chunks of 1, r, r, ... frames and decoding one latent frame at a time (r = 4, the temporal
ratio), each chunk written into a preallocated output: peak memory does not grow with the clip length beyond
the input and output tensors themselves.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from vidcore.models.wan.vae_blocks import (
    CausalConv3d,
    FrameStream,
    MidBlock,
    Resample,
    ResidualBlock,
    ResidualDownBlock,
    ResidualUpBlock,
    RMSNorm,
    UpBlock,
)
from vidcore.models.wan.vae_config import VIDEO_CHANNELS, WanVAEConfig

LOGVAR_RANGE = (-30.0, 20.0)  # diffusers' DiagonalGaussianDistribution clamp


class WanEncoder(nn.Module):
    """conv_in -> down stages -> mid block -> RMSNorm, SiLU -> conv_out (2·z_dim: mean and log-variance)."""

    def __init__(self, cfg: WanVAEConfig) -> None:
        super().__init__()
        dims = cfg.encoder_dims
        n = len(cfg.dim_mult)
        self.conv_in = CausalConv3d(cfg.in_channels, dims[0], 3, padding=1)
        blocks: list[nn.Module] = []
        for i in range(n):
            down_s = i < n - 1
            down_t = down_s and cfg.temperal_downsample[i]
            if cfg.is_residual:
                blocks.append(ResidualDownBlock(dims[i], dims[i + 1], cfg.num_res_blocks, down_t, down_s))
                continue
            # Wan 2.1: one flat list of residual blocks and resamplers (its checkpoint indices).
            for j in range(cfg.num_res_blocks):
                blocks.append(ResidualBlock(dims[i] if j == 0 else dims[i + 1], dims[i + 1]))
            if down_s:
                blocks.append(Resample(dims[i + 1], "downsample3d" if down_t else "downsample2d"))
        self.down_blocks = nn.ModuleList(blocks)
        self.mid_block = MidBlock(dims[-1])
        self.norm_out = RMSNorm(dims[-1])
        self.conv_out = CausalConv3d(dims[-1], 2 * cfg.z_dim, 3, padding=1)

    def forward(self, x: Tensor, stream: FrameStream) -> Tensor:
        x = self.conv_in(x, stream)
        for block in self.down_blocks:
            x = block(x, stream)
        x = self.mid_block(x, stream)
        return self.conv_out(F.silu(self.norm_out(x)), stream)


class WanDecoder(nn.Module):
    """conv_in -> mid block -> up stages -> RMSNorm, SiLU -> conv_out (patchified RGB)."""

    def __init__(self, cfg: WanVAEConfig) -> None:
        super().__init__()
        dims = cfg.decoder_dims
        n = len(cfg.dim_mult)
        up_t = cfg.temperal_downsample[::-1]
        self.conv_in = CausalConv3d(cfg.z_dim, dims[0], 3, padding=1)
        self.mid_block = MidBlock(dims[0])
        blocks: list[nn.Module] = []
        for i in range(n):
            up_s = i < n - 1
            temporal = up_s and up_t[i]
            if cfg.is_residual:
                blocks.append(ResidualUpBlock(dims[i], dims[i + 1], cfg.num_res_blocks, temporal, up_s))
                continue
            # Wan 2.1: every resampler halves the width, so stages after the first start at half width.
            c_in = dims[i] if i == 0 else dims[i] // 2
            mode = ("upsample3d" if temporal else "upsample2d") if up_s else None
            blocks.append(UpBlock(c_in, dims[i + 1], cfg.num_res_blocks, mode))
        self.up_blocks = nn.ModuleList(blocks)
        self.norm_out = RMSNorm(dims[-1])
        self.conv_out = CausalConv3d(dims[-1], cfg.out_channels, 3, padding=1)

    def forward(self, z: Tensor, stream: FrameStream) -> Tensor:
        x = self.conv_in(z, stream)
        x = self.mid_block(x, stream)
        for block in self.up_blocks:
            x = block(x, stream)
        return self.conv_out(F.silu(self.norm_out(x)), stream)


class WanVAE(nn.Module):
    """AutoencoderKLWan equivalent: ``encode`` video -> raw posterior mean, ``decode`` raw latents -> video.

    Latents are raw (not normalised), as diffusers' ``latent_dist.mode()``; :meth:`normalize` and
    :meth:`denormalize` apply the config's per-channel ``latents_mean`` / ``latents_std`` for the transformer.
    """

    def __init__(self, config: WanVAEConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = WanEncoder(config)
        self.quant_conv = CausalConv3d(2 * config.z_dim, 2 * config.z_dim, 1)
        self.post_quant_conv = CausalConv3d(config.z_dim, config.z_dim, 1)
        self.decoder = WanDecoder(config)

    # ---- properties and sizes ------------------------------------------------------------------------------
    @property
    def dtype(self) -> torch.dtype:
        return self.decoder.conv_in.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.decoder.conv_in.weight.device

    @property
    def temporal_ratio(self) -> int:
        return self.config.temporal_ratio

    @property
    def spatial_ratio(self) -> int:
        return self.config.spatial_ratio

    def latent_shape(self, num_frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """(C, T', H', W') of the latents of a clip of that size; raises listing valid sizes."""
        r, s = self.temporal_ratio, self.spatial_ratio
        if (
            isinstance(num_frames, bool)
            or not isinstance(num_frames, int)
            or num_frames < 1
            or (num_frames - 1) % r
        ):
            k = max(0, (num_frames - 1) // r) if isinstance(num_frames, int) else 0
            near = sorted({1 + r * k, 1 + r * (k + 1)})
            raise ValueError(
                f"num_frames={num_frames!r} must be 1 + {r}k for this Wan VAE (nearest valid: {near}; "
                f"e.g. 1, {1 + r}, {1 + 2 * r}, ..., {1 + 20 * r})"
            )
        for name, v in (("height", height), ("width", width)):
            if isinstance(v, bool) or not isinstance(v, int) or v < s or v % s:
                lo = max(s, v // s * s) if isinstance(v, int) else s
                near = sorted({lo, lo + s} if lo != v else {lo})
                raise ValueError(
                    f"{name}={v!r} must be a positive multiple of {s} for this Wan VAE "
                    f"(nearest valid: {near})"
                )
        return (self.config.z_dim, 1 + (num_frames - 1) // r, height // s, width // s)

    def video_shape(self, latent_frames: int, latent_height: int, latent_width: int) -> tuple[int, int, int]:
        """(T, H, W) that :meth:`decode` produces from latents of that size."""
        s = self.spatial_ratio
        return (1 + (latent_frames - 1) * self.temporal_ratio, latent_height * s, latent_width * s)

    # ---- patches -------------------------------------------------------------------------------------------
    def _patchify(self, x: Tensor) -> Tensor:
        # Channel order (c, w-sub, h-sub) of Wan-Video/Wan2.2 wan/modules/vae2_2.py patchify.
        p = self.config.patch
        return x if p == 1 else rearrange(x, "b c t (h q) (w r) -> b (c r q) t h w", q=p, r=p)

    def _unpatchify(self, x: Tensor) -> Tensor:
        p = self.config.patch
        return x if p == 1 else rearrange(x, "b (c r q) t h w -> b c t (h q) (w r)", q=p, r=p)

    # ---- encode --------------------------------------------------------------------------------------------
    def encode_moments(self, video: Tensor) -> tuple[Tensor, Tensor]:
        """(mean, logvar) of the diagonal Gaussian posterior of ``video`` [B, 3, T, H, W] in -1..1.

        Frames go through the encoder in chunks of 1, r, r, ... (the causal stream); each chunk yields one
        latent frame, written into a preallocated buffer as it comes.
        """
        if not isinstance(video, Tensor) or video.ndim != 5 or video.shape[1] != VIDEO_CHANNELS:
            shape = tuple(video.shape) if isinstance(video, Tensor) else type(video).__name__
            raise ValueError(f"video must be a tensor [B, {VIDEO_CHANNELS}, T, H, W], got {shape}")
        _, t_lat, h_lat, w_lat = self.latent_shape(*video.shape[2:])
        r, z = self.temporal_ratio, self.config.z_dim
        # The encoder's raw output is small (2·z_dim channels at latent resolution): collect it, then run the
        # pointwise quant_conv once over the clip, as diffusers does (identical rounding).
        h = torch.empty(video.shape[0], 2 * z, t_lat, h_lat, w_lat, dtype=self.dtype, device=self.device)
        stream = FrameStream()
        for i in range(t_lat):
            chunk = video[:, :, :1] if i == 0 else video[:, :, 1 + r * (i - 1) : 1 + r * i]
            h[:, :, i : i + 1] = self.encoder(
                self._patchify(chunk.to(device=self.device, dtype=self.dtype)), stream
            )
            stream.first_chunk = False
        moments = self.quant_conv(h)
        mean, logvar = moments[:, :z], moments[:, z:]
        return mean, logvar.clamp(*LOGVAR_RANGE)

    def encode(self, video: Tensor, sample: bool = False, generator: torch.Generator | None = None) -> Tensor:
        """Raw latents [B, z_dim, (T-1)/r + 1, H/s, W/s] of ``video`` [B, 3, T, H, W] in -1..1: the posterior
        mean (diffusers' ``latent_dist.mode()``), or a sample mean + exp(logvar/2)·ε when ``sample``."""
        mean, logvar = self.encode_moments(video)
        if not sample:
            return mean
        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + torch.exp(0.5 * logvar) * eps

    # ---- decode --------------------------------------------------------------------------------------------
    def decode(self, latents: Tensor, callback: Callable[[int, int], None] | None = None) -> Tensor:
        """Raw latents [B, z_dim, T', H', W'] -> video [B, 3, 1 + r(T'-1), s·H', s·W'] clamped to [-1, 1].

        One latent frame per decoder pass: the first gives one frame, each later one r frames;
        ``callback(done, total)`` after each (a host's progress and cancellation point).
        """
        z = self.config.z_dim
        if (
            not isinstance(latents, Tensor)
            or latents.ndim != 5
            or latents.shape[1] != z
            or 0 in latents.shape
        ):
            shape = tuple(latents.shape) if isinstance(latents, Tensor) else type(latents).__name__
            raise ValueError(f"latents must be a tensor [B, {z}, T', H', W'] (T', H', W' >= 1), got {shape}")
        b, _, t_lat, h_lat, w_lat = latents.shape
        out = torch.empty(
            b, VIDEO_CHANNELS, *self.video_shape(t_lat, h_lat, w_lat), dtype=self.dtype, device=self.device
        )
        x = self.post_quant_conv(latents.to(device=self.device, dtype=self.dtype))  # pointwise, latent-sized
        stream = FrameStream()
        start = 0
        for i in range(t_lat):
            frames = self._unpatchify(self.decoder(x[:, :, i : i + 1], stream))
            out[:, :, start : start + frames.shape[2]] = frames.clamp_(-1.0, 1.0)
            start += frames.shape[2]
            stream.first_chunk = False
            if callback is not None:
                callback(i + 1, t_lat)
        return out

    # ---- latent normalisation ------------------------------------------------------------------------------
    def _stats(self, ref: Tensor) -> tuple[Tensor, Tensor]:
        shape = (1, -1, 1, 1, 1)
        # In float32 first, then the latents' dtype (as diffusers' pipelines do).
        mean = torch.tensor(self.config.latents_mean, dtype=torch.float32).view(shape)
        inv_std = 1.0 / torch.tensor(self.config.latents_std, dtype=torch.float32).view(shape)
        return mean.to(ref.device, ref.dtype), inv_std.to(ref.device, ref.dtype)

    def normalize(self, z: Tensor) -> Tensor:
        """Raw -> transformer latents, (z - mean) / std per channel, computed as (z - mean)·(1/std): the
        form of Wan-Video/Wan2.1 wan/modules/vae.py WanVAE.scale and of diffusers' Wan pipelines."""
        mean, inv_std = self._stats(z)
        return (z - mean) * inv_std

    def denormalize(self, z: Tensor) -> Tensor:
        """Transformer -> raw latents, z·std + mean (computed as z / (1/std) + mean, as the same sources)."""
        mean, inv_std = self._stats(z)
        return z / inv_std + mean
