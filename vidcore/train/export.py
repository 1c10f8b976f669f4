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

import torch

from ..io.atomic import atomic_folder
from ..io.checkpoint import METADATA_CONFIG, METADATA_KIND, read_config, read_metadata
from ..models.dit import KIND as DIT_KIND
from ..models.dit import SpacetimeDiT
from ..models.unet3d import KIND as UNET_KIND
from ..models.unet3d import UNet3D
from ..models.vae import CausalVAE3D
from ..pipelines.builtin import PIPELINE_FILE, PipelineConfig
from ..pipelines.unet import WEIGHTS_FILE as UNET_FILE
from ..pipelines.unet import UNetPipelineConfig

STORE_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}

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
    store_dtype: str | None = None,
) -> Path:
    """Check that the two checkpoints load and fit each other, then write the folder atomically.

    ``store_dtype`` ("float16", "bfloat16", "float32"): store the denoiser's floating tensors in that type
    (its metadata, e.g. the training step, is kept); None copies the file as it is. Models load as float32
    unless a dtype is asked for, so float16 halves the repository's growth for a shipped model.

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
    if store_dtype is not None and store_dtype not in STORE_DTYPES:
        raise ValueError(f"store_dtype={store_dtype!r} must be one of {sorted(STORE_DTYPES)} or None")
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
        if store_dtype is None:
            shutil.copyfile(dit_path, tmp / weights)
        else:
            meta = read_metadata(dit_path)
            extra = {k: v for k, v in meta.items() if k not in (METADATA_CONFIG, METADATA_KIND)}
            net.to(STORE_DTYPES[store_dtype]).save(tmp / weights, extra_metadata=extra)
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
    parser.add_argument(
        "--dtype",
        choices=sorted(STORE_DTYPES),
        default=None,
        help="store the denoiser's weights in this type (default: as the checkpoint has them)",
    )
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
    config = PipelineConfig.from_dict(fields)
    print(export_model(args.vae, denoiser, args.out, config, args.overwrite, store_dtype=args.dtype))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
