"""Causal 3D VAE (video <-> latents) with a diagonal-Gaussian posterior (Kingma & Welling 2014).

Design (see :mod:`vidcore.models.vae_blocks`):
- Pixel-unshuffle by ``patch_size`` at the input and pixel-shuffle at the output, so the 3D convs run at
  H/patch x W/patch; the rest of the spatial compression is space-to-depth downsampling inside the stack.
- Every conv is causal in time (k_t-1 frames of left padding replicating frame 0) and every norm is a
  per-position channel RMSNorm, so no output ever depends on a later frame, in the encoder or the decoder.
- Temporal downsampling is space-to-depth in time after replicating frame 0 once on the left at each 2x
  stage, so frame 0 is encoded alone: ``1 + k*r_t`` pixel frames <-> ``1 + k`` latent frames.
- Chunked encode/decode carries each causal conv's last k_t-1 input frames between chunks, so chunked
  equals whole (up to float rounding) and working memory depends on the chunk, not on the clip length.
- Spatial tiling blends overlapping tiles linearly; it is approximate near seams (each tile sees zero
  padding where its neighbours' pixels would be) and exact when one tile covers the frame.

Ranges: video is ``[B, 3, T, H, W]`` in [-1, 1] (beyond +-1.05 raises), computed in the VAE's parameter
dtype. ``decode`` returns the raw decoder output (roughly [-1, 1], NOT clamped); the caller (the
pipeline) clamps before converting to frames.
Latents are normalised ``z_n = (z - latent_shift) * latent_scale``; ``decode`` undoes it.
Chunking bounds memory under ``torch.no_grad()``/``torch.inference_mode()``; with autograd on, the graph
keeps every chunk alive.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor, nn

from vidcore.config import ConfigMixin, check_choice, check_positive
from vidcore.io.checkpoint import load_into, load_state_dict, read_config, save_checkpoint
from vidcore.io.frames import check_video
from vidcore.models.vae_blocks import (
    CausalConv3d,
    ChannelRMSNorm,
    Decoder3d,
    Encoder3d,
    ResBlock3d,
    Upsample3d,
    check_tiling,
    is_int,
    run_tiled,
)

VAE_KIND = "vidcore.vae"
LOGVAR_MIN, LOGVAR_MAX = -30.0, 20.0
ProgressCallback = Callable[[int, int], None]


def _is_pow2(n: int) -> bool:
    return isinstance(n, int) and not isinstance(n, bool) and n >= 1 and (n & (n - 1)) == 0


@dataclasses.dataclass(frozen=True)
class VAEConfig(ConfigMixin):
    """Configuration of :class:`CausalVAE3D`; the defaults give 1.47 M params, 8x spatial, 4x temporal.

    Levels: ``len(channel_multipliers)`` stages of ``num_res_blocks`` res blocks at ``base_channels * m``
    channels; transition i halves time while i < log2(temporal_compression) and space while
    i < log2(spatial_compression / patch_size). Narrow full-resolution levels keep CPU cost low (the 3D
    convs at full T and H/patch dominate the run time).
    """

    spatial_compression: int = 8
    temporal_compression: int = 4
    patch_size: int = 4  # pixel-unshuffle factor at the input; must divide spatial_compression
    base_channels: int = 16
    channel_multipliers: tuple[int, ...] = (1, 4, 4)
    num_res_blocks: int = 1
    mid_res_blocks: int = 1
    latent_channels: int = 8
    temporal_kernel: int = 3
    spatial_kernel: int = 3
    spatial_padding: str = "zeros"
    norm_eps: float = 1e-6
    latent_shift: float | tuple[float, ...] = 0.0
    latent_scale: float | tuple[float, ...] = 1.0

    def __post_init__(self) -> None:
        for name in ("spatial_compression", "temporal_compression", "patch_size"):
            value = getattr(self, name)
            if not _is_pow2(value):
                raise ValueError(f"{name}={value!r} must be a power of 2 (1, 2, 4, 8, ...)")
        if self.patch_size > self.spatial_compression:
            raise ValueError(
                f"patch_size={self.patch_size} must not exceed spatial_compression="
                f"{self.spatial_compression} (it is the first factor of the spatial compression)"
            )
        for name in ("base_channels", "latent_channels", "temporal_kernel", "spatial_kernel"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r} must be a positive integer")
        for name in ("num_res_blocks", "mid_res_blocks"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name}={value!r} must be a non-negative integer")
        if self.spatial_kernel % 2 == 0:
            raise ValueError(f"spatial_kernel={self.spatial_kernel} must be odd (symmetric 'same' padding)")
        mults = self.channel_multipliers
        if (
            not isinstance(mults, tuple)
            or not mults
            or any(isinstance(m, bool) or not isinstance(m, int) or m < 1 for m in mults)
        ):
            raise ValueError(f"channel_multipliers={mults!r} must be a non-empty tuple of positive integers")
        needed = max(self.num_spatial_downsamples, self.num_temporal_downsamples)
        if len(mults) - 1 < needed:
            raise ValueError(
                f"channel_multipliers={mults!r} gives {len(mults) - 1} downsampling transitions, but "
                f"spatial_compression={self.spatial_compression} / patch_size={self.patch_size} and "
                f"temporal_compression={self.temporal_compression} need {needed}; use at least "
                f"{needed + 1} multipliers"
            )
        check_choice("spatial_padding", self.spatial_padding, ("zeros", "replicate"))
        check_positive("norm_eps", self.norm_eps)
        for name in ("latent_shift", "latent_scale"):
            value = getattr(self, name)
            values = value if isinstance(value, tuple) else (value,)
            if isinstance(value, tuple) and len(value) != self.latent_channels:
                raise ValueError(
                    f"{name} has {len(value)} values, expected one float or latent_channels="
                    f"{self.latent_channels} values"
                )
            for v in values:
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                    raise ValueError(f"{name}={value!r} must hold finite numbers")
                if name == "latent_scale" and v == 0:
                    raise ValueError(f"latent_scale={value!r} must not contain 0")

    @property
    def num_spatial_downsamples(self) -> int:
        return int(math.log2(self.spatial_compression // self.patch_size))

    @property
    def num_temporal_downsamples(self) -> int:
        return int(math.log2(self.temporal_compression))

    @property
    def channels(self) -> tuple[int, ...]:
        return tuple(self.base_channels * m for m in self.channel_multipliers)


class Posterior(NamedTuple):
    """Diagonal Gaussian q(z|x) = N(mean, exp(logvar)) over raw (unnormalised) latents."""

    mean: Tensor
    logvar: Tensor

    def mode(self) -> Tensor:
        return self.mean

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        """Reparameterised sample z = mean + exp(logvar / 2) * eps (Kingma & Welling 2014, eq. 10)."""
        # Draw on the generator's device, so a seeded CPU generator gives the same latents everywhere.
        device = generator.device if generator is not None else self.mean.device
        eps = torch.randn(self.mean.shape, generator=generator, device=device, dtype=self.mean.dtype)
        return self.mean + torch.exp(0.5 * self.logvar) * eps.to(self.mean.device)

    def kl(self) -> Tensor:
        return kl(self.mean, self.logvar)


def kl(mean: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)) summed over all but the batch axis: shape [B]."""
    per_elem = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar)
    return per_elem.flatten(1).sum(dim=1)


class CausalVAE3D(nn.Module):
    """Causal 3D convolutional VAE: [B,3,1+k*r_t,H,W] in [-1,1] <-> [B,C,1+k,H/s,W/s] normalised latents."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        if not isinstance(config, VAEConfig):
            raise TypeError(f"config must be a VAEConfig, got {type(config).__name__}")
        self.config = config
        c = config
        args = (
            c.patch_size,
            c.channels,
            c.num_res_blocks,
            c.mid_res_blocks,
            c.latent_channels,
            c.num_spatial_downsamples,
            c.num_temporal_downsamples,
            c.temporal_kernel,
            c.spatial_kernel,
            c.spatial_padding,
            c.norm_eps,
        )
        self.encoder = Encoder3d(*args)
        self.decoder = Decoder3d(*args)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """Xavier-uniform conv weights; norm weights 1.

        Zero-inits: every conv bias; ``conv2.conv.weight`` of every ResBlock3d (each block starts as the
        identity). Upsample projections use ICNR (Aitken et al. 2017): all sub-positions share weights, so
        depth-to-space starts as nearest-neighbour upsampling and makes no checkerboard.
        """
        for m in self.modules():
            if isinstance(m, CausalConv3d):
                nn.init.xavier_uniform_(m.conv.weight)
                nn.init.zeros_(m.conv.bias)
        for m in self.modules():
            if isinstance(m, ResBlock3d):
                nn.init.zeros_(m.conv2.conv.weight)
            elif isinstance(m, Upsample3d) and m.factor > 1:
                w = m.proj.conv.weight  # [C_out * factor, C_in, 1, 1, 1], sub-position is the minor index
                base = torch.empty((w.shape[0] // m.factor, *w.shape[1:]), dtype=w.dtype, device=w.device)
                nn.init.xavier_uniform_(base)
                with torch.no_grad():
                    w.copy_(base.repeat_interleave(m.factor, dim=0))
            elif isinstance(m, ChannelRMSNorm):
                nn.init.ones_(m.weight)

    # ----------------------------------------------------------------------------------------- shapes
    @property
    def dtype(self) -> torch.dtype:
        return self.encoder.conv_in.conv.weight.dtype

    def latent_shape(self, num_frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """(C, T', H', W') of the latents of a ``num_frames x height x width`` video; raises if not valid."""
        c = self.config
        r, s = c.temporal_compression, c.spatial_compression
        if (
            isinstance(num_frames, bool)
            or not isinstance(num_frames, int)
            or num_frames < 1
            or ((num_frames - 1) % r)
        ):
            k = max(0, (num_frames - 1) // r) if isinstance(num_frames, int) else 0
            examples = ", ".join(str(1 + r * j) for j in range(max(0, k - 3), max(0, k - 3) + 6))
            raise ValueError(f"num_frames={num_frames!r} must be 1 + {r}k for this VAE (e.g. {examples})")
        for name, value in (("height", height), ("width", width)):
            if isinstance(value, bool) or not isinstance(value, int) or value < s or value % s:
                lo = max(s, (value // s) * s) if isinstance(value, int) else s
                near = sorted({lo, lo + s} if lo != value else {lo})
                raise ValueError(
                    f"{name}={value!r} must be a positive multiple of {s} for this VAE "
                    f"(e.g. {', '.join(map(str, near))})"
                )
        return (c.latent_channels, 1 + (num_frames - 1) // r, height // s, width // s)

    def video_shape(self, latent_frames: int, latent_height: int, latent_width: int) -> tuple[int, int, int]:
        """(T, H, W) that ``decode`` produces from latents of that size."""
        c = self.config
        return (
            1 + (latent_frames - 1) * c.temporal_compression,
            latent_height * c.spatial_compression,
            latent_width * c.spatial_compression,
        )

    def _check_video(self, video: Tensor) -> Tensor:
        check_video(video)
        self.latent_shape(*video.shape[2:])
        if video.numel() and video.device.type != "meta":
            lo, hi = video.aminmax()
            if not (torch.isfinite(lo) and torch.isfinite(hi)) or lo < -1.05 or hi > 1.05:
                raise ValueError(
                    f"video values must lie in [-1, 1], got min={lo.item():.4g}, max={hi.item():.4g} "
                    "(map frames in [0, 1] with 2 * x - 1)"
                )
        return video.to(self.dtype)

    def _check_latents(self, latents: Tensor) -> Tensor:
        if not isinstance(latents, Tensor):
            raise TypeError(f"latents must be a torch.Tensor [B, C, T, H, W], got {type(latents).__name__}")
        if not latents.is_floating_point():
            raise TypeError(f"latents dtype={latents.dtype} must be floating point")
        c = self.config.latent_channels
        if latents.ndim != 5 or latents.shape[1] != c or min(latents.shape[2:]) < 1:
            raise ValueError(
                f"latents shape={tuple(latents.shape)} must be [B, {c}, T', H', W'] with T', H', W' >= 1"
            )
        return latents.to(self.dtype)

    # ----------------------------------------------------------------------------------- normalisation
    def _shift_scale(self, ref: Tensor) -> tuple[Tensor, Tensor]:
        c = self.config
        shift = torch.as_tensor(c.latent_shift, dtype=ref.dtype, device=ref.device)
        scale = torch.as_tensor(c.latent_scale, dtype=ref.dtype, device=ref.device)
        return shift.reshape(1, -1, 1, 1, 1), scale.reshape(1, -1, 1, 1, 1)

    def normalize(self, z: Tensor) -> Tensor:
        """Raw latents -> model latents: (z - latent_shift) * latent_scale."""
        shift, scale = self._shift_scale(z)
        return (z - shift) * scale

    def denormalize(self, z_n: Tensor) -> Tensor:
        """Model latents -> raw latents: z_n / latent_scale + latent_shift."""
        shift, scale = self._shift_scale(z_n)
        return z_n / scale + shift

    def _run(
        self,
        net: nn.Module,
        x: Tensor,
        chunk: int | None,
        out_frames: Callable[[int, bool], int],
        ratio: tuple[int, int],
        tile_size: int | None,
        tile_overlap: int | None,
        callback: ProgressCallback | None,
    ) -> Tensor:
        """Spatial tiles (outer loop) x temporal chunks (inner loop); ``ratio`` = (out, in) size per axis."""
        if tile_size is None:
            tile_in = overlap_in = None
        else:
            s = self.config.spatial_compression
            tile_px, overlap_px = check_tiling(tile_size, tile_overlap, s)
            # Tile sizes are given in pixels; the encoder's input grid is pixels, the decoder's is latents.
            per_px = 1 if ratio[0] < ratio[1] else s
            tile_in, overlap_in = tile_px // per_px, overlap_px // per_px
        return run_tiled(net, x, chunk, out_frames, ratio, tile_in, overlap_in, callback)

    # ---------------------------------------------------------------------------------------- public API
    def posterior(
        self,
        video: Tensor,
        temporal_chunk: int | None = None,
        tile_size: int | None = None,
        tile_overlap: int | None = None,
        callback: ProgressCallback | None = None,
    ) -> Posterior:
        """q(z|x) for ``video`` [B, 3, 1 + k*r_t, H, W] in [-1, 1]; see :meth:`encode` for the options."""
        video = self._check_video(video)
        r = self.config.temporal_compression
        if temporal_chunk is not None and (not is_int(temporal_chunk, 1) or temporal_chunk % r):
            raise ValueError(
                f"temporal_chunk={temporal_chunk!r} must be a positive multiple of temporal_compression="
                f"{r} pixel frames (frame 0 is added to the first chunk)"
            )
        s = self.config.spatial_compression
        moments = self._run(
            self.encoder,
            video,
            temporal_chunk,
            lambda n, first: (n - 1) // r + 1 if first else n // r,
            (1, s),
            tile_size,
            tile_overlap,
            callback,
        )
        mean, logvar = moments.chunk(2, dim=1)
        return Posterior(mean, logvar.clamp(LOGVAR_MIN, LOGVAR_MAX))

    def encode(
        self,
        video: Tensor,
        sample: bool = False,
        generator: torch.Generator | None = None,
        temporal_chunk: int | None = None,
        tile_size: int | None = None,
        tile_overlap: int | None = None,
        callback: ProgressCallback | None = None,
    ) -> Tensor:
        """Normalised latents [B, C, 1 + k, H/s, W/s] of ``video`` [B, 3, 1 + k*r_t, H, W] in [-1, 1].

        ``sample=False`` returns the posterior mean; ``sample=True`` draws with ``generator``.
        ``temporal_chunk``: pixel frames per chunk (a multiple of r_t; the first chunk also holds frame 0).
        ``tile_size``/``tile_overlap``: spatial tiles in pixels (multiples of the spatial factor; overlap
        defaults to a quarter tile). ``callback(done, total)`` runs after each chunk and may raise to cancel.
        """
        post = self.posterior(video, temporal_chunk, tile_size, tile_overlap, callback)
        z = post.sample(generator) if sample else post.mode()
        return self.normalize(z)

    def decode(
        self,
        latents: Tensor,
        temporal_chunk: int | None = None,
        tile_size: int | None = None,
        tile_overlap: int | None = None,
        callback: ProgressCallback | None = None,
    ) -> Tensor:
        """Video [B, 3, 1 + k*r_t, H, W] (raw, roughly [-1, 1], NOT clamped) from normalised latents.

        ``temporal_chunk``: latent frames per chunk (the first chunk also holds latent frame 0).
        ``tile_size``/``tile_overlap`` are in output pixels. ``callback(done, total)`` runs after each chunk.
        """
        latents = self._check_latents(latents)
        if temporal_chunk is not None and not is_int(temporal_chunk, 1):
            raise ValueError(f"temporal_chunk={temporal_chunk!r} must be a positive number of latent frames")
        return self._decode_raw(self.denormalize(latents), temporal_chunk, tile_size, tile_overlap, callback)

    def _decode_raw(
        self,
        z: Tensor,
        temporal_chunk: int | None,
        tile_size: int | None,
        tile_overlap: int | None,
        callback: ProgressCallback | None,
    ) -> Tensor:
        r, s = self.config.temporal_compression, self.config.spatial_compression
        return self._run(
            self.decoder,
            z,
            temporal_chunk,
            lambda n, first: 1 + (n - 1) * r if first else n * r,
            (s, 1),
            tile_size,
            tile_overlap,
            callback,
        )

    def forward(
        self, video: Tensor, sample: bool = True, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Posterior]:
        """Training pass: (reconstruction, posterior); the reconstruction decodes a posterior sample."""
        post = self.posterior(video)
        z = post.sample(generator) if sample else post.mode()
        return self._decode_raw(z, None, None, None, None), post

    # ------------------------------------------------------------------------------------- checkpoints
    def save(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write weights + config to a safetensors checkpoint (kind ``vidcore.vae``)."""
        return save_checkpoint(path, self, self.config, VAE_KIND, overwrite=overwrite)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> CausalVAE3D:
        """Build on ``meta`` from the stored config, then load the weights (``assign=True``); eval mode."""
        _, cfg = read_config(path, expected_kind=VAE_KIND)
        config = VAEConfig.from_dict(cfg)
        with torch.device("meta"):
            model = cls(config)
        state = load_state_dict(path, device=device or "cpu")
        load_into(model, state, dtype=dtype, device=device, source=str(path))
        return model.eval()
