"""Video files (PyAV), still images (Pillow), checkpoints (safetensors), the frames/video tensor layouts and
atomic file writes.

Names load from their submodules on first use, so ``import vidcore.io`` pulls in neither torch nor PyAV.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> submodule that defines it
_LAZY = {
    "WRITE_FORMATS": "video",
    "PartialVideoWarning": "video",
    "check_fps": "video",
    "frames_to_uint8": "video",
    "read_video": "video",
    "unique_path": "video",
    "write_video": "video",
    "read_image": "image",
    "check_frames": "frames",
    "check_video": "frames",
    "frames_to_video": "frames",
    "video_to_frames": "frames",
    "atomic_folder": "atomic",
    "atomic_write": "atomic",
    "check_target": "atomic",
    "write_bytes": "atomic",
    "write_text": "atomic",
    "CheckpointError": "checkpoint",
    "load_into": "checkpoint",
    "load_state_dict": "checkpoint",
    "read_config": "checkpoint",
    "read_metadata": "checkpoint",
    "read_shapes": "checkpoint",
    "refuse_pickle": "checkpoint",
    "stream_state": "checkpoint",
    "weight_files": "checkpoint",
    "save_checkpoint": "checkpoint",
    "convert_checkpoint": "convert",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'vidcore.io' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
