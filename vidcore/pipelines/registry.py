"""The family registry: which model families exist, how each recognises its checkpoints, and
:func:`load_pipeline`, which asks them in registration order."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..devices import resolve_device
from .base import Capabilities, Pipeline


@dataclass(frozen=True)
class Parts:
    """Components given apart from the checkpoint (paths or loaded objects), as ComfyUI users keep them:
    a text encoder (T5 / umT5 folder), a VAE and an image encoder (CLIP vision)."""

    text_encoder: str | os.PathLike | Any | None = None
    vae: str | os.PathLike | Any | None = None
    image_encoder: str | os.PathLike | Any | None = None


# part -> the Capabilities flag saying a family takes it separately
PART_FLAGS = {
    "text_encoder": "external_text_encoder",
    "vae": "external_vae",
    "image_encoder": "external_image_encoder",
}


def _nothing_to_explain(path: Path) -> str | None:
    return None


def _no_builtins() -> dict[str, Path]:
    return {}


@dataclass(frozen=True, kw_only=True)
class Family:
    """A registered model family: how to recognise its checkpoints and build its pipeline.

    ``detect(path)`` must decide from file names, config files and safetensors headers only (no tensor
    data). ``load(path, device, dtype, parts)`` builds the pipeline; :class:`Parts` carries the
    separately given components, each None unless the capabilities say the family takes it.
    ``explain(path)`` says why a path shaped like this family's checkpoints is not loadable (None when it
    is not shaped like them). ``folders`` are the
    ComfyUI model folder kinds its checkpoints live in; ``text_encoder_types`` the transformers
    ``model_type`` values of the text encoders it takes separately.
    """

    name: str
    capabilities: Capabilities
    describe: str
    detect: Callable[[Path], bool]
    load: Callable[[Path, torch.device, torch.dtype | None, Parts], Pipeline]
    explain: Callable[[Path], str | None] = _nothing_to_explain
    builtins: Callable[[], dict[str, Path]] = _no_builtins
    folders: tuple[str, ...] = ()
    text_encoder_types: tuple[str, ...] = field(default=())
    # part name -> (ComfyUI model folder kinds to search, detector from names / headers only): how a host
    # lists the separately given parts this family reads (e.g. Wan VAE files in models/vae).
    part_files: dict[str, tuple[tuple[str, ...], Callable[[Path], bool]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"Family.name={self.name!r} must be a non-empty string")


_FAMILIES: dict[str, Family] = {}


def register_family(family: Family) -> Family:
    """Add a family to the registry (later families are asked after earlier ones); names are unique."""
    if not isinstance(family, Family):
        raise TypeError(f"register_family expects a Family, got {type(family).__name__}")
    if family.name in _FAMILIES:
        raise ValueError(f"a model family named {family.name!r} is already registered")
    _FAMILIES[family.name] = family
    return family


def unregister_family(name: str) -> None:
    """Remove a family (plugins being reloaded, tests)."""
    if name not in _FAMILIES:
        raise ValueError(f"no model family named {name!r} is registered; registered: {list(_FAMILIES)}")
    del _FAMILIES[name]


def families() -> tuple[Family, ...]:
    """The registered families, in the order they are asked."""
    return tuple(_FAMILIES.values())


def builtin_models() -> dict[str, Path]:
    """Built-in model names of every family -> their folders (earlier families win a name clash)."""
    out: dict[str, Path] = {}
    for fam in families():
        for name, path in fam.builtins().items():
            out.setdefault(name, path)
    return out


def family_of(path: str | os.PathLike) -> Family | None:
    """The first registered family whose ``detect`` accepts ``path``, else None."""
    p = Path(path)
    for fam in families():
        if fam.detect(p):
            return fam
    return None


def resolve_model(name_or_path: str | os.PathLike) -> tuple[Family, Path]:
    """(family, path) of a built-in model name or a checkpoint path; raises saying what each family takes."""
    path = Path(name_or_path)
    if path.exists():
        fam = family_of(path)
        if fam is not None:
            return fam, path
        reasons = [r for f in families() if (r := f.explain(path))]
        if reasons:
            raise ValueError("; ".join(reasons))
        raise ValueError(f"{str(path)!r} is not a model any registered family loads ({_accepted()})")
    if isinstance(name_or_path, str):
        for fam in families():
            if name_or_path in fam.builtins():
                return fam, fam.builtins()[name_or_path]
    raise ValueError(
        f"unknown model {str(name_or_path)!r}; available built-in models: {sorted(builtin_models())}; "
        f"or a path ({_accepted()})"
    )


def _accepted() -> str:
    return "; ".join(f"{f.capabilities.family}: {f.describe}" for f in families())


def load_pipeline(
    name_or_path: str | os.PathLike = "tiny",
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    text_encoder: str | os.PathLike | Any | None = None,
    vae: str | os.PathLike | Any | None = None,
    image_encoder: str | os.PathLike | Any | None = None,
    parallel: str | Any | None = None,
) -> Pipeline:
    """Load a built-in model by name (``"tiny"``) or any checkpoint a registered family detects (a vidcore
    model folder, an LTX-Video single file or diffusers folder, a Wan diffusers folder or single file, ...);
    everything offline.

    ``text_encoder`` / ``vae`` / ``image_encoder``: components given separately (a path or a loaded
    object), for families that take them (LTX-Video: a T5 folder; a Wan single-file transformer: its VAE,
    umT5 folder and, for I2V, CLIP vision); other families bring their own and refuse them by name.

    ``parallel``: run on several processes (launched by torchrun), e.g. ``"ulysses=2,ring=2"`` or a
    ``vidcore.distributed.ParallelConfig``; every rank calls this and ``generate`` with the same arguments.
    """
    fam, path = resolve_model(name_or_path)
    parts = Parts(text_encoder, vae, image_encoder)
    for name, flag in PART_FLAGS.items():
        value = getattr(parts, name)
        if value is not None and not getattr(fam.capabilities, flag):
            takers = [f.capabilities.family for f in families() if getattr(f.capabilities, flag)]
            raise ValueError(
                f"{name}={str(value)!r} is only for {' / '.join(takers) or 'no'} checkpoints; "
                f"{str(name_or_path)!r} is a {fam.capabilities.family} model, which brings its own {name}"
            )
    if parallel is None:
        return fam.load(path, resolve_device(device), dtype, parts)
    from ..distributed import init_parallel, parallelize

    mesh = init_parallel(parallel, device)  # refuses a bad world before the weights load
    return parallelize(fam.load(path, mesh.device, dtype, parts), mesh)
