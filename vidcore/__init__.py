"""vidcore: video generation library (Spacetime DiT, causal 3D VAE, flow matching). Never imports ComfyUI."""

__version__ = "0.1.0"
