"""Load LTX-Video checkpoints: original single files and diffusers folders, built on ``meta``, streamed in.

:func:`detect_ltx_layout` is the one place that looks at key names and tensor shapes of a foreign
checkpoint to decide its layout, version and model configs.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from vidcore.io.checkpoint import WEIGHTS_NAME as WEIGHTS_NAME  # kept importable from here
from vidcore.io.checkpoint import load_into, read_shapes, stream_state, weight_files
from vidcore.models.ltx.config import (
    DOWN_BLOCK_090,
    DOWN_BLOCK_095,
    LTXTransformerConfig,
    LTXVAEConfig,
)
from vidcore.models.ltx.keymaps import (
    TRANSFORMER_PREFIX,
    VAE_PREFIX,
    transformer_key_from_original,
    vae_key_from_original,
)
from vidcore.models.ltx.transformer import LTXVideoTransformer
from vidcore.models.ltx.vae import LTXVideoVAE

log = logging.getLogger("vidcore")

DEFAULT_HEADS = 32  # every released LTX-Video transformer (2B: 32x64, 13B: 32x128)
_ORIGINAL_MARKERS = (
    "model.diffusion_model.patchify_proj.weight",
    "patchify_proj.weight",
    "vae.decoder.conv_in.conv.weight",
    "vae.encoder.conv_in.conv.weight",
)


class LTXLayoutError(ValueError):
    """A checkpoint is not (or not entirely) an LTX-Video checkpoint vidcore can read."""


@dataclass(frozen=True)
class LTXLayout:
    """What :func:`detect_ltx_layout` found in one state dict."""

    kind: str  # "original" (Lightricks names) or "diffusers"
    version: str | None  # "0.9.0" / "0.9.1" / "0.9.5" / "0.9.7"; None for a lone 2B transformer
    transformer_prefix: str | None  # prefix of the transformer keys, None when absent
    vae_prefix: str | None
    vae_layout: str | None  # key-table layout of the VAE ("0.9.0", "0.9.1", "0.9.5")
    transformer_config: LTXTransformerConfig | None = None
    vae_config: LTXVAEConfig | None = None
    ignored_keys: tuple[str, ...] = field(default=())


def _count(shapes: dict[str, tuple[int, ...]], pattern: str) -> int:
    rx = re.compile(pattern)
    found = {int(m.group(1)) for k in shapes if (m := rx.match(k))}
    return max(found) + 1 if found else 0


def _transformer_config(
    shapes: dict[str, tuple[int, ...]], metadata_cfg: dict[str, Any], heads: int | None
) -> LTXTransformerConfig:
    d, c_in = shapes["proj_in.weight"]
    meta_t = metadata_cfg.get("transformer", {}) if isinstance(metadata_cfg, dict) else {}
    heads = heads or meta_t.get("num_attention_heads") or DEFAULT_HEADS
    if d % heads:
        raise LTXLayoutError(f"transformer width {d} is not divisible by num_attention_heads={heads}")
    return LTXTransformerConfig(
        in_channels=c_in,
        out_channels=shapes["proj_out.weight"][0],
        num_attention_heads=heads,
        attention_head_dim=d // heads,
        cross_attention_dim=shapes["transformer_blocks.0.attn2.to_k.weight"][1],
        num_layers=_count(shapes, r"transformer_blocks\.(\d+)\."),
        caption_channels=shapes["caption_projection.linear_1.weight"][1],
        attention_bias="transformer_blocks.0.attn1.to_q.bias" in shapes,
        attention_out_bias="transformer_blocks.0.attn1.to_out.0.bias" in shapes,
    )


def _vae_config(s: dict[str, tuple[int, ...]]) -> LTXVAEConfig:
    """Rebuild an LTXVAEConfig from vidcore-named VAE shapes (the config-less original files)."""
    latent = s["decoder.conv_in.conv.weight"][1]
    in_feats = s["encoder.conv_in.conv.weight"][1]
    patch = int(round((in_feats / 3) ** 0.5))
    n_down = _count(s, r"encoder\.down_blocks\.(\d+)\.")
    is_095 = "encoder.down_blocks.0.downsamplers.0.conv.conv.weight" in s
    chans, layers, scaling, kinds = [s["encoder.conv_in.conv.weight"][0]], [], [], []
    for i in range(n_down):
        pre = f"encoder.down_blocks.{i}."
        layers.append(_count(s, rf"{re.escape(pre)}resnets\.(\d+)\."))
        scaling.append(any(k.startswith(pre + "downsamplers.0.") for k in s))
        if f"{pre}conv_out.conv2.conv.weight" in s:
            chans.append(s[f"{pre}conv_out.conv2.conv.weight"][0])
        elif is_095:
            nxt = f"encoder.down_blocks.{i + 1}.resnets.0.conv1.conv.weight"
            c_next = s.get(nxt, s.get("encoder.mid_block.resnets.0.conv1.conv.weight"))[1]
            chans.append(c_next)
            if scaling[-1]:
                factor = c_next // s[f"{pre}downsamplers.0.conv.conv.weight"][0]
                kinds.append({4: "spatial", 2: "temporal", 8: "spatiotemporal"}[factor])
            else:
                kinds.append("spatiotemporal")
        else:
            chans.append(chans[-1])
        if not is_095:
            kinds.append("conv")
    layers.append(_count(s, r"encoder\.mid_block\.resnets\.(\d+)\."))
    # 0.9.0 lists one width per block (the last block keeps its width); 0.9.5 one extra output width.
    block_out = chans if is_095 else chans[:n_down]

    n_up = _count(s, r"decoder\.up_blocks\.(\d+)\.")
    tc = "decoder.timestep_scale_multiplier" in s
    dec_ch, dec_layers, dec_scaling, noise, factors = [], [], [], [], []
    noise.append("decoder.mid_block.resnets.0.per_channel_scale1" in s)
    dec_layers.append(_count(s, r"decoder\.mid_block\.resnets\.(\d+)\."))
    for i in range(n_up):
        pre = f"decoder.up_blocks.{i}."
        c = s[f"{pre}resnets.0.conv1.conv.weight"][0]
        up = s.get(f"{pre}upsamplers.0.conv.conv.weight")
        f = up[1] // c if up is not None else 1
        dec_ch.append(c * f)
        dec_layers.append(_count(s, rf"{re.escape(pre)}resnets\.(\d+)\."))
        dec_scaling.append(up is not None)
        noise.append(f"{pre}resnets.0.per_channel_scale1" in s)
        factors.append(f)
    return LTXVAEConfig(
        in_channels=3,
        out_channels=s["decoder.conv_out.conv.weight"][0] // patch**2,
        latent_channels=latent,
        block_out_channels=tuple(block_out),
        down_block_types=((DOWN_BLOCK_095 if is_095 else DOWN_BLOCK_090),) * n_down,
        decoder_block_out_channels=tuple(dec_ch[::-1]),
        layers_per_block=tuple(layers),
        decoder_layers_per_block=tuple(dec_layers[::-1]),
        spatio_temporal_scaling=tuple(scaling),
        decoder_spatio_temporal_scaling=tuple(dec_scaling[::-1]),
        decoder_inject_noise=tuple(noise[::-1]),
        downsample_type=tuple(kinds),
        # Not visible in shapes: released VAEs with widening (factor 2) upsamplers are the residual ones.
        upsample_residual=tuple(f > 1 for f in factors[::-1]),
        upsample_factor=tuple(factors[::-1]),
        timestep_conditioning=tc,
        patch_size=patch,
    )


def _vae_layout_of(names: set[str]) -> str:
    """Key-table layout of a vidcore-named or original-named VAE key set."""
    if {
        "encoder.down_blocks.0.downsamplers.0.conv.conv.weight",
        "encoder.down_blocks.1.conv.conv.weight",
    } & names:
        return "0.9.5"
    if {
        "decoder.timestep_scale_multiplier",
        "decoder.last_time_embedder.timestep_embedder.linear_1.weight",
    } & names:
        return "0.9.1"
    return "0.9.0"


def _metadata_config(metadata: dict[str, str] | None, source: str) -> dict[str, Any]:
    """The JSON ``config`` entry of a file's metadata ({} when absent); only the transformer reads it."""
    if not metadata or "config" not in metadata:
        return {}
    try:
        return json.loads(metadata["config"])
    except json.JSONDecodeError as e:
        raise LTXLayoutError(f"{source}: metadata 'config' is not valid JSON ({e})") from e


def detect_ltx_layout(
    shapes: dict[str, tuple[int, ...]],
    metadata: dict[str, str] | None = None,
    num_attention_heads: int | None = None,
    source: str = "checkpoint",
    components: tuple[str, ...] = ("transformer", "vae"),
) -> LTXLayout:
    """Decide layout (original / diffusers), version and configs of an LTX state dict from its key shapes.

    Version rules (first match wins): 48 transformer blocks -> 0.9.7; a space-to-depth VAE encoder -> 0.9.5;
    a timestep-conditioned VAE decoder -> 0.9.1; a VAE otherwise -> 0.9.0. The number of attention heads is
    not visible in shapes: ``num_attention_heads`` > metadata ``config.transformer`` > 32.
    ``components``: the configs to build. A part left out is only located (its key prefix, to route keys),
    so reading the VAE never depends on the transformer's keys, head count or metadata, and vice versa.
    """
    for c in components:
        if c not in ("transformer", "vae"):
            raise ValueError(f"components={components!r}: each must be 'transformer' or 'vae'")
    keys = set(shapes)

    original = bool(keys & set(_ORIGINAL_MARKERS)) or any(".res_blocks." in k for k in keys)
    original = original or any(k.startswith(("vae.", "per_channel_statistics.")) for k in keys)
    t_prefix = v_prefix = None
    if any(k.startswith(TRANSFORMER_PREFIX) for k in keys):
        t_prefix = TRANSFORMER_PREFIX
    elif "patchify_proj.weight" in keys or "proj_in.weight" in keys:
        t_prefix = ""
    if any(k.startswith(VAE_PREFIX + "decoder.") for k in keys):
        v_prefix = VAE_PREFIX
    elif "decoder.conv_in.conv.weight" in keys and "encoder.conv_in.conv.weight" in keys:
        v_prefix = ""
    if t_prefix is None and v_prefix is None:
        sample = sorted(keys)[:8]
        raise LTXLayoutError(
            f"{source} is not an LTX-Video checkpoint: found {len(keys)} tensors (first: {sample}); expected "
            f"transformer keys like {TRANSFORMER_PREFIX}patchify_proj.weight or proj_in.weight, or VAE keys "
            "like vae.decoder.conv_in.conv.weight / decoder.conv_in.conv.weight"
        )

    if t_prefix == "" and v_prefix is not None:
        raise LTXLayoutError(
            f"{source} mixes un-prefixed transformer and VAE keys; expected an original single file "
            f"({TRANSFORMER_PREFIX}* + {VAE_PREFIX}*) or one diffusers component per file"
        )

    t_cfg = v_cfg = None
    v_layout = None
    ignored: list[str] = []
    t_layers = 0
    if t_prefix is not None:
        t_shapes = {}
        for k, v in shapes.items():
            if k.startswith(t_prefix):
                t_shapes[transformer_key_from_original(k) if original else k[len(t_prefix) :]] = v
        t_layers = _count(t_shapes, r"transformer_blocks\.(\d+)\.")
    if t_prefix is not None and "transformer" in components:
        needed = ("proj_in.weight", "proj_out.weight", "caption_projection.linear_1.weight")
        needed += ("transformer_blocks.0.attn2.to_k.weight",)
        absent = [n for n in needed if n not in t_shapes]
        if absent:
            raise LTXLayoutError(f"{source}: LTX transformer keys missing: {absent}")
        t_cfg = _transformer_config(t_shapes, _metadata_config(metadata, source), num_attention_heads)
    if v_prefix is not None:
        v_names = {k[len(v_prefix) :] for k in keys if k.startswith(v_prefix)}
        v_layout = _vae_layout_of(v_names)
        v_shapes = {}
        for k, v in shapes.items():
            if not k.startswith(v_prefix):
                continue
            name = vae_key_from_original(k, v_layout) if original else k[len(v_prefix) :]
            if name is None:
                ignored.append(k)
            else:
                v_shapes[name] = v
    if v_prefix is not None and "vae" in components:
        needed = (
            "encoder.conv_in.conv.weight",
            "decoder.conv_in.conv.weight",
            "decoder.conv_out.conv.weight",
        )
        absent = [n for n in needed if n not in v_shapes]
        if absent:
            raise LTXLayoutError(f"{source}: LTX VAE keys missing: {absent}")
        try:
            v_cfg = _vae_config(v_shapes)
        except (KeyError, ValueError) as e:
            raise LTXLayoutError(f"{source}: cannot read the LTX VAE structure ({e})") from e
    if t_prefix == TRANSFORMER_PREFIX or v_prefix == VAE_PREFIX:
        known = (TRANSFORMER_PREFIX, VAE_PREFIX)
        ignored += sorted(k for k in keys if not k.startswith(known))

    version = None
    if t_layers == 48:
        version = "0.9.7"
    elif v_layout is not None:
        version = v_layout
    return LTXLayout(
        kind="original" if original else "diffusers",
        version=version,
        transformer_prefix=t_prefix,
        vae_prefix=v_prefix,
        vae_layout=v_layout,
        transformer_config=t_cfg,
        vae_config=v_cfg,
        ignored_keys=tuple(ignored),
    )


# ---- step-distilled checkpoints ---------------------------------------------------------------------------

DISTILLED_NAME = "distilled"  # Lightricks' step-distilled releases: ltxv-2b-0.9.6-distilled-04-25, ...
_VERSION = re.compile(r"(?<![0-9])0\.9\.(\d+)(?![0-9])")
# Metadata ``config`` entries that list a distilled checkpoint's timesteps (RF noise levels, 1 = noise):
# Lightricks/LTX-Video ltx_video/inference.py reads ``allowed_inference_steps`` from it and the pipeline
# asserts every sampled timestep is in it (pipelines/pipeline_ltx_video.py).
TIMESTEP_KEYS = ("allowed_inference_steps", "timesteps")


@dataclass(frozen=True)
class LTXDistillation:
    """What marks an LTX-Video checkpoint as step-distilled: a timestep list in its metadata ``config``, or
    ``distilled`` in the file / folder name. ``version`` is the release its name states ("0.9.6", "0.9.7",
    "0.9.8"; None when it states none); ``timesteps`` and ``stochastic`` are the metadata's
    ``allowed_inference_steps`` (or ``timesteps``) and ``stochastic_sampling`` when present."""

    version: str | None
    timesteps: tuple[float, ...] | None
    stochastic: bool | None
    evidence: str  # what marked it, for messages


def _timestep_list(value: Any, key: str, source: str) -> tuple[float, ...]:
    """A metadata timestep list: numbers in [0, 1], strictly decreasing (noise -> data)."""
    ok = isinstance(value, list) and len(value) > 0
    ok = ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    if not ok:
        raise LTXLayoutError(
            f"{source}: metadata config {key}={value!r} must be a non-empty list of numbers (RF timesteps, "
            "1 = pure noise)"
        )
    out = tuple(float(v) for v in value)
    if not all(0.0 <= v <= 1.0 for v in out):
        raise LTXLayoutError(
            f"{source}: metadata config {key}={list(out)} must lie in [0, 1] (RF timesteps, 1 = pure noise)"
        )
    if any(b >= a for a, b in zip(out, out[1:], strict=False)):
        raise LTXLayoutError(
            f"{source}: metadata config {key}={list(out)} must be strictly decreasing (noise -> data)"
        )
    return out


def read_ltx_distillation(path: str | os.PathLike) -> LTXDistillation | None:
    """Whether an LTX-Video checkpoint (single file or diffusers folder) is step-distilled, and what it says
    about its sampling (see :class:`LTXDistillation`); None for the others. A metadata timestep list that is
    not a decreasing list of numbers in [0, 1] raises :class:`LTXLayoutError` naming the file and the value.
    ``sampler: from_checkpoint`` alone marks nothing: Lightricks' non-distilled configs use it too."""
    path = Path(path)
    source = str(path)
    meta: dict[str, Any] = {}
    if path.is_file():
        meta = _metadata_config(read_shapes(path)[1], source)
        meta = meta if isinstance(meta, dict) else {}
    timesteps = evidence = None
    for key in TIMESTEP_KEYS:
        if meta.get(key) is not None:
            timesteps, evidence = _timestep_list(meta[key], key, source), f"metadata {key}"
            break
    stochastic = meta.get("stochastic_sampling")
    if stochastic is not None and not isinstance(stochastic, bool):
        raise LTXLayoutError(
            f"{source}: metadata config stochastic_sampling={stochastic!r} must be true or false"
        )
    if evidence is None and DISTILLED_NAME in path.name.lower():
        evidence = f"{DISTILLED_NAME!r} in its name"
    if evidence is None:
        return None
    found = _VERSION.search(path.name)
    return LTXDistillation(found and f"0.9.{found.group(1)}", timesteps, stochastic, evidence)


# ---- files -> modules ---------------------------------------------------------------------------------


@dataclass
class LTXModels:
    """What :func:`load_ltx` returns: the modules found in a checkpoint and the detected layout."""

    transformer: LTXVideoTransformer | None
    vae: LTXVideoVAE | None
    layout: LTXLayout


def _build(cls: type, cfg: Any, state: dict[str, torch.Tensor], source: str) -> Any:
    with torch.device("meta"):
        model = cls(cfg)
    load_into(model, state, source=source)
    return model.eval()


def _component_config(folder: Path) -> dict[str, Any]:
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise LTXLayoutError(
            f"{str(folder)!r} has no config.json (found {sorted(p.name for p in folder.iterdir())})"
        )
    return json.loads(cfg_path.read_text())


def _load_component_folder(
    folder: Path,
    want: str,
    dtype: torch.dtype | None,
    device: str | torch.device,
    num_attention_heads: int | None = None,
) -> Any:
    """Load ``want`` ("transformer" or "vae") from a diffusers component folder.

    A folder's config.json states the transformer's head count, so ``num_attention_heads`` (the override
    for single files, whose head count is in no shape) may only repeat it: a different count would split
    the same weights into other heads and silently compute another model.
    """
    data = _component_config(folder)
    files = weight_files(folder, LTXLayoutError)
    name = data.get("_class_name", "")
    source = str(folder)
    if want == "transformer":
        if name not in ("", "LTXVideoTransformer3DModel"):
            raise LTXLayoutError(
                f"{source}/config.json holds a {name!r}, expected LTXVideoTransformer3DModel"
            )
        cfg = LTXTransformerConfig.from_diffusers(data)
        if num_attention_heads is not None and num_attention_heads != cfg.num_attention_heads:
            raise LTXLayoutError(
                f"{source}/config.json has num_attention_heads={cfg.num_attention_heads}, but "
                f"num_attention_heads={num_attention_heads} was asked for; the override is for single files "
                "(whose head count is not stored): leave it unset for a diffusers folder"
            )
        return _build(LTXVideoTransformer, cfg, stream_state(files, lambda k: k, dtype, device), source)
    if name == "CausalVideoAutoencoder":
        # Original-format config (a past state of Lightricks/LTX-Video): read the structure from the weights.
        shapes: dict[str, tuple[int, ...]] = {}
        for file in files:
            shapes.update(read_shapes(file)[0])
        layout = detect_ltx_layout(shapes, source=source, components=("vae",))
        if layout.vae_config is None:
            raise LTXLayoutError(f"{source}: no VAE weights found next to a CausalVideoAutoencoder config")
        return _build(
            LTXVideoVAE, layout.vae_config, stream_state(files, _vae_renamer(layout), dtype, device), source
        )
    if name not in ("", "AutoencoderKLLTXVideo"):
        raise LTXLayoutError(f"{source}/config.json holds a {name!r}, expected AutoencoderKLLTXVideo")
    cfg = LTXVAEConfig.from_diffusers(data)
    return _build(LTXVideoVAE, cfg, stream_state(files, lambda k: k, dtype, device), source)


def _vae_renamer(layout: LTXLayout) -> Any:
    prefix = layout.vae_prefix or ""

    def rename(key: str) -> str | None:
        if not key.startswith(prefix) or (prefix == "" and layout.transformer_prefix is not None):
            return None
        if layout.kind == "original":
            return vae_key_from_original(key, layout.vae_layout or "0.9.0")
        return key[len(prefix) :]

    return rename


def _transformer_renamer(layout: LTXLayout) -> Any:
    prefix = layout.transformer_prefix or ""

    def rename(key: str) -> str | None:
        if not key.startswith(prefix) or (prefix == "" and key.startswith(VAE_PREFIX)):
            return None
        return transformer_key_from_original(key) if layout.kind == "original" else key[len(prefix) :]

    return rename


def load_ltx(
    path: str | os.PathLike,
    dtype: torch.dtype | None = None,
    device: str | torch.device = "cpu",
    num_attention_heads: int | None = None,
    components: tuple[str, ...] = ("transformer", "vae"),
) -> LTXModels:
    """Load an LTX-Video checkpoint: an original single ``.safetensors`` (``model.diffusion_model.*`` +
    ``vae.*``, or either part alone), a diffusers pipeline folder (``transformer/`` + ``vae/``) or one
    diffusers component folder. ``dtype`` None keeps the stored dtypes. Missing/unexpected keys raise.

    ``num_attention_heads`` sets a single file's transformer head count (no shape holds it; default: the
    file's metadata, then 32); a diffusers folder's config.json states it, so there it may only repeat it.
    Only the ``components`` asked for are read: the VAE alone loads whatever the transformer part holds.
    """
    for c in components:
        if c not in ("transformer", "vae"):
            raise ValueError(f"components={components!r}: each must be 'transformer' or 'vae'")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"LTX checkpoint {str(path)!r} does not exist")
    if path.is_file():
        shapes, metadata = read_shapes(path)
        layout = detect_ltx_layout(shapes, metadata, num_attention_heads, str(path), components)
        if layout.ignored_keys:
            log.info(
                "%s: ignoring %d non-model keys, e.g. %s",
                path,
                len(layout.ignored_keys),
                layout.ignored_keys[:3],
            )
        transformer = vae = None
        if "transformer" in components and layout.transformer_config is not None:
            state = stream_state([path], _transformer_renamer(layout), dtype, device)
            transformer = _build(
                LTXVideoTransformer, layout.transformer_config, state, f"{path} (transformer)"
            )
        if "vae" in components and layout.vae_config is not None:
            state = stream_state([path], _vae_renamer(layout), dtype, device)
            vae = _build(LTXVideoVAE, layout.vae_config, state, f"{path} (vae)")
        return LTXModels(transformer, vae, layout)
    # folders
    subdirs = {c: path / c for c in ("transformer", "vae") if (path / c / "config.json").is_file()}
    if not subdirs:
        if not (path / "config.json").is_file():
            raise LTXLayoutError(
                f"{str(path)!r} is neither a safetensors file nor a diffusers folder (no model_index.json, "
                f"transformer/config.json, vae/config.json or config.json); found {sorted(os.listdir(path))}"
            )
        name = _component_config(path).get("_class_name", "")
        kind = "transformer" if name == "LTXVideoTransformer3DModel" else "vae"
        if name not in ("LTXVideoTransformer3DModel", "AutoencoderKLLTXVideo", "CausalVideoAutoencoder"):
            raise LTXLayoutError(f"{path}/config.json has _class_name={name!r}, not an LTX-Video component")
        subdirs = {kind: path}
    transformer = vae = None
    if "transformer" in components and "transformer" in subdirs:
        transformer = _load_component_folder(
            subdirs["transformer"], "transformer", dtype, device, num_attention_heads
        )
    if "vae" in components and "vae" in subdirs:
        vae = _load_component_folder(subdirs["vae"], "vae", dtype, device)
    t_cfg = transformer.config if transformer is not None else None
    v_cfg = vae.config if vae is not None else None
    version = "0.9.7" if t_cfg is not None and t_cfg.num_layers == 48 else None
    v_layout = None
    if vae is not None:
        v_layout = _vae_layout_of(set(vae.state_dict()))
        version = version or v_layout
    layout = LTXLayout(
        "diffusers", version, "" if t_cfg else None, "" if v_cfg else None, v_layout, t_cfg, v_cfg
    )
    return LTXModels(transformer, vae, layout)


def load_ltx_transformer(
    path: str | os.PathLike,
    dtype: torch.dtype | None = None,
    device: str | torch.device = "cpu",
    num_attention_heads: int | None = None,
) -> LTXVideoTransformer:
    """The LTX transformer of a single file or diffusers folder (see :func:`load_ltx`)."""
    models = load_ltx(path, dtype, device, num_attention_heads, components=("transformer",))
    if models.transformer is None:
        raise LTXLayoutError(f"{str(path)!r} holds no LTX-Video transformer weights")
    return models.transformer


def load_ltx_vae(
    path: str | os.PathLike, dtype: torch.dtype | None = None, device: str | torch.device = "cpu"
) -> LTXVideoVAE:
    """The LTX VAE of a single file or diffusers folder (see :func:`load_ltx`)."""
    models = load_ltx(path, dtype, device, components=("vae",))
    if models.vae is None:
        raise LTXLayoutError(f"{str(path)!r} holds no LTX-Video VAE weights")
    return models.vae
