"""Deterministic frame analyser and the held-out evaluation prompts."""

import itertools
import re

import pytest
import torch
import torch.nn.functional as F

from vidcore.eval import analyse, analyse_batch, eval_prompts, evaluate, evaluate_generator, format_table
from vidcore.eval.analyser import classify_colour, classify_direction, classify_shape
from vidcore.eval.run import metrics_by_slot
from vidcore.train.captions import (
    COLOURS,
    DIRECTIONS,
    HELDOUT_COLOUR_WORDS,
    HELDOUT_SHAPE_WORDS,
    HELDOUT_TEMPLATES,
    HELDOUT_WORDS,
    SHAPES,
    parse_caption,
    template_regex,
)
from vidcore.train.data import PALETTE, ShapeVideoDataset, ShapeVideoSpec, render, to_frames

torch.set_num_threads(1)


def _blur_noise(frames: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:
    """3x3 box blur (replicate edges) + Gaussian noise on frames [B, T, H, W, 3]."""
    b, t, h, w, c = frames.shape
    x = frames.permute(0, 1, 4, 2, 3).reshape(-1, 1, h, w)
    x = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), torch.ones(1, 1, 3, 3) / 9.0)
    x = x.reshape(b, t, c, h, w).permute(0, 1, 3, 4, 2)
    g = torch.Generator().manual_seed(seed)
    return (x + sigma * torch.randn(x.shape, generator=g)).clamp(0.0, 1.0)


@pytest.fixture(scope="module")
def renders():
    batch = ShapeVideoDataset(seed=21).items(0, 48)
    return batch, to_frames(batch["video"])


def test_clean_renders_are_read_perfectly(renders):
    batch, frames = renders
    results = analyse_batch(frames)
    metrics = evaluate(results, batch["labels"])
    assert metrics["colour_acc"] == 1.0 and metrics["shape_acc"] == 1.0 and metrics["direction_acc"] == 1.0
    assert metrics["found"] == 1.0 and metrics["presence"] == 1.0
    for r, spec in zip(results, batch["specs"], strict=True):
        assert abs(r.speed - spec.speed) < 0.05, (r.speed, spec)  # px/frame from the centroid track
        assert r.aligned_iou > 0.85 and r.area_cv < 0.05 and r.track_residual < 0.1
    assert metrics["aligned_iou"] > 0.93
    assert "| colour_acc | 100.0 % |" in format_table(metrics)


def test_blur_and_noise_keep_accuracy(renders):
    batch, frames = renders
    metrics = evaluate(analyse_batch(_blur_noise(frames, 0.03, seed=0)), batch["labels"])
    for key in ("colour_acc", "shape_acc", "direction_acc"):
        assert metrics[key] >= 0.95, metrics


def test_deterministic_and_single_video_matches_batch(renders):
    _, frames = renders
    a = analyse_batch(frames[:4])
    assert a == analyse_batch(frames[:4])
    assert analyse(frames[2]) == a[2]


def test_distractor_blob_and_flicker():
    spec = ShapeVideoSpec("square", "green", "right", 9.0, 1.5, 16.0, 32.0)
    frames = to_frames(render([spec]))[0].clone()
    # A small 2x2 red speck elsewhere: the largest component is still the square.
    frames[:, 55:57, 55:57] = torch.tensor([0.9, 0.1, 0.1])
    r = analyse(frames)
    assert (r.colour, r.shape, r.direction) == ("green", "square", "right")
    assert abs(r.speed - 1.5) < 0.05
    # Blank every other frame: presence halves, still judged on the frames where it exists.
    flick = frames.clone()
    flick[1::2] = flick[1::2, :2, :2].mean(dim=(1, 2), keepdim=True)
    r2 = analyse(flick)
    assert r2.presence == pytest.approx(9 / 17)
    assert r2.direction == "right" and r2.aligned_iou == 0.0  # no two consecutive frames hold the object


def test_shuffled_frames_break_the_track():
    spec = ShapeVideoSpec("circle", "blue", "down", 8.0, 2.0, 32.0, 14.0)
    frames = to_frames(render([spec]))[0]
    perm = torch.randperm(17, generator=torch.Generator().manual_seed(0))
    ordered, shuffled = analyse(frames), analyse(frames[perm])
    assert ordered.track_residual < 0.05 and shuffled.track_residual > 3.0
    assert ordered.direction == "down" and shuffled.direction != "down"


def test_empty_video_counts_as_wrong():
    frames = torch.full((17, 64, 64, 3), 0.05)
    r = analyse(frames)
    assert not r.found and r.colour is None and r.shape is None and r.direction is None
    metrics = evaluate([r], [{"colour": "red", "shape": "circle", "direction": "still"}])
    assert metrics["colour_acc"] == 0.0 and metrics["found"] == 0.0


def test_classifiers_on_reference_values():
    for name, rgb in PALETTE.items():
        assert classify_colour(rgb)[0] == name
    assert classify_colour((0.7, 0.7, 0.68))[0] == "white"  # light grey reads as white, not a hue
    assert classify_colour((0.3, 0.3, 0.3))[0] is None  # a dim grey is no palette colour
    assert classify_colour((0.5, 0.12, 0.12))[0] == "red"  # darkened colours keep their hue
    assert classify_shape(0.79, 1.0) == "circle"
    assert classify_shape(1.0, 1.0) == "square"
    assert classify_shape(0.53, 0.25) == "triangle"
    assert classify_shape(0.73, 0.35) == "triangle"  # a filled-in triangle still tapers
    assert classify_direction(0.1, -0.1, 0.3) == "still"
    assert classify_direction(-1.0, 0.4, 0.3) == "left"
    assert classify_direction(0.2, -1.0, 0.3) == "up"


def test_bad_input_raises():
    with pytest.raises(ValueError, match=r"\[T, H, W, 3\]"):
        analyse(torch.zeros(17, 64, 64))
    with pytest.raises(ValueError, match=r"\[B, T, H, W, 3\]"):
        analyse_batch(torch.zeros(2, 17, 3, 64, 64))
    with pytest.raises(TypeError, match="frames"):
        analyse_batch([1, 2, 3])
    r = analyse(torch.full((3, 16, 16, 3), 0.1))
    with pytest.raises(ValueError, match="same length"):
        evaluate([r], [])
    with pytest.raises(ValueError, match="colour='ruby'"):
        evaluate([r], [{"colour": "ruby", "shape": "circle", "direction": "left"}])


def test_eval_prompts_cover_every_combination_with_heldout_language():
    prompts = eval_prompts()
    assert prompts == eval_prompts()  # deterministic
    assert len(prompts) == 120 and len({p.prompt for p in prompts}) == 120
    assert {(p.colour, p.shape, p.direction) for p in prompts} == set(
        itertools.product(COLOURS, SHAPES, DIRECTIONS)
    )
    heldout_res = [template_regex(t) for t in HELDOUT_TEMPLATES]

    def has(text: str, word: str) -> bool:
        return re.search(r"(?<![\w-])" + re.escape(word) + r"(?![\w-])", text) is not None

    texts = [p.prompt for p in prompts]
    for p in prompts:
        assert parse_caption(p.prompt) == p.labels, p
        assert any(has(p.prompt, w) for w in HELDOUT_WORDS) or any(r.match(p.prompt) for r in heldout_res), p
    # Every held-out colour word, shape word and template is used at least once.
    for word in [w for ws in HELDOUT_COLOUR_WORDS.values() for w in ws] + [
        w for ws in HELDOUT_SHAPE_WORDS.values() for w in ws
    ]:
        assert any(has(t, word) for t in texts), word
    assert all(any(r.match(t) for t in texts) for r in heldout_res)
    for word in (
        "east",
        "west",
        "north",
        "south",
        "travelling",
        "gliding",
        "ascending",
        "descending",
        "unmoving",
    ):
        assert any(has(t, word) for t in texts), word
    assert len(eval_prompts(per_combination=2)) == 240


def test_evaluate_generator_with_an_oracle():
    prompts = eval_prompts()[:10]
    labels_of = {p.prompt: p for p in prompts}

    def oracle(prompt: str, seed: int) -> torch.Tensor:
        p = labels_of[prompt]
        speed = 0.0 if p.direction == "still" else 1.5
        x0 = {"left": 44.0, "right": 20.0}.get(p.direction, 32.0)
        y0 = {"up": 44.0, "down": 20.0}.get(p.direction, 32.0)
        spec = ShapeVideoSpec(p.shape, p.colour, p.direction, 8.0, speed, x0, y0)
        return to_frames(render([spec]))[0]

    metrics, results = evaluate_generator(oracle, prompts)
    assert len(results) == 10 and metrics["all_acc"] == 1.0


def test_metrics_by_heldout_slot_separate_the_slots():
    prompts = eval_prompts()[:8]  # slots cycle template, colour, shape, motion

    def render_for(p, wrong_colour: bool) -> torch.Tensor:
        colour = ("green" if p.colour != "green" else "red") if wrong_colour else p.colour
        speed = 0.0 if p.direction == "still" else 1.5
        x0 = {"left": 44.0, "right": 20.0}.get(p.direction, 32.0)
        y0 = {"up": 44.0, "down": 20.0}.get(p.direction, 32.0)
        return to_frames(render([ShapeVideoSpec(p.shape, colour, p.direction, 8.0, speed, x0, y0)]))[0]

    results = [analyse(render_for(p, p.heldout_slot == "colour")) for p in prompts]
    by_slot = metrics_by_slot(prompts, results)
    assert set(by_slot) == {"template", "colour", "shape", "motion"}
    assert all(m["count"] == 2.0 for m in by_slot.values())
    assert by_slot["colour"]["colour_acc"] == 0.0 and by_slot["colour"]["direction_acc"] == 1.0
    assert all(by_slot[s]["all_acc"] == 1.0 for s in ("template", "shape", "motion"))
