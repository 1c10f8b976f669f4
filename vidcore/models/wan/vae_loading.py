"""Load Wan 2.1 / 2.2 VAE checkpoints: diffusers folders and single ``.safetensors`` files with the original
Wan key names (also ComfyUI's ``wan_2.1_vae`` / ``wan2.2_vae`` files, which keep them). Nothing is unpickled.

:func:`detect_wan_vae_layout` is the one place that reads key names and tensor shapes of a foreign file to
decide its naming (original / diffusers), version (2.1 / 2.2) and config. The key maps follow diffusers
src/diffusers/loaders/single_file_utils.py (convert_wan_vae_to_diffusers) for 2.1 and extend its scheme to
the nested stages of Wan-Video/Wan2.2 wan/modules/vae2_2.py.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from vidcore.io.checkpoint import (
    METADATA_CONFIG,
    METADATA_KIND,
    CheckpointError,
    load_into,
    read_shapes,
    refuse_pickle,
    stream_state,
    weight_files,
)
from vidcore.io.checkpoint import PICKLE_SUFFIXES as PICKLE_SUFFIXES  # kept importable from here
from vidcore.io.checkpoint import WEIGHTS_NAME as WEIGHTS_NAME
from vidcore.models.wan.vae import WanVAE
from vidcore.models.wan.vae_config import (
    VIDEO_CHANNELS,
    WAN21_LATENTS_MEAN,
    WAN21_LATENTS_STD,
    WAN22_LATENTS_MEAN,
    WAN22_LATENTS_STD,
    WanVAEConfig,
)

log = logging.getLogger("vidcore")

KIND = "wan_vae"  # vidcore metadata kind of a Wan VAE file written by vidcore
ORIGINAL_MARKER = "decoder.middle.0.residual.0.gamma"  # diffusers' and ComfyUI's own detection key
DIFFUSERS_MARKER = "decoder.mid_block.resnets.0.norm1.gamma"
SAFETENSORS_SUFFIXES = (".safetensors", ".sft")


class WanVAELayoutError(ValueError):
    """A file or folder is not (or not entirely) a Wan VAE checkpoint vidcore can read."""


@dataclass(frozen=True)
class WanVAELayout:
    """What :func:`detect_wan_vae_layout` found in one safetensors header."""

    kind: str  # "original" (Wan / ComfyUI names) or "diffusers"
    version: str  # "2.1" or "2.2"
    prefix: str  # prefix before every VAE key ("" for a standalone VAE file)
    config: WanVAEConfig
    ignored_keys: tuple[str, ...] = ()


# ---- key maps: original Wan names <-> vidcore (= diffusers) names ---------------------------------------

# Inside a residual block: nn.Sequential(RMS_norm, SiLU, conv, RMS_norm, SiLU, Dropout, conv) + shortcut.
_RESNET_LEAVES = (
    ("residual.0.", "norm1."),
    ("residual.2.", "conv1."),
    ("residual.3.", "norm2."),
    ("residual.6.", "conv2."),
    ("shortcut.", "conv_shortcut."),
)
_FIXED = (  # (original, vidcore) module paths inside encoder./decoder.
    ("conv1.", "conv_in."),
    ("head.0.", "norm_out."),
    ("head.2.", "conv_out."),
    ("middle.0.", "mid_block.resnets.0."),
    ("middle.1.", "mid_block.attentions.0."),
    ("middle.2.", "mid_block.resnets.1."),
)
_TOP = (("conv1.", "quant_conv."), ("conv2.", "post_quant_conv."))
_RESAMPLE_LEAVES = ("resample.", "time_conv.")


def _swap(text: str, table: tuple[tuple[str, str], ...], to_vidcore: bool) -> tuple[str, str] | None:
    """(new prefix, rest) for the first (original, vidcore) row whose name on the reading side starts
    ``text``; None when none does. Each table serves both directions."""
    for original, ours in table:
        old, new = (original, ours) if to_vidcore else (ours, original)
        if text.startswith(old):
            return new, text[len(old) :]
    return None


def _leaf(leaf: str, to_vidcore: bool) -> str:
    hit = _swap(leaf, _RESNET_LEAVES, to_vidcore)
    return leaf if hit is None else hit[0] + hit[1]


def _fixed_key(key: str, to_vidcore: bool) -> str | None:
    """A top-level or fixed-path key (conv_in, head, middle, quant convs) mapped either way. None for a key
    of the encoder / decoder stage lists; a top-level key of no known pattern comes back unchanged."""
    side, _, rest = key.partition(".")
    if side not in ("encoder", "decoder"):
        hit = _swap(key, _TOP, to_vidcore)
        return key if hit is None else hit[0] + hit[1]
    hit = _swap(rest, _FIXED, to_vidcore)
    return None if hit is None else f"{side}.{hit[0]}{_leaf(hit[1], to_vidcore)}"


def vae_key_from_original(key: str, version: str, num_res_blocks: int) -> str:
    """Original Wan VAE key -> vidcore key; a key of no known pattern comes back unchanged (then it is
    reported as unexpected). ``num_res_blocks`` places 2.1's flat decoder list into stages."""
    fixed = _fixed_key(key, True)
    if fixed is not None:
        return fixed
    side, _, rest = key.partition(".")
    word = "downsamples" if side == "encoder" else "upsamples"
    if version == "2.2":
        m = re.match(rf"{word}\.(\d+)\.{word}\.(\d+)\.(.*)$", rest)
        if m is None:
            return key
        stage, j, leaf = m.groups()
        blocks, resampler = (
            ("down_blocks", "downsampler") if side == "encoder" else ("up_blocks", "upsampler")
        )
        if leaf.startswith(_RESAMPLE_LEAVES):
            return f"{side}.{blocks}.{stage}.{resampler}.{leaf}"
        return f"{side}.{blocks}.{stage}.resnets.{j}.{_leaf(leaf, True)}"
    m = re.match(rf"{word}\.(\d+)\.(.*)$", rest)
    if m is None:
        return key
    n, leaf = int(m.group(1)), m.group(2)
    if side == "encoder":  # 2.1's encoder list stays flat in diffusers
        return f"encoder.down_blocks.{n}.{_leaf(leaf, True)}"
    per_stage = num_res_blocks + 2  # num_res_blocks + 1 residual blocks, then the resampler
    stage, j = divmod(n, per_stage)
    if leaf.startswith(_RESAMPLE_LEAVES):
        return f"decoder.up_blocks.{stage}.upsamplers.0.{leaf}"
    return f"decoder.up_blocks.{stage}.resnets.{j}.{_leaf(leaf, True)}"


def vae_key_to_original(key: str, version: str, num_res_blocks: int) -> str:
    """Inverse of :func:`vae_key_from_original` (vidcore key -> original Wan key)."""
    fixed = _fixed_key(key, False)
    if fixed is not None:
        return fixed
    side, _, rest = key.partition(".")
    word = "downsamples" if side == "encoder" else "upsamples"
    blocks = "down_blocks" if side == "encoder" else "up_blocks"
    if side == "encoder" and version == "2.1":
        m = re.match(r"down_blocks\.(\d+)\.(.*)$", rest)
        return key if m is None else f"encoder.downsamples.{m.group(1)}.{_leaf(m.group(2), False)}"
    m = re.match(rf"{blocks}\.(\d+)\.(resnets\.(\d+)|downsampler|upsampler|upsamplers\.0)\.(.*)$", rest)
    if m is None:
        return key
    stage, part, j, leaf = int(m.group(1)), m.group(2), m.group(3), m.group(4)
    if version == "2.2":
        # The resampler follows the stage's residual blocks: num_res_blocks of them in the encoder, one more
        # in the decoder.
        index = int(j) if j is not None else num_res_blocks + (side == "decoder")
        return f"{side}.{word}.{stage}.{word}.{index}.{_leaf(leaf, False)}"
    per_stage = num_res_blocks + 2
    index = stage * per_stage + (int(j) if part.startswith("resnets") else num_res_blocks + 1)
    return f"decoder.upsamples.{index}.{_leaf(leaf, False)}"


# ---- layout detection -----------------------------------------------------------------------------------


def _indices(shapes: dict[str, tuple[int, ...]], pattern: str) -> list[int]:
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in shapes if (m := rx.match(k))})


def _stages_21(s: dict[str, tuple[int, ...]]) -> tuple[list[int], list[bool], int]:
    """Stage widths, temporal-downsample flags and residual blocks per stage of 2.1's flat encoder list."""
    widths, flags, counts, n_res = [], [], [], 0
    for n in _indices(s, r"encoder\.down_blocks\.(\d+)\."):
        pre = f"encoder.down_blocks.{n}."
        if pre + "resample.1.weight" in s:
            flags.append(pre + "time_conv.weight" in s)
            counts.append(n_res)
            n_res = 0
        elif pre + "conv1.weight" in s:
            width = s[pre + "conv1.weight"][0]
            if n_res == 0:
                widths.append(width)
            n_res += 1
        else:
            found = sorted(k for k in s if k.startswith(pre))[:4]
            raise WanVAELayoutError(f"encoder block {n} is neither a residual block nor a resampler: {found}")
    counts.append(n_res)
    if len(set(counts)) != 1 or len(widths) != len(counts):
        raise WanVAELayoutError(f"encoder stages hold unequal numbers of residual blocks {counts}")
    return widths, flags, counts[0]


def _stages_22(s: dict[str, tuple[int, ...]]) -> tuple[list[int], list[bool], int]:
    widths, flags = [], []
    stages = _indices(s, r"encoder\.down_blocks\.(\d+)\.")
    for i in stages:
        pre = f"encoder.down_blocks.{i}."
        widths.append(s[pre + "resnets.0.conv1.weight"][0])
        if pre + "downsampler.resample.1.weight" in s:
            flags.append(pre + "downsampler.time_conv.weight" in s)
    return widths, flags, len(_indices(s, r"encoder\.down_blocks\.0\.resnets\.(\d+)\."))


def _config_from_shapes(s: dict[str, tuple[int, ...]], version: str) -> WanVAEConfig:
    """Rebuild a WanVAEConfig from vidcore-named shapes (a single file stores no config)."""
    base, in_ch = s["encoder.conv_in.weight"][:2]
    z_dim = s["post_quant_conv.weight"][0]
    attn = sorted(k for k in s if ".to_qkv." in k and ".mid_block." not in k)
    if attn:
        raise WanVAELayoutError(f"attention outside the mid blocks is not supported (found {attn[:2]})")
    widths, flags, n_res = (_stages_22 if version == "2.2" else _stages_21)(s)
    if any(w % base for w in widths):
        raise WanVAELayoutError(f"encoder stage widths {widths} are not multiples of base_dim={base}")
    dim_mult = tuple(w // base for w in widths)
    dec_base = s["decoder.conv_out.weight"][1] // dim_mult[0]
    patch = math.isqrt(in_ch // VIDEO_CHANNELS)
    if VIDEO_CHANNELS * patch**2 != in_ch:
        raise WanVAELayoutError(f"encoder input channels {in_ch} are not {VIDEO_CHANNELS} x patch_size^2")
    if version == "2.1" and z_dim == len(WAN21_LATENTS_MEAN):
        mean, std = WAN21_LATENTS_MEAN, WAN21_LATENTS_STD
    elif version == "2.2" and z_dim == len(WAN22_LATENTS_MEAN):
        mean, std = WAN22_LATENTS_MEAN, WAN22_LATENTS_STD
    else:
        log.warning(
            "Wan %s VAE with z_dim=%d: no released latent statistics; using mean 0, std 1", version, z_dim
        )
        mean, std = (0.0,) * z_dim, (1.0,) * z_dim
    return WanVAEConfig(
        base_dim=base,
        decoder_base_dim=None if dec_base == base else dec_base,
        z_dim=z_dim,
        dim_mult=dim_mult,
        num_res_blocks=n_res,
        temperal_downsample=tuple(flags),
        is_residual=version == "2.2",
        in_channels=in_ch,
        out_channels=s["decoder.conv_out.weight"][0],
        patch_size=None if patch == 1 else patch,
        scale_factor_temporal=2 ** sum(flags),
        scale_factor_spatial=2 ** (len(dim_mult) - 1) * patch,
        latents_mean=mean,
        latents_std=std,
    )


def detect_wan_vae_layout(
    shapes: dict[str, tuple[int, ...]], metadata: dict[str, str] | None = None, source: str = "checkpoint"
) -> WanVAELayout:
    """Naming, version and config of a Wan VAE state dict, from its key names and shapes alone.

    Original (Wan / ComfyUI) names carry ``decoder.middle.0.residual.0.gamma``, diffusers names
    ``decoder.mid_block.resnets.0.norm1.gamma``, possibly after a common prefix (e.g. ``vae.``). Wan 2.2 nests
    its stages (``encoder.downsamples.0.downsamples.0.*`` / ``encoder.down_blocks.0.resnets.0.*``); 2.1 does
    not. A vidcore-written file's metadata config (kind ``wan_vae``) is used as is; otherwise widths come
    from conv shapes and the latent statistics are the released VAE's of that version and z_dim.
    """
    prefix, kind = None, None
    for k in sorted(shapes):
        for marker, name in ((ORIGINAL_MARKER, "original"), (DIFFUSERS_MARKER, "diffusers")):
            if k.endswith(marker):
                prefix, kind = k[: -len(marker)], name
                break
        if kind is not None:
            break
    if kind is None or prefix is None:
        sample = sorted(shapes)[:6]
        raise WanVAELayoutError(
            f"{source} is not a Wan VAE: found {len(shapes)} tensors (first: {sample}); expected original / "
            f"ComfyUI keys like {ORIGINAL_MARKER!r} or diffusers keys like {DIFFUSERS_MARKER!r}"
        )
    own = {k[len(prefix) :]: v for k, v in shapes.items() if k.startswith(prefix)}
    ignored = tuple(sorted(k for k in shapes if not k.startswith(prefix)))
    if kind == "original":
        nested = any(re.match(r"encoder\.downsamples\.\d+\.downsamples\.", k) for k in own)
        version = "2.2" if nested else "2.1"
        n_res = 0
        if version == "2.1":
            resamplers = _indices(own, r"encoder\.downsamples\.(\d+)\.resample\.")
            n_res = resamplers[0] if resamplers else len(_indices(own, r"encoder\.downsamples\.(\d+)\."))
        own = {vae_key_from_original(k, version, n_res): v for k, v in own.items()}
    else:
        version = "2.2" if any(re.match(r"encoder\.down_blocks\.\d+\.resnets\.", k) for k in own) else "2.1"
    if metadata and metadata.get(METADATA_KIND) == KIND and METADATA_CONFIG in metadata:
        try:
            config = WanVAEConfig.from_json(metadata[METADATA_CONFIG])
        except (ValueError, TypeError) as e:
            raise WanVAELayoutError(f"{source}: metadata config is not a valid WanVAEConfig ({e})") from e
    else:
        needed = ("encoder.conv_in.weight", "post_quant_conv.weight", "decoder.conv_out.weight")
        absent = [n for n in needed if n not in own]
        if absent:
            raise WanVAELayoutError(f"{source}: Wan {version} VAE ({kind} names) lacks {absent}")
        try:
            config = _config_from_shapes(own, version)
        except (KeyError, IndexError, ValueError) as e:
            if isinstance(e, WanVAELayoutError):
                raise WanVAELayoutError(f"{source}: {e}") from e
            raise WanVAELayoutError(f"{source}: cannot read the Wan {version} VAE structure ({e!r})") from e
    return WanVAELayout(kind, version, prefix, config, ignored)


# ---- files -> module ------------------------------------------------------------------------------------


def _load(
    config: WanVAEConfig,
    files: list[Path],
    rename: Callable[[str], str | None],
    to_file_name: Callable[[str], str],
    dtype: torch.dtype | None,
    device: str | torch.device,
    source: str,
) -> WanVAE:
    """Stream tensors in (renamed, cast one at a time), check the key set in the file's own names, assign."""
    with torch.device("meta"):
        model = WanVAE(config)
    expected = model.state_dict()
    file_names: dict[str, str] = {}

    def read(key: str) -> str | None:
        name = rename(key)
        if name is not None:
            file_names[name] = key
        return name if name in expected else None  # an unexpected key is reported below, not read

    state = stream_state(files, read, dtype, device)
    missing = sorted(to_file_name(k) for k in set(expected) - set(file_names))
    unexpected = sorted(file_names[k] for k in set(file_names) - set(expected))
    misshaped = sorted(
        f"{file_names[k]}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in state
        if tuple(state[k].shape) != tuple(expected[k].shape)
    )
    if missing or unexpected or misshaped:
        labelled = (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("mis-shaped keys", misshaped),
        )
        parts = [f"{label} {keys}" for label, keys in labelled if keys]
        raise CheckpointError(f"{source} does not fit the Wan VAE it describes: " + "; ".join(parts))
    load_into(model, state, source=source)
    return model.eval()


def load_wan_vae(
    path: str | os.PathLike, dtype: torch.dtype | None = None, device: str | torch.device = "cpu"
) -> WanVAE:
    """Load a Wan 2.1 or 2.2 VAE in eval mode.

    ``path``: a diffusers VAE folder (``config.json`` + ``diffusion_pytorch_model.safetensors``), a pipeline
    folder holding ``vae/``, or a single ``.safetensors`` file with original Wan / ComfyUI or diffusers key
    names (version and config detected from its header). ``dtype`` None keeps the stored dtype.
    Missing, unexpected and mis-shaped keys raise, listed in the file's own names.
    """
    path = Path(path)
    refuse_pickle(path, WanVAELayoutError)
    if not path.exists():
        raise FileNotFoundError(f"Wan VAE checkpoint {str(path)!r} does not exist")
    if path.is_file():
        if path.suffix.lower() not in SAFETENSORS_SUFFIXES:
            raise WanVAELayoutError(
                f"{str(path)!r} must be a .safetensors file, a diffusers folder or a pipeline folder with "
                "vae/"
            )
        shapes, metadata = read_shapes(path)
        layout = detect_wan_vae_layout(shapes, metadata, str(path))
        if layout.ignored_keys:
            log.info(
                "%s: ignoring %d non-VAE keys, e.g. %s",
                path,
                len(layout.ignored_keys),
                layout.ignored_keys[:3],
            )
        cfg, prefix = layout.config, layout.prefix

        def rename(key: str) -> str | None:
            if not key.startswith(prefix):
                return None
            key = key[len(prefix) :]
            return (
                vae_key_from_original(key, layout.version, cfg.num_res_blocks)
                if layout.kind == "original"
                else key
            )

        def to_file_name(name: str) -> str:
            if layout.kind == "original":
                name = vae_key_to_original(name, layout.version, cfg.num_res_blocks)
            return prefix + name

        return _load(cfg, [path], rename, to_file_name, dtype, device, str(path))
    folder = path / "vae" if (path / "vae" / "config.json").is_file() else path
    if not (folder / "config.json").is_file():
        raise WanVAELayoutError(
            f"{str(path)!r} is neither a .safetensors file nor a diffusers folder (no config.json or "
            f"vae/config.json); found {sorted(p.name for p in path.iterdir())}"
        )
    try:
        cfg = WanVAEConfig.from_diffusers(json.loads((folder / "config.json").read_text()))
    except (ValueError, TypeError) as e:
        raise WanVAELayoutError(f"{folder / 'config.json'}: {e}") from e
    return _load(
        cfg, weight_files(folder, WanVAELayoutError), lambda k: k, lambda k: k, dtype, device, str(folder)
    )
