"""Models: SpacetimeDiT, CausalVAE3D (and external families under subpackages)."""

from .dit import DiTConfig, SpacetimeDiT, dit_parameter_count
from .vae import CausalVAE3D, VAEConfig

__all__ = ["CausalVAE3D", "DiTConfig", "SpacetimeDiT", "VAEConfig", "dit_parameter_count"]
