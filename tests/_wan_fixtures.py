"""Tiny random diffusers Wan transformers, saved in every checkpoint layout vidcore reads (test-only)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from vidcore.models.wan.keymaps import COMFY_PREFIX, transformer_key_to_original
from vidcore.models.wan.loading import save_wan_transformer
from vidcore.models.wan.transformer import WanTransformer

diffusers = pytest.importorskip("diffusers", reason="the Wan parity tests need diffusers (test extra)")

# The tiny transformer of diffusers tests/models/transformers/test_models_transformer_wan.py.
TINY = dict(
    patch_size=(1, 2, 2),
    num_attention_heads=2,
    attention_head_dim=12,
    in_channels=4,
    out_channels=4,
    text_dim=16,
    freq_dim=256,
    ffn_dim=32,
    num_layers=2,
    cross_attn_norm=True,
    qk_norm="rms_norm_across_heads",
    rope_max_seq_len=32,
)
HEADS = 2
IMAGE_DIM = 8
CONFIGS = {
    "t2v": TINY,  # 2.1 T2V, and any 2.2 A14B T2V expert (same architecture)
    # Real 2.1 I2V: CLIP tokens through img_emb and the k_img / v_img cross-attention branch.
    "i2v": dict(TINY, in_channels=36, out_channels=16, image_dim=IMAGE_DIM, added_kv_proj_dim=24),
    # FLF2V: + a learned table over first + last frame tokens (real: 2 x 257 = 514).
    "flf2v": dict(
        TINY, in_channels=36, out_channels=16, image_dim=IMAGE_DIM, added_kv_proj_dim=24, pos_embed_seq_len=10
    ),
    # 2.2 I2V-A14B expert: 36 input channels (x + mask + image latent), no CLIP.
    "i2v_a14b": dict(TINY, in_channels=36, out_channels=16),
    # 2.2 TI2V-5B: the 48 channels of the Wan 2.2 VAE, per-token timesteps.
    "ti2v": dict(TINY, in_channels=48, out_channels=48),
}
IMAGE_TOKENS = {"i2v": 5, "flf2v": 10}
# The k_img branch splits the context at L - 512 (diffusers WanAttnProcessor): those need 512 text rows.
TEXT_TOKENS = {"i2v": 512, "flf2v": 512}
LAYOUTS = ("diffusers", "sharded", "parent", "original", "comfy", "original_folder", "vidcore", "turbo")


def perturb_(model: torch.nn.Module, seed: int, std: float = 0.05) -> torch.nn.Module:
    """Add seeded noise to every parameter so ones/zeros-initialised ones (norms, pos_embed) matter."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.state_dict().values():
            if p.is_floating_point():
                p.add_(std * torch.randn(p.shape, generator=g))
    return model.eval()


def tiny_transformer(variant: str, seed: int = 0):
    torch.manual_seed(seed)
    return perturb_(diffusers.WanTransformer3DModel(**CONFIGS[variant]), seed + 100)


def inputs(variant: str, seed: int = 0, batch: int = 2) -> dict[str, torch.Tensor | None]:
    """vidcore forward inputs: x [B, 16|4|48, 3, 8, 8] (48 tokens), t, context, clip_fea, y."""
    cfg = CONFIGS[variant]
    g = torch.Generator().manual_seed(seed)
    c_y = max(0, cfg["in_channels"] - cfg["out_channels"])
    x = torch.randn(batch, cfg["in_channels"] - c_y, 3, 8, 8, generator=g)
    y = torch.randn(batch, c_y, 3, 8, 8, generator=g) if c_y else None
    ctx = torch.randn(batch, TEXT_TOKENS.get(variant, 12), cfg["text_dim"], generator=g)
    ctx[:, -3:] = 0  # zero-padded rows, attended like the others
    n = IMAGE_TOKENS.get(variant)
    clip = torch.randn(batch, n, IMAGE_DIM, generator=g) if n else None
    t = torch.tensor([870.5, 31.0][:batch])
    if variant == "ti2v":
        # TI2V image-to-video: the first latent frame (16 tokens) is clean (t = 0), the rest at each t.
        t = t[:, None].repeat(1, 48)
        t[:, :16] = 0.0
    return dict(x=x, timestep=t, context=ctx, clip_fea=clip, y=y)


def diffusers_forward(ref, inp: dict) -> torch.Tensor:
    """The same call on diffusers' WanTransformer3DModel (it takes x and y already concatenated, and
    FLF2V CLIP tokens as [2B, N/2, C] rows that it regroups per sample)."""
    x, y, clip = inp["x"], inp["y"], inp["clip_fea"]
    hidden = x if y is None else torch.cat([x, y], dim=1)
    if clip is not None and ref.config.pos_embed_seq_len:
        clip = clip.reshape(2 * clip.shape[0], clip.shape[1] // 2, clip.shape[2])
    with torch.no_grad():
        return ref(hidden, inp["timestep"], inp["context"], clip, return_dict=False)[0]


def original_state_dict(ref, prefix: str = "") -> dict[str, torch.Tensor]:
    """Original Wan key names (ComfyUI: with the model.diffusion_model. prefix), by inverting the key map."""
    return {
        prefix + transformer_key_to_original(k): v.detach().clone().contiguous()
        for k, v in ref.state_dict().items()
    }


def turbo_state_dict(ref) -> dict[str, torch.Tensor]:
    """TurboDiffusion-style: 2-D Linear patch embedding, checkpoint-wrapper infixes, SLA projections."""
    out = {}
    for k, v in original_state_dict(ref).items():
        if k == "patch_embedding.weight":
            v = v.flatten(1)
        elif k.startswith("blocks."):
            i, rest = k[len("blocks.") :].split(".", 1)
            k = f"blocks.{i}._checkpoint_wrapped_module.{rest}"
        out[k] = v
    for i in range(ref.config.num_layers):
        base = f"blocks.{i}.self_attn.attn_op.local_attn.proj_l"
        out[base + ".weight"] = torch.zeros(12, 12)
        out[base + ".bias"] = torch.zeros(12)
    return out


def heads_metadata() -> dict[str, str]:
    return {"config": json.dumps({"transformer": {"num_attention_heads": HEADS}})}


def original_config(ref) -> dict:
    """The config.json of an original Wan-AI repo (class WanModel)."""
    c = ref.config
    return {
        "_class_name": "WanModel",
        "_diffusers_version": "0.30.0",
        "model_type": "i2v" if c.image_dim else "t2v",
        "dim": c.num_attention_heads * c.attention_head_dim,
        "ffn_dim": c.ffn_dim,
        "freq_dim": c.freq_dim,
        "in_dim": c.in_channels,
        "out_dim": c.out_channels,
        "num_heads": c.num_attention_heads,
        "num_layers": c.num_layers,
        "text_len": 512,
        "eps": c.eps,
    }


def save_layout(ref, layout: str, root: Path) -> tuple[Path, dict]:
    """Save ``ref`` in ``layout`` under ``root``; return the path to load and the extra load kwargs."""
    root.mkdir(parents=True, exist_ok=True)
    if layout == "diffusers":
        ref.save_pretrained(root / "tr", safe_serialization=True)
        return root / "tr", {}
    if layout == "sharded":
        ref.save_pretrained(root / "tr", safe_serialization=True, max_shard_size="30KB")
        return root / "tr", {}
    if layout == "parent":
        ref.save_pretrained(root / "pipe" / "transformer", safe_serialization=True)
        (root / "pipe" / "model_index.json").write_text(json.dumps({"_class_name": "WanPipeline"}))
        return root / "pipe", {}
    if layout == "original":
        save_file(original_state_dict(ref), str(root / "wan.safetensors"))
        return root / "wan.safetensors", {"num_attention_heads": HEADS}
    if layout == "comfy":
        sd = original_state_dict(ref, COMFY_PREFIX)
        sd["vae.decoder.conv_out.weight"] = torch.zeros(3)  # another component of the same file
        save_file(sd, str(root / "comfy.safetensors"), metadata=heads_metadata())
        return root / "comfy.safetensors", {}
    if layout == "original_folder":
        (root / "orig").mkdir()
        save_file(original_state_dict(ref), str(root / "orig" / "diffusion_pytorch_model.safetensors"))
        (root / "orig" / "config.json").write_text(json.dumps(original_config(ref)))
        return root / "orig", {}
    if layout == "vidcore":
        from vidcore.models.wan.config import WanTransformerConfig

        model = WanTransformer(WanTransformerConfig.from_diffusers(dict(ref.config)))
        model.load_state_dict(ref.state_dict())
        return save_wan_transformer(root / "vidcore.safetensors", model), {}
    if layout == "turbo":
        save_file(turbo_state_dict(ref), str(root / "turbo.safetensors"))
        return root / "turbo.safetensors", {"num_attention_heads": HEADS}
    raise ValueError(f"layout={layout!r} must be one of {LAYOUTS}")
