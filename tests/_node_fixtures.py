"""Tiny random model folders laid out like ComfyUI's models/ tree, for the node, workflow and e2e tests.

``make_models_root(root)`` writes:
  root/vidcore/tiny/{pipeline.json, dit.safetensors, vae.safetensors}  (its text encoder: tinybert)
  root/text_encoders/tinybert/  (tiny BERT, see _tiny_hf.py)
and ``make_captioner(root)`` adds root/LLM/SmolVLM2-256M-Video-Instruct (tiny random SmolVLM).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from ._tiny_hf import make_bert_folder, make_smolvlm_folder

CAPTIONER_NAME = "SmolVLM2-256M-Video-Instruct"
INPUT_VIDEO = "vidcore_example.mp4"


def _randomize(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return model


def make_models_root(root: str | Path, name: str = "tiny") -> Path:
    """Write the tiny model folders under ``root`` (idempotent) and return ``root``."""
    from vidcore.models.dit import DiTConfig, SpacetimeDiT
    from vidcore.models.vae import CausalVAE3D, VAEConfig
    from vidcore.pipelines.builtin import PipelineConfig
    from vidcore.text import load_text_encoder

    root = Path(root)
    folder = root / "vidcore" / name
    if (folder / "pipeline.json").is_file():
        return root
    text = root / "text_encoders" / "tinybert"
    if not (text / "config.json").is_file():
        make_bert_folder(text)
    dim = load_text_encoder(str(text)).dim
    folder.mkdir(parents=True, exist_ok=True)
    vae = CausalVAE3D(
        VAEConfig(
            spatial_compression=4,
            temporal_compression=4,
            patch_size=4,
            base_channels=8,
            channel_multipliers=(1, 1, 1),
            latent_channels=4,
        )
    )
    dit = SpacetimeDiT(
        DiTConfig(in_channels=4, out_channels=4, width=16, depth=1, heads=2, text_dim=dim, patch_s=1)
    )
    _randomize(dit, 1).save(folder / "dit.safetensors")
    _randomize(vae, 2).save(folder / "vae.safetensors")
    cfg = PipelineConfig(
        name=name, text_encoder=str(text.resolve()), num_frames=5, height=16, width=16, steps=4, fps=4.0
    )
    (folder / "pipeline.json").write_text(json.dumps(cfg.to_dict()))
    return root


def make_captioner(root: str | Path) -> Path:
    folder = Path(root) / "LLM" / CAPTIONER_NAME
    if not (folder / "config.json").is_file():
        make_smolvlm_folder(folder)
    return folder


def moving_square(num_frames: int = 9, size: int = 32) -> torch.Tensor:
    """Frames ``[T, H, W, 3]`` of a bright square moving right over a smooth gradient (flow has signal)."""
    y, x = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    frames = []
    for t in range(num_frames):
        img = torch.stack([x / size, y / size, 0.5 + 0.25 * torch.sin(x / 3.0)], -1) * 0.6
        x0 = 4 + t
        img[8:16, x0 : x0 + 8] = torch.tensor([0.9, 0.8, 0.2])
        frames.append(img)
    return torch.stack(frames).float().clamp(0, 1)


def write_input_video(folder: str | Path, name: str = INPUT_VIDEO, num_frames: int = 9) -> Path:
    from vidcore.io.video import write_video

    path = Path(folder) / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_video(path, moving_square(num_frames, 32), fps=8.0, crf=0)
    return path


def close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-5) -> bool:
    return a.shape == b.shape and math.isclose(float((a.float() - b.float()).abs().max()), 0.0, abs_tol=tol)
