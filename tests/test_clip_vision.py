"""CLIP vision encoder from transformers folders and ComfyUI-style single safetensors files.

A tiny random transformers CLIP vision tower (hidden 16, 2 layers, 2 heads, patch 8, image 32) is saved as a
folder, as single files with transformers names (``vision_model.*``, prefixed, flat, with
``visual_projection.weight``) and with open_clip names under ``visual.``; every single file must give the
folder's hidden states exactly (vidcore.text.clip_vision).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from vidcore.text.clip_vision import (
    KNOWN_TOWERS,
    clip_vision_towers,
    detect_clip_vision_checkpoint,
    load_image_encoder,
)

torch.set_num_threads(1)

HIDDEN, LAYERS, HEADS, PATCH, IMAGE, INTER = 16, 2, 2, 8, 32, 24
TOKENS = 1 + (IMAGE // PATCH) ** 2


def _tiny_tower():
    """(CLIPVisionModelWithProjection, CLIPVisionModel) sharing seeded random weights, norms included."""
    from transformers import CLIPVisionConfig, CLIPVisionModel, CLIPVisionModelWithProjection

    cfg = CLIPVisionConfig(
        hidden_size=HIDDEN,
        intermediate_size=INTER,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        image_size=IMAGE,
        patch_size=PATCH,
        projection_dim=12,
        hidden_act="quick_gelu",
    )
    full = CLIPVisionModelWithProjection(cfg).eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in full.parameters():  # layer norms too, so a pre/post norm mix-up changes the numbers
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    tower = CLIPVisionModel(cfg).eval()
    # transformers 4 nests the tower under .vision_model; in transformers 5 CLIPVisionModel is the tower
    getattr(tower, "vision_model", tower).load_state_dict(full.vision_model.state_dict())
    return full, tower


def _open_clip_names(state: dict[str, torch.Tensor], prefix: str = "visual.") -> dict[str, torch.Tensor]:
    """transformers CLIPVisionModelWithProjection names -> open_clip ``visual.*`` names (the inverse of the
    renames in Comfy-Org/ComfyUI comfy/clip_vision.py convert_to_transformers)."""
    fixed = {
        "embeddings.class_embedding": "class_embedding",
        "embeddings.patch_embedding.weight": "conv1.weight",
        "embeddings.position_embedding.weight": "positional_embedding",
        "pre_layrnorm.weight": "ln_pre.weight",
        "pre_layrnorm.bias": "ln_pre.bias",
        "post_layernorm.weight": "ln_post.weight",
        "post_layernorm.bias": "ln_post.bias",
    }
    block = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj"}
    block["self_attn.out_proj"] = "attn.out_proj"
    out = {prefix + "proj": state["visual_projection.weight"].t().contiguous()}
    for i in range(LAYERS):
        layer = f"vision_model.encoder.layers.{i}."
        for param in ("weight", "bias"):
            qkv = [state[f"{layer}self_attn.{n}_proj.{param}"] for n in "qkv"]
            out[f"{prefix}transformer.resblocks.{i}.attn.in_proj_{param}"] = torch.cat(qkv)
            for name, oc in block.items():
                out[f"{prefix}transformer.resblocks.{i}.{oc}.{param}"] = state[f"{layer}{name}.{param}"]
    for name, oc in fixed.items():
        out[prefix + oc] = state["vision_model." + name]
    return out


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    from transformers import CLIPImageProcessor

    root = tmp_path_factory.mktemp("clip_vision")
    full, tower = _tiny_tower()
    folder = root / "folder"
    tower.save_pretrained(folder)
    size = {"shortest_edge": IMAGE}
    CLIPImageProcessor(size=size, crop_size={"height": IMAGE, "width": IMAGE}).save_pretrained(folder)
    state = {k: v.contiguous() for k, v in full.state_dict().items()}
    vision = {k: v for k, v in state.items() if k.startswith("vision_model.")}
    files = {
        "bare": vision,
        "prefixed": {"clip_l_vision." + k: v for k, v in vision.items()},  # comfy/supported_models.py
        "flat": {k.removeprefix("vision_model."): v for k, v in vision.items()},  # transformers 5 save
        "projection": state,
        # open_clip under visual., beside a text tower whose blocks share the names unprefixed
        "open_clip": {
            **_open_clip_names(state),
            "transformer.resblocks.0.attn.in_proj_weight": torch.zeros(3 * 8, 8),
            "token_embedding.weight": torch.zeros(10, 8),
        },
    }
    paths = {}
    for name, tensors in files.items():
        paths[name] = root / f"{name}.safetensors"
        save_file(tensors, str(paths[name]))
    return {"root": root, "folder": folder, "state": state, **paths}


def _frames(n: int = 3, h: int = 40, w: int = 52) -> torch.Tensor:
    return torch.rand(n, h, w, 3, generator=torch.Generator().manual_seed(1))


def test_folder_encode_shape_and_numbers(saved):
    from transformers import CLIPImageProcessor

    enc = load_image_encoder(saved["folder"])
    frames = _frames()
    out = enc.encode(frames)
    assert out.shape == (3, TOKENS, HIDDEN) and out.dtype == torch.float32
    assert enc.dim == HIDDEN and set(enc.components()) == {"image_encoder"}
    # reference: the processor on uint8 pixels, then the tower's penultimate hidden states
    pixels = list((frames * 255).round().to(torch.uint8).numpy())
    processor = CLIPImageProcessor(size={"shortest_edge": IMAGE}, crop_size={"height": IMAGE, "width": IMAGE})
    values = processor(images=pixels, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        ref = enc.model(pixel_values=values, output_hidden_states=True).hidden_states[-2]
    torch.testing.assert_close(out, ref, rtol=0, atol=0)


@pytest.mark.parametrize("name", ["bare", "prefixed", "flat", "projection", "open_clip"])
def test_single_file_matches_folder(saved, name):
    frames = _frames()
    expected = load_image_encoder(saved["folder"]).encode(frames)
    enc = load_image_encoder(saved[name], num_attention_heads=HEADS, hidden_act="quick_gelu")
    out = enc.encode(frames)
    assert out.shape == (3, TOKENS, HIDDEN)
    assert torch.equal(out, expected)
    assert enc.source == str(saved[name]) and enc.dtype == torch.float32
    assert set(enc.components()) == {"image_encoder"}
    assert not any(t.is_meta for t in [*enc.model.parameters(), *enc.model.buffers()])
    proc = enc.processor
    assert proc.size["shortest_edge"] == IMAGE and (proc.crop_size["height"], proc.crop_size["width"]) == (
        IMAGE,
        IMAGE,
    )


def test_single_file_dtype(saved):
    frames = _frames(1)
    expected = load_image_encoder(saved["folder"]).encode(frames)
    enc = load_image_encoder(saved["bare"], dtype="bf16", num_attention_heads=HEADS, hidden_act="quick_gelu")
    assert enc.dtype == torch.bfloat16
    out = enc.encode(frames)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, expected, rtol=0.1, atol=0.1)


# ---- layout and config from shapes ----------------------------------------------------------------------


def _vit_shapes(hidden, layers, inter, patch, image, prefix="", open_clip=False):
    """Header shapes of a CLIP vision tower (transformers or open_clip names), no tensor data."""
    positions = (image // patch) ** 2 + 1
    if open_clip:
        shapes = {
            "class_embedding": (hidden,),
            "conv1.weight": (hidden, 3, patch, patch),
            "positional_embedding": (positions, hidden),
            "ln_pre.weight": (hidden,),
            "ln_post.weight": (hidden,),
            "proj": (hidden, 1024),
        }
        for i in range(layers):
            shapes[f"transformer.resblocks.{i}.attn.in_proj_weight"] = (3 * hidden, hidden)
            shapes[f"transformer.resblocks.{i}.mlp.c_fc.weight"] = (inter, hidden)
    else:
        shapes = {
            "vision_model.embeddings.class_embedding": (hidden,),
            "vision_model.embeddings.patch_embedding.weight": (hidden, 3, patch, patch),
            "vision_model.embeddings.position_embedding.weight": (positions, hidden),
            "vision_model.pre_layrnorm.weight": (hidden,),
            "visual_projection.weight": (1024, hidden),
        }
        for i in range(layers):
            shapes[f"vision_model.encoder.layers.{i}.self_attn.q_proj.weight"] = (hidden, hidden)
            shapes[f"vision_model.encoder.layers.{i}.mlp.fc1.weight"] = (inter, hidden)
    return {prefix + k: v for k, v in shapes.items()}


VIT_H = {
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_hidden_layers": 32,
    "num_attention_heads": 16,
    "num_channels": 3,
    "image_size": 224,
    "patch_size": 14,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-5,
}


def test_detect_vit_h_transformers_names():
    layout = detect_clip_vision_checkpoint(_vit_shapes(1280, 32, 5120, 14, 224))
    assert (layout.kind, layout.prefix, layout.name) == ("transformers", "vision_model.", "ViT-H/14")
    assert layout.config == VIT_H


def test_detect_vit_h_open_clip_names_beside_text_tower():
    shapes = _vit_shapes(1280, 32, 5120, 14, 224, prefix="visual.", open_clip=True)
    shapes.update({"transformer.resblocks.0.attn.in_proj_weight": (3072, 1024), "ln_final.weight": (1024,)})
    layout = detect_clip_vision_checkpoint(shapes)
    assert (layout.kind, layout.prefix, layout.name) == ("open_clip", "visual.", "ViT-H/14")
    assert layout.config == VIT_H
    assert clip_vision_towers(set(shapes)) == [("open_clip", "visual.")]  # names alone
    svd = "conditioner.embedders.0.open_clip.model.visual."  # comfy/supported_models.py clip_vision_prefix
    layout = detect_clip_vision_checkpoint(_vit_shapes(1280, 32, 5120, 14, 224, prefix=svd, open_clip=True))
    assert layout.prefix == svd and layout.config == VIT_H


def test_detect_vit_l_336_and_big_g():
    vit_l = detect_clip_vision_checkpoint(_vit_shapes(1024, 24, 4096, 14, 336))
    assert vit_l.name == "ViT-L/14"
    assert (vit_l.config["image_size"], vit_l.config["hidden_act"], vit_l.config["num_attention_heads"]) == (
        336,
        "quick_gelu",
        16,
    )
    big_g = detect_clip_vision_checkpoint(_vit_shapes(1664, 48, 8192, 14, 224))
    assert (big_g.name, big_g.config["num_hidden_layers"], big_g.config["hidden_act"]) == (
        "ViT-bigG/14",
        48,
        "gelu",
    )
    assert set(KNOWN_TOWERS) == {(1280, 32, 5120, 14), (1664, 48, 8192, 14), (1024, 24, 4096, 14)}


def test_detect_explicit_values_and_unknown_sizes():
    shapes = _vit_shapes(HIDDEN, LAYERS, INTER, PATCH, IMAGE)
    with pytest.raises(
        ValueError, match=r"unknown size \(hidden 16, 2 layers.*num_attention_heads=.*hidden_act="
    ):
        detect_clip_vision_checkpoint(shapes)
    with pytest.raises(ValueError, match="unknown size"):
        detect_clip_vision_checkpoint(shapes, num_attention_heads=2)
    with pytest.raises(
        ValueError, match="num_attention_heads=3 must be a positive divisor of hidden size 16"
    ):
        detect_clip_vision_checkpoint(shapes, num_attention_heads=3, hidden_act="gelu")
    with pytest.raises(ValueError, match=r"hidden_act='relu' must be one of \['gelu', 'quick_gelu'\]"):
        detect_clip_vision_checkpoint(shapes, num_attention_heads=2, hidden_act="relu")
    layout = detect_clip_vision_checkpoint(shapes, num_attention_heads=2, hidden_act="gelu")
    assert layout.name == "custom"
    assert (layout.config["image_size"], layout.config["num_hidden_layers"]) == (IMAGE, LAYERS)
    # explicit values win over the known table
    vit_h = detect_clip_vision_checkpoint(_vit_shapes(1280, 32, 5120, 14, 224), num_attention_heads=20)
    assert vit_h.config["num_attention_heads"] == 20 and vit_h.config["hidden_act"] == "gelu"


def test_detect_refusals_name_what_was_found():
    t5 = {"shared.weight": (100, 8), "encoder.block.0.layer.0.SelfAttention.q.weight": (8, 8)}
    with pytest.raises(ValueError, match=r"holds no CLIP vision tower.*'encoder.block'.*text encoder"):
        detect_clip_vision_checkpoint(t5, source="'t5.safetensors'")
    wan = {"visual.cls_embedding": (1, 1, 1280), "visual.pos_embedding": (1, 257, 1280), "log_scale": ()}
    with pytest.raises(ValueError, match=r"'visual.cls_embedding'.*Wan-Video's own CLIP names"):
        detect_clip_vision_checkpoint(wan)
    two = {**_vit_shapes(16, 2, 24, 8, 32, prefix="a."), **_vit_shapes(16, 2, 24, 8, 32, prefix="b.")}
    two["c.text_model.embeddings.token_embedding.weight"] = (10, 16)
    with pytest.raises(
        ValueError,
        match=r"2 CLIP vision towers.*transformers 'a\.vision_model\.'.*transformers 'b\.vision_model\.'",
    ):
        detect_clip_vision_checkpoint(two, num_attention_heads=2, hidden_act="gelu")
    gap = _vit_shapes(16, 3, 24, 8, 32)
    del gap["vision_model.encoder.layers.1.self_attn.q_proj.weight"]
    del gap["vision_model.encoder.layers.1.mlp.fc1.weight"]
    with pytest.raises(ValueError, match=r"not 0..N-1: \[0, 2\]"):
        detect_clip_vision_checkpoint(gap, num_attention_heads=2, hidden_act="gelu")
    odd = _vit_shapes(16, 2, 24, 8, 32)
    odd["vision_model.embeddings.position_embedding.weight"] = (18, 16)
    with pytest.raises(ValueError, match=r"inconsistent CLIP vision shapes.*positions \(18, 16\)"):
        detect_clip_vision_checkpoint(odd, num_attention_heads=2, hidden_act="gelu")
    bare = _vit_shapes(16, 2, 24, 8, 32)
    del bare["vision_model.embeddings.patch_embedding.weight"]
    with pytest.raises(ValueError, match=r"lacks 'vision_model.embeddings.patch_embedding.weight'"):
        detect_clip_vision_checkpoint(bare, num_attention_heads=2, hidden_act="gelu")


# ---- loading errors --------------------------------------------------------------------------------------


def test_load_refusals(saved, tmp_path):
    kw = {"num_attention_heads": HEADS, "hidden_act": "quick_gelu"}
    vision = {k: v for k, v in saved["state"].items() if k.startswith("vision_model.")}

    pth = tmp_path / "clip.pth"
    pth.write_bytes(b"not read")
    with pytest.raises(ValueError, match=r"never unpickles.*`vidcore convert clip.pth clip.safetensors`"):
        load_image_encoder(pth)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_image_encoder(tmp_path / "absent.safetensors")
    txt = tmp_path / "clip.txt"
    txt.write_text("x")
    with pytest.raises(ValueError, match="must be a transformers folder or a .safetensors / .sft file"):
        load_image_encoder(txt)

    missing = tmp_path / "missing.safetensors"
    save_file({k: v for k, v in vision.items() if "post_layernorm" not in k}, str(missing))
    with pytest.raises(
        ValueError,
        match=r"names under 'vision_model.'\) does not fit CLIPVisionModel: missing keys "
        r"\['(vision_model\.)?post_layernorm.bias', '(vision_model\.)?post_layernorm.weight'\]",
    ):
        load_image_encoder(missing, **kw)

    extra = tmp_path / "extra.safetensors"
    save_file({**vision, "vision_model.encoder.layers.0.adapter.weight": torch.zeros(2)}, str(extra))
    with pytest.raises(
        ValueError, match=r"unexpected keys \['(vision_model\.)?encoder.layers.0.adapter.weight'\]"
    ):
        load_image_encoder(extra, **kw)

    layer_scale = tmp_path / "layer_scale.safetensors"
    oc = _open_clip_names(saved["state"])
    save_file({**oc, "visual.transformer.resblocks.0.ls_1.gamma": torch.zeros(HIDDEN)}, str(layer_scale))
    with pytest.raises(
        ValueError, match=r"no transformers CLIPVisionModel counterpart: \['visual.transformer"
    ):
        load_image_encoder(layer_scale, **kw)

    with pytest.raises(ValueError, match=r"unknown size \(hidden 16"):
        load_image_encoder(saved["bare"])
    with pytest.raises(
        ValueError, match=r"num_attention_heads=4 disagrees with .*config.json'?, which states 2"
    ):
        load_image_encoder(saved["folder"], num_attention_heads=4)
    assert json.loads((Path(saved["folder"]) / "config.json").read_text())["num_attention_heads"] == HEADS
