"""ComfyUI-style single-file T5 encoders (``t5xxl_fp16.safetensors``, ``umt5_xxl_*.safetensors``).

Facts used (ComfyUI's own detection code): the files hold the Hugging Face ``T5EncoderModel`` state dict
keys unprefixed (``shared.weight``, ``encoder.block.N.layer.0.SelfAttention.q.weight``, ...,
``encoder.final_layer_norm.weight``); ComfyUI tells T5-XXL by ``encoder.block.23.layer.1.DenseReluDense
.wi_1.weight``; combined checkpoints prefix them (``text_encoders.t5xxl.transformer.``); "scaled fp8"
files add a ``scaled_fp8`` marker and a ``<module>.scale_weight`` per fp8 weight (weight = fp8 * scale).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from vidcore.text.base import TextEncoder
from vidcore.text.encoders import T5TextEncoder
from vidcore.text.files import folder_listing, has_tokenizer, load_tokenizer, tokenizer_options

_FINAL_NORM = "encoder.final_layer_norm.weight"


def _shapes(path: Path) -> dict[str, tuple[int, ...]]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}


def detect_t5_checkpoint(
    shapes: dict[str, tuple[int, ...]], source: str = "checkpoint"
) -> tuple[str, str, dict]:
    """The one place that reads a foreign T5 file's layout from key names and tensor shapes.

    Returns ``(model_type "t5" | "umt5", key prefix, config kwargs)``. T5 v1.1 / XXL and UMT5 use a gated
    GELU feed-forward (``wi_0``/``wi_1``); T5 v1.0 a ReLU one (``wi``). UMT5 has a relative-position bias
    in every block, T5 only in block 0. ``relative_attention_max_distance`` (128 in every public T5) is not
    visible in shapes and keeps the default.
    """
    ends = [k for k in shapes if k.endswith(_FINAL_NORM)]
    if len(ends) != 1:
        sample = sorted(shapes)[:4]
        hint = ""
        if any("text_model.encoder.layers." in k for k in shapes):
            hint = " (these look like CLIP text weights: load CLIP from a transformers folder instead)"
        elif any(".layers." in k and "self_attn" in k for k in shapes):
            hint = " (these look like a decoder-only LLM, not a T5 encoder)"
        raise ValueError(
            f"{source} is not a T5 encoder file: expected one key ending in {_FINAL_NORM!r}, "
            f"found {len(ends)}; {len(shapes)} keys such as {sample}{hint}"
        )
    prefix = ends[0][: -len(_FINAL_NORM)]
    keys = {k[len(prefix) :]: s for k, s in shapes.items() if k.startswith(prefix)}
    emb = keys.get("shared.weight") or keys.get("encoder.embed_tokens.weight")
    if emb is None:
        raise ValueError(
            f"{source} has no token embedding ({prefix}shared.weight or encoder.embed_tokens.weight)"
        )
    vocab, d_model = emb
    blocks = sorted({int(k.split(".")[2]) for k in keys if k.startswith("encoder.block.")})
    if blocks != list(range(len(blocks))) or not blocks:
        raise ValueError(f"{source} has non-contiguous encoder blocks {blocks[:8]}...")
    rel = keys.get("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight")
    if rel is None:
        raise ValueError(
            f"{source} lacks encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"
        )
    buckets, heads = rel
    umt5 = "encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight" in keys
    inner = keys["encoder.block.0.layer.0.SelfAttention.q.weight"][0]
    gated = "encoder.block.0.layer.1.DenseReluDense.wi_0.weight" in keys
    ff_key = "encoder.block.0.layer.1.DenseReluDense." + ("wi_0.weight" if gated else "wi.weight")
    config = {
        "vocab_size": vocab,
        "d_model": d_model,
        "d_kv": inner // heads,
        "d_ff": keys[ff_key][0],
        "num_layers": len(blocks),
        "num_heads": heads,
        "relative_attention_num_buckets": buckets,
        "feed_forward_proj": "gated-gelu" if gated else "relu",
        "is_encoder_decoder": False,
        "use_cache": False,
    }
    return ("umt5" if umt5 else "t5"), prefix, config


def _read_state(path: Path, prefix: str, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Read the encoder tensors (prefix stripped), undo scaled fp8, cast (FF ``wo`` stays fp32 under fp16)."""
    from safetensors import safe_open

    raw: dict[str, torch.Tensor] = {}
    with safe_open(str(path), framework="pt") as f:
        for k in f.keys():
            if k.startswith(prefix):
                raw[k[len(prefix) :]] = f.get_tensor(k)
    scaled = raw.pop("scaled_fp8", None) is not None
    state: dict[str, torch.Tensor] = {}
    for k, v in raw.items():
        if k.endswith(".scale_weight"):
            continue
        scale = raw.get(k[: -len(".weight")] + ".scale_weight") if scaled and k.endswith(".weight") else None
        v = v.float() * scale.float() if scale is not None else v
        # transformers keeps T5's FF output projection in fp32 under fp16 (`_keep_in_fp32_modules = ["wo"]`)
        # because its activations overflow fp16; do the same.
        keep32 = dtype == torch.float16 and ".DenseReluDense.wo." in k
        state[k] = v.to(torch.float32 if keep32 else dtype) if v.is_floating_point() else v
    # The input embedding is tied to `shared`; files keep one or both names.
    if "shared.weight" not in state:
        state["shared.weight"] = state["encoder.embed_tokens.weight"]
    state.setdefault("encoder.embed_tokens.weight", state["shared.weight"])
    return state


def load_t5_single_file(
    path: Path, tokenizer_path: Path, device: torch.device, dtype: torch.dtype, options: dict[str, Any]
) -> TextEncoder:
    """Build a T5/UMT5 encoder on the meta device from the detected layout and load the file's tensors."""
    import transformers

    from vidcore.io.checkpoint import load_into

    if path.suffix not in (".safetensors", ".sft"):
        raise ValueError(f"{str(path)!r} must be a .safetensors file (nothing is unpickled)")
    tok_dir = Path(tokenizer_path)
    if not tok_dir.is_dir():
        raise FileNotFoundError(f"tokenizer_path {str(tok_dir)!r} is not a folder")
    if not has_tokenizer(tok_dir, "t5"):
        raise FileNotFoundError(
            f"tokenizer_path {str(tok_dir)!r} is missing tokenizer files ({tokenizer_options('t5')}) "
            f"(found: {folder_listing(tok_dir)})"
        )
    model_type, prefix, cfg = detect_t5_checkpoint(_shapes(path), source=repr(str(path)))
    if model_type == "umt5":
        config, cls = transformers.UMT5Config(**cfg), transformers.UMT5EncoderModel
    else:
        config, cls = transformers.T5Config(**cfg), transformers.T5EncoderModel
    with torch.device("meta"):
        model = cls(config)
    state = _read_state(path, prefix, dtype)
    load_into(model, state, device=device, source=repr(str(path)))
    model.encoder.embed_tokens = model.shared  # one tied embedding, as from_pretrained builds it
    tokenizer = load_tokenizer(tok_dir)
    return T5TextEncoder(model, tokenizer, dim=config.d_model, source=str(path), **options)
