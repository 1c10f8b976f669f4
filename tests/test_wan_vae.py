"""Wan 2.1 / 2.2 VAEs: parity with diffusers' AutoencoderKLWan, both checkpoint layouts, streaming, errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from vidcore.io.checkpoint import CheckpointError
from vidcore.models.wan import load_wan_vae as public_load_wan_vae
from vidcore.models.wan.vae import WanVAE
from vidcore.models.wan.vae_config import WAN21_LATENTS_MEAN, WanVAEConfig
from vidcore.models.wan.vae_loading import (
    WanVAELayoutError,
    detect_wan_vae_layout,
    load_wan_vae,
    vae_key_from_original,
    vae_key_to_original,
)

torch.set_num_threads(1)

sys.path.insert(0, str(Path(__file__).parent))
import _wan_vae_fixtures as fx  # noqa: E402  (skips the module when diffusers is not installed)

VERSIONS = ("2.1", "2.2")
LAYOUTS = ("diffusers", "original")


def rel_err(want: torch.Tensor, got: torch.Tensor) -> float:
    return ((want - got).abs().max() / want.abs().max()).item()


@pytest.fixture(scope="module")
def vaes(tmp_path_factory):
    """version -> (diffusers reference, {layout: vidcore VAE loaded from a file of that layout})."""
    root = tmp_path_factory.mktemp("wan_vae")
    out = {}
    for i, version in enumerate(VERSIONS):
        ref = fx.tiny_vae(version, seed=10 + i)
        ref.save_pretrained(root / version / "vae", safe_serialization=True)  # a pipeline folder
        single = fx.save_original(root / f"{version}.safetensors", ref, version)
        out[version] = (ref, {"diffusers": load_wan_vae(root / version), "original": load_wan_vae(single)})
    return out


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("version", VERSIONS)
def test_wan_vae_encode_matches_diffusers(vaes, version, layout):
    ref, ours = vaes[version]
    video = fx.video(version)
    with torch.no_grad():
        dist = ref.encode(video).latent_dist
        mean, logvar = ours[layout].encode_moments(video)
        got = ours[layout].encode(video)
    z = 16 if version == "2.1" else 48
    assert got.shape == (1, z, 3, 2, 2)
    assert rel_err(dist.mode(), got) < 1e-5
    assert rel_err(dist.logvar, logvar) < 1e-5
    assert torch.equal(mean, got)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("version", VERSIONS)
def test_wan_vae_decode_matches_diffusers(vaes, version, layout):
    ref, ours = vaes[version]
    z = 16 if version == "2.1" else 48
    latents = torch.randn(1, z, 3, 2, 2, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = ref.decode(latents).sample
        got = ours[layout].decode(latents)
    size = fx.VIDEO_SIZE[version]
    assert got.shape == (1, 3, 9, size, size)
    assert rel_err(want, got) < 1e-5
    assert got.abs().max() <= 1.0 and (got.abs() == 1.0).any()  # clamped, and the clamp is exercised


# The VAEs of diffusers' Wan pipeline tests (tests/pipelines/wan/test_wan.py, test_wan_22.py TI2V).
PIPELINE_TEST_VAES = {
    "2.1": dict(
        base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
    ),
    "2.2": dict(
        base_dim=3,
        z_dim=48,
        in_channels=12,
        out_channels=12,
        is_residual=True,
        patch_size=2,
        latents_mean=[0.0] * 48,
        latents_std=[1.0] * 48,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        scale_factor_spatial=16,
        scale_factor_temporal=4,
        temperal_downsample=[False, True, True],
    ),
}


@pytest.mark.parametrize("version", VERSIONS)
def test_wan_vae_matches_diffusers_pipeline_test_vaes(version):
    torch.manual_seed(0)
    ref = fx.perturb_(fx.diffusers.AutoencoderKLWan(**PIPELINE_TEST_VAES[version]), 3)
    ours = WanVAE(WanVAEConfig.from_diffusers(dict(ref.config))).eval()
    ours.load_state_dict(ref.state_dict())
    video = fx.video(version, seed=8)
    latents = torch.randn(1, ours.config.z_dim, 3, 2, 2, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        assert rel_err(ref.encode(video).latent_dist.mode(), ours.encode(video)) < 1e-5
        assert rel_err(ref.decode(latents).sample, ours.decode(latents)) < 1e-5


@pytest.mark.parametrize("version", VERSIONS)
def test_wan_vae_float64_is_the_same_function(vaes, version):
    """In float64 rounding vanishes: any remaining difference would be a structural one."""
    ref, ours = vaes[version]
    ref64 = fx.tiny_vae(version, seed=10 + VERSIONS.index(version)).double()
    ours64 = WanVAE(ours["diffusers"].config).double().eval()
    ours64.load_state_dict(ref64.state_dict())
    video = fx.video(version, seed=5).double()
    latents = torch.randn(1, ours64.config.z_dim, 2, 2, 2, dtype=torch.float64)
    with torch.no_grad():
        assert rel_err(ref64.encode(video).latent_dist.mode(), ours64.encode(video)) < 1e-12
        assert rel_err(ref64.decode(latents).sample, ours64.decode(latents)) < 1e-12


@pytest.mark.parametrize("version", VERSIONS)
def test_wan_vae_streaming_is_causal_and_length_consistent(vaes, version):
    """Decoding 17 frames equals the first 17 of decoding 33 (and diffusers' 33); encoding too."""
    ref, ours = vaes[version]
    vae = ours["diffusers"]
    latents = torch.randn(1, vae.config.z_dim, 9, 2, 2, generator=torch.Generator().manual_seed(4))
    video = fx.video(version, frames=33, seed=6)
    with torch.no_grad():
        long, short = vae.decode(latents), vae.decode(latents[:, :, :5])
        want_long = ref.decode(latents).sample
        enc_long, enc_short = vae.encode(video), vae.encode(video[:, :, :17])
    assert long.shape[2] == 33 and short.shape[2] == 17
    assert torch.allclose(long[:, :, :17], short, rtol=0, atol=1e-6)
    assert rel_err(want_long, long) < 1e-5
    assert enc_long.shape[2] == 9 and torch.allclose(enc_long[:, :, :5], enc_short, rtol=0, atol=1e-6)
    assert (long[:, :, 17:] - long[:, :, 16:17]).abs().max() > 1e-3  # later latent frames do matter


def test_wan_vae_normalisation(vaes):
    ref, ours = vaes["2.2"]
    vae = ours["diffusers"]  # statistics come from config.json
    assert vae.config.latents_std == tuple(ref.config.latents_std)
    z = torch.randn(1, 48, 2, 2, 2, generator=torch.Generator().manual_seed(3))
    mean = torch.tensor(ref.config.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(ref.config.latents_std).view(1, -1, 1, 1, 1)
    assert torch.allclose(vae.normalize(z), (z - mean) / std, rtol=1e-6, atol=1e-6)
    assert torch.allclose(vae.denormalize(vae.normalize(z)), z, rtol=1e-6, atol=1e-6)
    # a single file has no config: the released statistics of its version are used
    assert ours["original"].config.latents_mean != vae.config.latents_mean
    assert vaes["2.1"][1]["original"].config.latents_mean == WAN21_LATENTS_MEAN


@pytest.mark.parametrize("version", VERSIONS)
def test_wan_vae_config_detected_from_single_file(vaes, version):
    _, ours = vaes[version]
    folder, single = ours["diffusers"].config, ours["original"].config
    stats = ("latents_mean", "latents_std")
    assert {k: v for k, v in single.to_dict().items() if k not in stats} == {
        k: v for k, v in folder.to_dict().items() if k not in stats
    }
    assert ours["original"].dtype == torch.float32 and ours["original"].device.type == "cpu"


def test_wan_vae_detect_layout_and_prefix(vaes, tmp_path):
    assert public_load_wan_vae is load_wan_vae
    ref, _ = vaes["2.2"]
    # a diffusers-named single file (no config.json), inside a bigger checkpoint under a "vae." prefix
    tensors = {"vae." + k: v.contiguous() for k, v in ref.state_dict().items()}
    tensors["model.diffusion_model.head.weight"] = torch.zeros(2)
    save_file(tensors, str(tmp_path / "bundle.safetensors"))
    vae = load_wan_vae(tmp_path / "bundle.safetensors", dtype=torch.bfloat16)
    assert vae.dtype == torch.bfloat16 and vae.config.z_dim == 48 and vae.config.decoder_base_dim == 6
    latents = torch.randn(1, 48, 2, 2, 2, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        want, got = ref.decode(latents).sample, vae.decode(latents)  # float latents are cast to bf16
    assert got.dtype == torch.bfloat16 and rel_err(want, got.float()) < 0.1  # bf16: a loose sanity bound
    shapes = {k: tuple(v.shape) for k, v in tensors.items()}
    layout = detect_wan_vae_layout(shapes)
    assert (layout.kind, layout.version, layout.prefix) == ("diffusers", "2.2", "vae.")
    assert layout.ignored_keys == ("model.diffusion_model.head.weight",)
    full = {"2.1": WanVAEConfig.wan21(), "2.2": WanVAEConfig.wan22()}
    for version, cfg in full.items():
        with torch.device("meta"):
            keys = WanVAE(cfg).state_dict()
        original = {vae_key_to_original(k, version, 2): tuple(v.shape) for k, v in keys.items()}
        assert {vae_key_from_original(k, version, 2) for k in original} == set(keys)
        assert detect_wan_vae_layout(original).config == cfg  # released sizes read back from shapes
    marker = "decoder.upsamples.0.upsamples.0.residual.2.weight"  # ComfyUI's Wan 2.2 marker (comfy/sd.py)
    assert marker in {vae_key_to_original(k, "2.2", 2) for k in keys}


def test_wan_vae_bad_sizes_list_valid_values(vaes):
    vae21, vae22 = vaes["2.1"][1]["diffusers"], vaes["2.2"][1]["diffusers"]
    with pytest.raises(ValueError, match=r"num_frames=10 must be 1 \+ 4k.*\[9, 13\]"):
        vae21.encode(torch.zeros(1, 3, 10, 16, 16))
    with pytest.raises(ValueError, match=r"height=24 must be a positive multiple of 16.*\[16, 32\]"):
        vae22.encode(torch.zeros(1, 3, 9, 24, 32))
    assert vae21.latent_shape(17, 24, 40) == (16, 5, 3, 5)
    assert vae22.latent_shape(121, 704, 1280) == (48, 31, 44, 80)
    with pytest.raises(ValueError, match=r"width=20 must be a positive multiple of 8.*\[16, 24\]"):
        vae21.latent_shape(9, 16, 20)
    with pytest.raises(ValueError, match=r"latents must be a tensor \[B, 16"):
        vae21.decode(torch.zeros(1, 48, 2, 2, 2))
    with pytest.raises(ValueError, match=r"video must be a tensor \[B, 3"):
        vae22.encode(torch.zeros(1, 12, 9, 32, 32))


def test_wan_vae_refuses_pickles_and_foreign_files(vaes, tmp_path):
    pth = tmp_path / "Wan2.1_VAE.pth"
    pth.write_bytes(b"\x80\x02not read")
    with pytest.raises(WanVAELayoutError, match=r"never unpickles.*vidcore convert .*Wan2.1_VAE.pth"):
        load_wan_vae(pth)
    save_file({"decoder.conv_in.conv.weight": torch.zeros(2, 2, 3, 3, 3)}, str(tmp_path / "ltx.safetensors"))
    with pytest.raises(
        WanVAELayoutError, match=r"not a Wan VAE: found 1 tensors.*decoder.conv_in.conv.weight"
    ):
        load_wan_vae(tmp_path / "ltx.safetensors")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKLLTXVideo"}))
    with pytest.raises(WanVAELayoutError, match="not a diffusers AutoencoderKLWan config"):
        load_wan_vae(tmp_path / "other")
    with pytest.raises(FileNotFoundError):
        load_wan_vae(tmp_path / "absent.safetensors")


def test_wan_vae_lists_missing_and_unexpected_keys(vaes, tmp_path):
    ref, _ = vaes["2.1"]
    tensors = fx.original_state_dict(ref, "2.1")
    del tensors["decoder.upsamples.2.time_conv.bias"]
    tensors["decoder.upsamples.99.residual.0.gamma"] = torch.ones(4, 1, 1, 1)
    save_file(tensors, str(tmp_path / "broken.safetensors"))
    with pytest.raises(CheckpointError) as info:
        load_wan_vae(tmp_path / "broken.safetensors")
    msg = str(info.value)
    assert "missing keys ['decoder.upsamples.2.time_conv.bias']" in msg
    assert "unexpected keys ['decoder.upsamples.99.residual.0.gamma']" in msg


def test_wan_vae_config_validation_and_diffusers_round_trip():
    for cfg in (WanVAEConfig.wan21(), WanVAEConfig.wan22(), fx.TINY_22):
        data = dict(cfg.to_diffusers(), _class_name="AutoencoderKLWan", scale_factor_temporal=None)
        assert WanVAEConfig.from_diffusers(json.loads(json.dumps(data))) == cfg
    assert (WanVAEConfig.wan22().spatial_ratio, WanVAEConfig.wan22().temporal_ratio) == (16, 4)
    with pytest.raises(ValueError, match=r"scale_factor_spatial=8 does not match .* gives 16"):
        WanVAEConfig.wan22().replace(scale_factor_spatial=8)
    with pytest.raises(ValueError, match=r"latents_mean has 16 entries, expected z_dim=48"):
        WanVAEConfig(z_dim=48)
    with pytest.raises(ValueError, match=r"in_channels=3 must be 3 x patch_size\^2 = 12"):
        WanVAEConfig.wan22().replace(in_channels=3)
    with pytest.raises(ValueError, match="attn_scales"):
        WanVAEConfig(attn_scales=(0.5,))
    with pytest.raises(ValueError, match=r"AvgDown3D"):
        fx.TINY_22.replace(base_dim=3, dim_mult=(1, 3, 3, 3))
