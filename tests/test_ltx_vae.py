"""LTX-Video causal VAE (0.9.0 / 0.9.1 / 0.9.5 layouts): parity with diffusers' AutoencoderKLLTXVideo."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from vidcore.models.ltx.chunked import chunk_starts
from vidcore.models.ltx.config import LTXVAEConfig, ltx_vae_config
from vidcore.models.ltx.loading import load_ltx_vae
from vidcore.models.ltx.vae import LTXVideoVAE

torch.set_num_threads(1)

sys.path.insert(0, str(Path(__file__).parent))
import _ltx_fixtures as fx  # noqa: E402  (skips the module when diffusers is not installed)

VERSIONS = ("0.9.0", "0.9.1", "0.9.5")


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / a.abs().max()).item()


@pytest.fixture(scope="module")
def vaes(tmp_path_factory):
    """version -> (diffusers reference, {layout: vidcore VAE loaded from that layout})."""
    root = tmp_path_factory.mktemp("ltx_vae")
    out = {}
    for i, version in enumerate(VERSIONS):
        ref = fx.tiny_vae(version, seed=10 + i)
        fx.save_diffusers(root / version, vae=ref)
        fx.save_original(root / f"{version}.safetensors", vae=ref, vae_layout=version)
        out[version] = (
            ref,
            {
                "diffusers": load_ltx_vae(root / version),
                "original": load_ltx_vae(root / f"{version}.safetensors"),
            },
        )
    return out


def _video(seed: int, frames: int = 9) -> torch.Tensor:
    return torch.rand(1, 3, frames, 64, 64, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize("layout", ["diffusers", "original"])
@pytest.mark.parametrize("version", VERSIONS)
def test_ltx_vae_encode_matches_diffusers(vaes, version, layout):
    ref, ours = vaes[version]
    video = _video(1)
    with torch.no_grad():
        dist = ref.encode(video).latent_dist
        mean, logvar = ours[layout].encode_moments(video)
        sample = ours[layout].encode(video, sample=True, generator=torch.Generator().manual_seed(7))
        want_sample = dist.sample(generator=torch.Generator().manual_seed(7))
    assert mean.shape == (1, 8, 2, 2, 2)
    assert rel_err(dist.mean, mean) < 1e-5
    assert rel_err(dist.logvar, logvar) < 1e-5
    assert rel_err(want_sample, sample) < 1e-5
    assert torch.equal(ours[layout].encode(video), mean)


@pytest.mark.parametrize("layout", ["diffusers", "original"])
@pytest.mark.parametrize("version", VERSIONS)
def test_ltx_vae_decode_matches_diffusers(vaes, version, layout):
    ref, ours = vaes[version]
    z = torch.randn(1, 8, 2, 2, 2, generator=torch.Generator().manual_seed(2))
    conditioned = ref.config.timestep_conditioning
    t = torch.tensor([0.05]) if conditioned else None
    with torch.no_grad():
        torch.manual_seed(99)  # diffusers' noise-injecting resnets draw from the global RNG
        want = ref.decode(z, t).sample
        got = ours[layout].decode(z, t, generator=torch.Generator().manual_seed(99))
    assert got.shape == (1, 3, 9, 64, 64)
    assert rel_err(want, got) < 1e-5
    if conditioned:
        with torch.no_grad():
            other_t = ours[layout].decode(z, 0.5, generator=torch.Generator().manual_seed(99))
        assert (other_t - got).abs().max() > 1e-3  # the decode timestep matters


def test_ltx_vae_091_noise_injection_uses_the_generator(vaes):
    _, ours = vaes["0.9.1"]
    vae = ours["diffusers"]
    z = torch.randn(1, 8, 2, 2, 2, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        a = vae.decode(z, 0.05, generator=torch.Generator().manual_seed(1))
        b = vae.decode(z, 0.05, generator=torch.Generator().manual_seed(1))
        c = vae.decode(z, 0.05, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    assert (a - c).abs().max() > 1e-4


def test_ltx_vae_normalisation_uses_shipped_statistics(vaes):
    ref, ours = vaes["0.9.1"]
    vae = ours["original"]  # statistics came from per_channel_statistics.* keys
    assert torch.equal(vae.latents_mean, ref.latents_mean) and torch.equal(vae.latents_std, ref.latents_std)
    z = torch.randn(1, 8, 2, 2, 2)
    shape = (1, -1, 1, 1, 1)
    want = (z - ref.latents_mean.view(shape)) * ref.config.scaling_factor / ref.latents_std.view(shape)
    assert torch.allclose(vae.normalize_latents(z), want, rtol=1e-6, atol=1e-6)
    assert torch.allclose(vae.denormalize_latents(vae.normalize_latents(z)), z, rtol=1e-5, atol=1e-6)


def test_ltx_vae_encoder_is_causal(vaes):
    _, ours = vaes["0.9.5"]
    vae = ours["diffusers"]
    video = _video(4, frames=9)
    changed = video.clone()
    changed[:, :, 5:] = -changed[:, :, 5:]
    with torch.no_grad():
        a, b = vae.encode(video), vae.encode(changed)
    assert torch.equal(a[:, :, 0], b[:, :, 0])
    assert (a[:, :, 1] - b[:, :, 1]).abs().max() > 1e-4


def test_ltx_vae_bad_sizes_list_valid_values(vaes):
    vae = vaes["0.9.0"][1]["diffusers"]
    with pytest.raises(ValueError, match=r"num_frames=10 must be 1 \+ 8k.*\[9, 17\]"):
        vae.encode(torch.zeros(1, 3, 10, 64, 64))
    with pytest.raises(ValueError, match=r"height=48 must be a positive multiple of 32.*\[32, 64\]"):
        vae.encode(torch.zeros(1, 3, 9, 48, 64))
    with pytest.raises(ValueError, match="latents must be"):
        vae.decode(torch.zeros(1, 4, 2, 2, 2))


def test_ltx_vae_chunked_decode(vaes):
    _, ours = vaes["0.9.1"]
    vae = ours["diffusers"]
    z = torch.randn(1, 8, 6, 2, 2, generator=torch.Generator().manual_seed(8))
    assert chunk_starts(6, 3, 1) == [0, 2, 3]
    t = torch.tensor([0.05])
    with torch.no_grad():
        chunked = vae.decode(
            z, t, generator=torch.Generator().manual_seed(0), temporal_chunk=3, temporal_overlap=1
        )
        whole = vae.decode(z, t, generator=torch.Generator().manual_seed(0), temporal_chunk=6)
        full = vae.decode(z, t, generator=torch.Generator().manual_seed(0))
        # every chunk replays the same noise draws
        parts = [vae.decoder(z[:, :, s : s + 3], t, torch.Generator().manual_seed(0)) for s in (0, 2, 3)]
    assert chunked.shape == full.shape == (1, 3, 41, 64, 64)
    assert torch.equal(whole, full)
    # pixel frames: chunk 0 -> 0..16, chunk 1 -> 16..32, chunk 2 -> 24..40; shared frames blend linearly
    want = torch.full_like(full, float("nan"))  # every frame must be written below
    want[:, :, :16] = parts[0][:, :, :16]
    want[:, :, 16] = 0.5 * parts[0][:, :, 16] + 0.5 * parts[1][:, :, 0]
    want[:, :, 17:24] = parts[1][:, :, 1:8]
    ramp = (torch.arange(1, 10) / 10).view(1, 1, -1, 1, 1)
    want[:, :, 24:33] = parts[1][:, :, 8:17] * (1 - ramp) + parts[2][:, :, :9] * ramp
    want[:, :, 33:] = parts[2][:, :, 9:]
    assert rel_err(want, chunked) < 1e-6
    with pytest.raises(ValueError, match="temporal_overlap"):
        vae.decode(z, t, temporal_chunk=3, temporal_overlap=3)


def test_ltx_vae_release_configs():
    for version in ("0.9.0", "0.9.1", "0.9.5"):
        cfg = ltx_vae_config(version)
        assert (cfg.spatial_ratio, cfg.temporal_ratio) == (32, 8), version
    cfg = ltx_vae_config("0.9.5")
    assert cfg.block_out_channels[-1] == 2048 and cfg.timestep_conditioning
    with torch.device("meta"):
        vae = LTXVideoVAE(ltx_vae_config("0.9.1"))
    assert vae.decoder.mid_block.resnets[0].conv1.conv.weight.shape == (1024, 1024, 3, 3, 3)
    assert (
        len(vae.decoder.mid_block.resnets) == 8
        and vae.decoder.up_blocks[0].resnets[0].per_channel_scale1 is not None
    )
    with pytest.raises(ValueError, match="spatial_compression_ratio=64"):
        LTXVAEConfig(spatial_compression_ratio=64)
