"""LTX-Video (Lightricks) transformer, causal VAE and checkpoint loading (pipeline: vidcore.pipelines.ltx)."""

from .config import (
    LTXTransformerConfig,
    LTXVAEConfig,
    ltx_transformer_2b_config,
    ltx_transformer_13b_config,
    ltx_vae_config,
)
from .loading import (
    LTXLayout,
    LTXLayoutError,
    LTXModels,
    detect_ltx_layout,
    load_ltx,
    load_ltx_transformer,
    load_ltx_vae,
)
from .transformer import LTXVideoTransformer, pack_latents, unpack_latents
from .vae import LTXVideoVAE

__all__ = [
    "LTXLayout",
    "LTXLayoutError",
    "LTXModels",
    "LTXTransformerConfig",
    "LTXVAEConfig",
    "LTXVideoTransformer",
    "LTXVideoVAE",
    "detect_ltx_layout",
    "load_ltx",
    "load_ltx_transformer",
    "load_ltx_vae",
    "ltx_transformer_13b_config",
    "ltx_transformer_2b_config",
    "ltx_vae_config",
    "pack_latents",
    "unpack_latents",
]
