"""Wan transformer: parity with diffusers' WanTransformer3DModel in every checkpoint layout, layout detection,
configs and the errors a user meets (tiny random weights, float32, CPU)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from vidcore.io.checkpoint import CheckpointError
from vidcore.models.wan import (
    WAN_TRANSFORMER_PRESETS,
    WanLayoutError,
    WanTransformer,
    WanTransformerConfig,
    detect_wan_layout,
    load_wan_transformer,
    read_wan_layout,
    wan_transformer_config,
)
from vidcore.models.wan.keymaps import (
    COMFY_PREFIX,
    key_style,
    transformer_key_from_original,
    transformer_key_to_original,
)
from vidcore.models.wan.loading import WEIGHTS_NAME
from vidcore.models.wan.transformer import keeps_fp32
from vidcore.ops import attention as attention_ops

torch.set_num_threads(1)

sys.path.insert(0, str(Path(__file__).parent))
import _wan_fixtures as fx  # noqa: E402  (skips the module when diffusers is not installed)

VARIANTS = tuple(fx.CONFIGS)
TOL = 1e-5


def rel_err(want: torch.Tensor, got: torch.Tensor) -> float:
    return ((want - got).abs().max() / want.abs().max()).item()


@pytest.fixture(scope="module")
def refs():
    return {v: fx.tiny_transformer(v, seed=i) for i, v in enumerate(VARIANTS)}


@pytest.fixture(scope="module")
def saved(refs, tmp_path_factory):
    """(path, load kwargs) of every variant in every layout (turbo: the released Turbo nets only)."""
    out = {}
    for v, ref in refs.items():
        for layout in fx.LAYOUTS:
            if layout == "turbo" and v not in ("t2v", "i2v_a14b"):
                continue
            out[v, layout] = fx.save_layout(ref, layout, tmp_path_factory.mktemp(f"wan_{v}_{layout}"))
    return out


CASES = [(v, lay) for v in VARIANTS for lay in fx.LAYOUTS if lay != "turbo" or v in ("t2v", "i2v_a14b")]


@pytest.mark.parametrize("variant,layout", CASES)
def test_wan_forward_matches_diffusers_in_every_layout(refs, saved, variant, layout):
    path, kwargs = saved[variant, layout]
    model = load_wan_transformer(path, **kwargs)
    assert not any(p.is_meta for p in model.parameters())
    assert model.config.variant == {"i2v_a14b": "i2v"}.get(variant, variant)
    inp = fx.inputs(variant)
    want = fx.diffusers_forward(refs[variant], inp)
    with torch.no_grad():
        got = model(**inp)
    assert got.shape == want.shape == (2, fx.CONFIGS[variant]["out_channels"], 3, 8, 8)
    assert want.abs().max() > 0.5  # a real signal, not a zero head
    assert rel_err(want, got) < TOL


def test_wan22_expert_pipeline_folder(tmp_path, caplog):
    """A 2.2 A14B diffusers pipeline holds two T2V-architecture experts: transformer/ (high noise, what the
    pipeline folder loads, with a warning) and transformer_2/ (low noise), each loaded on its own."""
    high, low = fx.tiny_transformer("t2v", seed=11), fx.tiny_transformer("t2v", seed=12)
    high.save_pretrained(tmp_path / "transformer", safe_serialization=True)
    low.save_pretrained(tmp_path / "transformer_2", safe_serialization=True)
    inp = fx.inputs("t2v", seed=2)
    with caplog.at_level(logging.WARNING, logger="vidcore"):
        got_high = load_wan_transformer(tmp_path)(**inp)
    assert "transformer_2" in caplog.text
    got_low = load_wan_transformer(tmp_path / "transformer_2")(**inp)
    assert rel_err(fx.diffusers_forward(high, inp), got_high.detach()) < TOL
    assert rel_err(fx.diffusers_forward(low, inp), got_low.detach()) < TOL
    assert (got_high - got_low).abs().max() > 0.1


@pytest.mark.parametrize("variant", ["i2v", "flf2v", "i2v_a14b"])
def test_wan_image_inputs_change_the_output(refs, variant):
    """The image branch and y are used: perturbing either moves the velocity (and diffusers agrees)."""
    ref = refs[variant]
    model = WanTransformer(WanTransformerConfig.from_diffusers(dict(ref.config))).eval()
    model.load_state_dict(ref.state_dict())
    inp = fx.inputs(variant, seed=3)
    with torch.no_grad():
        base = model(**inp)
        for name in ("clip_fea", "y"):
            if inp[name] is None:
                continue
            # random, not constant: img_emb starts with a LayerNorm that removes constant shifts
            noise = torch.randn(inp[name].shape, generator=torch.Generator().manual_seed(9))
            moved = dict(inp, **{name: inp[name] + 0.5 * noise})
            out = model(**moved)
            assert (out - base).abs().max() > 1e-3, name
            assert rel_err(fx.diffusers_forward(ref, moved), out) < TOL


def test_wan_per_token_timesteps(refs):
    """TI2V: per-token t matches diffusers, a constant per-token t equals the per-sample path, and the clean
    first frame (t = 0) changes the result."""
    ref = refs["ti2v"]
    model = WanTransformer(WanTransformerConfig.from_diffusers(dict(ref.config))).eval()
    model.load_state_dict(ref.state_dict())
    inp = fx.inputs("ti2v", seed=5)
    per_sample = dict(inp, timestep=torch.tensor([870.5, 31.0]))
    flat = dict(inp, timestep=per_sample["timestep"][:, None].repeat(1, 48))
    with torch.no_grad():
        a = model(**per_sample)
        b = model(**flat)
        c = model(**inp)
    assert rel_err(a, b) < 1e-6
    assert rel_err(fx.diffusers_forward(ref, per_sample), a) < TOL
    assert rel_err(fx.diffusers_forward(ref, inp), c) < TOL
    assert (a - c).abs().max() > 1e-2


def test_wan_attention_goes_through_the_dispatch(refs, monkeypatch):
    calls = []

    def counting(q, k, v, mask, causal):
        calls.append(k.shape[-2])
        return attention_ops.sdpa_attention(q, k, v, mask, causal)

    attention_ops.register_backend("wan_test_counter", counting)
    monkeypatch.setenv(attention_ops.ENV_VAR, "wan_test_counter")
    ref = refs["i2v"]
    model = WanTransformer(WanTransformerConfig.from_diffusers(dict(ref.config))).eval()
    model.load_state_dict(ref.state_dict())
    with torch.no_grad():
        out = model(**fx.inputs("i2v"))
    # per block: self-attention (48 tokens), text (512 rows) and image (5 tokens) cross-attention
    assert calls == [48, 512, 5] * 2
    assert rel_err(fx.diffusers_forward(ref, fx.inputs("i2v")), out) < TOL


def test_wan_low_precision_load_keeps_fp32_modules(refs, saved):
    path, kwargs = saved["i2v", "original"]
    model = load_wan_transformer(path, dtype=torch.bfloat16, **kwargs)
    for name, p in model.named_parameters():
        assert p.dtype == (torch.float32 if keeps_fp32(name) else torch.bfloat16), name
    assert model.blocks[0].scale_shift_table.dtype == torch.float32
    assert model.condition_embedder.time_embedder.linear_1.weight.dtype == torch.float32
    assert model.blocks[0].norm2.weight.dtype == torch.float32
    inp = fx.inputs("i2v")
    with torch.no_grad():
        got = model(**inp)
    assert got.dtype == torch.float32  # x's dtype
    assert rel_err(fx.diffusers_forward(refs["i2v"], inp), got) < 2e-2  # bf16 matmuls; diffusers: same size


# ---- layout detection and key maps -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "layout,kind",
    [("diffusers", "diffusers"), ("sharded", "diffusers"), ("parent", "diffusers"), ("original", "original")]
    + [("comfy", "comfy"), ("original_folder", "original"), ("vidcore", "diffusers"), ("turbo", "original")],
)
def test_wan_layout_detection(saved, layout, kind):
    for variant in VARIANTS:
        if (variant, layout) not in saved:
            continue
        path, kwargs = saved[variant, layout]
        found = read_wan_layout(path, **kwargs)
        want = {"i2v_a14b": "i2v"}.get(variant, variant)
        assert (found.kind, found.variant) == (kind, want)
        assert found.config.num_heads == fx.HEADS and found.config.dim == 24
        assert found.linear_patch == (layout == "turbo")
        assert found.prefix == (COMFY_PREFIX if layout == "comfy" else "")
    if layout == "sharded":
        assert len(list(path.glob("diffusion_pytorch_model-*.safetensors"))) > 1
    if layout == "comfy":
        assert found.dropped_keys == ("vae.decoder.conv_out.weight",)


def test_wan_turbo_file_drops_sla_with_a_warning(saved, caplog):
    path, kwargs = saved["t2v", "turbo"]
    with caplog.at_level(logging.WARNING, logger="vidcore"):
        load_wan_transformer(path, **kwargs)
    assert "sparse-linear-attention" in caplog.text and "proj_l" in caplog.text


def test_wan_keymap_matches_diffusers_single_file_conversion(refs):
    single_file_utils = pytest.importorskip("diffusers.loaders.single_file_utils")
    for variant in ("i2v", "flf2v"):
        sd = fx.original_state_dict(refs[variant], COMFY_PREFIX)
        # diffusers' single-file converter leaves FLF2V's emb_pos alone (its convert script maps it).
        theirs = set(single_file_utils.convert_wan_transformer_to_diffusers(dict(sd)))
        ours = {transformer_key_from_original(k[len(COMFY_PREFIX) :]) for k in sd}
        assert ours - theirs <= {"condition_embedder.image_embedder.pos_embed"}
        assert set(theirs) - ours <= {"img_emb.emb_pos"}
        model_keys = set(refs[variant].state_dict())
        assert ours == model_keys
        assert all(transformer_key_from_original(transformer_key_to_original(k)) == k for k in model_keys)
        assert {key_style(transformer_key_to_original(k)) for k in model_keys} == {"original", None}
        assert {key_style(k) for k in model_keys} == {"diffusers", None}


@pytest.mark.parametrize("name", sorted(WAN_TRANSFORMER_PRESETS))
def test_wan_presets_detected_from_original_shapes(name):
    """Every released config is recovered from the key shapes of an original file alone (heads = dim/128)."""
    cfg = wan_transformer_config(name)
    with torch.device("meta"):
        model = WanTransformer(cfg)
    shapes = {transformer_key_to_original(k): tuple(v.shape) for k, v in model.state_dict().items()}
    layout = detect_wan_layout(shapes)
    assert layout.config == cfg and layout.kind == "original"
    assert layout.variant == {"flf2v_14b": "flf2v", "ti2v_5b": "ti2v"}.get(
        name, "i2v" if name.startswith("i2v") else "t2v"
    )
    assert cfg.head_dim == 128 and cfg.rope_dims == (44, 42, 42)
    assert WanTransformerConfig.from_diffusers(cfg.to_diffusers()) == cfg


def test_wan_fresh_model_initialisation():
    """A fresh model (zero-initialised head) predicts zero velocity; the init is seeded by its generator."""
    cfg = WanTransformerConfig.from_diffusers(fx.CONFIGS["i2v"])
    model = WanTransformer(cfg).eval()
    with torch.no_grad():
        assert torch.equal(model(**fx.inputs("i2v")), torch.zeros(2, 16, 3, 8, 8))
    states = []
    for _ in range(2):
        model.initialize_weights(torch.Generator().manual_seed(4))
        states.append({k: v.clone() for k, v in model.state_dict().items()})
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert states[0]["blocks.0.attn1.to_q.weight"].std() > 0.01
    assert torch.equal(states[0]["blocks.0.attn1.to_q.bias"], torch.zeros(24))


def test_wan_config_from_diffusers_and_validation(refs):
    cfg = WanTransformerConfig.from_diffusers(dict(refs["flf2v"].config))
    assert (cfg.dim, cfg.num_heads, cfg.image_dim, cfg.has_image_kv, cfg.image_pos_len) == (
        24,
        2,
        8,
        True,
        10,
    )
    assert cfg.cond_channels == 20 and cfg.rope_dims == (4, 4, 4)
    with pytest.raises(ValueError, match="dim=100 is not divisible by num_heads=3"):
        WanTransformerConfig(dim=100, num_heads=3)
    with pytest.raises(ValueError, match="need image_dim"):
        WanTransformerConfig(has_image_kv=True)
    with pytest.raises(ValueError, match="qk_norm='rms_norm'"):
        WanTransformerConfig.from_diffusers(dict(fx.TINY, qk_norm="rms_norm"))
    with pytest.raises(ValueError, match="added_kv_proj_dim=7"):
        WanTransformerConfig.from_diffusers(dict(fx.TINY, image_dim=4, added_kv_proj_dim=7))
    with pytest.raises(ValueError, match="unknown WanTransformerConfig keys"):
        WanTransformerConfig.from_diffusers(dict(fx.TINY, window_size=3))


# ---- errors ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".pth", ".pt", ".bin", ".ckpt"])
def test_wan_refuses_pickles_pointing_at_convert(tmp_path, suffix):
    path = tmp_path / f"TurboWan2.1-T2V-1.3B-480P{suffix}"
    path.write_bytes(b"\x80\x04cos\nsystem\n")  # never read: refused by name
    with pytest.raises(
        WanLayoutError, match=r"vidcore convert TurboWan2.1-T2V-1.3B-480P\S* \S*\.safetensors"
    ):
        load_wan_transformer(path)
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"_class_name": "WanModel"}))
    (folder / f"diffusion_pytorch_model{suffix}").write_bytes(b"")
    with pytest.raises(WanLayoutError, match="vidcore convert"):
        load_wan_transformer(folder)


def test_wan_unknown_and_mixed_layouts_name_what_they_found(refs, tmp_path):
    junk = tmp_path / "junk.safetensors"
    save_file({"encoder.conv.weight": torch.zeros(2), "decoder.conv.bias": torch.zeros(2)}, str(junk))
    with pytest.raises(WanLayoutError, match=r"not a Wan transformer: found 2 tensors, e.g. \['decoder.conv"):
        load_wan_transformer(junk)
    sd = fx.original_state_dict(refs["t2v"])
    sd["blocks.0.attn1.to_q.weight"] = sd.pop("blocks.0.self_attn.q.weight")
    mixed = tmp_path / "mixed.safetensors"
    save_file(sd, str(mixed))
    with pytest.raises(
        WanLayoutError, match=r"mixes diffusers names \(e.g. \['blocks.0.attn1.to_q.weight'\]\)"
    ):
        load_wan_transformer(mixed, num_attention_heads=2)
    sd = fx.original_state_dict(refs["t2v"], COMFY_PREFIX)
    sd["blocks.1.ffn.2.bias"] = sd.pop(COMFY_PREFIX + "blocks.1.ffn.2.bias")
    half = tmp_path / "half_prefixed.safetensors"
    save_file(sd, str(half))
    with pytest.raises(WanLayoutError, match="without it .e.g. \\['blocks.1.ffn.2.bias'\\]"):
        load_wan_transformer(half, num_attention_heads=2)


def test_wan_missing_and_unexpected_keys_are_listed_in_file_names(refs, tmp_path):
    sd = fx.original_state_dict(refs["i2v"], COMFY_PREFIX)
    del sd[COMFY_PREFIX + "blocks.1.ffn.2.bias"]
    del sd[COMFY_PREFIX + "blocks.0.cross_attn.norm_k_img.weight"]
    sd[COMFY_PREFIX + "blocks.0.self_attn.extra.weight"] = torch.zeros(3)
    path = tmp_path / "broken.safetensors"
    save_file(sd, str(path))
    with pytest.raises(CheckpointError) as err:
        load_wan_transformer(path, num_attention_heads=2)
    msg = str(err.value)
    assert "(comfy layout, i2v)" in msg
    assert "2 missing keys ['model.diffusion_model.blocks.0.cross_attn.norm_k_img.weight', " in msg
    assert "'model.diffusion_model.blocks.1.ffn.2.bias']" in msg
    assert "1 unexpected keys ['model.diffusion_model.blocks.0.self_attn.extra.weight']" in msg
    del sd[COMFY_PREFIX + "head.head.weight"]
    save_file(sd, str(path))
    with pytest.raises(WanLayoutError, match=r"keys missing: \['model.diffusion_model.head.head.weight'\]"):
        load_wan_transformer(path, num_attention_heads=2)


def test_wan_head_count_and_config_conflicts(saved, tmp_path):
    path, _ = saved["t2v", "original"]
    with pytest.raises(WanLayoutError, match="dim=24 transformer is not stored .* pass num_attention_heads="):
        load_wan_transformer(path)
    folder, _ = saved["t2v", "diffusers"]
    with pytest.raises(WanLayoutError, match="config has num_heads=2, but num_attention_heads=3"):
        load_wan_transformer(folder, num_attention_heads=3)
    assert load_wan_transformer(folder, num_attention_heads=2).config.num_heads == 2
    data = json.loads((folder / "config.json").read_text())
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps(dict(data, ffn_dim=64)))
    (bad / WEIGHTS_NAME).symlink_to(folder / WEIGHTS_NAME)
    with pytest.raises(WanLayoutError, match="config says ffn_dim=64 but the weights have 32"):
        load_wan_transformer(bad)
    experts = tmp_path / "Wan2.2-T2V-A14B"
    (experts / "high_noise_model").mkdir(parents=True)
    (experts / "low_noise_model").mkdir()
    with pytest.raises(WanLayoutError, match="two experts"):
        load_wan_transformer(experts)
    q = tmp_path / "fp8.safetensors"
    save_file({"scaled_fp8": torch.zeros(2), "blocks.0.self_attn.q.scale_weight": torch.ones(1)}, str(q))
    with pytest.raises(WanLayoutError, match="quantized weights"):
        load_wan_transformer(q)


def test_wan_forward_shape_errors(refs):
    models = {}
    for v in ("t2v", "i2v", "flf2v", "ti2v"):
        models[v] = WanTransformer(WanTransformerConfig.from_diffusers(dict(refs[v].config))).eval()
    t2v, i2v = fx.inputs("t2v"), fx.inputs("i2v")
    cases = [
        ("i2v", dict(i2v, clip_fea=None), "needs clip_fea: CLIP image tokens"),
        ("i2v", dict(i2v, y=None), r"needs y: the conditioning latents \[B, 20, F, H, W\]"),
        ("i2v", dict(i2v, x=torch.cat([i2v["x"], i2v["y"]], 1), y=None), "x has 36 channels; .* expects 16"),
        ("flf2v", dict(fx.inputs("flf2v"), clip_fea=i2v["clip_fea"]), "FLF2V expects image_pos_len=10"),
        ("t2v", dict(t2v, y=torch.zeros(2, 4, 3, 8, 8)), "y was given but this t2v Wan transformer"),
        ("t2v", dict(t2v, clip_fea=torch.zeros(2, 5, 8)), "has no image embedder"),
        (
            "t2v",
            dict(t2v, x=torch.zeros(2, 4, 3, 7, 8)),
            "latent height H=7 is not divisible by the patch size 2",
        ),
        (
            "t2v",
            dict(t2v, x=torch.zeros(2, 4, 33, 8, 8)),
            "gives 33 positions; RoPE covers rope_max_seq_len=32",
        ),
        ("t2v", dict(t2v, timestep=torch.zeros(2, 47)), r"expected \[2\] or per-token \[2, 48\]"),
        (
            "ti2v",
            dict(t2v, x=torch.zeros(2, 48, 3, 8, 8), timestep=torch.zeros(3)),
            r"timestep has shape \(3,\)",
        ),
        ("t2v", dict(t2v, context=torch.zeros(2, 513, 16)), "more than text_len=512"),
        ("t2v", dict(t2v, context=torch.zeros(2, 12, 32)), r"expected \[2, L, 16\]"),
    ]
    for variant, kwargs, pattern in cases:
        with pytest.raises(ValueError, match=pattern):
            models[variant](**kwargs)
