"""Tiny LTX-Video checkpoints laid out like a ComfyUI models/ tree (entry point, node and workflow tests).

``make_ltx_models_root(root)`` writes, from ONE tiny random diffusers transformer + 0.9.5 VAE:
  root/checkpoints/ltx-video-2b-v0.9.5.safetensors  (original single file, no text encoder)
  root/diffusion_models/ltx-video-diffusers/        (diffusers folder: model_index.json, transformer/, vae/,
                                                     text_encoder/ with its tokenizer)
  root/text_encoders/t5-v1_1-xxl/                   (tiny T5 folder, d_model 32 = caption_channels)
The names are the ones workflows/ltx_video_text_to_video.json expects.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from . import _ltx_fixtures as fx  # skips the importing test when diffusers (test extra) is missing
from ._tiny_hf import make_t5_folder

CHECKPOINT = "ltx-video-2b-v0.9.5.safetensors"
DIFFUSERS = "ltx-video-diffusers"
T5 = "t5-v1_1-xxl"
T5_WIDTH = 32  # make_t5_folder's d_model
HEADS_META = {"config": json.dumps({"transformer": {"num_attention_heads": 2}})}  # heads aren't in shapes


def tiny_transformer(seed: int = 3):
    """fx.TINY_TRANSFORMER with caption_channels matching the tiny T5."""
    torch.manual_seed(seed)
    cfg = dict(fx.TINY_TRANSFORMER, caption_channels=T5_WIDTH)
    return fx.perturb_(fx.diffusers.LTXVideoTransformer3DModel(**cfg), seed)


def make_ltx_models_root(root: str | Path) -> Path:
    """Write the tiny LTX checkpoints under ``root`` (idempotent) and return ``root``."""
    root = Path(root)
    single = root / "checkpoints" / CHECKPOINT
    if single.is_file():
        return root
    t5 = make_t5_folder(root / "text_encoders" / T5)
    transformer, vae = tiny_transformer(), fx.tiny_vae("0.9.5", seed=4)
    folder = fx.save_diffusers(root / "diffusion_models" / DIFFUSERS, transformer, vae)
    shutil.copytree(t5, folder / "text_encoder")
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "LTXPipeline"}))
    single.parent.mkdir(parents=True, exist_ok=True)
    fx.save_original(single, transformer, vae, "0.9.5", metadata=HEADS_META)
    return root
