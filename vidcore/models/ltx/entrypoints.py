"""Entry points for LTX-Video checkpoints: is a path an LTX checkpoint, and path (+ T5) -> LTXPipeline.

Used by :func:`vidcore.pipeline.load_pipeline` (hence ``vidcore generate --model``) and the ComfyUI loader.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from vidcore.models.ltx.loading import LTXLayoutError, detect_ltx_layout, read_shapes
from vidcore.models.ltx.pipeline import LTXPipeline, PromptEncoder


def is_ltx_checkpoint(path: str | os.PathLike) -> bool:
    """True for an LTX-Video checkpoint vidcore can build a pipeline from: a ``.safetensors`` single file
    with transformer and VAE (decided by :func:`detect_ltx_layout`), or a diffusers folder (an LTX
    ``model_index.json``, or ``transformer/`` + ``vae/`` with config.json)."""
    p = Path(path)
    if p.is_file():
        if p.suffix not in (".safetensors", ".sft"):
            return False
        try:
            layout = detect_ltx_layout(*read_shapes(p), source=str(p))
        except (LTXLayoutError, OSError, ValueError):
            return False
        return layout.transformer_config is not None and layout.vae_config is not None
    if not p.is_dir():
        return False
    index = p / "model_index.json"
    if index.is_file():
        try:
            name = str(json.loads(index.read_text()).get("_class_name", ""))
        except (json.JSONDecodeError, OSError, AttributeError):
            return False
        return name.startswith("LTX")
    parts = [p / c / "config.json" for c in ("transformer", "vae")]
    if not all(c.is_file() for c in parts):
        return False
    try:
        return json.loads(parts[0].read_text()).get("_class_name") == "LTXVideoTransformer3DModel"
    except (json.JSONDecodeError, OSError, AttributeError):
        return False


def _has_tokenizer(folder: Path) -> bool:
    return (folder / "tokenizer.json").is_file() or (folder / "spiece.model").is_file()


def _ltx_text_encoder(
    checkpoint: Path,
    text_encoder: str | os.PathLike | PromptEncoder | None,
    device: torch.device,
    dtype: torch.dtype | None,
) -> PromptEncoder:
    """The T5 for an LTX checkpoint: ``text_encoder`` (folder, or an encoder object), else the diffusers
    folder's own ``text_encoder/`` (single or sharded safetensors) with its tokenizer files there or in
    the sibling ``tokenizer/`` (the diffusers repository layout)."""
    from vidcore.text import load_text_encoder

    if text_encoder is not None and not isinstance(text_encoder, (str, os.PathLike)):
        return text_encoder  # an already loaded encoder (checked for encode() and width by LTXPipeline)
    if text_encoder is not None:
        return load_text_encoder(text_encoder, device=device, dtype=dtype)
    folder = checkpoint / "text_encoder" if checkpoint.is_dir() else None
    if folder is None or not (folder / "config.json").is_file():
        where = "a single-file checkpoint" if checkpoint.is_file() else "a folder without text_encoder/"
        raise ValueError(
            f"{str(checkpoint)!r} is an LTX-Video checkpoint ({where}) that carries no text encoder: pass "
            "text_encoder=<T5-v1.1-XXL transformers folder with config.json, model.safetensors and "
            "tokenizer files> (CLI: --text-encoder DIR)"
        )
    if _has_tokenizer(folder):
        return load_text_encoder(folder, device=device, dtype=dtype)
    tokenizer = checkpoint / "tokenizer"
    if _has_tokenizer(tokenizer):
        # diffusers keeps the tokenizer beside the encoder; the weights (one file or shards) stay in there.
        return load_text_encoder(folder, device=device, dtype=dtype, tokenizer_path=tokenizer)
    found = "does not exist" if not tokenizer.is_dir() else "has no spiece.model or tokenizer.json either"
    raise ValueError(
        f"{str(folder)!r} has no tokenizer files (spiece.model / tokenizer.json) and {str(tokenizer)!r} "
        f"{found}: copy the tokenizer files into one of them, or pass text_encoder=<T5 folder with its "
        "tokenizer> (CLI: --text-encoder DIR)"
    )


def load_ltx_pipeline(
    path: str | os.PathLike,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    text_encoder: str | os.PathLike | PromptEncoder | None = None,
) -> LTXPipeline:
    """:meth:`LTXPipeline.from_checkpoint` with the T5 resolved (see :func:`_ltx_text_encoder`)."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    encoder = _ltx_text_encoder(Path(path), text_encoder, device, dtype)
    return LTXPipeline.from_checkpoint(path, encoder, device=device, dtype=dtype)
