"""`vidcore convert IN.pth OUT.safetensors`: a pickled PyTorch checkpoint -> safetensors, unpickling no code.

The source is read with ``torch.load(weights_only=True)``, which rebuilds only tensors and plain containers
and refuses any other object, so a malicious or custom-class checkpoint is rejected, never executed. The
lead's ``vidcore/cli.py`` registers the sub-command with :func:`add_convert_arguments` and calls
:func:`run_convert`.
"""

from __future__ import annotations

import argparse
import os
import re
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from vidcore.io.atomic import atomic_write, check_target

SOURCE_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")
TARGET_SUFFIXES = (".safetensors", ".sft")
# Keys under which training code commonly nests the state dict (Lightning, DDP/DeepSpeed, EMA wrappers).
CONTAINER_KEYS = ("state_dict", "model", "module", "ema")
METADATA_SOURCE = "vidcore_converted_from"
METADATA_CONTAINER = "vidcore_container"


def _load_error_reason(error: Exception) -> str:
    """The informative part of a torch.load error (e.g. "Unsupported global: GLOBAL mod.Class was not an
    allowed global by default"), without its advice to retry with weights_only=False."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))
    found = re.search(r"WeightsUnpickler error:\s*(.*?)(?:\.\s+Please|\n\n|$)", text, re.S)
    if found and found.group(1).strip():
        return found.group(1).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def _is_state_dict(obj: Any) -> bool:
    """A non-empty flat mapping of str -> Tensor."""
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items())
    )


def _describe(obj: Any, limit: int = 8) -> str:
    """What a loaded object is, in words: its type, and for a mapping its first keys with value types."""
    if not isinstance(obj, Mapping):
        return f"a {type(obj).__name__}"
    if not obj:
        return "an empty mapping"
    items = [f"{k!r}: {type(v).__name__}" for k, v in list(obj.items())[:limit]]
    more = f", ... ({len(obj)} keys)" if len(obj) > limit else ""
    return f"a mapping {{{', '.join(items)}{more}}}"


def unwrap_state_dict(obj: Any, key: str | None = None) -> tuple[dict[str, Tensor], str | None]:
    """The flat str -> Tensor state dict inside a loaded checkpoint, and the container key it came from
    (None when ``obj`` itself is one). ``key`` picks a container; otherwise exactly one of
    ``CONTAINER_KEYS`` must hold a state dict. Anything else is a ValueError naming what was found."""
    if key is not None:
        if not isinstance(obj, Mapping) or key not in obj:
            raise ValueError(f"key={key!r} is not in the checkpoint, which is {_describe(obj)}")
        if not _is_state_dict(obj[key]):
            raise ValueError(
                f"checkpoint[{key!r}] is not a flat mapping of str -> Tensor; it is {_describe(obj[key])}"
            )
        return dict(obj[key]), key
    if _is_state_dict(obj):
        return dict(obj), None
    found = [k for k in CONTAINER_KEYS if isinstance(obj, Mapping) and _is_state_dict(obj.get(k))]
    if len(found) == 1:
        return dict(obj[found[0]]), found[0]
    if len(found) > 1:
        raise ValueError(
            f"the checkpoint holds several state dicts, under {found}; choose one with key=... (--key)"
        )
    raise ValueError(
        f"the checkpoint is {_describe(obj)}: expected a flat mapping of str -> Tensor, or one under "
        f"{list(CONTAINER_KEYS)}"
    )


def prepare_tensors(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
    """Contiguous, dense CPU tensors that safetensors accepts, and the names that were cloned because
    they shared storage with an earlier tensor (tied weights, views): safetensors refuses shared memory."""
    bad = [k for k, v in state.items() if v.layout != torch.strided]
    if bad:
        raise ValueError(
            f"tensors {bad[:8]} are not dense (sparse or other layout); safetensors stores dense only"
        )
    out: dict[str, Tensor] = {}
    seen: set[int] = set()
    cloned = []
    for name, tensor in state.items():
        tensor = tensor.detach().cpu().contiguous()
        storage = tensor.untyped_storage().data_ptr()
        if tensor.numel() and storage in seen:
            tensor = tensor.clone()
            cloned.append(name)
        seen.add(tensor.untyped_storage().data_ptr())
        out[name] = tensor
    return out, cloned


def convert_checkpoint(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    overwrite: bool = False,
    key: str | None = None,
    flag: str = "overwrite=True",
) -> dict[str, Any]:
    """Convert a .pth/.pt/.ckpt/.bin state dict to a safetensors file; return a summary.

    The source is loaded with ``weights_only=True`` (no arbitrary unpickling); a state dict nested under
    one of ``CONTAINER_KEYS`` (or ``key``) is unwrapped. The target is written atomically (vidcore.io.atomic)
    with the source file name in its metadata, and is never replaced unless ``overwrite``. On any error
    nothing is written. Summary: path, source, container, tensors (count), dtypes (name -> count), bytes,
    cloned (names copied to break shared storage).
    """
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise FileNotFoundError(f"checkpoint {str(src)!r} does not exist")
    if src.suffix.lower() not in SOURCE_SUFFIXES:
        raise ValueError(f"checkpoint {str(src)!r} must end in one of {list(SOURCE_SUFFIXES)}")
    if dst.suffix.lower() not in TARGET_SUFFIXES:
        raise ValueError(f"output {str(dst)!r} must end in one of {list(TARGET_SUFFIXES)}")
    check_target(dst, overwrite, flag)  # before the (possibly long) load
    try:
        loaded = torch.load(src, map_location="cpu", weights_only=True)
    except OSError:
        raise
    except Exception as e:  # UnpicklingError for a refused object, RuntimeError for a damaged archive, ...
        raise ValueError(
            f"cannot read {str(src)!r} with torch.load(weights_only=True), which rebuilds only tensors and "
            f"plain containers: {_load_error_reason(e)}; nothing was written"
        ) from e
    state, container = unwrap_state_dict(loaded, key)
    tensors, cloned = prepare_tensors(state)
    metadata = {"format": "pt", METADATA_SOURCE: src.name}
    if container is not None:
        metadata[METADATA_CONTAINER] = container
    from safetensors.torch import save_file

    with atomic_write(dst, overwrite, flag) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    dtypes = Counter(str(t.dtype).removeprefix("torch.") for t in tensors.values())
    return {
        "path": str(dst),
        "source": str(src),
        "container": container,
        "tensors": len(tensors),
        "dtypes": dict(dtypes.most_common()),
        "bytes": sum(t.numel() * t.element_size() for t in tensors.values()),
        "cloned": cloned,
    }


def format_bytes(n: int) -> str:
    """1536 -> '1.5 KiB' (binary units)."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def add_convert_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the `convert` arguments to ``parser`` (a sub-parser) and return it."""
    parser.description = (
        "Convert a PyTorch checkpoint (.pth, .pt, .ckpt, .bin) holding a state dict to .safetensors. Only "
        "tensors and plain containers are read (torch.load weights_only=True): pickled code is refused."
    )
    parser.add_argument("src", metavar="IN", help="checkpoint file: .pth, .pt, .ckpt or .bin")
    parser.add_argument("dst", metavar="OUT", help="output .safetensors file")
    parser.add_argument(
        "--key",
        default=None,
        help=f"take the state dict under this key (default: the file itself or the one of "
        f"{', '.join(CONTAINER_KEYS)} that holds one)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    return parser


def run_convert(args: argparse.Namespace) -> int:
    """Run `vidcore convert` for parsed ``args``; prints what was written and returns the exit code 0."""
    summary = convert_checkpoint(
        args.src, args.dst, overwrite=args.overwrite, key=args.key, flag="--overwrite"
    )
    dtypes = ", ".join(f"{name} {count}" for name, count in summary["dtypes"].items())
    source = (
        summary["source"]
        if summary["container"] is None
        else f"{summary['source']}[{summary['container']!r}]"
    )
    print(f"wrote {summary['tensors']} tensors ({format_bytes(summary['bytes'])}; {dtypes}) from {source}")
    if summary["cloned"]:
        print(
            f"copied {len(summary['cloned'])} tensor(s) that shared storage: {', '.join(summary['cloned'])}"
        )
    print(summary["path"])
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point: ``python -m vidcore.io.convert IN OUT``."""
    return run_convert(
        add_convert_arguments(argparse.ArgumentParser(prog="vidcore convert")).parse_args(argv)
    )


if __name__ == "__main__":
    raise SystemExit(main())
