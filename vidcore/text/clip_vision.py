"""CLIP vision encoder for image-conditioned video models (Wan 2.1 I2V / FLF2V: ViT-H/14, 257 tokens x 1280).

Images -> the penultimate layer's hidden states, as diffusers' WanImageToVideoPipeline.encode_image
(``image_encoder(..., output_hidden_states=True).hidden_states[-2]``) and Wan-Video/Wan2.1
wan/modules/clip.py (the visual tower's output after 31 of 32 blocks). Loaded offline from a transformers
folder (config.json + safetensors) with the CLIP image processor's settings (preprocessor_config.json in
the folder or a sibling ``image_processor/``), or from one ComfyUI-style safetensors file
(``models/clip_vision/clip_vision_h.safetensors``) whose layout is read from its header; nothing is
unpickled.

Single-file facts (Comfy-Org/ComfyUI comfy/clip_vision.py ``load`` and ``load_clipvision_from_sd``): the
files hold transformers ``CLIPVisionModelWithProjection`` names (``vision_model.embeddings.*``, ...,
+ ``visual_projection.weight``), or open_clip names under ``visual.`` (``conv1``, ``class_embedding``,
``positional_embedding``, ``ln_pre``, ``transformer.resblocks.N.attn.in_proj_weight`` (q, k, v stacked),
``ln_post``, ``proj``), which ComfyUI renames in ``convert_to_transformers`` (comfy/utils.py
``transformers_convert``); full checkpoints nest either under a prefix (``conditioner.embedders.0.open_clip
.model.visual.``, ``embedder.model.visual.``, ``clip_l_vision.``: comfy/supported_models.py
``clip_vision_prefix``). Head count and activation are not in the file: ComfyUI picks a config json by
layer count (comfy/clip_vision_config_{h,g,vitl}.json); :data:`KNOWN_TOWERS` holds those values.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..devices import resolve_device, resolve_dtype
from ..io.frames import check_frames

PROCESSOR_FILE = "preprocessor_config.json"
SAFETENSORS_SUFFIXES = (".safetensors", ".sft")
PICKLE_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")
ACTIVATIONS = ("gelu", "quick_gelu")
LAYER_NORM_EPS = 1e-5  # every ComfyUI clip_vision_config_*.json and transformers' CLIPVisionConfig default

# (hidden, layers, intermediate, patch) -> (name, heads, activation): the facts a file's shapes do not hold,
# from Comfy-Org/ComfyUI comfy/clip_vision_config_h.json, _g.json and _vitl.json (ViT-H/14 is the open_clip
# tower Wan 2.1 uses: Wan-Video/Wan2.1 wan/modules/clip.py clip_xlm_roberta_vit_h_14 has 16 heads, gelu).
# ComfyUI gives every 24-layer ViT-L quick_gelu (OpenAI CLIP's); a LAION open_clip ViT-L uses gelu: pass
# hidden_act="gelu" for one.
KNOWN_TOWERS: dict[tuple[int, int, int, int], tuple[str, int, str]] = {
    (1280, 32, 5120, 14): ("ViT-H/14", 16, "gelu"),
    (1664, 48, 8192, 14): ("ViT-bigG/14", 16, "gelu"),
    (1024, 24, 4096, 14): ("ViT-L/14", 16, "quick_gelu"),
}

# Role -> key after the prefix in each layout. The transformers prefix ends in "vision_model." for files of
# CLIPVisionModel(WithProjection) saved by transformers 4 and CLIPVisionModelWithProjection by 5; a
# CLIPVisionModel saved by transformers 5 has no "vision_model." (the class itself is the tower there).
_ROLES = {
    "transformers": {
        "class": "embeddings.class_embedding",
        "patch": "embeddings.patch_embedding.weight",
        "positions": "embeddings.position_embedding.weight",
        "fc1": "encoder.layers.0.mlp.fc1.weight",
        "layers": r"encoder\.layers\.(\d+)\.",
    },
    "open_clip": {
        "class": "class_embedding",
        "patch": "conv1.weight",
        "positions": "positional_embedding",
        "fc1": "transformer.resblocks.0.mlp.c_fc.weight",
        "layers": r"transformer\.resblocks\.(\d+)\.",
    },
}
_OPEN_CLIP_MARK = "transformer.resblocks.0.attn.in_proj_weight"
# Not read (after the prefix): a buffer older transformers saved, and the projections to CLIP's joint
# embedding (transformers, open_clip), unused for hidden states.
_UNUSED = ("embeddings.position_ids", "visual_projection.weight", "proj")
# open_clip visual name -> transformers tower name (blocks: under encoder.layers.N.)
_OPEN_CLIP_FIXED = {
    "class_embedding": "embeddings.class_embedding",
    "conv1.weight": "embeddings.patch_embedding.weight",
    "positional_embedding": "embeddings.position_embedding.weight",
    "ln_pre.weight": "pre_layrnorm.weight",
    "ln_pre.bias": "pre_layrnorm.bias",
    "ln_post.weight": "post_layernorm.weight",
    "ln_post.bias": "post_layernorm.bias",
}
_OPEN_CLIP_BLOCK = {
    "ln_1": "layer_norm1",
    "ln_2": "layer_norm2",
    "mlp.c_fc": "mlp.fc1",
    "mlp.c_proj": "mlp.fc2",
    "attn.out_proj": "self_attn.out_proj",
}


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


@dataclass(frozen=True)
class CLIPVisionLayout:
    """What :func:`detect_clip_vision_checkpoint` read from a single file's header."""

    kind: str  # "transformers" | "open_clip"
    prefix: str  # stripped from every tower key ("" when none)
    name: str  # "ViT-H/14", ... or "custom"
    config: dict[str, Any]  # transformers CLIPVisionConfig keyword arguments


def _layout_hint(keys: list[str]) -> str:
    if any(k.endswith("cls_embedding") for k in keys) and any(k.endswith("pos_embedding") for k in keys):
        return (
            " (these look like Wan-Video's own CLIP names, wan/modules/clip.py: use ComfyUI's "
            "clip_vision_h.safetensors or a diffusers image_encoder/ folder instead)"
        )
    if any(".layer_scale" in k for k in keys):
        return " (these look like a DINOv2 image encoder, not CLIP)"
    if any(k.endswith("embeddings.patch_embedding.weight") for k in keys):
        return " (a vision tower without a class token, e.g. SigLIP: not a CLIP vision model)"
    if any("text_model." in k or k.startswith("encoder.block.") for k in keys):
        return " (these look like text encoder weights)"
    return ""


def clip_vision_towers(keys: Collection[str]) -> list[tuple[str, str]]:
    """Every ``(kind "transformers" | "open_clip", prefix)`` under which a file's keys hold a CLIP vision
    tower, from names alone (what a host lists as a CLIP vision file)."""
    found = []
    mark = _ROLES["transformers"]["class"]
    for key in keys:
        if key == mark or key.endswith("." + mark):
            found.append(("transformers", key[: -len(mark)]))
        elif key == _OPEN_CLIP_MARK or key.endswith("." + _OPEN_CLIP_MARK):
            prefix = key[: -len(_OPEN_CLIP_MARK)]
            # open_clip keeps its text tower's blocks unprefixed, also under transformer.resblocks.
            if prefix + "conv1.weight" in keys and prefix + "class_embedding" in keys:
                found.append(("open_clip", prefix))
    return sorted(found)


def detect_clip_vision_checkpoint(
    shapes: dict[str, tuple[int, ...]],
    num_attention_heads: int | None = None,
    hidden_act: str | None = None,
    source: str = "checkpoint",
) -> CLIPVisionLayout:
    """The one place that reads a single CLIP vision file's layout and config from key names and shapes.

    Hidden size, layers, intermediate size, patch size, channels and image size come from tensor shapes
    (positions = (image / patch)^2 + 1); heads and activation come from ``num_attention_heads`` /
    ``hidden_act`` when given, else from :data:`KNOWN_TOWERS`; an unknown size without them is refused.
    """
    found = clip_vision_towers(shapes)
    if not found:
        keys = sorted(shapes)
        groups = sorted({".".join(k.split(".")[:2]) for k in keys})
        raise ValueError(
            f"{source} holds no CLIP vision tower: expected transformers names "
            f"'[prefix]{_ROLES['transformers']['class']}' or open_clip names '[prefix]class_embedding', "
            f"'[prefix]conv1.weight', '[prefix]{_OPEN_CLIP_MARK}'; found {len(keys)} keys in groups "
            f"{groups[:12]}{' ...' if len(groups) > 12 else ''}{_layout_hint(keys)}"
        )
    if len(found) > 1:
        raise ValueError(
            f"{source} holds {len(found)} CLIP vision towers, {[f'{k} {p!r}' for k, p in found]}: "
            "extract the one to use into its own file"
        )
    kind, prefix = found[0]
    roles = _ROLES[kind]

    def shape(role: str, rank: int) -> tuple[int, ...]:
        key = prefix + roles[role]
        if key not in shapes:
            raise ValueError(f"{source}: the {kind} CLIP vision tower under {prefix!r} lacks {key!r}")
        if len(shapes[key]) != rank:
            raise ValueError(f"{source}: {key!r} has shape {shapes[key]}, expected {rank} dimensions")
        return shapes[key]

    (hidden,) = shape("class", 1)
    out_channels, channels, patch, patch_w = shape("patch", 4)
    positions, pos_dim = shape("positions", 2)
    intermediate, fc1_in = shape("fc1", 2)
    grid = math.isqrt(positions - 1)
    if (
        (out_channels, pos_dim, fc1_in) != (hidden, hidden, hidden)
        or patch != patch_w
        or grid**2 != positions - 1
    ):
        raise ValueError(
            f"{source}: inconsistent CLIP vision shapes: class embedding ({hidden},), patch embedding "
            f"{(out_channels, channels, patch, patch_w)}, positions {(positions, pos_dim)} (need 1 + a "
            f"square number), fc1 {(intermediate, fc1_in)}"
        )
    pattern = re.compile(re.escape(prefix) + roles["layers"])
    layers = sorted({int(m.group(1)) for k in shapes if (m := pattern.match(k))})
    if layers != list(range(len(layers))):
        raise ValueError(f"{source}: CLIP vision layers under {prefix!r} are not 0..N-1: {layers}")

    name, known_heads, known_act = KNOWN_TOWERS.get(
        (hidden, len(layers), intermediate, patch), ("custom", None, None)
    )
    heads = num_attention_heads if num_attention_heads is not None else known_heads
    act = hidden_act if hidden_act is not None else known_act
    if heads is None or act is None:
        raise ValueError(
            f"{source} holds a CLIP vision tower of unknown size (hidden {hidden}, {len(layers)} layers, "
            f"intermediate {intermediate}, patch {patch}); its head count and activation are not stored in "
            f"the file: pass num_attention_heads= (a divisor of {hidden}) and hidden_act= ('gelu' for "
            f"open_clip ViT-H/bigG, 'quick_gelu' for OpenAI CLIP). Known (hidden, layers, intermediate, "
            f"patch): {', '.join(f'{v[0]} {k}' for k, v in KNOWN_TOWERS.items())}"
        )
    if not isinstance(heads, int) or heads < 1 or hidden % heads:
        raise ValueError(f"num_attention_heads={heads!r} must be a positive divisor of hidden size {hidden}")
    if act not in ACTIVATIONS:
        raise ValueError(f"hidden_act={act!r} must be one of {list(ACTIVATIONS)}")
    config = {
        "hidden_size": hidden,
        "intermediate_size": intermediate,
        "num_hidden_layers": len(layers),
        "num_attention_heads": heads,
        "num_channels": channels,
        "image_size": grid * patch,
        "patch_size": patch,
        "hidden_act": act,
        "layer_norm_eps": LAYER_NORM_EPS,
    }
    return CLIPVisionLayout(kind, prefix, name, config)


def _open_clip_to_transformers(state: dict[str, Tensor], source: str, prefix: str) -> dict[str, Tensor]:
    """open_clip visual names -> transformers ``CLIPVisionModel`` names: the renames of Comfy-Org/ComfyUI
    comfy/clip_vision.py convert_to_transformers and comfy/utils.py transformers_convert. Names outside them
    (e.g. open_clip's layer scale ``ls_1.gamma`` or ``attn_pool``) are refused, listed."""
    out: dict[str, Tensor] = {}
    unknown = []
    for key, value in state.items():
        if key in _OPEN_CLIP_FIXED:
            out[_OPEN_CLIP_FIXED[key]] = value
            continue
        m = re.fullmatch(r"transformer\.resblocks\.(\d+)\.(.+)", key)
        if m is None:
            unknown.append(prefix + key)
            continue
        layer = f"encoder.layers.{m.group(1)}."
        module, _, param = m.group(2).rpartition(".")
        if m.group(2) in ("attn.in_proj_weight", "attn.in_proj_bias"):
            # q, k, v stacked along dim 0 (torch.nn.MultiheadAttention's packed input projection)
            param = m.group(2).rsplit("_", 1)[1]
            for name, part in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3, dim=0), strict=True):
                out[f"{layer}self_attn.{name}.{param}"] = part
        elif module in _OPEN_CLIP_BLOCK and param in ("weight", "bias"):
            out[f"{layer}{_OPEN_CLIP_BLOCK[module]}.{param}"] = value
        else:
            unknown.append(prefix + key)
    if unknown:
        raise ValueError(
            f"{source}: open_clip vision keys with no transformers CLIPVisionModel counterpart: "
            f"{sorted(unknown)}"
        )
    return out


def _read_tower(path: Path, layout: CLIPVisionLayout, source: str) -> dict[str, Tensor]:
    """The tower's tensors only (a full checkpoint's other weights stay on disk), in transformers tower names
    (``embeddings.*``, ``pre_layrnorm.*``, ``encoder.layers.N.*``, ``post_layernorm.*``)."""
    from safetensors import safe_open

    prefix = layout.prefix
    skip = {prefix + k for k in _UNUSED}
    state: dict[str, Tensor] = {}
    with safe_open(str(path), framework="pt") as f:
        for key in f.keys():
            if key.startswith(prefix) and key not in skip:
                state[key[len(prefix) :]] = f.get_tensor(key)
    if layout.kind == "open_clip":
        state = _open_clip_to_transformers(state, source, prefix)
    return state


def _load_single_file(
    path: Path,
    device: torch.device,
    dtype: torch.dtype,
    num_attention_heads: int | None,
    hidden_act: str | None,
) -> CLIPImageEncoder:
    """Build a ``CLIPVisionModel`` on the meta device from the file's detected layout and load its tensors."""
    from safetensors import safe_open
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    from ..io.checkpoint import load_into

    source = repr(str(path))
    with safe_open(str(path), framework="pt") as f:
        shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    layout = detect_clip_vision_checkpoint(shapes, num_attention_heads, hidden_act, source)
    with torch.device("meta"):
        model = CLIPVisionModel(CLIPVisionConfig(**layout.config))
    # transformers 4 nests the tower as CLIPVisionModel.vision_model; in transformers 5 the class is it.
    tower = getattr(model, "vision_model", model)
    inner = "vision_model." if tower is not model else ""
    state = {inner + k: v for k, v in _read_tower(path, layout, source).items()}
    where = f"{source} ({layout.kind} names under {layout.prefix!r})"
    load_into(model, state, dtype=dtype, device=device, source=where)
    # position_ids is a non-persistent buffer (no file holds it): it is still on meta after the load.
    embeddings = tower.embeddings
    embeddings.position_ids = torch.arange(embeddings.num_positions, device=device).expand(1, -1)
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise RuntimeError(f"{source}: tensors left unloaded on the meta device: {left}")
    # No preprocessor_config.json beside a single file: the CLIP image processor's defaults (OpenAI CLIP
    # mean/std, bicubic resize of the shortest side, center crop) at the tower's image size, the settings of
    # the Wan 2.1 diffusers repos' image_processor/ that WanImageToVideoPipeline uses. Comfy-Org/ComfyUI
    # comfy/clip_vision.py clip_preprocess differs slightly: it resizes float frames with torch bicubic
    # (antialias, a=-0.75; PIL's bicubic, which transformers uses without torchvision, has a=-0.5), rounds
    # the long side where transformers truncates, skips the resize for frames already image_size square, and
    # squashes instead of cropping when CLIPVisionEncode's crop is "none". Wan-Video/Wan2.1
    # wan/modules/clip.py CLIPModel.visual squashes to 224x224 (F.interpolate bicubic, no antialias, no crop).
    size = layout.config["image_size"]
    processor = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    return CLIPImageEncoder(model, processor, str(path))


def _processor_folder(folder: Path) -> Path:
    for candidate in (folder, folder.parent / "image_processor"):
        if (candidate / PROCESSOR_FILE).is_file():
            return candidate
    raise ValueError(
        f"{str(folder)!r} has no {PROCESSOR_FILE} and {str(folder.parent / 'image_processor')!r} has none "
        "either: the CLIP image processor settings (size, crop, mean, std) are needed"
    )


def _load_folder(folder: Path, device: torch.device, dtype: torch.dtype) -> CLIPImageEncoder:
    from transformers import CLIPImageProcessor, CLIPVisionModel

    if not (folder / "config.json").is_file():
        raise ValueError(f"{str(folder)!r} is not a transformers folder (no config.json)")
    if not any(folder.glob("*.safetensors")):
        raise ValueError(f"{str(folder)!r} has no .safetensors weights (other formats are never unpickled)")
    model = CLIPVisionModel.from_pretrained(
        folder, local_files_only=True, use_safetensors=True, torch_dtype=dtype
    ).to(device)
    processor = CLIPImageProcessor.from_pretrained(_processor_folder(folder), local_files_only=True)
    return CLIPImageEncoder(model, processor, str(folder))


def load_image_encoder(
    path: str | os.PathLike,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    num_attention_heads: int | None = None,
    hidden_act: str | None = None,
) -> CLIPImageEncoder:
    """A CLIP vision tower from a transformers folder (``model_type`` clip / clip_vision_model, safetensors
    weights) or one ``.safetensors`` file (transformers or open_clip names, see the module docstring).

    ``num_attention_heads`` / ``hidden_act`` state what a single file cannot: needed only for sizes outside
    :data:`KNOWN_TOWERS`; given for a folder they must agree with its config.json."""
    path = Path(path)
    device, dtype = resolve_device(device), resolve_dtype(dtype)
    if path.is_dir():
        encoder = _load_folder(path, device, dtype)
        config = encoder.model.config
        for name, value in (("num_attention_heads", num_attention_heads), ("hidden_act", hidden_act)):
            if value is not None and value != getattr(config, name):
                raise ValueError(
                    f"{name}={value!r} disagrees with {str(path / 'config.json')!r}, which states "
                    f"{getattr(config, name)!r}"
                )
        return encoder
    if not path.is_file():
        raise FileNotFoundError(f"CLIP vision model {str(path)!r} does not exist")
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise ValueError(
            f"{str(path)!r} is a pickled PyTorch file, which vidcore never unpickles; convert it once with "
            f"`vidcore convert {path.name} {path.stem}.safetensors` and load the .safetensors file"
        )
    if path.suffix.lower() not in SAFETENSORS_SUFFIXES:
        raise ValueError(
            f"{str(path)!r} must be a transformers folder or a {' / '.join(SAFETENSORS_SUFFIXES)} file"
        )
    return _load_single_file(path, device, dtype, num_attention_heads, hidden_act)
