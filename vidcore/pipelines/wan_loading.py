"""Wan checkpoints on disk: diffusers folders and single-file transformers with separately given parts
(VAE, umT5, CLIP vision), how the registry recognises them, and the Wan family entry."""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import torch

from ..models.wan import WanLayoutError, load_wan_transformer, load_wan_vae, read_wan_layout
from ..models.wan.loading import TURBO_NAME, WanQuantizedError
from ..models.wan.transformer import WanTransformer
from ..sampling import SAMPLERS
from .options import Capabilities
from .registry import Family, Parts
from .wan import (
    TEXT_LEN,
    TURBO_BOUNDARY,
    TURBO_SIGMA_MAX,
    TURBO_STEPS,
    WanPipeline,
    WanPipelineConfig,
    default_negative_prompt,
    turbo_sigmas,
)

log = logging.getLogger("vidcore")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"could not read {str(path)!r} ({e})") from e


def is_wan_folder(path: Path) -> bool:
    """A diffusers Wan repository folder: model_index.json naming a Wan pipeline."""
    index = path / "model_index.json"
    if not (path.is_dir() and index.is_file()):
        return False
    try:
        return str(json.loads(index.read_text()).get("_class_name", "")).startswith("Wan")
    except (OSError, json.JSONDecodeError, AttributeError):
        return False


def variant_of(transformer: WanTransformer, index: dict[str, Any], two_experts: bool) -> str:
    """The Wan kind from the transformer's config and the pipeline index (never from tensor shapes)."""
    cfg = transformer.config
    if index.get("expand_timesteps"):
        return "ti2v"
    if cfg.image_pos_len is not None:
        return "flf2v"
    if cfg.image_dim is not None:
        return "i2v"
    image_channels = cfg.in_channels != cfg.out_channels
    if two_experts or index.get("boundary_ratio") is not None:
        return "i2v_a14b" if image_channels else "t2v_a14b"
    return "i2v" if image_channels else "t2v"


# Original Wan generate.py defaults per task (Wan-Video/Wan2.1 generate.py, Wan-Video/Wan2.2 wan/configs):
# (steps, shift, num_frames, height, width, fps) for single-file checkpoints, which carry no scheduler config.
SINGLE_FILE_DEFAULTS = {
    "t2v": (50, 5.0, 81, 480, 832, 16.0),
    "i2v": (40, 3.0, 81, 480, 832, 16.0),
    "flf2v": (50, 16.0, 81, 720, 1280, 16.0),
    "ti2v": (50, 5.0, 121, 704, 1280, 24.0),
}


def _text_encoder(value: Any, folder: Path | None, tokenizer: Path | None, where: str, device, dtype) -> Any:
    """umT5 from ``value`` (a folder, or an encoder object), else from ``folder``; Wan reads 512 tokens
    with the encoder's mask and zero-pads the states (the denoiser zeroes rows past the prompt)."""
    from ..text import load_text_encoder

    if value is not None and not isinstance(value, (str, os.PathLike)):
        return value  # an already loaded encoder (checked for its width by WanPipeline)
    source = Path(value) if value is not None else folder
    if source is None or not (source.exists()):
        raise ValueError(
            f"{where} carries no text encoder: pass text_encoder=<umT5-XXL transformers folder> "
            "(CLI: --text-encoder DIR)"
        )
    return load_text_encoder(
        source,
        device=device,
        dtype=dtype,
        tokenizer_path=tokenizer if value is None else None,
        max_length=TEXT_LEN,
        padding="max_length",
        encoder_mask=True,
    )


def _image_encoder(
    value: Any, folder: Path | None, transformer: WanTransformer, where: str, device, dtype
) -> Any:
    from ..text.clip_vision import load_image_encoder

    if transformer.config.image_dim is None:
        return None
    if value is not None and not isinstance(value, (str, os.PathLike)):
        return value
    source = Path(value) if value is not None else folder
    if source is None or not source.exists():
        raise ValueError(
            f"{where} takes CLIP image tokens (image_dim={transformer.config.image_dim}): pass "
            "image_encoder=<CLIP vision ViT-H/14 folder or ComfyUI clip_vision file> (CLI: --image-encoder)"
        )
    return load_image_encoder(source, device=device, dtype=dtype)


def load_wan_pipeline(
    path: Path, device: torch.device, dtype: torch.dtype | None, parts: Parts
) -> WanPipeline:
    """A diffusers Wan folder (transformer/, optional transformer_2/, vae/, text_encoder/ + tokenizer/,
    image_encoder/ + image_processor/ for 2.1 I2V / FLF2V, scheduler/ for the shift), or a single-file
    transformer (original, ComfyUI or vidcore layout) with its VAE, umT5 and (I2V / FLF2V) CLIP vision
    given as ``parts``. Parts given with a folder replace the folder's own."""
    if path.is_file():
        return _load_single_file(path, device, dtype, parts)
    index = _read_json(path / "model_index.json")
    transformer = load_wan_transformer(path / "transformer", dtype=dtype, device=device)
    transformer_2 = None
    if (path / "transformer_2").is_dir():
        transformer_2 = load_wan_transformer(path / "transformer_2", dtype=dtype, device=device)
    vae = _vae(parts.vae, path / "vae", device, dtype)
    tokenizer = path / "tokenizer" if (path / "tokenizer").is_dir() else None
    text = _text_encoder(parts.text_encoder, path / "text_encoder", tokenizer, repr(str(path)), device, dtype)
    image = _image_encoder(
        parts.image_encoder, path / "image_encoder", transformer, repr(str(path)), device, dtype
    )
    variant = variant_of(transformer, index, transformer_2 is not None)
    scheduler = path / "scheduler" / "scheduler_config.json"
    shift = _read_json(scheduler).get("flow_shift") if scheduler.is_file() else None
    defaults = WanPipelineConfig(variant="t2v")
    config = WanPipelineConfig(
        name=path.name,
        variant=variant,
        shift=float(shift) if shift is not None else defaults.shift,
        boundary_ratio=index.get("boundary_ratio") if variant in ("t2v_a14b", "i2v_a14b") else None,
        negative_prompt=default_negative_prompt(variant),
    )
    return WanPipeline(transformer, vae, text, config, transformer_2, image)


def _vae(value: Any, folder: Path | None, device: torch.device, dtype: torch.dtype | None) -> Any:
    if value is not None and not isinstance(value, (str, os.PathLike)):
        return value  # a loaded WanVAE / WanLatentVAE
    source = Path(value) if value is not None else folder
    if source is None:
        raise ValueError(
            "a Wan single-file transformer needs its VAE: pass vae=<Wan VAE .safetensors or diffusers vae/ "
            "folder> (CLI: --vae PATH)"
        )
    return load_wan_vae(source, dtype=dtype, device=device)


def _load_single_file(
    path: Path, device: torch.device, dtype: torch.dtype | None, parts: Parts
) -> WanPipeline:
    where = f"{str(path)!r} (a single-file Wan transformer)"
    layout = read_wan_layout(path)
    if layout.turbo or TURBO_NAME in path.name.lower():
        return _load_turbo(path, device, dtype, parts, where)
    transformer = load_wan_transformer(path, dtype=dtype, device=device)
    cfg = transformer.config
    variant = variant_of(transformer, {"expand_timesteps": cfg.out_channels == 48}, False)
    if variant in ("t2v_a14b", "i2v_a14b"):
        variant = variant.removesuffix("_a14b")  # one expert on its own runs as a single model
    vae = _vae(parts.vae, None, device, dtype)
    text = _text_encoder(parts.text_encoder, None, None, where, device, dtype)
    image = _image_encoder(parts.image_encoder, None, transformer, where, device, dtype)
    steps, shift, frames, height, width, fps = SINGLE_FILE_DEFAULTS[variant]
    config = WanPipelineConfig(
        name=path.name.removesuffix(path.suffix),
        variant=variant,
        steps=steps,
        shift=shift,
        num_frames=frames,
        height=height,
        width=width,
        fps=fps,
        negative_prompt=default_negative_prompt(variant),
    )
    return WanPipeline(transformer, vae, text, config, None, image)


_EXPERT = re.compile(r"(?<![A-Za-z0-9])(high|low)(?![A-Za-z0-9])", re.IGNORECASE)


def expert_partner(path: Path) -> Path | None:
    """The other expert's file of a Wan 2.2 A14B pair named alike (TurboWan2.2-I2V-A14B-high-720P <->
    ...-low-720P): ``high`` / ``low`` swapped as a separate word of the file name; None when the name has no
    such word (or several)."""
    found = list(_EXPERT.finditer(path.name))
    if len(found) != 1:
        return None
    m = found[0]
    word = m.group(1)
    other = {"high": "low", "low": "high"}[word.lower()]
    if word.isupper():
        other = other.upper()
    elif word[0].isupper():
        other = other.capitalize()
    return path.with_name(path.name[: m.start()] + other + path.name[m.end() :])


def _load_turbo(
    path: Path, device: torch.device, dtype: torch.dtype | None, parts: Parts, where: str
) -> WanPipeline:
    """A TurboDiffusion checkpoint (TurboWan2.1 T2V, TurboWan2.2 I2V-A14B experts; converted from .pth):
    rCM's 1-4-step lists, no CFG, the re-noising sampler, timesteps as TurboDiffusion feeds them. A 2.2
    I2V-A14B expert file loads its partner (``high`` <-> ``low`` in the name) from the same folder and
    switches to it once t < 0.9, as thu-ml/TurboDiffusion inference/wan2.2_i2v_infer.py does."""
    transformer = load_wan_transformer(path, dtype=dtype, device=device)
    cfg = transformer.config
    variant = variant_of(transformer, {"expand_timesteps": cfg.out_channels == 48}, False)
    if variant not in ("t2v", "i2v") or cfg.image_dim is not None:
        raise ValueError(
            f"{where} looks like a TurboDiffusion checkpoint but is a Wan {variant} transformer"
            f"{' with CLIP image tokens' if cfg.image_dim is not None else ''}; TurboDiffusion released "
            "T2V (TurboWan2.1) and 2.2 I2V-A14B (TurboWan2.2) students only"
        )
    transformer_2 = boundary = None
    if variant == "i2v":  # 2.2 I2V-A14B: two experts
        partner = expert_partner(path)
        if partner is not None and partner.is_file():
            other = load_wan_transformer(partner, dtype=dtype, device=device)
            if other.config != cfg:
                raise ValueError(
                    f"{str(partner)!r} (the other expert of {where}) is a different Wan transformer "
                    f"({other.config.variant}, dim {other.config.dim}); both experts share one architecture"
                )
            high_first = _EXPERT.search(path.name).group(1).lower() == "high"
            transformer, transformer_2 = (transformer, other) if high_first else (other, transformer)
            variant, boundary = "i2v_a14b", TURBO_BOUNDARY
            log.info("vidcore: %s: the Wan 2.2 A14B expert pair with %s", path.name, partner.name)
        else:
            log.warning(
                "vidcore: %s is one expert of a Wan 2.2 I2V-A14B pair but its partner (%s) is not beside it; "
                "it runs alone for every step (TurboDiffusion switches to the low-noise expert once t < %s)",
                path.name,
                partner.name if partner is not None else "a file named with high <-> low swapped",
                TURBO_BOUNDARY,
            )
    vae = _vae(parts.vae, None, device, dtype)
    text = _text_encoder(parts.text_encoder, None, None, where, device, dtype)
    sigma_max = TURBO_SIGMA_MAX["i2v" if cfg.cond_channels else "t2v"]
    steps, shift, frames, height, width, fps = SINGLE_FILE_DEFAULTS["t2v"]
    if "720p" in path.name.lower():  # TurboWan*-720P files: TurboDiffusion's 720p 16:9 size
        height, width = 720, 1280
    config = WanPipelineConfig(
        name=path.name.removesuffix(path.suffix),
        variant=variant,
        steps=max(TURBO_STEPS),
        guidance=1.0,
        shift=shift,
        sampler="renoise",
        num_frames=frames,
        height=height,
        width=width,
        fps=fps,
        boundary_ratio=boundary,
        # unused without CFG; a lone "i2v" expert here is Wan 2.2's, whose negative prompt has no prefix
        negative_prompt=default_negative_prompt("i2v_a14b" if variant == "i2v" else variant),
        step_sigmas=tuple(turbo_sigmas(n, sigma_max) for n in TURBO_STEPS),
        guidance_distilled=True,
        bf16_timesteps=True,
    )
    return WanPipeline(transformer, vae, text, config, transformer_2, None)


def is_wan_checkpoint(path: Path) -> bool:
    """A diffusers Wan folder, or a ``.safetensors`` file whose header is a Wan transformer's."""
    if path.is_dir():
        return is_wan_folder(path)
    if not (path.is_file() and path.suffix in (".safetensors", ".sft")):
        return False
    try:
        read_wan_layout(path)
    except (WanLayoutError, OSError, ValueError):
        return False
    return True


def is_wan_vae(path: Path) -> bool:
    """A Wan VAE ``.safetensors`` file or diffusers vae/ folder, judged from names and shapes only."""
    from ..models.wan import detect_wan_vae_layout
    from ..models.wan.vae_loading import read_shapes

    files = [path] if path.is_file() else sorted(path.glob("*.safetensors")) if path.is_dir() else []
    if len(files) != 1 or files[0].suffix not in (".safetensors", ".sft"):
        return False
    try:
        detect_wan_vae_layout(*read_shapes(files[0]), source=str(files[0]))
    except (ValueError, OSError):
        return False
    return True


def is_clip_vision(path: Path) -> bool:
    """A CLIP vision transformers folder (config.json naming a CLIP model) or a ``.safetensors`` file
    holding one CLIP vision tower (transformers or open_clip names), judged from names only."""
    if path.is_dir():
        try:
            model_type = json.loads((path / "config.json").read_text()).get("model_type", "")
        except (OSError, json.JSONDecodeError, AttributeError):
            return False
        return model_type in ("clip", "clip_vision_model")
    if not (path.is_file() and path.suffix in (".safetensors", ".sft")):
        return False
    from safetensors import safe_open

    from ..text.clip_vision import clip_vision_towers

    try:
        with safe_open(str(path), "pt") as f:
            return len(clip_vision_towers(set(f.keys()))) == 1
    except (OSError, ValueError, RuntimeError):
        return False


def explain(path: Path) -> str | None:
    if path.is_dir() and (path / "model_index.json").is_file() and not is_wan_folder(path):
        return None
    if path.is_file() and path.suffix in (".pth", ".pt", ".ckpt", ".bin"):
        return (
            f"{str(path)!r} is a pickle checkpoint, which vidcore never loads: convert it with "
            f"`vidcore convert {path.name} {path.stem}.safetensors` (reads tensors only)"
        )
    if path.is_file() and path.suffix in (".safetensors", ".sft"):
        try:
            read_wan_layout(path)
        except WanQuantizedError as e:  # a Wan transformer, stored in a form vidcore does not read
            return str(e)
        except (WanLayoutError, OSError, ValueError):
            return None
    return None


FAMILY = Family(
    name="wan",
    capabilities=Capabilities(
        family="Wan",
        schedules=("flow",),
        samplers=tuple(SAMPLERS),
        image_conditioning=True,
        last_image_conditioning=True,
        external_text_encoder=True,
        external_vae=True,
        external_image_encoder=True,
        expert_guidance=True,
    ),
    describe="a diffusers Wan 2.1 / 2.2 folder (model_index.json, transformer/, vae/, text_encoder/), or a "
    "single-file Wan transformer with --vae, --text-encoder (umT5 folder) and, for I2V, --image-encoder",
    detect=is_wan_checkpoint,
    load=load_wan_pipeline,
    explain=explain,
    folders=("diffusion_models", "diffusers"),
    text_encoder_types=("umt5",),
    part_files={"vae": (("vae",), is_wan_vae), "image_encoder": (("clip_vision",), is_clip_vision)},
)
