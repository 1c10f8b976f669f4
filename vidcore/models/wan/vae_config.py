"""Frozen config of the Wan 2.1 / 2.2 video VAEs (field names follow diffusers' AutoencoderKLWan config)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from vidcore.config import ConfigMixin, check_positive_int

# Per-channel statistics of the released VAEs' posterior means (Wan-Video/Wan2.1 wan/modules/vae.py, WanVAE;
# Wan-Video/Wan2.2 wan/modules/vae2_2.py, Wan2_2_VAE); the transformers work on (z - mean) / std.
WAN21_LATENTS_MEAN = (
    -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
    0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
)  # fmt: skip
WAN21_LATENTS_STD = (
    2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
    3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160,
)  # fmt: skip
WAN22_LATENTS_MEAN = (
    -0.2289, -0.0052, -0.1323, -0.2339, -0.2799, 0.0174, 0.1838, 0.1557,
    -0.1382, 0.0542, 0.2813, 0.0891, 0.1570, -0.0098, 0.0375, -0.1825,
    -0.2246, -0.1207, -0.0698, 0.5109, 0.2665, -0.2108, -0.2158, 0.2502,
    -0.2055, -0.0322, 0.1109, 0.1567, -0.0729, 0.0899, -0.2799, -0.1230,
    -0.0313, -0.1649, 0.0117, 0.0723, -0.2839, -0.2083, -0.0520, 0.3748,
    0.0152, 0.1957, 0.1433, -0.2944, 0.3573, -0.0548, -0.1681, -0.0667,
)  # fmt: skip
WAN22_LATENTS_STD = (
    0.4765, 1.0364, 0.4514, 1.1677, 0.5313, 0.4990, 0.4818, 0.5013,
    0.8158, 1.0344, 0.5894, 1.0901, 0.6885, 0.6165, 0.8454, 0.4978,
    0.5759, 0.3523, 0.7135, 0.6804, 0.5833, 1.4146, 0.8986, 0.5659,
    0.7069, 0.5338, 0.4889, 0.4917, 0.4069, 0.4999, 0.6866, 0.4093,
    0.5709, 0.6065, 0.6415, 0.4944, 0.5726, 1.2042, 0.5458, 1.6887,
    0.3971, 1.0600, 0.3943, 0.5537, 0.5444, 0.4089, 0.7468, 0.7744,
)  # fmt: skip

VIDEO_CHANNELS = 3


@dataclass(frozen=True)
class WanVAEConfig(ConfigMixin):
    """AutoencoderKLWan hyper-parameters (defaults: the Wan 2.1 VAE, 4x8x8, 16 latent channels).

    ``in_channels`` / ``out_channels`` count the patchified channels the encoder reads and the decoder
    writes (12 for the 2.2 VAE's 2x2 patches of RGB). ``dim_mult`` lists the widths shallow -> deep; the
    decoder mirrors it. ``is_residual`` selects the 2.2 stages (AvgDown3D / DupUp3D shortcuts).
    ``temperal_downsample`` keeps diffusers' (and Wan's) spelling so config.json maps field for field.
    """

    base_dim: int = 96
    decoder_base_dim: int | None = None
    z_dim: int = 16
    dim_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    attn_scales: tuple[float, ...] = ()
    temperal_downsample: tuple[bool, ...] = (False, True, True)
    is_residual: bool = False
    in_channels: int = 3
    out_channels: int = 3
    patch_size: int | None = None
    scale_factor_temporal: int = 4
    scale_factor_spatial: int = 8
    latents_mean: tuple[float, ...] = WAN21_LATENTS_MEAN
    latents_std: tuple[float, ...] = WAN21_LATENTS_STD

    def __post_init__(self) -> None:
        for name in ("base_dim", "z_dim", "num_res_blocks", "in_channels", "out_channels"):
            check_positive_int(name, getattr(self, name))
        if self.decoder_base_dim is not None:
            check_positive_int("decoder_base_dim", self.decoder_base_dim)
        if self.patch_size is not None:
            check_positive_int("patch_size", self.patch_size)
        if not self.dim_mult:
            raise ValueError("dim_mult=() must list at least one width multiplier")
        for m in self.dim_mult:
            check_positive_int("dim_mult entry", m)
        if self.attn_scales:
            raise ValueError(
                f"attn_scales={self.attn_scales!r} is not supported: the released Wan VAEs attend only in "
                "their mid blocks (attn_scales=()), and diffusers' decoder ignores attn_scales"
            )
        n_down = len(self.dim_mult) - 1
        if len(self.temperal_downsample) != n_down:
            raise ValueError(
                f"temperal_downsample={self.temperal_downsample} must have len(dim_mult) - 1 = {n_down} "
                "entries"
            )
        for flag in self.temperal_downsample:
            if not isinstance(flag, bool):
                raise ValueError(f"temperal_downsample={self.temperal_downsample} must hold booleans")
        p2 = self.patch**2
        for name in ("in_channels", "out_channels"):
            if getattr(self, name) != VIDEO_CHANNELS * p2:
                raise ValueError(
                    f"{name}={getattr(self, name)} must be {VIDEO_CHANNELS} x patch_size^2 = "
                    f"{VIDEO_CHANNELS * p2} (RGB video in {self.patch}x{self.patch} patches)"
                )
        for name in ("latents_mean", "latents_std"):
            if len(getattr(self, name)) != self.z_dim:
                raise ValueError(
                    f"{name} has {len(getattr(self, name))} entries, expected z_dim={self.z_dim}"
                )
        if any(not (s > 0 and math.isfinite(s)) for s in self.latents_std):
            raise ValueError(f"latents_std={self.latents_std} must be positive and finite")
        for name, given, built in (
            ("scale_factor_temporal", self.scale_factor_temporal, self.temporal_ratio),
            ("scale_factor_spatial", self.scale_factor_spatial, self.spatial_ratio),
        ):
            if given != built:
                raise ValueError(
                    f"{name}={given} does not match the structure (dim_mult={self.dim_mult}, "
                    f"temperal_downsample={self.temperal_downsample}, patch_size={self.patch_size}), which "
                    f"gives {built}"
                )
        if self.is_residual:
            self._check_residual_shortcuts()

    def _check_residual_shortcuts(self) -> None:
        # AvgDown3D folds factor_t·factor_s² frames/pixels into channels and averages groups of them; DupUp3D
        # repeats channels back out: both need the channel counts to divide evenly.
        enc = self.encoder_dims
        for i in range(len(self.dim_mult)):
            down = i < len(self.dim_mult) - 1
            factor = (2 if down and self.temperal_downsample[i] else 1) * (4 if down else 1)
            if enc[i] * factor % enc[i + 1]:
                raise ValueError(
                    f"encoder stage {i}: {enc[i]} channels x {factor} (AvgDown3D) is not divisible by "
                    f"{enc[i + 1]}; choose base_dim / dim_mult so that it is"
                )
        dec, up_t = self.decoder_dims, self.temperal_downsample[::-1]
        for i in range(len(self.dim_mult) - 1):
            factor = (2 if up_t[i] else 1) * 4
            if dec[i + 1] * factor % dec[i]:
                raise ValueError(
                    f"decoder stage {i}: {dec[i + 1]} channels x {factor} (DupUp3D) is not divisible by "
                    f"{dec[i]}; choose decoder_base_dim / dim_mult so that it is"
                )

    # ---- derived sizes -------------------------------------------------------------------------------------
    @property
    def patch(self) -> int:
        """Spatial patch size (1 when ``patch_size`` is None)."""
        return self.patch_size or 1

    @property
    def temporal_ratio(self) -> int:
        """Frames per latent frame after the first (4 for both released VAEs)."""
        return 2 ** sum(self.temperal_downsample)

    @property
    def spatial_ratio(self) -> int:
        """Pixels per latent cell along H and W (8 for Wan 2.1, 16 for Wan 2.2)."""
        return 2 ** (len(self.dim_mult) - 1) * self.patch

    @property
    def encoder_dims(self) -> tuple[int, ...]:
        """Encoder widths: conv_in's, then each stage's output."""
        return tuple(self.base_dim * m for m in (1, *self.dim_mult))

    @property
    def decoder_dims(self) -> tuple[int, ...]:
        """Decoder widths: conv_in / mid block's, then each up stage's output (deep -> shallow)."""
        d = self.decoder_base_dim or self.base_dim
        return tuple(d * m for m in (self.dim_mult[-1], *self.dim_mult[::-1]))

    # ---- presets and diffusers round trip ------------------------------------------------------------------
    @classmethod
    def wan21(cls) -> WanVAEConfig:
        """The Wan 2.1 VAE (also used by Wan 2.2 A14B): base 96, z 16, 4x8x8."""
        return cls()

    @classmethod
    def wan22(cls) -> WanVAEConfig:
        """The Wan 2.2 VAE (TI2V-5B): encoder 160 / decoder 256, z 48, 2x2 patches, residual, 4x16x16."""
        return cls(
            base_dim=160,
            decoder_base_dim=256,
            z_dim=48,
            is_residual=True,
            in_channels=12,
            out_channels=12,
            patch_size=2,
            scale_factor_spatial=16,
            latents_mean=WAN22_LATENTS_MEAN,
            latents_std=WAN22_LATENTS_STD,
        )

    @classmethod
    def from_diffusers(cls, data: dict[str, Any]) -> WanVAEConfig:
        """Read a diffusers ``vae/config.json`` dict (``_class_name`` AutoencoderKLWan).

        ``dropout`` acts only in training (no weights) and must be 0; a ``scale_factor_*`` of None means
        "as built".
        """
        name = data.get("_class_name", "AutoencoderKLWan")
        if name != "AutoencoderKLWan":
            raise ValueError(f"VAE config _class_name={name!r} is not a diffusers AutoencoderKLWan config")
        data = {k: v for k, v in data.items() if not k.startswith("_")}
        dropout = data.pop("dropout", 0.0)
        if dropout:
            raise ValueError(f"dropout={dropout!r}: vidcore's Wan VAE is inference-only; expected 0.0")
        if data.get("patch_size") == 1:
            data["patch_size"] = None
        defaults = cls()
        dim_mult = data.get("dim_mult", defaults.dim_mult)
        if data.get("scale_factor_temporal") is None:
            data["scale_factor_temporal"] = 2 ** sum(
                data.get("temperal_downsample", defaults.temperal_downsample)
            )
        if data.get("scale_factor_spatial") is None:
            data["scale_factor_spatial"] = 2 ** (len(dim_mult) - 1) * (data.get("patch_size") or 1)
        return cls.from_dict(data)

    def to_diffusers(self) -> dict[str, Any]:
        """Keyword arguments of diffusers' ``AutoencoderKLWan`` (lists, not tuples; dropout 0)."""
        out = self.to_dict()
        out["dropout"] = 0.0
        return out
