"""Tests for the causal 3D VAE: causality, chunking, tiling, shapes, errors, checkpoints, posterior."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from vidcore.io.checkpoint import METADATA_CONFIG, METADATA_KIND, CheckpointError, load_into
from vidcore.models.vae import VAE_KIND, CausalVAE3D, Posterior, VAEConfig, kl
from vidcore.models.vae_blocks import blend_tiles, conv3d, tile_starts

torch.set_num_threads(1)

TINY = VAEConfig(
    spatial_compression=4,
    temporal_compression=4,
    patch_size=2,
    base_channels=8,
    channel_multipliers=(1, 2, 2),
    num_res_blocks=1,
    mid_res_blocks=1,
    latent_channels=4,
)


def make_vae(config: VAEConfig = TINY, seed: int = 0) -> CausalVAE3D:
    """Tiny VAE with every weight random (the default init zeroes res-block convs, hiding bugs)."""
    model = CausalVAE3D(config).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.15 + (1.0 if p.ndim == 1 and p.shape[0] > 0 else 0))
    return model


def make_video(t: int, h: int = 16, w: int = 16, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand((2, 3, t, h, w), generator=g) * 2 - 1


def make_latents(model: CausalVAE3D, t: int, h: int = 4, w: int = 4, seed: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn((2, model.config.latent_channels, t, h, w), generator=g)


@pytest.fixture(scope="module")
def vae() -> CausalVAE3D:
    return make_vae()


@pytest.mark.parametrize(
    "spatial,patch,temporal,t,lt",
    [(4, 2, 4, 1, 1), (4, 2, 4, 5, 2), (4, 2, 4, 17, 5), (8, 4, 4, 17, 5), (2, 2, 2, 5, 3), (8, 2, 1, 3, 3)],
)
def test_shapes_round_trip(spatial: int, patch: int, temporal: int, t: int, lt: int) -> None:
    cfg = TINY.replace(spatial_compression=spatial, patch_size=patch, temporal_compression=temporal)
    model = make_vae(cfg)
    video = make_video(t, 16, 24)
    with torch.no_grad():
        z = model.encode(video)
        assert z.shape == (2, 4, lt, 16 // spatial, 24 // spatial)
        assert model.latent_shape(t, 16, 24) == z.shape[1:]
        out = model.decode(z)
    assert out.shape == video.shape
    assert model.video_shape(*z.shape[2:]) == video.shape[2:]
    assert torch.isfinite(out).all() and out.std() > 0


def test_encoder_is_causal(vae: CausalVAE3D) -> None:
    video = make_video(17)
    with torch.no_grad():
        base = vae.encode(video)
        for cut in (0, 3, 4, 9):  # pixel frames > cut are changed
            changed = video.clone()
            changed[:, :, cut + 1 :] = make_video(16 - cut, seed=7)
            z = vae.encode(changed)
            keep = cut // 4 + 1  # latent frame j sees pixel frames <= 4j
            assert torch.equal(z[:, :, :keep], base[:, :, :keep]), cut
            assert (z[:, :, keep:] - base[:, :, keep:]).abs().amax() > 1e-3  # the change does show later


def test_decoder_is_causal(vae: CausalVAE3D) -> None:
    z = make_latents(vae, 5)
    with torch.no_grad():
        base = vae.decode(z)
        for j in (0, 1, 3):  # latent frames > j are changed
            changed = z.clone()
            changed[:, :, j + 1 :] += 1.0
            out = vae.decode(changed)
            keep = 4 * j + 1  # pixel frames 0..4j come from latent frames 0..j
            assert torch.equal(out[:, :, :keep], base[:, :, :keep]), j
            assert (out[:, :, keep:] - base[:, :, keep:]).abs().amax() > 1e-3


def test_first_frame_is_encoded_alone(vae: CausalVAE3D) -> None:
    video = make_video(9)
    with torch.no_grad():
        assert torch.allclose(vae.encode(video)[:, :, :1], vae.encode(video[:, :, :1]), atol=1e-5, rtol=0)
        z = make_latents(vae, 3)
        assert torch.allclose(vae.decode(z)[:, :, :1], vae.decode(z[:, :, :1]), atol=1e-5, rtol=0)


@pytest.mark.parametrize("chunk", [4, 8, 12])
def test_chunked_encode_matches_whole(vae: CausalVAE3D, chunk: int) -> None:
    video = make_video(17)
    with torch.no_grad():
        whole = vae.posterior(video)
        parts = vae.posterior(video, temporal_chunk=chunk)
    assert (whole.mean - parts.mean).abs().amax() <= 1e-5
    assert (whole.logvar - parts.logvar).abs().amax() <= 1e-5


@pytest.mark.parametrize("chunk", [1, 2, 3])
def test_chunked_decode_matches_whole(vae: CausalVAE3D, chunk: int) -> None:
    z = make_latents(vae, 6)
    with torch.no_grad():
        whole = vae.decode(z)
        parts = vae.decode(z, temporal_chunk=chunk)
    assert parts.shape == whole.shape == (2, 3, 21, 16, 16)
    assert (whole - parts).abs().amax() <= 1e-5


def test_chunking_other_configs() -> None:
    # temporal 2x, temporal kernel 4 (carry of 3 frames > chunk length) and replicate padding.
    cfg = TINY.replace(temporal_compression=2, temporal_kernel=4, spatial_padding="replicate")
    model = make_vae(cfg, seed=3)
    video = make_video(9)
    with torch.no_grad():
        z = model.encode(video)
        assert (model.encode(video, temporal_chunk=2) - z).abs().amax() <= 1e-5
        assert (model.decode(z, temporal_chunk=1) - model.decode(z)).abs().amax() <= 1e-5


def test_callback_per_chunk_and_cancel(vae: CausalVAE3D) -> None:
    calls: list[tuple[int, int]] = []
    with torch.no_grad():
        vae.decode(make_latents(vae, 5), temporal_chunk=1, callback=lambda d, t: calls.append((d, t)))
        assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]  # chunks: latents [0,1], [2], [3], [4]
        calls.clear()
        vae.encode(make_video(17), temporal_chunk=8, callback=lambda d, t: calls.append((d, t)))
        assert calls == [(1, 2), (2, 2)]  # pixel frames [0..8], [9..16]
        calls.clear()
        vae.decode(
            make_latents(vae, 3, 8, 8),
            tile_size=16,
            tile_overlap=8,
            callback=lambda d, t: calls.append((d, t)),
        )
        assert calls == [(i, 9) for i in range(1, 10)]  # tiles start at latent 0, 2, 4 on each axis

        class Cancelled(Exception):
            pass

        def cancel(done: int, total: int) -> None:
            calls.append((done, total))
            raise Cancelled

        calls.clear()
        with pytest.raises(Cancelled):
            vae.decode(make_latents(vae, 5), temporal_chunk=1, callback=cancel)
        assert calls == [(1, 4)]


def test_tiling(vae: CausalVAE3D) -> None:
    z = make_latents(vae, 2, 12, 12)
    video = make_video(5, 48, 48)
    with torch.no_grad():
        whole = vae.decode(z)
        # One tile covering the whole frame is the untiled computation.
        assert torch.equal(vae.decode(z, tile_size=48, tile_overlap=16), whole)
        tiled = vae.decode(z, tile_size=24, tile_overlap=8, temporal_chunk=1)
        assert tiled.shape == whole.shape
        rel = (tiled - whole).abs().mean() / whole.abs().mean()
        assert rel < 0.2, rel  # approximate near seams only
        post = vae.posterior(video)
        tiled_post = vae.posterior(video, tile_size=24, tile_overlap=8)
        assert (tiled_post.mean - post.mean).abs().mean() / post.mean.abs().mean() < 0.2


@pytest.mark.parametrize("padding_mode", ["zeros", "replicate"])
@pytest.mark.parametrize("shape", [(1, 4, 3, 6, 5), (2, 8, 7, 10, 10), (1, 32, 24, 32, 8)])
def test_conv3d_dispatch_matches_nn_conv3d(padding_mode: str, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    conv = torch.nn.Conv3d(shape[1], 5, (3, 3, 3), padding=(0, 1, 1), padding_mode=padding_mode)
    x = torch.randn(shape)
    with torch.no_grad():
        assert torch.allclose(conv3d(conv, x), conv(x), atol=1e-5, rtol=1e-5)


def test_blend_tiles_is_a_partition_of_unity() -> None:
    g = torch.Generator().manual_seed(0)
    full = torch.randn((1, 2, 3, 20, 26), generator=g)
    tiles = [
        (y0, x0, full[..., y0 : y0 + 8, x0 : x0 + 8])
        for y0 in tile_starts(20, 8, 3)
        for x0 in tile_starts(26, 8, 3)
    ]
    assert tile_starts(20, 8, 3) == [0, 5, 10, 12]
    assert torch.allclose(blend_tiles(tiles, (20, 26), 3), full, atol=1e-6)


def test_bad_sizes_raise_with_valid_values(vae: CausalVAE3D) -> None:
    with pytest.raises(ValueError, match=r"num_frames=16 must be 1 \+ 4k .*1, 5, 9, 13, 17, 21"):
        vae.encode(make_video(16))
    with pytest.raises(ValueError, match=r"height=18 must be a positive multiple of 4 .*16, 20"):
        vae.encode(make_video(5, 18, 16))
    with pytest.raises(ValueError, match=r"width=2 must be a positive multiple of 4 .*4"):
        vae.latent_shape(5, 16, 2)
    with pytest.raises(
        ValueError, match=r"temporal_chunk=6 must be a positive multiple of temporal_compression=4"
    ):
        vae.encode(make_video(17), temporal_chunk=6)
    with pytest.raises(ValueError, match=r"tile_size=10 must be a positive multiple"):
        vae.decode(make_latents(vae, 2), tile_size=10)
    with pytest.raises(ValueError, match=r"tile_overlap=16 must be a multiple of 4 in \[0, tile_size=16\)"):
        vae.decode(make_latents(vae, 2), tile_size=16, tile_overlap=16)


def test_bad_inputs_raise(vae: CausalVAE3D) -> None:
    with pytest.raises(ValueError, match=r"must lie in \[-1, 1\], got min=.*max=255"):
        vae.encode(torch.full((1, 3, 5, 16, 16), 255.0))
    with pytest.raises(ValueError, match=r"video shape=\(1, 4, 5, 16, 16\) must be \[B, 3, T, H, W\]"):
        vae.encode(torch.zeros(1, 4, 5, 16, 16))
    with pytest.raises(TypeError, match="video dtype=torch.uint8"):
        vae.encode(torch.zeros(1, 3, 5, 16, 16, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"latents shape=\(1, 3, 2, 4, 4\) must be \[B, 4, "):
        vae.decode(torch.zeros(1, 3, 2, 4, 4))


def test_config_validation_and_round_trip() -> None:
    with pytest.raises(ValueError, match="temporal_compression=3 must be a power of 2"):
        VAEConfig(temporal_compression=3)
    with pytest.raises(ValueError, match="patch_size=8 must not exceed spatial_compression=4"):
        VAEConfig(spatial_compression=4, patch_size=8)
    with pytest.raises(
        ValueError, match=r"channel_multipliers=\(1, 2\) gives 1 downsampling transitions.*need 2"
    ):
        VAEConfig(channel_multipliers=(1, 2))
    with pytest.raises(
        ValueError, match="latent_scale has 3 values, expected one float or latent_channels=8"
    ):
        VAEConfig(latent_scale=(1.0, 2.0, 3.0))
    with pytest.raises(ValueError, match="spatial_padding='reflect' must be one of"):
        VAEConfig(spatial_padding="reflect")
    cfg = TINY.replace(latent_shift=(0.1, -0.2, 0.3, 0.0), latent_scale=0.5)
    assert VAEConfig.from_json(cfg.to_json()) == cfg


def test_kl() -> None:
    zeros = torch.zeros(2, 4, 3, 2, 2)
    assert torch.equal(kl(zeros, zeros), torch.zeros(2))
    # mean 1, logvar 0: 0.5 per element; logvar log(2), mean 0: 0.5 (2 - 1 - log 2) per element.
    assert torch.allclose(kl(zeros + 1, zeros), torch.full((2,), 0.5 * 48))
    expected = 0.5 * (2 - 1 - torch.log(torch.tensor(2.0))) * 48
    assert torch.allclose(Posterior(zeros, zeros + torch.log(torch.tensor(2.0))).kl(), expected.expand(2))


def test_posterior_sampling(vae: CausalVAE3D) -> None:
    video = make_video(5)
    with torch.no_grad():
        post = vae.posterior(video)
        a = vae.encode(video, sample=True, generator=torch.Generator().manual_seed(5))
        b = vae.encode(video, sample=True, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    assert not torch.equal(a, post.mean)
    assert post.logvar.amin() >= -30 and post.logvar.amax() <= 20
    expected = post.mean + torch.exp(0.5 * post.logvar) * torch.randn(
        post.mean.shape, generator=torch.Generator().manual_seed(5)
    )
    assert torch.allclose(a, expected, atol=1e-6)


def test_normalisation_round_trip() -> None:
    cfg = TINY.replace(latent_shift=(0.5, -1.0, 0.25, 2.0), latent_scale=(2.0, 0.5, 1.5, 0.25))
    model = make_vae(cfg)
    plain = make_vae(TINY)
    video = make_video(5)
    with torch.no_grad():
        z = model.encode(video)
        raw = plain.encode(video)  # same weights, identity normalisation
        shift = torch.tensor(cfg.latent_shift).view(1, 4, 1, 1, 1)
        scale = torch.tensor(cfg.latent_scale).view(1, 4, 1, 1, 1)
        assert torch.allclose(z, (raw - shift) * scale, atol=1e-6)
        assert torch.allclose(model.denormalize(model.normalize(raw)), raw, atol=1e-6)
        assert torch.allclose(model.decode(z), plain.decode(raw), atol=1e-5)


def test_save_load_bit_identical(tmp_path, vae: CausalVAE3D) -> None:
    path = vae.save(tmp_path / "vae.safetensors")
    loaded = CausalVAE3D.from_checkpoint(path)
    assert loaded.config == vae.config and not loaded.training
    ref, got = vae.state_dict(), loaded.state_dict()
    assert ref.keys() == got.keys() and all(torch.equal(ref[k], got[k]) for k in ref)
    z = make_latents(vae, 2)
    with torch.no_grad():
        assert torch.equal(loaded.decode(z), vae.decode(z))
    with pytest.raises(FileExistsError):
        vae.save(path)
    half = CausalVAE3D.from_checkpoint(path, dtype=torch.float64)
    assert half.dtype == torch.float64


def test_load_missing_key_raises(tmp_path, vae: CausalVAE3D) -> None:
    state = {k: v.contiguous() for k, v in vae.state_dict().items()}
    del state["decoder.conv_out.conv.bias"]
    path = tmp_path / "broken.safetensors"
    save_file(state, str(path), metadata={METADATA_CONFIG: vae.config.to_json(), METADATA_KIND: VAE_KIND})
    with pytest.raises(CheckpointError, match=r"missing keys \['decoder.conv_out.conv.bias'\]"):
        CausalVAE3D.from_checkpoint(path)


def test_meta_build_then_load(vae: CausalVAE3D) -> None:
    with torch.device("meta"):
        model = CausalVAE3D(TINY)
    assert all(p.is_meta for p in model.parameters())
    load_into(model, vae.state_dict())
    z = make_latents(vae, 2)
    with torch.no_grad():
        assert torch.equal(model.eval().decode(z), vae.decode(z))


def test_initialize_weights_and_training_step() -> None:
    model = CausalVAE3D(TINY)
    for name, p in model.named_parameters():
        if name.endswith("conv2.conv.weight") or name.endswith(".bias"):
            assert torch.count_nonzero(p) == 0, name
    up = model.decoder.ups[0].proj.conv.weight  # ICNR: the 8 sub-positions share weights
    assert torch.equal(up[0::8], up[1::8]) and up.abs().sum() > 0
    video = make_video(5)
    recon, post = model(video, generator=torch.Generator().manual_seed(0))
    loss = (recon - video).abs().mean() + 1e-3 * post.kl().mean()
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.encoder.conv_in.conv.weight.grad.abs().sum() > 0
