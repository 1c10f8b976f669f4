"""CLIP-SIM (frame-text) and CLIP-TC (frame-frame) with a CLIP loaded by transformers from a local folder.

CLIP-SIM = mean_t cos(img_t, txt) and CLIP-TC = mean_t cos(img_t, img_{t+1}) on the projected embeddings,
reported as raw cosines (VBench's convention); ``torchmetrics_scale`` gives 100 * max(cos, 0) instead.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from vidcore.io.frames import check_frames
from vidcore.metrics.temporal import adjacent_cosine
from vidcore.text.files import has_tokenizer, tokenizer_options

# OpenAI CLIP preprocessing constants (CLIPImageProcessor defaults).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclasses.dataclass
class ClipBundle:
    """A loaded CLIP: the transformers model, its tokenizer (None without a text tower) and preprocessing."""

    model: torch.nn.Module
    tokenizer: object | None
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    folder: str

    @property
    def has_text(self) -> bool:
        return self.tokenizer is not None


def _read_json(path: Path) -> dict:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def _check_weights(root: Path) -> None:
    """Safetensors weights must be there: transformers would otherwise unpickle a pytorch_model.bin."""
    from ..text.loading import safetensors_keys

    _, missing = safetensors_keys(root)  # raises for .bin-only folders
    if missing:
        raise FileNotFoundError(f"clip folder {str(root)!r} is missing {'; '.join(missing)}")


def load_clip(
    folder: str | os.PathLike,
    require_text: bool = True,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> ClipBundle:
    """Load a CLIP from a local transformers folder (``local_files_only=True``, never the network).

    A full ``CLIPModel`` folder gives both towers; a vision-only folder (``clip_vision_model``, e.g. a
    converted ComfyUI clip_vision file) is accepted only with ``require_text=False`` (CLIP-TC).
    """
    from transformers import AutoTokenizer, CLIPModel, CLIPVisionModelWithProjection

    root = Path(folder)
    if not root.is_dir():
        raise ValueError(
            f"clip folder {str(root)!r} is not a folder; give a transformers CLIP folder with config.json "
            "(single .safetensors files such as ComfyUI clip_vision models hold no text tower)"
        )
    if not (root / "config.json").is_file():
        raise ValueError(f"clip folder {str(root)!r} has no config.json: not a transformers model folder")
    config = _read_json(root / "config.json")
    model_type = config.get("model_type")
    needs = (
        "CLIP-SIM needs a full CLIP (vision + text towers with both projections, "
        "e.g. openai/clip-vit-base-patch32)"
    )
    if model_type == "clip_vision_model":
        if require_text:
            raise ValueError(
                f"clip folder {str(root)!r} holds only a vision tower (model_type={model_type!r}); {needs}"
            )
        _check_weights(root)
        model = CLIPVisionModelWithProjection.from_pretrained(
            root, local_files_only=True, use_safetensors=True, dtype=dtype
        )
        tokenizer = None
    elif model_type == "clip":
        _check_weights(root)
        model, info = CLIPModel.from_pretrained(
            root, local_files_only=True, use_safetensors=True, dtype=dtype, output_loading_info=True
        )
        missing = sorted(
            k for k in info.get("missing_keys", []) if k.startswith(("text_model", "text_projection"))
        )
        tokenizer = None
        if missing:
            if require_text:
                raise ValueError(f"clip folder {str(root)!r} lacks text-tower weights {missing[:4]}; {needs}")
        elif not has_tokenizer(root, "clip"):
            if require_text:
                raise ValueError(
                    f"clip folder {str(root)!r} has no tokenizer files ({tokenizer_options('clip')})"
                )
        else:
            try:
                tokenizer = AutoTokenizer.from_pretrained(root, local_files_only=True)
            except (OSError, ValueError) as exc:
                if require_text:
                    raise ValueError(f"clip folder {str(root)!r} has no usable tokenizer: {exc}") from exc
    else:
        raise ValueError(
            f"clip folder {str(root)!r} has model_type={model_type!r}; expected 'clip' or 'clip_vision_model'"
        )
    image_size = int(
        model.config.vision_config.image_size if model_type == "clip" else model.config.image_size
    )
    mean, std = CLIP_MEAN, CLIP_STD
    proc = root / "preprocessor_config.json"
    if proc.is_file():
        p = _read_json(proc)
        mean = tuple(p.get("image_mean", mean))
        std = tuple(p.get("image_std", std))
    model = model.to(device).eval().requires_grad_(False)
    return ClipBundle(model, tokenizer, image_size, mean, std, str(root))


def clip_preprocess(frames: Tensor, size: int, mean: tuple, std: tuple) -> Tensor:
    """CLIP preprocessing of ``[T, H, W, 3]`` frames in 0..1: short side to ``size`` (bicubic, antialiased),
    centre crop ``size`` x ``size``, then mean/std normalisation -> ``[T, 3, size, size]``.

    Torch bicubic with antialias approximates the PIL bicubic of CLIPImageProcessor (PIL is not required).
    """
    check_frames(frames)
    x = rearrange(frames.to(torch.float32), "t h w c -> t c h w")
    h, w = x.shape[-2:]
    scale = size / min(h, w)
    new_h, new_w = max(size, round(h * scale)), max(size, round(w * scale))
    if (new_h, new_w) != (h, w):
        x = F.interpolate(x, size=(new_h, new_w), mode="bicubic", align_corners=False, antialias=True)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    x = x[..., top : top + size, left : left + size].clamp(0, 1)
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - m) / s


def _pooled(out: object) -> Tensor:
    if isinstance(out, Tensor):
        return out
    for name in ("image_embeds", "text_embeds", "pooler_output"):
        value = getattr(out, name, None)
        if value is not None:
            return value
    raise TypeError(f"unexpected CLIP output {type(out).__name__}")


@torch.no_grad()
def clip_image_features(frames: Tensor, clip: ClipBundle, batch_size: int = 16) -> Tensor:
    """L2-normalised projected image embeddings ``[T, D]`` (float32, CPU) of frames ``[T, H, W, 3]``."""
    pixels = clip_preprocess(frames, clip.image_size, clip.mean, clip.std)
    param = next(clip.model.parameters())
    out = []
    for start in range(0, pixels.shape[0], batch_size):
        chunk = pixels[start : start + batch_size].to(device=param.device, dtype=param.dtype)
        if hasattr(clip.model, "get_image_features"):
            emb = _pooled(clip.model.get_image_features(pixel_values=chunk))
        else:
            emb = _pooled(clip.model(pixel_values=chunk))
        out.append(F.normalize(emb.float(), dim=-1).cpu())
    return torch.cat(out)


@torch.no_grad()
def clip_text_features(prompt: str, clip: ClipBundle) -> Tensor:
    """L2-normalised projected text embedding ``[D]`` of one prompt."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError(f"prompt must be a non-empty string, got {prompt!r}")
    if not clip.has_text:
        raise ValueError(f"CLIP from {clip.folder!r} has no text tower; CLIP-SIM needs a full CLIP model")
    max_len = int(clip.model.config.text_config.max_position_embeddings)
    enc = clip.tokenizer(
        [prompt], padding="max_length", truncation=True, max_length=max_len, return_tensors="pt"
    )
    device = next(clip.model.parameters()).device
    enc = {k: v.to(device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
    emb = _pooled(clip.model.get_text_features(**enc))
    return F.normalize(emb.float(), dim=-1)[0].cpu()


def clip_sim_from_features(
    image_features: Tensor, text_feature: Tensor, torchmetrics_scale: bool = False
) -> Tensor:
    """Per-frame frame-text cosine ``[T]`` (float64); ``torchmetrics_scale`` -> 100 * max(cos, 0)."""
    if image_features.ndim != 2 or text_feature.shape != image_features.shape[1:]:
        raise ValueError(
            f"image_features {tuple(image_features.shape)} must be [T, D], "
            f"text_feature {tuple(text_feature.shape)} [D]"
        )
    cos = F.normalize(image_features.to(torch.float64), dim=-1) @ F.normalize(
        text_feature.to(torch.float64), dim=-1
    )
    return 100 * cos.clamp_min(0) if torchmetrics_scale else cos


def clip_sim(frames: Tensor, prompt: str, clip: ClipBundle, torchmetrics_scale: bool = False) -> float:
    """CLIP-SIM: mean over frames of cos(image embedding, text embedding)."""
    return float(
        clip_sim_from_features(
            clip_image_features(frames, clip), clip_text_features(prompt, clip), torchmetrics_scale
        ).mean()
    )


def clip_tc(frames: Tensor, clip: ClipBundle) -> float:
    """CLIP-TC: mean cosine of consecutive frames' CLIP image embeddings (TCS on CLIP features)."""
    check_frames(frames, min_frames=2)
    return float(adjacent_cosine(clip_image_features(frames, clip)).mean())
