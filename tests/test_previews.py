"""Sampling previews: the latent -> RGB projection of every family, the tiny VAE's fitted factors, contact
sheets, ``vidcore generate --preview-every`` and the sampler node's previews through the host hook."""

import sys
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

from nodes import NODE_CLASS_MAPPINGS, _host
from vidcore import preview
from vidcore.models.vae import CausalVAE3D
from vidcore.pipelines.builtin import builtin_models
from vidcore.pipelines.ltx import LTXPipeline
from vidcore.pipelines.wan import WanPipeline

from ._cli import ROOT, generate_cmd, run
from ._node_fixtures import make_models_root

torch.set_num_threads(1)

TINY_VAE_FILE = builtin_models()["tiny"] / "vae.safetensors"
FAMILY_FACTORS = {
    "ltx": preview.LTX_VIDEO,
    "wan21": preview.WAN21,
    "wan22": preview.WAN22,
    "tiny": preview.TINY_VAE,
}


@pytest.mark.parametrize("name", sorted(FAMILY_FACTORS))
def test_projection_shape_range_and_values(name):
    factors = FAMILY_FACTORS[name]
    c = factors.channels
    g = torch.Generator().manual_seed(0)
    frames = factors.project(torch.randn(2, c, 3, 5, 6, generator=g) * 4)
    assert frames.shape == (3, 5, 6, 3) and frames.dtype == torch.float32
    assert float(frames.min()) >= 0.0 and float(frames.max()) <= 1.0
    # one channel set to 0.5 everywhere: each pixel is (0.5 * row + bias + 1) / 2 (ComfyUI's -1..1 -> 0..1)
    k = c // 2
    z = torch.zeros(c, 2, 4, 4)
    z[k] = 0.5
    want = (0.5 * torch.tensor(factors.rows[k]) + torch.tensor(factors.bias) + 1) / 2
    assert torch.allclose(factors.project(z), want.clamp(0, 1).expand(2, 4, 4, 3), atol=1e-6)
    with pytest.raises(ValueError, match=f"take {c}"):
        factors.project(torch.zeros(1, c + 1, 1, 2, 2))


def test_published_factors_have_the_channel_counts_of_their_formats():
    assert (preview.LTX_VIDEO.channels, preview.WAN21.channels, preview.WAN22.channels) == (128, 16, 48)
    # spot values of Comfy-Org/ComfyUI comfy/latent_formats.py (LTXV row 0, Wan21 row 0, biases)
    assert preview.LTX_VIDEO.rows[0] == (0.0112, -0.0006, -0.01)
    assert preview.WAN21.rows[0] == (-0.1299, -0.1692, 0.2932)
    assert preview.WAN21.bias == (-0.1835, -0.0868, -0.336)
    assert preview.WAN22.bias == (0.0317, -0.0878, -0.1388)


def test_families_pick_their_factors():
    assert LTXPipeline.latent_rgb(SimpleNamespace()) is preview.LTX_VIDEO
    assert WanPipeline.latent_rgb(SimpleNamespace(latent_channels=16)) is preview.WAN21
    assert WanPipeline.latent_rgb(SimpleNamespace(latent_channels=48)) is preview.WAN22
    with pytest.raises(NotImplementedError, match="32-channel"):
        WanPipeline.latent_rgb(SimpleNamespace(latent_channels=32))


def test_tiny_vae_factors_refit_to_the_stored_ones():
    vae = CausalVAE3D.from_checkpoint(TINY_VAE_FILE)
    assert preview.config_sha256(vae) == preview.TINY_VAE_CONFIG_SHA256
    refit = preview.fit_for_vae(vae)
    got = torch.tensor([*refit.rows, refit.bias])
    stored = torch.tensor([*preview.TINY_VAE.rows, preview.TINY_VAE.bias])
    assert torch.allclose(got, stored, atol=2e-4), (got - stored).abs().max()
    assert preview.latent_rgb_for_vae(vae) is preview.TINY_VAE  # recognised, not refitted


def test_tiny_vae_preview_resembles_the_video():
    """On training clips (not the fitting ones) the projection is much closer to the video (averaged over
    each latent's pixels) than the best constant colour is."""
    from vidcore.train.data import ShapeVideoDataset

    vae = CausalVAE3D.from_checkpoint(TINY_VAE_FILE)
    video = ShapeVideoDataset(seed=1, split="train").items(0, 3)["video"]
    with torch.no_grad():
        latents = vae.encode(video)
    target = preview.pooled_targets(video, latents.shape[2], 4, 4)  # -1..1
    errors, baselines = [], []
    for b in range(3):
        got = preview.TINY_VAE.project(latents[b]) * 2 - 1  # [T, H, W, 3]
        want = target[b].permute(1, 2, 3, 0)
        errors.append(float((got - want).abs().mean()))
        baselines.append(float((want - want.mean((0, 1, 2))).abs().mean()))
    assert sum(errors) < 0.7 * sum(baselines), (errors, baselines)


def test_other_vidcore_vaes_are_fitted_once(tmp_path):
    root = make_models_root(tmp_path)
    vae = CausalVAE3D.from_checkpoint(root / "vidcore" / "tiny" / "vae.safetensors")
    first = preview.latent_rgb_for_vae(vae)
    assert first.channels == 4 and first is not preview.TINY_VAE
    assert preview.latent_rgb_for_vae(vae) is first


def test_contact_sheet_layout():
    colours = torch.linspace(0, 1, 5)
    frames = colours[:, None, None, None].expand(5, 4, 6, 3).clone()
    sheet = preview.contact_sheet(frames, gap=1)
    assert sheet.shape == (2 * 4 + 1, 3 * 6 + 2, 3) and sheet.dtype == torch.uint8  # 3 columns, 2 rows
    for k in range(5):
        y, x = (k // 3) * 5, (k % 3) * 7
        assert int(sheet[y, x, 0]) == round(float(colours[k]) * 255)
    assert int(sheet[5:, 14:].max()) == 0  # the empty sixth cell stays black
    picks = preview.contact_sheet(torch.rand(40, 2, 2, 3), max_frames=4)
    assert picks.shape == (2 * 2 + 1, 2 * 2 + 1, 3)
    with pytest.raises(ValueError, match="T, H, W, 3"):
        preview.contact_sheet(torch.rand(4, 2, 2))


def test_cli_writes_the_contact_sheet_every_n_steps(tmp_path):
    out = tmp_path / "clip.gif"
    res = run(
        generate_cmd(
            "a red circle moving right", out, "--steps", "2", "--frames", "5", "--height", "32", "--width",
            "32", "--preview-every", "1",
        )
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    sheet = Image.open(tmp_path / "clip.gif.preview.png")
    # 5 frames -> 2 latent frames of 8 x 8, side by side, enlarged by a whole factor to >= 256 px
    assert sheet.format == "PNG" and sheet.size == (17 * 32, 8 * 32)
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary leftovers
    # an existing preview file is refused before any work unless --overwrite; flags are checked
    again = run(
        generate_cmd(
            "x", tmp_path / "b.gif", "--preview-every", "1", "--preview-file", str(out) + ".preview.png"
        )
    )
    assert again.returncode != 0 and "--overwrite" in again.stderr and not (tmp_path / "b.gif").exists()
    bad = run(generate_cmd("x", tmp_path / "c.gif", "--preview-every", "0"))
    assert bad.returncode != 0 and "--preview-every 0 must be >= 1" in bad.stderr
    lone = run(generate_cmd("x", tmp_path / "d.gif", "--preview-file", str(tmp_path / "p.png")))
    assert lone.returncode != 0 and "--preview-file needs --preview-every" in lone.stderr


def test_preview_every_writes_on_multiples_and_the_last_step(tmp_path):
    calls = []
    cb = preview.PreviewEvery(3, tmp_path / "p.png", lambda z: calls.append(z) or torch.rand(2, 4, 4, 3))
    for i in range(7):
        cb({"i": i, "total": 7, "denoised": torch.zeros(1)})
    assert cb.written == 3 and len(calls) == 3  # steps 3, 6 and 7
    assert (tmp_path / "p.png").is_file()


@pytest.fixture
def sampler_inputs(tmp_path):
    root = make_models_root(tmp_path / "models")
    _host.set_folders(models={k: [root / k] for k in ("vidcore", "text_encoders")})
    try:
        model, vae, te = NODE_CLASS_MAPPINGS["VidCoreLoadModel"]().load("tiny", "fp32")
        pos = NODE_CLASS_MAPPINGS["VidCoreTextEncode"]().encode(te, "a red circle")[0]
        (lat,) = NODE_CLASS_MAPPINGS["VidCoreEmptyVideoLatent"]().generate(model, vae, 16, 16, 5, 1)
        yield model, pos, lat
    finally:
        _host.set_folders(models={})
        _host.set_preview_hook(None)


def _run_sampler(model, pos, lat, steps=2):
    return NODE_CLASS_MAPPINGS["VidCoreSampler"]().sample(
        model, pos, pos, lat, seed=1, steps=steps, guidance=1.0, schedule="flow", shift=1.0, sampler="euler",
        denoise=1.0, guidance_rescale=0.0,
    )[0]["samples"]  # fmt: skip


def test_sampler_node_sends_previews_through_the_host(sampler_inputs):
    model, pos, lat = sampler_inputs
    plain = _run_sampler(model, pos, lat)
    got = []
    _host.set_preview_hook(lambda value, total, image: got.append((value, total, image)))
    with_previews = _run_sampler(model, pos, lat)
    assert torch.equal(plain, with_previews)  # previews never change the result
    assert [(v, t) for v, t, _ in got] == [(1, 2), (2, 2)]
    image = got[-1][2]
    assert isinstance(image, Image.Image) and image.mode == "RGB"
    # the sheet of the last x0 prediction is the projection of the final latents (x0 at sigma 0 = result)
    want = preview.to_pil(preview.contact_sheet(model.latent_preview(plain)), min_size=_host.PREVIEW_MIN_SIZE)
    assert image.size == want.size and image.tobytes() == want.tobytes()


def test_a_failing_preview_is_turned_off_not_fatal(sampler_inputs, caplog):
    model, pos, lat = sampler_inputs
    got = []
    _host.set_preview_hook(lambda *a: got.append(a))
    bar = _host.Progress(3)

    def broken(latents):
        raise RuntimeError("no factors")

    cb = bar.sampler_callback(preview=broken)
    for i in range(3):
        cb({"i": i, "total": 3, "denoised": torch.zeros(1, 4, 2, 4, 4)})
    assert bar.value == 3 and got == [] and "previews turned off" in caplog.text
    _host.set_preview_hook(None)
    assert not _host.previews_enabled()


def test_cli_help_mentions_the_preview_flags():
    res = run([sys.executable, "-m", "vidcore.cli", "generate", "--help"])
    assert "--preview-every" in res.stdout and "--preview-file" in res.stdout
    assert ROOT.is_dir()
