"""Frozen-dataclass configs shared by every vidcore model: dict round trip, unknown keys refused."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any, TypeVar

C = TypeVar("C", bound="ConfigMixin")


class ConfigMixin:
    """Mixin for frozen dataclass configs.

    Subclasses are ``@dataclass(frozen=True)`` and validate themselves in ``__post_init__``.
    Tuples are stored as tuples and written to JSON as lists.
    """

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        if not isinstance(data, dict):
            raise TypeError(f"{cls.__name__}.from_dict expects a dict, got {type(data).__name__}")
        names = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys {unknown}; known keys are {sorted(names)}")
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**kwargs)

    @classmethod
    def from_json(cls: type[C], text: str) -> C:
        return cls.from_dict(json.loads(text))

    def replace(self: C, **changes: Any) -> C:
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


def config_from_file(cls: type[C], path: str | os.PathLike, log: logging.Logger | None = None) -> C:
    """Read a JSON config file (e.g. a model folder's ``pipeline.json``) into ``cls``.

    Every problem names the file: unreadable, not valid JSON (truncated), not a JSON object, unknown keys,
    invalid values. Keys the file leaves out take the dataclass defaults, and a warning names them, so
    nothing is defaulted silently.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read {str(path)!r}: {e}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{str(path)!r} is not valid JSON ({e}); it may be truncated: restore it") from None
    if not isinstance(data, dict):
        raise ValueError(
            f"{str(path)!r} holds a JSON {type(data).__name__}; expected an object of {cls.__name__} keys"
        )
    try:
        config = cls.from_dict(data)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{str(path)!r}: {e}") from None
    defaulted = sorted(f.name for f in dataclasses.fields(cls) if f.init and f.name not in data)  # type: ignore[arg-type]
    if defaulted:
        (log or logging.getLogger("vidcore")).warning(
            "%s leaves out %s; using the defaults %s",
            path,
            ", ".join(defaulted),
            {name: getattr(config, name) for name in defaulted},
        )
    return config


def check_positive(name: str, value: int | float) -> None:
    """Raise ValueError unless ``value`` is a positive number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"{name}={value!r} must be a positive number")


def check_positive_int(name: str, value: object) -> None:
    """Raise ValueError unless ``value`` is an int >= 1 (bools and floats are refused, not truncated)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}={value!r} must be a positive integer")


def check_choice(name: str, value: Any, choices: tuple | list) -> None:
    """Raise ValueError unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name}={value!r} must be one of {list(choices)}")


def resolve_shipped_config(path_or_name: str | Path, folder: Path, what: str) -> Path:
    """A config file path, or the name of a config shipped as ``folder/<name>.json``; else a
    FileNotFoundError naming ``what`` and the shipped names."""
    path = Path(path_or_name)
    if path.is_file():
        return path
    shipped = folder / f"{path_or_name}.json"
    if shipped.is_file():
        return shipped
    names = sorted(p.stem for p in folder.glob("*.json"))
    raise FileNotFoundError(f"{what} {str(path_or_name)!r} not found (shipped configs: {names})")
