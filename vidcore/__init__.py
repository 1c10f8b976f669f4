"""vidcore: video generation library (Spacetime DiT, causal 3D VAE, flow matching). Never imports ComfyUI."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["SamplingOptions", "__version__", "load_pipeline"]


def __getattr__(name: str) -> Any:
    # Lazy: `import vidcore` stays cheap; the pipeline (and torch) load on first use.
    if name in ("load_pipeline", "SamplingOptions"):
        from . import pipelines

        return getattr(pipelines, name)
    raise AttributeError(f"module 'vidcore' has no attribute {name!r}")
