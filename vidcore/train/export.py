"""Assemble a model folder (``pipeline.json`` + ``dit.safetensors`` + ``vae.safetensors``) from training runs.

    python -m vidcore.train.export --vae runs/tiny_vae/vae.safetensors --dit runs/tiny_dit/dit.safetensors \\
        --out vidcore/weights/tiny [--name tiny]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

from ..models.dit import SpacetimeDiT
from ..models.vae import CausalVAE3D
from ..pipeline import PIPELINE_FILE, PipelineConfig


def export_model(
    vae_path: str | os.PathLike,
    dit_path: str | os.PathLike,
    out: str | os.PathLike,
    config: PipelineConfig,
    overwrite: bool = False,
) -> Path:
    """Check that the two checkpoints load and fit each other, then write the folder atomically."""
    vae = CausalVAE3D.from_checkpoint(vae_path)
    dit = SpacetimeDiT.from_checkpoint(dit_path)
    if vae.config.latent_channels != dit.config.in_channels:
        raise ValueError(
            f"VAE latent_channels={vae.config.latent_channels} does not fit "
            f"DiT in_channels={dit.config.in_channels}"
        )
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{str(out)!r} exists; pass overwrite=True to replace it")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"output folder {str(out.parent)!r} does not exist")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    old: Path | None = None
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700: a model folder must be readable by other users
        shutil.copyfile(vae_path, tmp / "vae.safetensors")
        shutil.copyfile(dit_path, tmp / "dit.safetensors")
        (tmp / PIPELINE_FILE).write_text(json.dumps(config.to_dict(), indent=2) + "\n")
        for name in ("vae.safetensors", "dit.safetensors", PIPELINE_FILE):
            os.chmod(tmp / name, 0o644)
        if out.exists():
            # Swap whole folders, so a reader never sees a new VAE beside an old DiT. Other files in
            # the old folder (e.g. a model card) are copied over first.
            for extra in out.iterdir():
                if (tmp / extra.name).exists():
                    continue
                if extra.is_dir():
                    shutil.copytree(extra, tmp / extra.name)
                else:
                    shutil.copy2(extra, tmp / extra.name)
            old = out.with_name(f".{out.name}.old.{os.getpid()}")
            os.replace(out, old)
        os.replace(tmp, out)
    except BaseException:
        if old is not None and not out.exists():
            os.replace(old, out)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--vae", required=True)
    parser.add_argument("--dit", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--name", default=None, help="model name in pipeline.json (default: the folder name)")
    parser.add_argument(
        "--config", default=None, help="JSON file of PipelineConfig fields (generation defaults)"
    )
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    fields = json.loads(Path(args.config).read_text()) if args.config else {}
    if args.name:
        fields["name"] = args.name
    fields.setdefault("name", Path(args.out).name)
    print(export_model(args.vae, args.dit, args.out, PipelineConfig.from_dict(fields), args.overwrite))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
