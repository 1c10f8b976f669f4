"""Assemble a model folder (``pipeline.json`` + ``dit.safetensors`` + ``vae.safetensors``) from training runs.

    python -m vidcore.train.export --vae runs/tiny_vae/vae.safetensors --dit runs/tiny_dit/dit.safetensors \\
        --out vidcore/weights/tiny [--name tiny]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

from ..io.atomic import atomic_folder
from ..models.dit import SpacetimeDiT
from ..models.vae import CausalVAE3D
from ..pipelines.builtin import PIPELINE_FILE, PipelineConfig


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
    # The whole folder is swapped at once, so a reader never sees a new VAE beside an old DiT.
    with atomic_folder(out, overwrite) as tmp:
        shutil.copyfile(vae_path, tmp / "vae.safetensors")
        shutil.copyfile(dit_path, tmp / "dit.safetensors")
        (tmp / PIPELINE_FILE).write_text(json.dumps(config.to_dict(), indent=2) + "\n")
        if out.is_dir():
            # Other files of the old folder (e.g. a model card) carry over.
            for extra in out.iterdir():
                if (tmp / extra.name).exists():
                    continue
                if extra.is_dir():
                    shutil.copytree(extra, tmp / extra.name)
                else:
                    shutil.copy2(extra, tmp / extra.name)
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
