"""Video metrics: TCS, CLIP-SIM, CLIP-TC, FVD (I3D), Fréchet distance, warp error, flicker, dynamic degree,
PSNR and SSIM. Pure functions first; model wrappers (CLIP via transformers, I3D) load lazily.
"""

from vidcore.metrics.frechet import (
    feature_statistics,
    frechet_distance,
    frechet_distance_from_stats,
    trace_sqrt_product,
)

# ``fvd`` is both a submodule and its function: imported here, the package attribute is the function
# (a lazy ``__getattr__`` would be shadowed by the submodule once anything imported it). Cheap: torch
# only; the I3D weights load when ``fvd`` runs.
from vidcore.metrics.fvd import fvd
from vidcore.metrics.temporal import (
    adjacent_cosine,
    dynamic_degree,
    flicker,
    flicker_per_pair,
    flow_motion_scores,
    is_dynamic,
    psnr,
    psnr_per_frame,
    ssim,
    ssim_per_frame,
    tcs,
    tcs_vbench,
    vbench_consistency_per_frame,
    warp_error,
    warp_error_per_pair,
)

__all__ = [
    "adjacent_cosine",
    "clip_sim",
    "clip_tc",
    "dynamic_degree",
    "feature_statistics",
    "flicker",
    "flicker_per_pair",
    "flow_motion_scores",
    "frechet_distance",
    "frechet_distance_from_stats",
    "fvd",
    "is_dynamic",
    "json_safe",
    "load_clip",
    "load_i3d",
    "psnr",
    "psnr_per_frame",
    "score_video",
    "ssim",
    "ssim_per_frame",
    "tcs",
    "tcs_vbench",
    "trace_sqrt_product",
    "vbench_consistency_per_frame",
    "warp_error",
    "warp_error_per_pair",
]

_LAZY = {
    "clip_sim": "vidcore.metrics.clip",
    "clip_tc": "vidcore.metrics.clip",
    "load_clip": "vidcore.metrics.clip",
    "json_safe": "vidcore.metrics.score",
    "load_i3d": "vidcore.metrics.i3d",
    "score_video": "vidcore.metrics.score",
}


def __getattr__(name: str):  # noqa: ANN202 - module-level lazy import (PEP 562)
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vidcore.metrics' has no attribute {name!r}")
