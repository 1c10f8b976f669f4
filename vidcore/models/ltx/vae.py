"""LTX-Video causal video VAE (HaCohen et al., 2024, arXiv:2501.00103): 32x spatial / 8x temporal, 128 latent
channels; a port of diffusers src/diffusers/models/autoencoders/autoencoder_kl_ltx.py."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from vidcore.models.ltx.chunked import decode_in_chunks
from vidcore.models.ltx.config import LTXVAEConfig
from vidcore.models.ltx.layers import TimestepEmbedding, rms_norm_channels
from vidcore.models.ltx.vae_blocks import NORM_EPS, CausalConv3d, DownBlock3d, MidBlock3d, UpBlock3d

LOGVAR_RANGE = (-30.0, 20.0)


class LTXVideoEncoder(nn.Module):
    """Patchify (c, pt, p_w, p_h) -> conv_in -> down blocks -> mid -> norm, SiLU -> conv_out (C+1)."""

    def __init__(self, cfg: LTXVAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        causal, eps = cfg.encoder_causal, cfg.resnet_norm_eps
        ch = cfg.block_out_channels
        self.conv_in = CausalConv3d(
            cfg.in_channels * cfg.patch_size**2 * cfg.patch_size_t, ch[0], causal=causal
        )
        n = cfg.num_down_blocks
        blocks = []
        c_out = ch[0]
        for i in range(n):
            c_in = c_out
            # 0.9.0 blocks keep the last width; 0.9.5 lists one extra (output) width.
            c_out = ch[i + 1] if (cfg.is_095_encoder or i + 1 < n) else ch[i]
            blocks.append(
                DownBlock3d(
                    c_in,
                    c_out,
                    cfg.layers_per_block[i],
                    eps,
                    causal,
                    cfg.spatio_temporal_scaling[i],
                    cfg.downsample_type[i] if cfg.is_095_encoder else "conv",
                    cfg.is_095_encoder,
                )
            )
        self.down_blocks = nn.ModuleList(blocks)
        self.mid_block = MidBlock3d(c_out, cfg.layers_per_block[-1], eps, causal, False, False)
        # One shared log-variance channel after the means (latent_log_var "uniform").
        self.conv_out = CausalConv3d(c_out, cfg.latent_channels + 1, causal=causal)

    def forward(self, video: Tensor) -> tuple[Tensor, Tensor]:
        """video [B, 3, T, H, W] in -1..1 -> (mean, logvar), each [B, C, T', H', W']."""
        p, pt = self.cfg.patch_size, self.cfg.patch_size_t
        h = rearrange(video, "b c (f pt) (h ph) (w pw) -> b (c pt pw ph) f h w", pt=pt, ph=p, pw=p)
        h = self.conv_in(h)
        for block in self.down_blocks:
            h = block(h)
        h = self.mid_block(h)
        h = self.conv_out(F.silu(rms_norm_channels(h, NORM_EPS)))
        c = self.cfg.latent_channels
        mean, logvar = h[:, :c], h[:, c:].expand(-1, c, -1, -1, -1)
        return mean, logvar.clamp(*LOGVAR_RANGE)


class LTXVideoDecoder(nn.Module):
    """conv_in -> mid -> up blocks -> RMSNorm -> [timestep shift/scale] -> SiLU -> conv_out -> unpatchify."""

    def __init__(self, cfg: LTXVAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        causal, eps = cfg.decoder_causal, cfg.resnet_norm_eps
        tc = cfg.timestep_conditioning
        # Config lists are shallow -> deep; the decoder runs deep -> shallow.
        ch = cfg.decoder_block_out_channels[::-1]
        scaling = cfg.decoder_spatio_temporal_scaling[::-1]
        layers = cfg.decoder_layers_per_block[::-1]
        noise = cfg.decoder_inject_noise[::-1]
        residual = cfg.upsample_residual[::-1]
        factor = cfg.upsample_factor[::-1]
        c_out = ch[0]
        self.conv_in = CausalConv3d(cfg.latent_channels, c_out, causal=causal)
        self.mid_block = MidBlock3d(c_out, layers[0], eps, causal, noise[0], tc)
        blocks = []
        for i in range(len(ch)):
            c_in = c_out // factor[i]
            c_out = ch[i] // factor[i]
            blocks.append(
                UpBlock3d(
                    c_in,
                    c_out,
                    layers[i + 1],
                    eps,
                    causal,
                    scaling[i],
                    noise[i + 1],
                    tc,
                    residual[i],
                    factor[i],
                )
            )
        self.up_blocks = nn.ModuleList(blocks)
        self.conv_out = CausalConv3d(
            c_out, cfg.out_channels * cfg.patch_size**2 * cfg.patch_size_t, causal=causal
        )
        self.time_embedder: TimestepEmbedding | None = None
        self.scale_shift_table: nn.Parameter | None = None
        self.timestep_scale_multiplier: nn.Parameter | None = None
        if tc:
            # A learned scalar (init 1000), not a constant: it maps the decode timestep to the embedding scale
            # and comes with the weights (diffusers autoencoder_kl_ltx.py, LTXVideoDecoder3d).
            self.timestep_scale_multiplier = nn.Parameter(torch.tensor(1000.0))
            self.time_embedder = TimestepEmbedding(2 * c_out)
            self.scale_shift_table = nn.Parameter(torch.randn(2, c_out) / math.sqrt(c_out))

    def forward(
        self, z: Tensor, timestep: Tensor | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        """z [B, C, T', H', W'] (un-normalised) -> video [B, 3, T, H, W]; ``timestep`` [B] if conditioned."""
        h = self.conv_in(z)
        t = None
        if self.timestep_scale_multiplier is not None:
            if timestep is None:
                raise ValueError("this LTX VAE decoder is timestep-conditioned: pass a decode timestep")
            t = timestep.to(h.dtype) * self.timestep_scale_multiplier
        h = self.mid_block(h, t, generator)
        for block in self.up_blocks:
            h = block(h, t, generator)
        h = rms_norm_channels(h, NORM_EPS)
        if self.time_embedder is not None and self.scale_shift_table is not None and t is not None:
            emb = self.time_embedder(t.flatten(), h.dtype)
            emb = rearrange(emb, "b (two c) -> b two c", two=2) + self.scale_shift_table[None].to(h.dtype)
            shift, scale = (rearrange(v, "b c -> b c 1 1 1") for v in emb.unbind(dim=1))
            h = h * (1 + scale) + shift
        h = self.conv_out(F.silu(h))
        p, pt = self.cfg.patch_size, self.cfg.patch_size_t
        return rearrange(h, "b (c pt pw ph) f h w -> b c (f pt) (h ph) (w pw)", pt=pt, ph=p, pw=p)


class LTXVideoVAE(nn.Module):
    """AutoencoderKLLTXVideo equivalent: ``encode`` video -> raw latents, ``decode`` raw latents -> video.

    ``normalize_latents`` / ``denormalize_latents`` apply the per-channel statistics shipped in the weights;
    the transformer (and a ComfyUI LTXV LATENT) works on normalised latents.
    """

    def __init__(self, cfg: LTXVAEConfig) -> None:
        super().__init__()
        self.config = cfg
        self.encoder = LTXVideoEncoder(cfg)
        self.decoder = LTXVideoDecoder(cfg)
        self.register_buffer("latents_mean", torch.zeros(cfg.latent_channels), persistent=True)
        self.register_buffer("latents_std", torch.ones(cfg.latent_channels), persistent=True)

    @property
    def spatial_ratio(self) -> int:
        return self.config.spatial_ratio

    @property
    def temporal_ratio(self) -> int:
        return self.config.temporal_ratio

    def check_video_size(self, num_frames: int, height: int, width: int) -> None:
        """Raise ValueError unless frames = 1 + k·temporal_ratio and H, W are multiples of spatial_ratio."""
        tr, sr = self.temporal_ratio, self.spatial_ratio
        if num_frames < 1 or (num_frames - 1) % tr:
            k = max(0, (num_frames - 1) // tr)
            raise ValueError(
                f"num_frames={num_frames} must be 1 + {tr}k for this VAE (nearest valid: "
                f"{sorted({1 + tr * k, 1 + tr * (k + 1)})}, e.g. 9, 17, 25, ..., 161)"
            )
        for name, v in (("height", height), ("width", width)):
            if v < sr or v % sr:
                near = sorted({max(sr, v // sr * sr), (v // sr + 1) * sr})
                raise ValueError(f"{name}={v} must be a positive multiple of {sr} (nearest valid: {near})")

    def encode_moments(self, video: Tensor) -> tuple[Tensor, Tensor]:
        """(mean, logvar) of the diagonal Gaussian posterior for video [B, 3, T, H, W] in -1..1."""
        if video.ndim != 5 or video.shape[1] != self.config.in_channels:
            raise ValueError(
                f"video must be [B, {self.config.in_channels}, T, H, W], got {tuple(video.shape)}"
            )
        self.check_video_size(*video.shape[2:])
        return self.encoder(video)

    def encode(self, video: Tensor, sample: bool = False, generator: torch.Generator | None = None) -> Tensor:
        """Raw (un-normalised) latents: the posterior mode, or a sample mean + std·ε when ``sample``."""
        mean, logvar = self.encode_moments(video)
        if not sample:
            return mean
        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + torch.exp(0.5 * logvar) * eps

    def normalize_latents(self, z: Tensor) -> Tensor:
        """z_n = (z - mean)·scaling_factor / std, per channel (as diffusers
        src/diffusers/pipelines/ltx/pipeline_ltx.py, LTXPipeline._normalize_latents)."""
        shape = (1, -1, 1, 1, 1)
        mean, std = self.latents_mean.view(shape).to(z), self.latents_std.view(shape).to(z)
        return (z - mean) * self.config.scaling_factor / std

    def denormalize_latents(self, z: Tensor) -> Tensor:
        """Inverse of :meth:`normalize_latents`."""
        shape = (1, -1, 1, 1, 1)
        mean, std = self.latents_mean.view(shape).to(z), self.latents_std.view(shape).to(z)
        return z * std / self.config.scaling_factor + mean

    def decode(
        self,
        latents: Tensor,
        timestep: float | Tensor | None = None,
        generator: torch.Generator | None = None,
        temporal_chunk: int | None = None,
        temporal_overlap: int = 2,
    ) -> Tensor:
        """Raw latents [B, C, T', H', W'] -> video [B, 3, 1 + 8(T'-1), 32H', 32W'] in about -1..1.

        ``timestep``: decode timestep of timestep-conditioned VAEs (0.9.1+); None means 0.0 (diffusers').
        ``generator``: RNG of the noise-injecting resnets (0.9.1); None: torch's global RNG, like diffusers.
        ``temporal_chunk``: decode at most this many latent frames at a time (lower peak memory), with
        ``temporal_overlap`` latent frames shared by neighbouring chunks and blended linearly.
        """
        if latents.ndim != 5 or latents.shape[1] != self.config.latent_channels:
            raise ValueError(
                f"latents must be [B, {self.config.latent_channels}, T', H', W'], got {tuple(latents.shape)}"
            )
        t = None
        if self.config.timestep_conditioning:
            t = torch.as_tensor(
                0.0 if timestep is None else timestep, dtype=torch.float32, device=latents.device
            )
            t = t.reshape(-1).expand(latents.shape[0]) if t.numel() == 1 else t.reshape(-1)
        if temporal_chunk is None or temporal_chunk >= latents.shape[2]:
            return self.decoder(latents, t, generator)
        return decode_in_chunks(
            self.decoder, latents, t, generator, temporal_chunk, temporal_overlap, self.temporal_ratio
        )
