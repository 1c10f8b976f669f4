"""Checkpoints: safetensors with the model config (and kind) in the metadata. Nothing is unpickled.

Every safetensors file vidcore reads is opened by :func:`open_safetensors`, the one place that turns an
empty, truncated, corrupt or huge-header file into a :class:`CheckpointError` naming the file and saying
what to do (callers such as the I3D cache loader add their own advice with ``remedy``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from vidcore.io.atomic import atomic_write
from vidcore.io.atomic import check_target as atomic_target  # its older name, kept importable from here

METADATA_CONFIG = "vidcore_config"
METADATA_KIND = "vidcore_kind"
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"  # a diffusers component's weights (or its shards)
PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".pkl")  # refused by name, never opened


class CheckpointError(ValueError):
    """A checkpoint is unreadable (corrupt, truncated, not safetensors) or does not match its model."""


DEFAULT_REMEDY = "re-download it or write it again"


def _unreadable(path: Path, why: object, remedy: str) -> CheckpointError:
    return CheckpointError(
        f"{str(path)!r} is not a readable safetensors file ({why}); it is probably truncated or corrupt: "
        f"{remedy}"
    )


def check_safetensors_path(path: str | os.PathLike) -> Path:
    """``path`` as a Path after the existence, regular-file and suffix checks every reader makes."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} is not a regular file")
    if path.suffix not in (".safetensors", ".sft"):
        raise ValueError(f"checkpoint {str(path)!r} must be a .safetensors file (nothing is unpickled)")
    return path


@contextmanager
def open_safetensors(
    path: str | os.PathLike, device: str | torch.device = "cpu", remedy: str = DEFAULT_REMEDY
) -> Iterator[Any]:
    """``safe_open`` a checkpoint; a damaged file (empty, truncated, bad or huge header, data shorter
    than the header says) raises :class:`CheckpointError` naming it and ending with ``remedy``, also
    when the damage shows only while tensors are read inside the ``with`` block."""
    path = check_safetensors_path(path)
    try:
        handle = safe_open(str(path), framework="pt", device=str(device))
    except (SafetensorError, OSError) as e:
        raise _unreadable(path, e, remedy) from None
    with handle as f:
        try:
            yield f
        except (SafetensorError, OSError) as e:
            raise _unreadable(path, e, remedy) from None


def write_safetensors(
    path: str | os.PathLike,
    tensors: dict[str, torch.Tensor],
    metadata: dict[str, str],
    overwrite: bool = True,
) -> Path:
    """Write a safetensors file atomically (vidcore.io.atomic: hidden temp file, then moved into place)."""
    with atomic_write(path, overwrite) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return Path(path)


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    config: Any,
    kind: str,
    extra_metadata: dict[str, str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``model``'s state dict to safetensors, with ``config.to_json()`` and ``kind`` in the metadata.

    The file is written to a temporary name in the same folder and renamed into place.
    """
    path = atomic_target(path, overwrite)  # fail before copying tensors off the device
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    metadata = {METADATA_CONFIG: config.to_json(), METADATA_KIND: kind}
    if extra_metadata:
        metadata.update({str(k): str(v) for k, v in extra_metadata.items()})
    return write_safetensors(path, tensors, metadata, overwrite)


def read_metadata(path: str | os.PathLike, remedy: str = DEFAULT_REMEDY) -> dict[str, str]:
    """Return a safetensors file's metadata (empty dict when it has none)."""
    with open_safetensors(path, remedy=remedy) as f:
        return dict(f.metadata() or {})


def read_config(
    path: str | os.PathLike, expected_kind: str | None = None, remedy: str = DEFAULT_REMEDY
) -> tuple[str, dict[str, Any]]:
    """Return ``(kind, config dict)`` stored in a vidcore checkpoint."""
    meta = read_metadata(path, remedy)
    if METADATA_CONFIG not in meta:
        raise CheckpointError(f"{str(path)!r} has no {METADATA_CONFIG!r} metadata: not a vidcore checkpoint")
    kind = meta.get(METADATA_KIND, "")
    if expected_kind is not None and kind != expected_kind:
        raise CheckpointError(f"{str(path)!r} holds a {kind!r} model, expected {expected_kind!r}")
    try:
        config = json.loads(meta[METADATA_CONFIG])
    except ValueError as e:
        raise CheckpointError(
            f"{str(path)!r}: its {METADATA_CONFIG!r} metadata is not valid JSON ({e}); the file is corrupt: "
            f"{remedy}"
        ) from None
    if not isinstance(config, dict):
        raise CheckpointError(
            f"{str(path)!r}: its {METADATA_CONFIG!r} metadata is a JSON {type(config).__name__}, expected "
            f"an object; the file is corrupt: {remedy}"
        )
    return kind, config


def read_shapes(path: str | os.PathLike) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    """Tensor shapes and metadata of a safetensors file, read from its header (no tensor data)."""
    with open_safetensors(path) as f:
        metadata = dict(f.metadata() or {})
        shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    return shapes, metadata


def refuse_pickle(path: Path, error: type[Exception] = CheckpointError) -> None:
    """Raise ``error`` pointing at ``vidcore convert`` when ``path`` is named like a pickled checkpoint."""
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise error(
            f"{str(path)!r} is a pickled PyTorch file, which vidcore never unpickles; convert it once with "
            f"`vidcore convert {path.name} {path.stem}.safetensors` and load the .safetensors file"
        )


def weight_files(
    folder: Path, error: type[Exception] = CheckpointError, weights_name: str = WEIGHTS_NAME
) -> list[Path]:
    """The safetensors files of a diffusers component folder: the shards its ``.index.json`` names (all
    must exist) or the single ``weights_name``. Otherwise ``error`` (pointing at ``vidcore convert`` when
    the folder holds a pickled file)."""
    index = folder / (weights_name + ".index.json")
    if index.is_file():
        try:
            names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise error(
                f"{str(index)!r} is not a valid shard index (a JSON object whose 'weight_map' maps tensor "
                f"names to file names): {type(e).__name__}: {e}; re-download it"
            ) from None
        absent = [n for n in names if not (folder / n).is_file()]
        if absent:
            raise error(f"{str(folder)!r}: shards named in {index.name} are missing: {absent}")
        return [folder / n for n in names]
    if (folder / weights_name).is_file():
        return [folder / weights_name]
    found = sorted(p.name for p in folder.iterdir())
    for name in found:
        refuse_pickle(folder / name, error)
    raise error(f"{str(folder)!r} has no {weights_name} (or its .index.json); found {found}")


def stream_state(
    files: Iterable[str | os.PathLike],
    rename: Callable[[str], str | None],
    dtype: torch.dtype | None = None,
    device: str | torch.device = "cpu",
    prepare: Callable[[str, torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Read the tensors of safetensors ``files`` one at a time, each finished before the next is read: its
    key renamed (None: skipped, never read), ``prepare(name, tensor)`` applied, a floating tensor cast to
    ``dtype`` (None keeps it), then moved to ``device``. Returns ``{name: tensor}`` for ``load_into``."""
    out: dict[str, torch.Tensor] = {}
    for file in files:
        with open_safetensors(file) as f:
            for key in f.keys():
                name = rename(key)
                if name is None:
                    continue
                t = f.get_tensor(key)
                if prepare is not None:
                    t = prepare(name, t)
                if dtype is not None and t.is_floating_point():
                    t = t.to(dtype)
                out[name] = t.to(device)
    return out


def load_state_dict(
    path: str | os.PathLike, device: str | torch.device = "cpu", remedy: str = DEFAULT_REMEDY
) -> dict[str, torch.Tensor]:
    """Read every tensor of a safetensors file onto ``device`` (a damaged file: CheckpointError)."""
    out: dict[str, torch.Tensor] = {}
    with open_safetensors(path, device, remedy) as f:
        for key in f.keys():
            out[key] = f.get_tensor(key)
    return out


def load_into(
    model: nn.Module,
    state: dict[str, torch.Tensor],
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
    source: str = "checkpoint",
) -> nn.Module:
    """Load ``state`` into ``model`` (possibly on ``meta``) with ``assign=True``.

    Missing, unexpected and mis-shaped keys raise :class:`CheckpointError` listing them all.
    Floating tensors are cast to ``dtype`` when given.
    """
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshaped = sorted(
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(expected) & set(state)
        if tuple(state[k].shape) != tuple(expected[k].shape)
    )
    if missing or unexpected or misshaped:
        parts = []
        if missing:
            parts.append(f"missing keys {missing}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected}")
        if misshaped:
            parts.append(f"mis-shaped keys {misshaped}")
        raise CheckpointError(f"{source} does not fit {type(model).__name__}: " + "; ".join(parts))
    converted = {}
    for k, v in state.items():
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
        if device is not None:
            v = v.to(device)
        converted[k] = v
    model.load_state_dict(converted, strict=True, assign=True)
    return model


class Checkpointed:
    """``save()`` / ``from_checkpoint()`` for an ``nn.Module`` built from one config dataclass: weights in
    safetensors with the config (JSON) and ``KIND`` in the metadata. Subclasses set ``KIND`` and
    ``CONFIG_CLASS`` and keep their config in ``self.config``."""

    KIND: str
    CONFIG_CLASS: type

    def save(
        self, path: str | os.PathLike, overwrite: bool = False, extra_metadata: dict[str, str] | None = None
    ) -> Path:
        return save_checkpoint(path, self, self.config, self.KIND, extra_metadata, overwrite)  # type: ignore[attr-defined, arg-type]

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> Any:
        """Build on ``meta`` from the config in the file's metadata and stream the tensors in (eval mode)."""
        _, cfg = read_config(path, expected_kind=cls.KIND)
        with torch.device("meta"):
            model = cls(cls.CONFIG_CLASS.from_dict(cfg))  # type: ignore[call-arg, attr-defined]
        state = load_state_dict(path, device=device or "cpu")
        return load_into(model, state, dtype=dtype, source=str(path)).eval()
