"""Same seed -> same frames as before the pipeline contract (vidcore/pipelines/base.py): the built-in
model's output for fixed settings, stored as 8x8-pooled frames (``tests/data/tiny_golden.safetensors``),
must not move."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

torch.set_num_threads(1)

GOLDEN = Path(__file__).parent / "data" / "tiny_golden.safetensors"
PROMPT = "a red circle moving right"
# name -> generate() keywords; "v2v" also gets init_frames = the frames of "euler".
# The sampler (and for "pyramidal" the even stage split) is named in every case and the schedule in every
# case that runs flow (heun's is flow by nature), so a change of the model's default sampler, schedule or
# stage split leaves them in place; "defaults" and "pyramidal_ancestral" follow pipeline.json (CFG, sampler,
# schedule, stage split). A callable case builds its keywords from the pipeline.
CASES = {
    "euler": dict(sampler="euler", schedule="flow", steps=4, seed=1),
    "negative_no_cfg": dict(
        sampler="euler", schedule="flow", negative_prompt="blurry", steps=3, guidance=1.0, seed=7
    ),
    "heun_shift_rescale": dict(
        sampler="heun", steps=3, guidance=4.0, shift=2.0, guidance_rescale=0.5, seed=2
    ),
    "ancestral": dict(sampler="euler_ancestral", schedule="flow", steps=4, seed=3),
    "pyramidal": lambda pipe: dict(
        options=pipe.default_options().replace(
            sampler="euler", schedule="pyramidal", pyramid_stage_range=None, steps=6, seed=4
        )
    ),
    "v2v": dict(sampler="euler", schedule="flow", steps=4, denoise=0.5, seed=5),
    "defaults": dict(steps=4, seed=6),
    "pyramidal_ancestral": dict(sampler="euler_ancestral", schedule="pyramidal", steps=6, seed=8),
}


def fingerprint(frames: torch.Tensor) -> torch.Tensor:
    """[T, H, W, 3] -> [T, 3, H/8, W/8] block means (small enough to ship, moves with any change)."""
    return F.avg_pool2d(frames.permute(0, 3, 1, 2).float(), 8)


def golden_frames(pipe) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for name, kwargs in CASES.items():
        kwargs = kwargs(pipe) if callable(kwargs) else kwargs
        extra = {"init_frames": out_frames} if name == "v2v" else {}  # noqa: F821 - set by the euler case
        frames = pipe.generate(PROMPT, **kwargs, **extra)
        if name == "euler":
            out_frames = frames  # noqa: F841
        out[name] = fingerprint(frames)
    return out


@pytest.mark.slow
def test_tiny_frames_equal_the_stored_golden():
    from safetensors.torch import load_file

    import vidcore

    expected = load_file(GOLDEN)
    got = golden_frames(vidcore.load_pipeline("tiny"))
    assert set(got) == set(expected)
    for name in CASES:
        diff = float((got[name] - expected[name]).abs().max())
        assert diff <= 2e-5, f"{name}: frames moved by {diff:.3g} from the golden output"
