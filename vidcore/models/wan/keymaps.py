"""Key maps between the original Wan names (Wan-Video/Wan2.1 wan/modules/model.py; also ComfyUI's
comfy/ldm/wan/model.py and TurboDiffusion's rcm/networks/wan2pt1.py) and vidcore's (= diffusers') names, the
renames of diffusers scripts/convert_wan_to_diffusers.py.

Names are mapped by module path (longest matching prefix) instead of chained substring replacements, so the
map is a bijection on model keys and ``transformer_key_to_original`` is its exact inverse.
"""

from __future__ import annotations

import re

COMFY_PREFIX = "model.diffusion_model."
# torch.distributed checkpoint_wrapper inserts this module level (some TurboDiffusion files kept it).
WRAPPED_INFIX = "_checkpoint_wrapped_module."
# TurboDiffusion's sparse-linear attention adds a per-block projection of its linear branch; dense attention
# ignores it (thu-ml/TurboDiffusion turbodiffusion/SLA/core.py).
SLA_INFIX = ".attn_op.local_attn.proj_l."

# original module path -> vidcore module path, outside the blocks
_TOP = {
    "patch_embedding": "patch_embedding",
    "text_embedding.0": "condition_embedder.text_embedder.linear_1",
    "text_embedding.2": "condition_embedder.text_embedder.linear_2",
    "time_embedding.0": "condition_embedder.time_embedder.linear_1",
    "time_embedding.2": "condition_embedder.time_embedder.linear_2",
    "time_projection.1": "condition_embedder.time_proj",
    "head.head": "proj_out",
    "head.modulation": "scale_shift_table",
    "img_emb.proj.0": "condition_embedder.image_embedder.norm1",
    "img_emb.proj.1": "condition_embedder.image_embedder.ff.net.0.proj",
    "img_emb.proj.3": "condition_embedder.image_embedder.ff.net.2",
    "img_emb.proj.4": "condition_embedder.image_embedder.norm2",
    "img_emb.emb_pos": "condition_embedder.image_embedder.pos_embed",
}
# ... inside ``blocks.N.``
_BLOCK = {
    "modulation": "scale_shift_table",
    "norm3": "norm2",  # the affine cross-attention LayerNorm (the FFN norm has no parameters)
    "ffn.0": "ffn.net.0.proj",
    "ffn.2": "ffn.net.2",
}
for _orig, _ours in (("self_attn", "attn1"), ("cross_attn", "attn2")):
    for _a, _b in (("q", "to_q"), ("k", "to_k"), ("v", "to_v"), ("o", "to_out.0")):
        _BLOCK[f"{_orig}.{_a}"] = f"{_ours}.{_b}"
    for _n in ("norm_q", "norm_k"):
        _BLOCK[f"{_orig}.{_n}"] = f"{_ours}.{_n}"
_BLOCK.update(
    {
        "cross_attn.k_img": "attn2.add_k_proj",
        "cross_attn.v_img": "attn2.add_v_proj",
        "cross_attn.norm_k_img": "attn2.norm_added_k",
    }
)
_TOP_INV = {v: k for k, v in _TOP.items()}
_BLOCK_INV = {v: k for k, v in _BLOCK.items()}
_BLOCK_RE = re.compile(r"^blocks\.(\d+)\.(.+)$")

# First dotted segment(s) that only one naming uses (patch_embedding is shared).
_ORIGINAL_TOP = ("text_embedding", "time_embedding", "time_projection", "head", "img_emb")
_DIFFUSERS_TOP = ("condition_embedder", "proj_out", "scale_shift_table")
_ORIGINAL_BLOCK = ("self_attn", "cross_attn", "modulation", "norm3", "ffn.0", "ffn.2")
_DIFFUSERS_BLOCK = ("attn1", "attn2", "scale_shift_table", "norm2", "ffn.net")


def _rename(path: str, table: dict[str, str]) -> str | None:
    """Replace the longest module-path prefix of ``path`` found in ``table`` (None when there is none)."""
    parts = path.split(".")
    for n in range(len(parts), 0, -1):
        head = ".".join(parts[:n])
        if head in table:
            return ".".join([table[head], *parts[n:]])
    return None


def _map(key: str, top: dict[str, str], block: dict[str, str]) -> str:
    m = _BLOCK_RE.match(key)
    if m:
        new = _rename(m.group(2), block)
        return key if new is None else f"blocks.{m.group(1)}.{new}"
    new = _rename(key, top)
    return key if new is None else new


def strip_wrappers(key: str) -> str:
    """Drop ``_checkpoint_wrapped_module.`` levels (activation-checkpointing wrappers) from a key."""
    return key.replace(WRAPPED_INFIX, "")


def transformer_key_from_original(key: str) -> str:
    """``blocks.0.self_attn.q.weight`` -> ``blocks.0.attn1.to_q.weight``; unknown keys come back unchanged
    (so the loader reports them as unexpected under their own names)."""
    return _map(key, _TOP, _BLOCK)


def transformer_key_to_original(key: str) -> str:
    """Inverse of :func:`transformer_key_from_original` (no prefix added)."""
    return _map(key, _TOP_INV, _BLOCK_INV)


def _starts(path: str, heads: tuple[str, ...]) -> bool:
    return any(path == h or path.startswith(h + ".") for h in heads)


def key_style(key: str) -> str | None:
    """ "original" or "diffusers" when the (un-prefixed) key's module path exists only in that naming, else
    None (shared names such as ``patch_embedding.weight``, or not a Wan key)."""
    m = _BLOCK_RE.match(key)
    if m:
        rest = m.group(2)
        if _starts(rest, _ORIGINAL_BLOCK):
            return "original"
        if _starts(rest, _DIFFUSERS_BLOCK):
            return "diffusers"
        return None
    if _starts(key, _ORIGINAL_TOP):
        return "original"
    if _starts(key, _DIFFUSERS_TOP):
        return "diffusers"
    return None
