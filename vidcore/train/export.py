"""Assemble a model folder (``pipeline.json`` + ``dit.safetensors`` or ``unet.safetensors`` +
``vae.safetensors``) from training runs.

    python -m vidcore.train.export --vae runs/tiny_vae/vae.safetensors --dit runs/tiny_dit/dit.safetensors \\
        --out vidcore/weights/tiny [--name tiny]
    python -m vidcore.train.export --vae runs/tiny_vae/vae.safetensors \\
        --unet runs/tiny_unet/unet.safetensors --out models/tiny_unet
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

from ..io.atomic import atomic_folder
from ..io.checkpoint import read_config
from ..models.dit import KIND as DIT_KIND
from ..models.dit import SpacetimeDiT
from ..models.unet3d import KIND as UNET_KIND
from ..models.unet3d import UNet3D
from ..models.vae import CausalVAE3D
from ..pipelines.builtin import PIPELINE_FILE, PipelineConfig
from ..pipelines.unet import WEIGHTS_FILE as UNET_FILE
from ..pipelines.unet import UNetPipelineConfig

# checkpoint kind -> (label, model class, file name in the folder, pipeline config class)
DENOISER_FILES = {
    DIT_KIND: ("DiT", SpacetimeDiT, "dit.safetensors", PipelineConfig),
    UNET_KIND: ("U-Net", UNet3D, UNET_FILE, UNetPipelineConfig),
}


def export_model(
    vae_path: str | os.PathLike,
    dit_path: str | os.PathLike,
    out: str | os.PathLike,
    config: PipelineConfig,
    overwrite: bool = False,
) -> Path:
    """Check that the two checkpoints load and fit each other, then write the folder atomically.

    ``dit_path``: the denoiser, a SpacetimeDiT or a UNet3D checkpoint (its metadata says which); a U-Net
    folder's ``pipeline.json`` gets ``"denoiser": "unet3d"`` added to ``config``'s fields.
    """
    kind, _ = read_config(dit_path)
    if kind not in DENOISER_FILES:
        raise ValueError(
            f"{str(dit_path)!r} holds a {kind!r} model, not a denoiser "
            f"(expected one of {list(DENOISER_FILES)})"
        )
    label, model_cls, weights, config_cls = DENOISER_FILES[kind]
    vae = CausalVAE3D.from_checkpoint(vae_path)
    net = model_cls.from_checkpoint(dit_path)
    if vae.config.latent_channels != net.config.in_channels:
        raise ValueError(
            f"VAE latent_channels={vae.config.latent_channels} does not fit "
            f"{label} in_channels={net.config.in_channels}"
        )
    fields = {k: v for k, v in config.to_dict().items() if k != "denoiser"}
    config = config_cls.from_dict(fields)
    out = Path(out)
    # The whole folder is swapped at once, so a reader never sees a new VAE beside an old denoiser.
    with atomic_folder(out, overwrite) as tmp:
        shutil.copyfile(vae_path, tmp / "vae.safetensors")
        shutil.copyfile(dit_path, tmp / weights)
        (tmp / PIPELINE_FILE).write_text(json.dumps(config.to_dict(), indent=2) + "\n")
        if out.is_dir():
            # Other files of the old folder (e.g. a model card) carry over.
            for extra in out.iterdir():
                # The other denoiser's weights do not carry over (the folder now holds this one).
                stale = extra.name in {f for _, _, f, _ in DENOISER_FILES.values()}
                if (tmp / extra.name).exists() or stale:
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
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--dit", help="a SpacetimeDiT checkpoint (dit.safetensors of a `train dit` run)")
    which.add_argument("--unet", help="a UNet3D checkpoint (unet.safetensors of a `train unet` run)")
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
    fields.pop("denoiser", None)  # written from the checkpoint's kind
    denoiser = args.dit or args.unet
    kind, _ = read_config(denoiser)
    want = DIT_KIND if args.dit else UNET_KIND
    if kind != want:
        flag = "--dit" if args.dit else "--unet"
        parser.error(f"{flag} {denoiser!r} holds a {kind!r} model, expected a {want!r} checkpoint")
    print(export_model(args.vae, denoiser, args.out, PipelineConfig.from_dict(fields), args.overwrite))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
