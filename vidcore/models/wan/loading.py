"""Load Wan transformers: diffusers folders (single or sharded), original Wan single files and folders,
ComfyUI single files and TurboDiffusion files converted to safetensors. Built on ``meta``, streamed in,
nothing unpickled.

:func:`detect_wan_layout` is the one place that looks at a foreign checkpoint's key names and shapes to decide
its layout, variant and config.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vidcore.io.checkpoint import (
    METADATA_CONFIG,
    METADATA_KIND,
    CheckpointError,
    load_into,
    read_shapes,
    refuse_pickle,
    save_checkpoint,
    stream_state,
    weight_files,
)
from vidcore.io.checkpoint import PICKLE_SUFFIXES as PICKLE_SUFFIXES  # kept importable from here
from vidcore.io.checkpoint import WEIGHTS_NAME as WEIGHTS_NAME
from vidcore.io.convert import METADATA_SOURCE
from vidcore.models.wan.config import DIFFUSERS_CLASS, WanTransformerConfig
from vidcore.models.wan.keymaps import (
    COMFY_PREFIX,
    SLA_INFIX,
    key_style,
    strip_wrappers,
    transformer_key_from_original,
    transformer_key_to_original,
)
from vidcore.models.wan.transformer import WanTransformer, keeps_fp32

log = logging.getLogger("vidcore")

KIND = "wan_transformer"  # vidcore checkpoint kind (metadata) of a saved WanTransformer
# TurboDiffusion's released files are named TurboWan2.1-* / TurboWan2.2-* (thu-ml/TurboDiffusion README);
# `vidcore convert` keeps the source file name in the metadata (METADATA_SOURCE).
TURBO_NAME = "turbowan"
ORIGINAL_CLASS = "WanModel"  # _class_name of the config.json in the original Wan-AI repos
DEFAULT_HEAD_DIM = 128  # every released Wan model: num_heads = dim // 128
_LIST_LIMIT = 40  # keys named in one error message

# Config fields a checkpoint's shapes determine (config sources may only repeat them).
_SHAPE_FIELDS = (
    "dim",
    "ffn_dim",
    "num_layers",
    "in_channels",
    "out_channels",
    "text_dim",
    "freq_dim",
    "patch",
    "cross_attn_norm",
    "image_dim",
    "has_image_kv",
    "image_pos_len",
)
# Config-dict names of the three namings (vidcore, diffusers, original WanModel) -> vidcore field.
_HINT_NAMES = {f.name: f.name for f in dataclasses.fields(WanTransformerConfig)}
_HINT_NAMES.update(
    in_dim="in_channels",
    out_dim="out_channels",
    patch_size="patch",
    num_attention_heads="num_heads",
    pos_embed_seq_len="image_pos_len",
)


class WanLayoutError(ValueError):
    """A checkpoint is not (or not entirely) a Wan transformer vidcore can read."""


class WanQuantizedError(WanLayoutError):
    """A Wan transformer whose linear weights are stored quantized (TurboDiffusion ``-quant``, ComfyUI
    ``fp8_scaled``), which vidcore does not read."""


@dataclass(frozen=True)
class WanLayout:
    """What :func:`detect_wan_layout` found in one checkpoint."""

    kind: str  # "diffusers" (diffusers names), "original" (Wan names) or "comfy" (Wan names + prefix)
    variant: str  # "t2v" | "i2v" | "flf2v" | "ti2v" (WanTransformerConfig.variant)
    config: WanTransformerConfig
    prefix: str = ""  # stripped from every transformer key ("model.diffusion_model." in ComfyUI files)
    linear_patch: bool = False  # patch_embedding stored as a 2-D Linear weight (TurboDiffusion)
    dropped_keys: tuple[str, ...] = ()  # keys ignored: SLA projections, other components of the file
    # A TurboDiffusion (rCM step-distilled) checkpoint: its Linear patch embedding, its SLA projections, or
    # a file that `vidcore convert` made from a TurboWan*.pth (metadata vidcore_converted_from).
    turbo: bool = False

    @property
    def sla_keys(self) -> tuple[str, ...]:
        """The TurboDiffusion sparse-linear-attention projections the file holds (not loaded)."""
        return tuple(k for k in self.dropped_keys if SLA_INFIX in "." + k)


def _short(names: list[str] | set[str]) -> str:
    names = sorted(names)
    more = f" and {len(names) - _LIST_LIMIT} more" if len(names) > _LIST_LIMIT else ""
    return f"{names[:_LIST_LIMIT]}{more}"


def _fields(cfg: WanTransformerConfig) -> dict[str, Any]:
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}


def config_hints(data: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """vidcore config fields stated by a config dict: a diffusers config.json (fully validated), an original
    ``WanModel`` config.json, or a partial dict in any of the three namings (e.g. ``{"num_heads": 2}``, or
    nested under ``"transformer"``). Unknown names in a partial dict are ignored."""
    if isinstance(data.get("transformer"), dict):
        data = data["transformer"]
    name = data.get("_class_name")
    try:
        if name == DIFFUSERS_CLASS:
            return _fields(WanTransformerConfig.from_diffusers(data))
        if name is not None and name != ORIGINAL_CLASS:
            raise ValueError(f"_class_name={name!r} is not {DIFFUSERS_CLASS!r} or {ORIGINAL_CLASS!r}")
        if data.get("qk_norm", True) is not True or data.get("model_type") in ("vace", "s2v", "animate"):
            raise ValueError(
                f"qk_norm={data.get('qk_norm')!r} / model_type={data.get('model_type')!r} is not supported "
                "(Wan T2V / I2V / FLF2V / TI2V transformers have qk_norm=True)"
            )
        if tuple(data.get("window_size", (-1, -1))) != (-1, -1):
            raise ValueError(
                f"window_size={data['window_size']!r}: only global attention (-1, -1) is supported"
            )
    except ValueError as e:
        raise WanLayoutError(f"{source}: {e}") from e
    out: dict[str, Any] = {}
    for k, v in data.items():
        if k in _HINT_NAMES:
            out[_HINT_NAMES[k]] = tuple(v) if isinstance(v, list) else v
    if "added_kv_proj_dim" in data:
        out["has_image_kv"] = data["added_kv_proj_dim"] is not None
    if "attention_head_dim" in data and "num_attention_heads" in data:
        out["dim"] = data["attention_head_dim"] * data["num_attention_heads"]
    return out


def _metadata_hints(metadata: dict[str, str] | None, source: str) -> dict[str, Any]:
    """Config fields stated in safetensors metadata: vidcore's ``vidcore_config`` or a JSON ``config``."""
    if not metadata:
        return {}
    try:
        if METADATA_CONFIG in metadata:
            kind = metadata.get(METADATA_KIND, KIND)
            if kind != KIND:
                raise WanLayoutError(f"{source} holds a vidcore {kind!r} checkpoint, not a {KIND!r}")
            return _fields(WanTransformerConfig.from_json(metadata[METADATA_CONFIG]))
        if "config" in metadata:
            data = json.loads(metadata["config"])
            return config_hints(data, f"{source} metadata 'config'") if isinstance(data, dict) else {}
    except WanLayoutError:
        raise
    except (ValueError, TypeError) as e:  # bad JSON, unknown or invalid fields
        raise WanLayoutError(f"{source}: metadata config is not a valid Wan config JSON ({e})") from e
    return {}


def _count_blocks(names: set[str]) -> int:
    rx = re.compile(r"^blocks\.(\d+)\.")
    found = {int(m.group(1)) for k in names if (m := rx.match(k))}
    return max(found) + 1 if found else 0


def detect_wan_layout(
    shapes: dict[str, tuple[int, ...]],
    metadata: dict[str, str] | None = None,
    config: dict[str, Any] | None = None,
    num_attention_heads: int | None = None,
    source: str = "checkpoint",
) -> WanLayout:
    """Decide layout, variant and config of a Wan transformer from key names and shapes (a header).

    Layout: ``model.diffusion_model.`` prefix -> ComfyUI (other un-prefixed components are dropped); Wan
    names (``head.head``, ``blocks.N.self_attn``) -> original; diffusers names (``proj_out``,
    ``blocks.N.attn1``) -> diffusers; both -> refused. Variant: ``img_emb.emb_pos`` -> flf2v, ``img_emb.proj``
    or more input than output channels -> i2v, 48 output channels -> ti2v, else t2v. Shapes give every
    width; ``config`` (a folder's config.json) and ``metadata`` (safetensors ``vidcore_config`` or ``config``
    JSON) give the rest and must agree with the shapes. Heads: ``num_attention_heads`` or the config (both
    given: they must agree), else dim // 128 as in every released Wan model.
    """
    keys = list(shapes)
    int8 = [k for k in keys if k.endswith(".int8_weight")]
    if int8:
        # thu-ml/TurboDiffusion turbodiffusion/ops: every block Linear as int8 [out, in] + a float32 scale per
        # 128x128 tile, dequantized inside its own CUDA kernels.
        raise WanQuantizedError(
            f"{source} is a quantized TurboWan file ({len(int8)} int8 weights with per-tile scales, e.g. "
            f"{_short(int8[:2])}); quantized TurboWan (-quant) files are not supported: use the non-quant "
            "file of the same model (e.g. TurboWan2.1-T2V-1.3B-480P.pth, not ...-480P-quant.pth), converted "
            "with `vidcore convert`"
        )
    fp8 = [k for k in keys if k.endswith((".scale_weight", ".scale_input")) or k == "scaled_fp8"]
    if fp8:
        raise WanQuantizedError(
            f"{source} holds quantized weights (ComfyUI fp8_scaled: {_short(fp8[:3])}), which vidcore does "
            "not read; use the fp16/bf16/fp32 release of the model"
        )
    prefixed = [k for k in keys if k.startswith(COMFY_PREFIX)]
    prefix = COMFY_PREFIX if prefixed else ""
    dropped = [k for k in keys if not k.startswith(prefix)]
    stray = [k for k in dropped if key_style(k) or k.startswith(("blocks.", "patch_embedding."))]
    if stray:
        raise WanLayoutError(
            f"{source} mixes transformer keys with the {COMFY_PREFIX!r} prefix (e.g. {prefixed[:2]}) and "
            f"without it (e.g. {stray[:2]}); expected one or the other"
        )
    names: dict[str, tuple[int, ...]] = {}
    for k in keys:
        if not k.startswith(prefix):
            continue
        name = strip_wrappers(k[len(prefix) :])
        if SLA_INFIX in "." + name:
            dropped.append(k)
        else:
            names[name] = tuple(shapes[k])
    styles = {"original": [], "diffusers": []}
    for n in names:
        style = key_style(n)
        if style:
            styles[style].append(n)
    if styles["original"] and styles["diffusers"]:
        raise WanLayoutError(
            f"{source} mixes diffusers names (e.g. {sorted(styles['diffusers'])[:3]}) and original Wan names "
            f"(e.g. {sorted(styles['original'])[:3]}); expected one naming per checkpoint"
        )
    original = bool(styles["original"])
    if not original and not styles["diffusers"]:
        raise WanLayoutError(
            f"{source} is not a Wan transformer: found {len(keys)} tensors, e.g. {sorted(keys)[:6]}; "
            "expected keys like patch_embedding.weight with head.head.weight + blocks.0.self_attn.q.weight "
            f"(original / ComfyUI, optionally under {COMFY_PREFIX!r}) or proj_out.weight + "
            "blocks.0.attn1.to_q.weight (diffusers)"
        )
    s = {transformer_key_from_original(n) if original else n: v for n, v in names.items()}
    kind = ("comfy" if prefix else "original") if original else "diffusers"

    def file_name(ours: str) -> str:
        return prefix + (transformer_key_to_original(ours) if original else ours)

    needed = [
        "patch_embedding.weight",
        "proj_out.weight",
        "condition_embedder.text_embedder.linear_1.weight",
        "condition_embedder.time_embedder.linear_1.weight",
        "blocks.0.ffn.net.0.proj.weight",
    ]
    absent = [file_name(n) for n in needed if n not in s]
    if absent:
        raise WanLayoutError(f"{source} ({kind} layout): Wan transformer keys missing: {absent}")

    hints = _metadata_hints(metadata, source)
    if config:
        hints.update(config_hints(config, f"{source}/config.json"))
    pe = s["patch_embedding.weight"]
    linear_patch = len(pe) == 2
    if linear_patch:
        patch = tuple(hints.get("patch", (1, 2, 2)))
        if pe[1] % math.prod(patch):
            raise WanLayoutError(
                f"{source}: 2-D patch_embedding.weight {pe} has {pe[1]} inputs, not a multiple of the patch "
                f"volume {math.prod(patch)} (patch={patch})"
            )
        c_in = pe[1] // math.prod(patch)
    elif len(pe) == 5:
        patch, c_in = tuple(pe[2:]), pe[1]
    else:
        raise WanLayoutError(
            f"{source}: patch_embedding.weight has shape {pe}; expected [dim, C, pt, ph, pw]"
        )
    dim = pe[0]
    image = "condition_embedder.image_embedder.norm1.weight"
    pos = s.get("condition_embedder.image_embedder.pos_embed")
    found: dict[str, Any] = dict(
        dim=dim,
        ffn_dim=s["blocks.0.ffn.net.0.proj.weight"][0],
        num_layers=_count_blocks(set(s)),
        in_channels=c_in,
        out_channels=s["proj_out.weight"][0] // math.prod(patch),
        text_dim=s["condition_embedder.text_embedder.linear_1.weight"][1],
        freq_dim=s["condition_embedder.time_embedder.linear_1.weight"][1],
        patch=patch,
        cross_attn_norm="blocks.0.norm2.weight" in s,
        image_dim=s[image][0] if image in s else None,
        has_image_kv="blocks.0.attn2.add_k_proj.weight" in s,
        image_pos_len=pos[1] if pos is not None else None,
    )
    for k in _SHAPE_FIELDS:
        if k in hints and hints[k] != found[k]:
            raise WanLayoutError(
                f"{source}: the config says {k}={hints[k]!r} but the weights have {found[k]!r}"
            )
    heads = hints.get("num_heads")
    if num_attention_heads is not None:
        if heads is not None and heads != num_attention_heads:
            raise WanLayoutError(
                f"{source}: its config has num_heads={heads}, but num_attention_heads="
                f"{num_attention_heads} was asked for; the override is for files that state no head count: "
                "leave it unset here"
            )
        heads = num_attention_heads
    if heads is None:
        if dim % DEFAULT_HEAD_DIM:
            raise WanLayoutError(
                f"{source}: the head count of a dim={dim} transformer is not stored in the file and dim "
                f"is not a multiple of {DEFAULT_HEAD_DIM} (released Wan models: dim // 128 heads); pass "
                "num_attention_heads="
            )
        heads = dim // DEFAULT_HEAD_DIM
    fields = {k: v for k, v in hints.items() if k not in _SHAPE_FIELDS}
    fields.update(found, num_heads=heads)
    try:
        cfg = WanTransformerConfig(**fields)
    except (TypeError, ValueError) as e:
        raise WanLayoutError(f"{source}: cannot build a Wan transformer config from it ({e})") from e
    converted = (metadata or {}).get(METADATA_SOURCE, "")
    sla = any(SLA_INFIX in "." + k for k in dropped)
    turbo = linear_patch or sla or converted.lower().startswith(TURBO_NAME)
    return WanLayout(kind, cfg.variant, cfg, prefix, linear_patch, tuple(dropped), turbo)


# ---- files -> module --------------------------------------------------------------------------------------


def _resolve(path: Path) -> tuple[list[Path], dict[str, Any] | None]:
    """Weight files and config.json (None for a single file) of a file, component or pipeline folder."""
    if not path.exists():
        raise FileNotFoundError(f"Wan checkpoint {str(path)!r} does not exist")
    if path.is_file():
        refuse_pickle(path, WanLayoutError)
        if path.suffix not in (".safetensors", ".sft"):
            raise WanLayoutError(f"{str(path)!r} must be a .safetensors file or a diffusers folder")
        return [path], None
    folder = path
    if not (path / "config.json").is_file():
        folder = path / "transformer"
        if not (folder / "config.json").is_file():
            experts = [d for d in ("high_noise_model", "low_noise_model") if (path / d).is_dir()]
            if experts:
                raise WanLayoutError(
                    f"{str(path)!r} is a Wan 2.2 A14B folder with two experts {experts}; load each one on "
                    "its own (e.g. path/high_noise_model): the pipeline picks one per step"
                )
            raise WanLayoutError(
                f"{str(path)!r} is neither a safetensors file nor a Wan folder (no config.json or "
                f"transformer/config.json); found {sorted(os.listdir(path))}"
            )
        if (path / "transformer_2").is_dir():
            log.warning(
                "%s: loading transformer/ (the high-noise expert of a Wan 2.2 A14B pipeline); pass "
                "%s/transformer_2 for the low-noise one",
                path,
                path,
            )
    return weight_files(folder, WanLayoutError), json.loads((folder / "config.json").read_text())


def _renamer(layout: WanLayout) -> Callable[[str], str | None]:
    def rename(key: str) -> str | None:
        if not key.startswith(layout.prefix):
            return None
        name = strip_wrappers(key[len(layout.prefix) :])
        if SLA_INFIX in "." + name:
            return None
        return transformer_key_from_original(name) if layout.kind != "diffusers" else name

    return rename


def _check_keys(model: WanTransformer, names: set[str], layout: WanLayout, source: str) -> None:
    """Missing / unexpected keys, named as the file names them (the prefix and original names included)."""
    expected = set(model.state_dict())
    missing, unexpected = expected - names, names - expected
    if not (missing or unexpected):
        return

    def file_name(n: str) -> str:
        return layout.prefix + (transformer_key_to_original(n) if layout.kind != "diffusers" else n)

    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys {_short([file_name(n) for n in missing])}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys {_short([file_name(n) for n in unexpected])}")
    raise CheckpointError(
        f"{source} ({layout.kind} layout, {layout.variant}) does not fit the Wan transformer its shapes "
        "describe: " + "; ".join(parts)
    )


def _prepare(
    cfg: WanTransformerConfig, dtype: torch.dtype | None
) -> Callable[[str, torch.Tensor], torch.Tensor]:
    """Per-tensor fix-ups while streaming: TurboDiffusion's 2-D patch embedding, dtype with fp32 modules."""

    def prepare(name: str, t: torch.Tensor) -> torch.Tensor:
        if name == "patch_embedding.weight" and t.ndim == 2:
            # TurboDiffusion's Linear over (c, pt, ph, pw) vectors = the Conv3d kernel, flattened.
            t = t.reshape(cfg.dim, cfg.in_channels, *cfg.patch)
        if dtype is not None and t.is_floating_point():
            t = t.to(torch.float32 if keeps_fp32(name) else dtype)
        return t

    return prepare


def _read(path: Path, num_attention_heads: int | None) -> tuple[list[Path], WanLayout, dict[str, tuple]]:
    files, config = _resolve(path)
    shapes: dict[str, tuple[int, ...]] = {}
    metadata: dict[str, str] = {}
    for file in files:
        s, m = read_shapes(file)
        shapes.update(s)
        metadata = metadata or m
    layout = detect_wan_layout(shapes, metadata, config, num_attention_heads, str(path))
    return files, layout, shapes


def read_wan_layout(path: str | os.PathLike, num_attention_heads: int | None = None) -> WanLayout:
    """The layout, variant and config of a Wan checkpoint (file or folder), from its headers only."""
    return _read(Path(path), num_attention_heads)[1]


def load_wan_transformer(
    path: str | os.PathLike,
    dtype: torch.dtype | None = None,
    num_attention_heads: int | None = None,
    device: str | torch.device = "cpu",
) -> WanTransformer:
    """Load a Wan transformer from a diffusers folder (``config.json`` + one or sharded
    ``diffusion_pytorch_model*.safetensors``; or a pipeline folder with ``transformer/``), an original Wan
    folder or single ``.safetensors`` file, or a ComfyUI single file (``model.diffusion_model.`` prefix).

    ``dtype`` None keeps the stored dtypes; otherwise floating weights are cast to it, except the time MLP,
    modulation tables and affine LayerNorms, which stay float32 (as diffusers). ``num_attention_heads``:
    for files that do not state it (default dim // 128). Missing / unexpected keys raise, named as in the
    file. ``.pth``/``.pt``/``.bin``/``.ckpt`` files are refused: convert them with ``vidcore convert``.
    """
    path = Path(path)
    files, layout, shapes = _read(path, num_attention_heads)
    if layout.dropped_keys:
        sla = layout.sla_keys
        if sla:
            log.warning(
                "%s: not loading %d TurboDiffusion sparse-linear-attention keys (proj_l of the SLA linear "
                "branch, e.g. %s); the model runs with dense attention, so the SLA fine-tune's linear branch "
                "is not used",
                path,
                len(sla),
                sla[0],
            )
        other = [k for k in layout.dropped_keys if SLA_INFIX not in "." + k]
        if other:
            log.info("%s: ignoring %d keys outside the transformer, e.g. %s", path, len(other), other[:3])
    rename = _renamer(layout)
    with torch.device("meta"):
        model = WanTransformer(layout.config)
    _check_keys(model, {n for k in shapes if (n := rename(k)) is not None}, layout, str(path))
    state = stream_state(files, rename, device=device, prepare=_prepare(layout.config, dtype))
    load_into(model, state, source=str(path))
    return model.eval()


def save_wan_transformer(path: str | os.PathLike, model: WanTransformer, overwrite: bool = False) -> Path:
    """Write ``model`` as a vidcore safetensors file (diffusers names, config in the metadata)."""
    return save_checkpoint(path, model, model.config, KIND, overwrite=overwrite)
