"""Models: SpacetimeDiT, UNet3D, CausalVAE3D (and external families under subpackages)."""

from .dit import DiTConfig, SpacetimeDiT, dit_parameter_count
from .unet3d import UNet3D, UNet3DConfig, unet3d_parameter_count
from .vae import CausalVAE3D, VAEConfig

__all__ = [
    "CausalVAE3D",
    "DiTConfig",
    "SpacetimeDiT",
    "UNet3D",
    "UNet3DConfig",
    "VAEConfig",
    "dit_parameter_count",
    "unet3d_parameter_count",
]
