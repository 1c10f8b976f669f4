"""CLIP vision encoder for image-conditioned video models (Wan 2.1 I2V / FLF2V: ViT-H/14, 257 tokens x 1280).

Images -> the penultimate layer's hidden states, as diffusers' WanImageToVideoPipeline.encode_image
(``image_encoder(..., output_hidden_states=True).hidden_states[-2]``) and Wan-Video/Wan2.1
wan/modules/clip.py (the visual tower's output after 31 of 32 blocks). Loaded offline from a transformers
folder (config.json + safetensors) with the CLIP image processor's settings (preprocessor_config.json in
the folder or a sibling ``image_processor/``); nothing is unpickled.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..devices import resolve_device, resolve_dtype
from ..io.frames import check_frames

PROCESSOR_FILE = "preprocessor_config.json"


class CLIPImageEncoder:
    """``encode(frames [N, H, W, 3] in 0..1) -> [N, tokens, hidden]`` with a CLIP vision tower."""

    def __init__(self, model: nn.Module, processor: Any, source: str = "") -> None:
        self.model = model.eval().requires_grad_(False)
        self.processor = processor
        self.source = source

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def components(self) -> dict[str, nn.Module]:
        """The torch modules this handle runs (what a host such as ComfyUI moves and frees)."""
        return {"image_encoder": self.model}

    @torch.no_grad()
    def encode(self, frames: Tensor) -> Tensor:
        """Penultimate hidden states ``[N, 1 + patches, hidden]`` (float32) of ``N`` images.

        Frames go to the processor as uint8 (0..255), the form the reference pipelines hand it (PIL), so
        its resize, crop and normalisation are exactly theirs."""
        frames = check_frames(frames, "images")
        pixels = (frames.float() * 255).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
        inputs = self.processor(images=list(pixels), return_tensors="pt")
        values = inputs["pixel_values"].to(self.device, self.dtype)
        out = self.model(pixel_values=values, output_hidden_states=True)
        return out.hidden_states[-2].float()


def _processor_folder(folder: Path) -> Path:
    for candidate in (folder, folder.parent / "image_processor"):
        if (candidate / PROCESSOR_FILE).is_file():
            return candidate
    raise ValueError(
        f"{str(folder)!r} has no {PROCESSOR_FILE} and {str(folder.parent / 'image_processor')!r} has none "
        "either: the CLIP image processor settings (size, crop, mean, std) are needed"
    )


def load_image_encoder(
    path: str | os.PathLike,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
) -> CLIPImageEncoder:
    """A CLIP vision transformers folder (``model_type`` clip / clip_vision_model, safetensors weights)."""
    from transformers import CLIPImageProcessor, CLIPVisionModel

    folder = Path(path)
    if not (folder / "config.json").is_file():
        raise ValueError(f"{str(folder)!r} is not a transformers folder (no config.json)")
    if not any(folder.glob("*.safetensors")):
        raise ValueError(f"{str(folder)!r} has no .safetensors weights (other formats are never unpickled)")
    model = CLIPVisionModel.from_pretrained(
        folder, local_files_only=True, use_safetensors=True, torch_dtype=resolve_dtype(dtype)
    ).to(resolve_device(device))
    processor = CLIPImageProcessor.from_pretrained(_processor_folder(folder), local_files_only=True)
    return CLIPImageEncoder(model, processor, str(folder))
