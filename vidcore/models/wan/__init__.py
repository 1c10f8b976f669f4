"""Wan 2.1 / 2.2 (Wan-Video): transformer, checkpoint loading (pipeline and sampler live elsewhere)."""

from .config import WAN_TRANSFORMER_PRESETS, WanTransformerConfig, wan_transformer_config
from .loading import (
    WanLayout,
    WanLayoutError,
    detect_wan_layout,
    load_wan_transformer,
    read_wan_layout,
    save_wan_transformer,
)
from .transformer import WanTransformer
from .vae import WanVAE
from .vae_config import WanVAEConfig
from .vae_loading import WanVAELayout, WanVAELayoutError, detect_wan_vae_layout, load_wan_vae

__all__ = [
    "WAN_TRANSFORMER_PRESETS",
    "WanLayout",
    "WanLayoutError",
    "WanTransformer",
    "WanTransformerConfig",
    "WanVAE",
    "WanVAEConfig",
    "WanVAELayout",
    "WanVAELayoutError",
    "detect_wan_layout",
    "detect_wan_vae_layout",
    "load_wan_transformer",
    "load_wan_vae",
    "read_wan_layout",
    "save_wan_transformer",
    "wan_transformer_config",
]
