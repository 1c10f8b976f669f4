"""Which files make a usable tokenizer, per model family, and the folder listing quoted in errors.

Shared by the text-encoder loaders, the single-file T5 loader, the SmolVLM2 captioner, CLIP metrics and
the LTX entry points, so each folder check says the same thing. transformers loads lazily.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

# Any one of these sets makes a usable tokenizer for the family (tokenizer.json is what transformers 5
# prefers; the others are the slow tokenizers' files).
TOKENIZER_FILES: dict[str, tuple[tuple[str, ...], ...]] = {
    "t5": (("tokenizer.json",), ("spiece.model",)),
    "umt5": (("tokenizer.json",), ("spiece.model",)),
    "clip": (("tokenizer.json",), ("vocab.json", "merges.txt")),
    "clip_text_model": (("tokenizer.json",), ("vocab.json", "merges.txt")),
    "bert": (("tokenizer.json",), ("vocab.txt",)),
    # SmolVLM2 captioner folders (vidcore.caption).
    "smolvlm": (("tokenizer.json",),),
    "idefics3": (("tokenizer.json",),),
}


def _options(model_type: str | None) -> tuple[tuple[str, ...], ...]:
    if model_type is None:
        # Any family's tokenizer: the union of every family's file sets, in first-seen order.
        return tuple(dict.fromkeys(names for sets in TOKENIZER_FILES.values() for names in sets))
    if model_type not in TOKENIZER_FILES:
        raise ValueError(f"model_type={model_type!r} must be None or one of {sorted(TOKENIZER_FILES)}")
    return TOKENIZER_FILES[model_type]


def has_tokenizer(folder: str | os.PathLike, model_type: str | None = None) -> bool:
    """True when ``folder`` holds one complete set of tokenizer files for ``model_type`` (None: any family).

    A folder that does not exist holds none.
    """
    folder = Path(folder)
    return any(all((folder / name).is_file() for name in names) for names in _options(model_type))


def tokenizer_options(model_type: str | None = None) -> str:
    """The accepted tokenizer files of ``model_type`` in words, e.g. ``"tokenizer.json or spiece.model"``."""
    return " or ".join(" + ".join(names) for names in _options(model_type))


def folder_listing(folder: str | os.PathLike, limit: int = 12) -> str:
    """The first ``limit`` entry names of ``folder`` (sorted), for "found: ..." in error messages."""
    names = sorted(p.name for p in Path(folder).iterdir())
    more = f", ... ({len(names)} entries)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more or "nothing"


def load_tokenizer(folder: str | os.PathLike) -> Any:
    """``AutoTokenizer`` from a local folder (never the network)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
