"""The shipped built-in model loads offline and generates; the main-job CLI works end to end."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vidcore.pipeline import WEIGHTS_DIR, builtin_models, load_pipeline

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pipe():
    return load_pipeline("tiny")


def test_tiny_is_shipped_small_and_documented():
    assert "tiny" in builtin_models()
    folder = WEIGHTS_DIR / "tiny"
    sizes = {p.name: p.stat().st_size for p in folder.iterdir()}
    assert {"dit.safetensors", "vae.safetensors", "pipeline.json", "MODEL_CARD.md"} <= set(sizes)
    assert sum(sizes.values()) <= 30 * 2**20  # the 30 MB budget
    cfg = json.loads((folder / "pipeline.json").read_text())
    assert (cfg["num_frames"], cfg["height"], cfg["width"]) == (17, 64, 64)


def test_tiny_generates_deterministic_frames(pipe):
    a = pipe.generate("a red circle moving right", steps=2, seed=5)
    assert a.shape == (17, 64, 64, 3) and 0 <= float(a.min()) and float(a.max()) <= 1
    assert torch.equal(a, pipe.generate("a red circle moving right", steps=2, seed=5))
    assert not torch.equal(a, pipe.generate("a red circle moving right", steps=2, seed=6))
    pyramid = pipe.generate("a red circle moving right", steps=3, schedule="pyramidal")
    assert pyramid.shape == (17, 64, 64, 3)


def test_tiny_bad_sizes_list_valid_values(pipe):
    with pytest.raises(ValueError, match="num_frames=16 must be 1 \\+ 4k for this VAE \\(e.g. .*17"):
        pipe.generate("x", num_frames=16)
    with pytest.raises(
        ValueError, match="height=60 must be a multiple of 8 for this model \\(e.g. 56, 64\\)"
    ):
        pipe.generate("x", height=60)


def test_main_job_command(tmp_path):
    out = tmp_path / "out.mp4"
    cmd = [
        sys.executable,
        "-m",
        "vidcore.cli",
        "generate",
        "a red circle moving right",
        "-o",
        str(out),
        "--steps",
        "2",
    ]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == str(out) and out.stat().st_size > 0
    from vidcore.io.video import read_video

    frames, fps = read_video(out)
    assert frames.shape == (17, 64, 64, 3) and fps == 8.0
