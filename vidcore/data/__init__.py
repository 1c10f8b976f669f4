"""Small files shipped with vidcore: the example clip that the ComfyUI example workflows load
(``vidcore_example.mp4``, copied into ComfyUI's input folder by the node pack on start-up).

The clip is the procedural renderer's (vidcore.train.data) red circle moving right over a textured
background, 25 frames of 64 x 64 at 8 fps, written once by :func:`write_example_video`;
tests/test_first_run.py re-renders it and compares it with the shipped file.
"""

from __future__ import annotations

import os
from pathlib import Path

from torch import Tensor

EXAMPLE_VIDEO = Path(__file__).with_name("vidcore_example.mp4")
EXAMPLE_FPS = 8.0
EXAMPLE_CAPTION = "a red circle moving right"


def example_frames() -> Tensor:
    """The example clip's frames ``[25, 64, 64, 3]`` in 0..1, rendered."""
    from vidcore.train.data import ShapeVideoSpec, render, to_frames  # noqa: PLC0415

    spec = ShapeVideoSpec(
        shape="circle",
        colour="red",
        direction="right",
        radius=9.0,
        speed=1.5,
        x0=13.0,
        y0=30.0,
        background="texture",
        bg_level=0.15,
        bg_tint=(0.1, 0.3, 0.5),
        bg_texture=0.5,
        bg_seed=7,
    )
    return to_frames(render([spec], num_frames=25, height=64, width=64))[0]


def write_example_video(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write the example clip as H.264 mp4 (how the shipped file was made)."""
    from vidcore.io.video import write_video  # noqa: PLC0415

    return write_video(path, example_frames(), EXAMPLE_FPS, overwrite=overwrite)
