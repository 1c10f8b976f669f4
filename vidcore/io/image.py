"""Still images (PNG, JPEG, WebP, ...) as frames ``[1, H, W, 3]`` in 0..1: conditioning images for
image-to-video. Read with Pillow; nothing is unpickled."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor


def read_image(path: str | os.PathLike) -> Tensor:
    """One RGB image -> float32 frames ``[1, H, W, 3]`` in 0..1 (alpha dropped, palettes and greyscale
    converted); raises naming the file when it is missing or not an image."""
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"image {str(p)!r} does not exist")
    try:
        with Image.open(p) as im:
            if getattr(im, "n_frames", 1) > 1:
                raise ValueError(f"{str(p)!r} holds {im.n_frames} frames; give a still image (PNG, JPEG)")
            rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except UnidentifiedImageError as e:
        raise ValueError(f"{str(p)!r} is not an image Pillow can read (PNG, JPEG, WebP, ...)") from e
    return torch.from_numpy(rgb.copy()).float().div(255)[None]
