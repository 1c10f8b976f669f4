"""Frozen configs for the LTX-Video transformer and causal VAE (field names follow the diffusers configs)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vidcore.config import ConfigMixin, check_choice, check_positive

# diffusers' down block class names, kept so a diffusers config.json maps field for field.
DOWN_BLOCK_090 = "LTXVideoDownBlock3D"
DOWN_BLOCK_095 = "LTXVideo095DownBlock3D"
DOWNSAMPLE_TYPES = ("conv", "spatial", "temporal", "spatiotemporal")
# (t, h, w) stride of each 0.9.5 space-to-depth downsampler.
DOWNSAMPLE_STRIDES = {
    "spatial": (1, 2, 2),
    "temporal": (2, 1, 1),
    "spatiotemporal": (2, 2, 2),
    "conv": (2, 2, 2),
}


@dataclass(frozen=True)
class LTXTransformerConfig(ConfigMixin):
    """LTXVideoTransformer3DModel hyper-parameters (defaults: the 2B model of 0.9.0-0.9.5)."""

    in_channels: int = 128
    out_channels: int = 128
    patch_size: int = 1
    patch_size_t: int = 1
    num_attention_heads: int = 32
    attention_head_dim: int = 64
    cross_attention_dim: int = 2048
    num_layers: int = 28
    caption_channels: int = 4096
    norm_eps: float = 1e-6
    attention_bias: bool = True
    attention_out_bias: bool = True

    def __post_init__(self) -> None:
        for name in (
            "in_channels",
            "out_channels",
            "patch_size",
            "patch_size_t",
            "num_attention_heads",
            "attention_head_dim",
            "cross_attention_dim",
            "num_layers",
            "caption_channels",
            "norm_eps",
        ):
            check_positive(name, getattr(self, name))
        if self.cross_attention_dim != self.inner_dim:
            # The caption projection outputs inner_dim features that attn2's to_k/to_v read.
            raise ValueError(
                f"cross_attention_dim={self.cross_attention_dim} must equal num_attention_heads * "
                f"attention_head_dim = {self.inner_dim} (the caption projection feeds cross-attention)"
            )

    @property
    def inner_dim(self) -> int:
        return self.num_attention_heads * self.attention_head_dim

    @classmethod
    def from_diffusers(cls, data: dict[str, Any]) -> LTXTransformerConfig:
        """Read a diffusers ``transformer/config.json`` dict; refuse options this implementation lacks."""
        data = {k: v for k, v in data.items() if not k.startswith("_")}
        fixed = {
            "activation_fn": "gelu-approximate",
            "qk_norm": "rms_norm_across_heads",
            "norm_elementwise_affine": False,
        }
        for key, allowed in fixed.items():
            value = data.pop(key, allowed)
            if value != allowed:
                raise ValueError(
                    f"LTX transformer config {key}={value!r} is not supported; expected {allowed!r}"
                )
        return cls.from_dict(data)


def ltx_transformer_2b_config() -> LTXTransformerConfig:
    """The 2B transformer of LTX-Video 0.9.0 / 0.9.1 / 0.9.5 (28 blocks, 32 heads x 64)."""
    return LTXTransformerConfig()


def ltx_transformer_13b_config() -> LTXTransformerConfig:
    """The 13B transformer of LTX-Video 0.9.7 (48 blocks, 32 x 128 heads; diffusers hub config)."""
    return LTXTransformerConfig(attention_head_dim=128, cross_attention_dim=4096, num_layers=48)


@dataclass(frozen=True)
class LTXVAEConfig(ConfigMixin):
    """AutoencoderKLLTXVideo hyper-parameters (defaults: the 0.9.0 VAE). Decoder lists are shallow -> deep."""

    in_channels: int = 3
    out_channels: int = 3
    latent_channels: int = 128
    block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
    down_block_types: tuple[str, ...] = (DOWN_BLOCK_090,) * 4
    decoder_block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
    layers_per_block: tuple[int, ...] = (4, 3, 3, 3, 4)
    decoder_layers_per_block: tuple[int, ...] = (4, 3, 3, 3, 4)
    spatio_temporal_scaling: tuple[bool, ...] = (True, True, True, False)
    decoder_spatio_temporal_scaling: tuple[bool, ...] = (True, True, True, False)
    decoder_inject_noise: tuple[bool, ...] = (False, False, False, False, False)
    downsample_type: tuple[str, ...] = ("conv", "conv", "conv", "conv")
    upsample_residual: tuple[bool, ...] = (False, False, False, False)
    upsample_factor: tuple[int, ...] = (1, 1, 1, 1)
    timestep_conditioning: bool = False
    patch_size: int = 4
    patch_size_t: int = 1
    resnet_norm_eps: float = 1e-6
    scaling_factor: float = 1.0
    encoder_causal: bool = True
    decoder_causal: bool = False
    spatial_compression_ratio: int | None = None
    temporal_compression_ratio: int | None = None

    def __post_init__(self) -> None:
        for name in ("in_channels", "out_channels", "latent_channels", "patch_size", "patch_size_t"):
            check_positive(name, getattr(self, name))
        check_positive("resnet_norm_eps", self.resnet_norm_eps)
        check_positive("scaling_factor", self.scaling_factor)
        kinds = set(self.down_block_types)
        if len(kinds) != 1 or not kinds <= {DOWN_BLOCK_090, DOWN_BLOCK_095}:
            raise ValueError(
                f"down_block_types={self.down_block_types!r} must all be {DOWN_BLOCK_090!r} "
                f"or all be {DOWN_BLOCK_095!r}"
            )
        n_down = len(self.block_out_channels) - (1 if self.is_095_encoder else 0)
        if n_down < 1 or len(self.down_block_types) < n_down:
            raise ValueError(
                f"block_out_channels={self.block_out_channels} needs {n_down} down_block_types, "
                f"got {len(self.down_block_types)}"
            )
        if len(self.layers_per_block) != n_down + 1:
            raise ValueError(
                f"layers_per_block={self.layers_per_block} must have {n_down + 1} entries "
                f"({n_down} down blocks + mid block)"
            )
        if len(self.spatio_temporal_scaling) < n_down or len(self.downsample_type) < n_down:
            raise ValueError(
                f"spatio_temporal_scaling={self.spatio_temporal_scaling} and downsample_type="
                f"{self.downsample_type} need {n_down} entries"
            )
        for t in self.downsample_type[:n_down]:
            check_choice("downsample_type", t, DOWNSAMPLE_TYPES)
        n_up = len(self.decoder_block_out_channels)
        for name, n in (
            ("decoder_layers_per_block", n_up + 1),
            ("decoder_spatio_temporal_scaling", n_up),
            ("decoder_inject_noise", n_up + 1),
            ("upsample_residual", n_up),
            ("upsample_factor", n_up),
        ):
            if len(getattr(self, name)) != n:
                raise ValueError(
                    f"{name}={getattr(self, name)} must have {n} entries (decoder has {n_up} blocks)"
                )
        for name, given, built in (
            ("spatial_compression_ratio", self.spatial_compression_ratio, self.spatial_ratio),
            ("temporal_compression_ratio", self.temporal_compression_ratio, self.temporal_ratio),
        ):
            if given is not None and given != built:
                raise ValueError(f"{name}={given} does not match the encoder's structure ({built})")

    @property
    def is_095_encoder(self) -> bool:
        return self.down_block_types[-1] == DOWN_BLOCK_095

    @property
    def num_down_blocks(self) -> int:
        return len(self.block_out_channels) - (1 if self.is_095_encoder else 0)

    def _strides(self) -> list[tuple[int, int, int]]:
        out = []
        for i in range(self.num_down_blocks):
            if self.spatio_temporal_scaling[i]:
                kind = self.downsample_type[i] if self.is_095_encoder else "conv"
                out.append(DOWNSAMPLE_STRIDES[kind])
        return out

    @property
    def spatial_ratio(self) -> int:
        """Pixels per latent cell along H and W (32 for every released LTX VAE)."""
        r = self.patch_size
        for _, sh, _ in self._strides():
            r *= sh
        return r

    @property
    def temporal_ratio(self) -> int:
        """Frames per latent frame after the first (8 for every released LTX VAE)."""
        r = self.patch_size_t
        for st, _, _ in self._strides():
            r *= st
        return r

    @classmethod
    def from_diffusers(cls, data: dict[str, Any]) -> LTXVAEConfig:
        """Read a diffusers ``vae/config.json`` dict (``_class_name`` AutoencoderKLLTXVideo)."""
        name = data.get("_class_name", "AutoencoderKLLTXVideo")
        if name != "AutoencoderKLLTXVideo":
            raise ValueError(
                f"VAE config _class_name={name!r} is not a diffusers AutoencoderKLLTXVideo config "
                "(an original-format 'CausalVideoAutoencoder' config is read from the weights instead)"
            )
        return cls.from_dict({k: v for k, v in data.items() if not k.startswith("_")})


def ltx_vae_config(version: str) -> LTXVAEConfig:
    """Full-size VAE config of a released LTX-Video version ("0.9.0", "0.9.1", "0.9.5", "0.9.7")."""
    check_choice("version", version, ("0.9.0", "0.9.1", "0.9.5", "0.9.7"))
    if version == "0.9.0":
        return LTXVAEConfig()
    decoder: dict[str, Any] = dict(
        decoder_block_out_channels=(256, 512, 1024),
        decoder_spatio_temporal_scaling=(True, True, True),
        upsample_residual=(True, True, True),
        upsample_factor=(2, 2, 2),
        timestep_conditioning=True,
    )
    if version == "0.9.1":
        return LTXVAEConfig(
            decoder_layers_per_block=(5, 6, 7, 8),
            decoder_inject_noise=(True, True, True, False),
            **decoder,
        )
    return LTXVAEConfig(
        block_out_channels=(128, 256, 512, 1024, 2048),
        down_block_types=(DOWN_BLOCK_095,) * 4,
        layers_per_block=(4, 6, 6, 2, 2),
        spatio_temporal_scaling=(True, True, True, True),
        downsample_type=("spatial", "temporal", "spatiotemporal", "spatiotemporal"),
        decoder_layers_per_block=(5, 5, 5, 5),
        decoder_inject_noise=(False, False, False, False),
        spatial_compression_ratio=32,
        temporal_compression_ratio=8,
        **decoder,
    )
