"""The one place that touches ComfyUI's runtime: progress, interruption, devices, model/input/output folders.

Every ComfyUI import is lazy and guarded, so the nodes import and run without ComfyUI (tests, scripts):
progress then goes to tqdm, nothing interrupts (unless a test installs a hook), the device is the CPU and
folders come from environment variables (``VIDCORE_MODELS_DIR``, ``VIDCORE_INPUT_DIR``,
``VIDCORE_OUTPUT_DIR``) or from :func:`set_folders`.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger("vidcore")

# Model folder names we add to ComfyUI's folder_paths (comfyui_host.md §5): our model folders, HF-style
# LLM/VLM folders (the name other packs use too), and the core diffusion_models folder we also search.
MODEL_FOLDER = "vidcore"
LLM_FOLDER = "LLM"
SEARCHED_MODEL_FOLDERS = (MODEL_FOLDER, "diffusion_models")
# CLIP transformers folders for the metrics (CLIP-SIM / CLIP-TC): subfolders of ComfyUI's core clip_vision
# and text_encoders (which includes models/clip) folders. Both names are built into ComfyUI, so nothing is
# registered for them; outside ComfyUI they come from set_folders / VIDCORE_MODELS_DIR like the others.
CLIP_FOLDERS = ("clip_vision", "text_encoders")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

_fallback_folders: dict[str, list[str]] = {}
_interrupt_hook: Callable[[], None] | None = None


def _folder_paths() -> Any | None:
    """ComfyUI's ``folder_paths`` module when running inside ComfyUI, else None."""
    try:
        import folder_paths  # noqa: PLC0415 - only exists inside ComfyUI
    except ImportError:
        return None
    return folder_paths


def _model_management() -> Any | None:
    try:
        import comfy.model_management as mm  # noqa: PLC0415
    except ImportError:
        return None
    return mm


# ------------------------------------------------------------------------------------------------ folders


def register_model_folders() -> None:
    """Register ``models/vidcore`` and ``models/LLM`` with ComfyUI (idempotent; no-op outside ComfyUI)."""
    fp = _folder_paths()
    if fp is None:
        return
    for name in (MODEL_FOLDER, LLM_FOLDER):
        default = os.path.join(fp.models_dir, name)
        try:
            known = fp.get_folder_paths(name)
        except KeyError:  # ComfyUI raises for a kind nobody has registered yet (the usual case)
            known = []
        if default not in known:
            fp.add_model_folder_path(name, default)


def set_folders(
    models: dict[str, list[str | os.PathLike]] | None = None,
    input_dir: str | os.PathLike | None = None,
    output_dir: str | os.PathLike | None = None,
) -> None:
    """Outside ComfyUI: set the model folders per kind and the input/output folders (tests, scripts)."""
    if models is not None:
        _fallback_folders.clear()
        _fallback_folders.update({k: [str(p) for p in v] for k, v in models.items()})
    for key, value in (("input", input_dir), ("output", output_dir)):
        if value is not None:
            _fallback_folders[f"__{key}__"] = [str(value)]


def model_folders(kind: str) -> list[Path]:
    """Existing folders registered for a model kind (``vidcore``, ``LLM``, ``diffusion_models``, ...)."""
    fp = _folder_paths()
    if fp is not None:
        try:
            paths = fp.get_folder_paths(kind)
        except KeyError:
            paths = []
    elif kind in _fallback_folders:
        paths = _fallback_folders[kind]
    else:
        env = os.environ.get("VIDCORE_MODELS_DIR")
        paths = [os.path.join(env, kind)] if env else []
    return [Path(p) for p in paths if os.path.isdir(p)]


def config_model_type(folder: Path) -> str | None:
    """``model_type`` from a transformers folder's config.json (None when unreadable)."""
    try:
        value = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def list_model_dirs(
    kinds: tuple[str, ...], marker: str, model_types: tuple[str, ...] | None = None
) -> dict[str, Path]:
    """Subfolders (one level) holding ``marker`` in the folders of ``kinds``: {shown name: path}.

    ``model_types``: offer only transformers folders whose config.json names one of them (models/LLM and
    models/text_encoders are shared with other packs). Earlier folders win a name clash, as in ComfyUI's
    own lookups.
    """
    found: dict[str, Path] = {}
    for kind in kinds:
        for root in model_folders(kind):
            for child in sorted(root.iterdir()):
                if not (child.is_dir() and (child / marker).is_file()):
                    continue
                if model_types is not None and config_model_type(child) not in model_types:
                    continue
                found.setdefault(child.name, child)
    return found


def _special_dir(kind: str) -> Path:
    fp = _folder_paths()
    if fp is not None:
        return Path(fp.get_input_directory() if kind == "input" else fp.get_output_directory())
    if f"__{kind}__" in _fallback_folders:
        return Path(_fallback_folders[f"__{kind}__"][0])
    env = os.environ.get(f"VIDCORE_{kind.upper()}_DIR")
    return Path(env) if env else Path.cwd() / kind


def input_dir() -> Path:
    """ComfyUI's input folder (outside ComfyUI: ``VIDCORE_INPUT_DIR``, else ./input)."""
    return _special_dir("input")


def output_dir() -> Path:
    """ComfyUI's output folder (outside ComfyUI: ``VIDCORE_OUTPUT_DIR``, else ./output)."""
    return _special_dir("output")


def pick(choices: dict, name: str, what: str, where: str) -> Any:
    """``choices[name]``, or an error naming the value, where it was searched and what is available."""
    if name not in choices:
        listed = sorted(choices) or ["(none found)"]
        raise ValueError(f"{what}={name!r} was not found in {where}; available: {listed}")
    return choices[name]


def inside(root: Path, name: str, what: str) -> Path:
    """``root / name`` resolved, refusing absolute paths and anything that resolves outside ``root``."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{what}={name!r} must be a non-empty file name inside {str(root)!r}")
    if os.path.isabs(name):
        raise ValueError(f"{what}={name!r} is an absolute path; give a name inside {str(root)!r}")
    base = root.resolve()
    path = (base / name).resolve()
    if path != base and base not in path.parents:
        raise ValueError(f"{what}={name!r} points outside the folder {str(base)!r}; that is not allowed")
    return path


# ------------------------------------------------------------------------------------------- devices


def torch_device() -> torch.device:
    """ComfyUI's chosen device (honours --cpu etc.); the CPU outside ComfyUI."""
    mm = _model_management()
    return torch.device(mm.get_torch_device()) if mm is not None else torch.device("cpu")


def intermediate_device() -> torch.device:
    """Where LATENT / IMAGE values live between nodes (ComfyUI keeps them on the CPU by default)."""
    mm = _model_management()
    return torch.device(mm.intermediate_device()) if mm is not None else torch.device("cpu")


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """Node precision choice -> dtype; "auto" is bf16 on CUDA GPUs with native bf16 (Ampere and newer) and
    fp32 elsewhere (CPU, MPS, older GPUs, where bf16 would be emulated and slow)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r} must be one of {list(PRECISIONS)}")
    if precision == "auto":
        native_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False)
        return torch.bfloat16 if native_bf16 else torch.float32
    return _DTYPES[precision]


# ------------------------------------------------------------------------------ progress / interruption


def set_interrupt_hook(hook: Callable[[], None] | None) -> None:
    """Outside ComfyUI: a callable run at every progress tick that raises to cancel (tests)."""
    global _interrupt_hook
    _interrupt_hook = hook


def check_interrupted() -> None:
    """Raise ComfyUI's interruption exception when the user pressed Cancel (or the test hook's)."""
    mm = _model_management()
    if mm is not None:
        mm.throw_exception_if_processing_interrupted()
    if _interrupt_hook is not None:
        _interrupt_hook()


class Progress:
    """ComfyUI progress bar (or tqdm); every tick first checks for interruption, which is what cancels."""

    def __init__(self, total: int, desc: str = "vidcore", node_id: str | None = None) -> None:
        self.total = max(1, int(total))
        self.value = 0
        self._bar: Any = None
        self._tqdm: Any = None
        try:
            import comfy.utils  # noqa: PLC0415

            self._bar = comfy.utils.ProgressBar(self.total, node_id=node_id)
        except ImportError:
            from tqdm.auto import tqdm  # noqa: PLC0415

            self._tqdm = tqdm(total=self.total, desc=desc, leave=False, disable=None)

    def set(self, value: int, total: int | None = None) -> None:
        """Move to ``value`` of ``total`` (raises if the run was cancelled)."""
        check_interrupted()
        if total is not None and int(total) != self.total:
            self.total = max(1, int(total))
            if self._tqdm is not None:
                self._tqdm.total = self.total
        value = min(int(value), self.total)
        if self._bar is not None:
            self._bar.update_absolute(value, self.total)
        elif self._tqdm is not None:
            self._tqdm.update(value - self.value)
        self.value = value

    def sampler_callback(self) -> Callable[[dict[str, Any]], None]:
        """A vidcore sampler callback: one tick per step (info["i"] is the 0-based step just done)."""
        return lambda info: self.set(int(info["i"]) + 1, info.get("total"))

    def chunk_callback(self) -> Callable[[int, int], None]:
        """A vidcore VAE callback ``(done, total)``: one tick per chunk."""
        return lambda done, total: self.set(done, total)

    def close(self) -> None:
        if self._tqdm is not None:
            self._tqdm.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -------------------------------------------------------------------------------------------- caching


class ModelCache:
    """Loaded models kept across runs, keyed by (kind, path, file mtimes, device, dtype); LRU of ``size``."""

    def __init__(self, size: int = 4) -> None:
        self.size = size
        self._items: OrderedDict[tuple, Any] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def stamp(path: str | os.PathLike) -> tuple:
        """Identity of a file or folder's contents: each file's (name, size, mtime_ns), one level deep."""
        p = Path(path)
        if p.is_file():
            st = p.stat()
            return ((p.name, st.st_size, st.st_mtime_ns),)
        if p.is_dir():
            return tuple(
                (c.name, c.stat().st_size, c.stat().st_mtime_ns) for c in sorted(p.iterdir()) if c.is_file()
            )
        return ()

    def get(
        self, kind: str, path: str | os.PathLike, device: torch.device, dtype: Any, load: Callable[[], Any]
    ):
        key = (kind, str(path), self.stamp(path), str(device), str(dtype))
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = load()
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


MODELS = ModelCache()
