"""LTX-Video checkpoint loading: layout/version detection, key maps vs diffusers, dtypes, errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from vidcore.io.checkpoint import CheckpointError
from vidcore.models.ltx.config import ltx_transformer_13b_config
from vidcore.models.ltx.keymaps import vae_key_from_original, vae_key_to_original
from vidcore.models.ltx.loading import (
    LTXLayoutError,
    detect_ltx_layout,
    load_ltx,
    load_ltx_transformer,
    load_ltx_vae,
    read_shapes,
)

torch.set_num_threads(1)

sys.path.insert(0, str(Path(__file__).parent))
import _ltx_fixtures as fx  # noqa: E402  (skips the module when diffusers is not installed)

single_file_utils = pytest.importorskip("diffusers.loaders.single_file_utils")
HEADS_META = {"config": json.dumps({"transformer": {"num_attention_heads": 2}})}


@pytest.fixture(scope="module")
def refs():
    return fx.tiny_transformer(seed=1), {v: fx.tiny_vae(v, seed=20 + i) for i, v in enumerate(fx.VAE_CONFIGS)}


@pytest.mark.parametrize("version", ["0.9.0", "0.9.1", "0.9.5"])
def test_ltx_original_keys_convert_like_diffusers(refs, version):
    tr, vaes = refs
    vae = vaes[version]
    sd = fx.original_state_dict(tr, vae, version)
    if version == "0.9.5":
        # diffusers picks its 0.9.5 table from the real encoder width; fake that one shape.
        sd["vae.encoder.conv_out.conv.weight"] = torch.zeros(9, 2048, 1, 1, 1)
    want_vae = set(single_file_utils.convert_ltx_vae_checkpoint_to_diffusers(dict(sd)))
    want_tr = set(single_file_utils.convert_ltx_transformer_checkpoint_to_diffusers(dict(sd)))
    assert want_vae == set(vae.state_dict())
    assert want_tr == set(tr.state_dict())
    ours = {vae_key_from_original(k, version) for k in sd if k.startswith("vae.")} - {None}
    assert ours == want_vae
    # and the map is a bijection on model keys
    assert all(vae_key_from_original(vae_key_to_original(k, version), version) == k for k in vae.state_dict())


@pytest.mark.parametrize("version", ["0.9.0", "0.9.1", "0.9.5"])
def test_ltx_detects_single_file_and_diffusers_layouts(refs, tmp_path, version):
    tr, vaes = refs
    path = fx.save_original(tmp_path / "ltx.safetensors", tr, vaes[version], version, metadata=HEADS_META)
    models = load_ltx(path)
    layout = models.layout
    assert (layout.kind, layout.version, layout.vae_layout) == ("original", version, version)
    assert layout.transformer_prefix == "model.diffusion_model." and layout.vae_prefix == "vae."
    assert sorted(layout.ignored_keys) == [
        "vae.per_channel_statistics.channel",
        "vae.per_channel_statistics.mean-of-stds",
    ]
    assert models.transformer.config.num_attention_heads == 2 and models.transformer.config.num_layers == 2
    ref_sd = vaes[version].state_dict()
    for k, v in models.vae.state_dict().items():
        assert torch.equal(v, ref_sd[k]), k
    folder = fx.save_diffusers(tmp_path / "pipe", tr, vaes[version])
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "LTXPipeline"}))
    both = load_ltx(folder)
    assert both.layout.kind == "diffusers" and both.layout.version == version
    assert both.vae.config == models.vae.config.replace(
        spatial_compression_ratio=both.vae.config.spatial_compression_ratio,
        temporal_compression_ratio=both.vae.config.temporal_compression_ratio,
    )
    assert load_ltx(folder / "vae").transformer is None  # a single component folder


def test_ltx_13b_detected_from_shapes_only():
    cfg = ltx_transformer_13b_config()
    d = cfg.inner_dim
    shapes = {
        "model.diffusion_model.patchify_proj.weight": (d, 128),
        "model.diffusion_model.proj_out.weight": (128, d),
        "model.diffusion_model.caption_projection.linear_1.weight": (d, 4096),
        "model.diffusion_model.transformer_blocks.0.attn1.to_q.bias": (d,),
        "model.diffusion_model.transformer_blocks.0.attn1.to_out.0.bias": (d,),
        "model.diffusion_model.transformer_blocks.0.attn2.to_k.weight": (d, 4096),
        "model.diffusion_model.transformer_blocks.47.scale_shift_table": (6, d),
    }
    layout = detect_ltx_layout(shapes)
    assert layout.version == "0.9.7" and layout.vae_config is None
    assert layout.transformer_config == cfg


def test_ltx_transformer_dtypes_and_heads_override(refs, tmp_path):
    tr, _ = refs
    path = fx.save_original(tmp_path / "tr.safetensors", transformer=tr)  # no metadata: heads unknown
    assert load_ltx_transformer(path).config.num_attention_heads == 32  # released default
    for dtype in (torch.float16, torch.bfloat16):
        model = load_ltx_transformer(path, dtype=dtype, num_attention_heads=2)
        assert {p.dtype for p in model.parameters()} == {dtype}
        assert torch.equal(model.proj_in.weight, tr.proj_in.weight.to(dtype))
        assert not any(p.is_meta for p in model.parameters())
        x = torch.randn(1, 4, 8, dtype=dtype)
        with torch.no_grad():
            out = model(
                x, torch.randn(1, 3, 16, dtype=dtype), torch.tensor([10.0]), torch.ones(1, 3), 1, 2, 2
            )
        assert out.dtype == dtype and torch.isfinite(out).all()


def test_ltx_unknown_layout_and_missing_keys(refs, tmp_path):
    tr, vaes = refs
    junk = tmp_path / "junk.safetensors"
    save_file({"foo.weight": torch.zeros(2), "bar.bias": torch.zeros(1)}, str(junk))
    with pytest.raises(LTXLayoutError, match=r"not an LTX-Video checkpoint: found 2 tensors.*bar\.bias"):
        load_ltx(junk)
    sd = fx.original_state_dict(tr, vaes["0.9.1"], "0.9.1")
    del sd["model.diffusion_model.transformer_blocks.1.ff.net.2.weight"]
    del sd["vae.decoder.up_blocks.2.res_blocks.0.conv2.conv.bias"]
    broken = tmp_path / "broken.safetensors"
    save_file(sd, str(broken), metadata=HEADS_META)
    with pytest.raises(
        CheckpointError, match=r"missing keys \['transformer_blocks\.1\.ff\.net\.2\.weight'\]"
    ):
        load_ltx(broken, components=("transformer",))
    with pytest.raises(
        CheckpointError, match=r"missing keys \['decoder\.up_blocks\.0\.resnets\.0\.conv2\.conv\.bias'\]"
    ):
        load_ltx(broken, components=("vae",))
    shapes, _ = read_shapes(broken)
    assert "vae.decoder.last_scale_shift_table" in shapes


def test_ltx_causal_video_autoencoder_config_reads_structure_from_weights(refs, tmp_path):
    _, vaes = refs
    ref = vaes["0.9.5"]
    folder = fx.save_diffusers(tmp_path / "p", vae=ref) / "vae"
    (folder / "config.json").write_text(
        json.dumps({"_class_name": "CausalVideoAutoencoder", "blocks": [], "latent_log_var": "uniform"})
    )
    vae = load_ltx(folder.parent).vae
    assert vae.config.block_out_channels == (8, 16, 32, 64, 64) and vae.config.timestep_conditioning
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps({"_class_name": "UNet2DConditionModel"}))
    with pytest.raises(LTXLayoutError, match="UNet2DConditionModel"):
        load_ltx(bad)


def test_ltx_vae_alone_from_a_single_file_ignores_the_transformer(refs, tmp_path):
    _, vaes = refs
    ref = vaes["0.9.1"]
    # A transformer of width 48 = 3 heads x 16: neither the default 32 heads nor any metadata fits it.
    torch.manual_seed(5)
    odd = fx.diffusers.LTXVideoTransformer3DModel(
        **{**fx.TINY_TRANSFORMER, "num_attention_heads": 3, "cross_attention_dim": 48}
    )
    path = fx.save_original(tmp_path / "odd.safetensors", odd, ref, "0.9.1")
    with pytest.raises(LTXLayoutError, match="width 48 is not divisible by num_attention_heads=32"):
        load_ltx_transformer(path)
    assert load_ltx_transformer(path, num_attention_heads=3).config.attention_head_dim == 16
    # A truncated transformer and metadata that is not JSON: only the transformer would read either.
    sd = fx.original_state_dict(fx.tiny_transformer(), ref, "0.9.1")
    del sd["model.diffusion_model.caption_projection.linear_1.weight"]
    partial = tmp_path / "partial.safetensors"
    save_file(sd, str(partial), metadata={"config": "{not json"})
    with pytest.raises(LTXLayoutError, match="transformer keys missing"):
        load_ltx(partial)
    vae_only = fx.save_original(tmp_path / "vae.safetensors", vae=ref, vae_layout="0.9.1")
    want = ref.state_dict()
    for file in (path, partial, vae_only):
        vae = load_ltx_vae(file)
        assert vae.state_dict().keys() == want.keys()
        assert all(torch.equal(v, want[k]) for k, v in vae.state_dict().items()), file.name
    layout = detect_ltx_layout(read_shapes(partial)[0], components=("vae",))
    assert layout.transformer_config is None and layout.transformer_prefix == "model.diffusion_model."
    assert (layout.version, layout.vae_config) == ("0.9.1", vae.config)


def test_ltx_folder_head_count_comes_from_its_config(refs, tmp_path):
    tr, _ = refs
    folder = fx.save_diffusers(tmp_path / "pipe", transformer=tr)
    assert load_ltx_transformer(folder).config.num_attention_heads == 2
    assert load_ltx_transformer(folder / "transformer", num_attention_heads=2).config.num_attention_heads == 2
    with pytest.raises(
        LTXLayoutError, match="config.json has num_attention_heads=2, but num_attention_heads=4 was asked"
    ):
        load_ltx_transformer(folder, num_attention_heads=4)
