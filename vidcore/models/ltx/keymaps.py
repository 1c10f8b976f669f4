"""Key maps between the original Lightricks single-file layout and vidcore's (= diffusers') names, the
renames of diffusers src/diffusers/loaders/single_file_utils.py (convert_ltx_*_checkpoint_to_diffusers).

Block indices are parsed and mapped directly instead of diffusers' chained substring replacements.
"""

from __future__ import annotations

import re

TRANSFORMER_PREFIX = "model.diffusion_model."
VAE_PREFIX = "vae."

# original name piece -> vidcore name piece, transformer (applied in order, whole-segment tokens)
_TRANSFORMER_RENAMES = (("patchify_proj", "proj_in"), ("adaln_single", "time_embed"), ("q_norm", "norm_q"))
_TRANSFORMER_RENAMES += (("k_norm", "norm_k"),)

# original block index -> vidcore module path, per VAE layout
ENCODER_090 = {
    0: "down_blocks.0",
    1: "down_blocks.0.downsamplers.0",
    2: "down_blocks.0.conv_out",
    3: "down_blocks.1",
    4: "down_blocks.1.downsamplers.0",
    5: "down_blocks.1.conv_out",
    6: "down_blocks.2",
    7: "down_blocks.2.downsamplers.0",
    8: "down_blocks.3",
    9: "mid_block",
}
ENCODER_095 = {
    2 * i + j: f"down_blocks.{i}" + (".downsamplers.0" if j else "") for i in range(4) for j in (0, 1)
}
ENCODER_095[8] = "mid_block"
DECODER_090 = {
    0: "mid_block",
    1: "up_blocks.0",
    2: "up_blocks.1.upsamplers.0",
    3: "up_blocks.1",
    4: "up_blocks.2.conv_in",
    5: "up_blocks.2.upsamplers.0",
    6: "up_blocks.2",
    7: "up_blocks.3.conv_in",
    8: "up_blocks.3.upsamplers.0",
    9: "up_blocks.3",
}
DECODER_091 = {0: "mid_block"}
DECODER_091.update(
    {2 * i + 1 + j: f"up_blocks.{i}" + ("" if j else ".upsamplers.0") for i in range(4) for j in (0, 1)}
)

VAE_TABLES = {
    "0.9.0": (ENCODER_090, DECODER_090),
    "0.9.1": (ENCODER_090, DECODER_091),
    "0.9.5": (ENCODER_095, DECODER_091),
}

# original -> vidcore renames inside a VAE key (dotted-segment sequences)
_VAE_SEGMENT_RENAMES = (
    ("res_blocks", "resnets"),
    ("conv_shortcut", "conv_shortcut.conv"),
    ("norm3.norm", "norm3"),
)
_VAE_TOP_RENAMES = {
    "decoder.last_time_embedder.": "decoder.time_embedder.",
    "decoder.last_scale_shift_table": "decoder.scale_shift_table",
    "per_channel_statistics.mean-of-means": "latents_mean",
    "per_channel_statistics.std-of-means": "latents_std",
}
_BLOCK_RE = re.compile(r"^(encoder\.down_blocks|decoder\.up_blocks)\.(\d+)\.(.*)$")


def _replace_segments(key: str, old: str, new: str) -> str:
    # Replace whole dotted segments only ("conv_shortcut" must not touch "conv_shortcut_x").
    return re.sub(rf"(^|\.){re.escape(old)}(?=\.|$)", lambda m: m.group(1) + new, key)


def transformer_key_from_original(key: str) -> str:
    """``model.diffusion_model.patchify_proj.weight`` -> ``proj_in.weight`` (prefix optional)."""
    if key.startswith(TRANSFORMER_PREFIX):
        key = key[len(TRANSFORMER_PREFIX) :]
    for old, new in _TRANSFORMER_RENAMES:
        key = _replace_segments(key, old, new)
    return key


def transformer_key_to_original(key: str) -> str:
    """Inverse of :func:`transformer_key_from_original` (adds the ``model.diffusion_model.`` prefix)."""
    for old, new in _TRANSFORMER_RENAMES:
        key = _replace_segments(key, new, old)
    return TRANSFORMER_PREFIX + key


def vae_key_from_original(key: str, layout: str) -> str | None:
    """Original VAE key (``vae.`` prefix optional) -> vidcore key; None for statistics that are dropped."""
    if key.startswith(VAE_PREFIX):
        key = key[len(VAE_PREFIX) :]
    for old, new in _VAE_TOP_RENAMES.items():
        if key.startswith(old) or key == old:
            key = new + key[len(old) :]
    if key.startswith("per_channel_statistics."):
        return None  # channel index, mean-of-stds, ...: not part of the model
    encoder_table, decoder_table = VAE_TABLES[layout]
    m = _BLOCK_RE.match(key)
    if m:
        side, index, rest = m.group(1), int(m.group(2)), m.group(3)
        table = encoder_table if side.startswith("encoder") else decoder_table
        if index not in table:
            raise KeyError(f"{key!r}: block index {index} does not exist in the {layout} VAE layout")
        key = f"{side.split('.')[0]}.{table[index]}.{rest}"
    for old, new in _VAE_SEGMENT_RENAMES:
        key = _replace_segments(key, old, new)
    return key


def vae_key_to_original(key: str, layout: str) -> str:
    """Inverse of :func:`vae_key_from_original` (adds the ``vae.`` prefix)."""
    for old, new in reversed(_VAE_SEGMENT_RENAMES):
        key = _replace_segments(key, new, old)
    for old, new in _VAE_TOP_RENAMES.items():
        if key.startswith(new):
            key = old + key[len(new) :]
    side = key.split(".", 1)[0]
    if side in ("encoder", "decoder"):
        table = VAE_TABLES[layout][0 if side == "encoder" else 1]
        body = key[len(side) + 1 :]
        # Longest module path first: "up_blocks.1.upsamplers.0" before "up_blocks.1".
        for index, path in sorted(table.items(), key=lambda kv: -len(kv[1])):
            if body.startswith(path + "."):
                block = "down_blocks" if side == "encoder" else "up_blocks"
                key = f"{side}.{block}.{index}.{body[len(path) + 1 :]}"
                break
    return VAE_PREFIX + key
