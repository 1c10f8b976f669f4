"""Procedural shape videos and captions: determinism, geometry, motion, caption/label agreement, split."""

import math
import random

import pytest
import torch

from vidcore.train.captions import (
    COLOURS,
    DIRECTIONS,
    HELDOUT_TEMPLATES,
    HELDOUT_WORDS,
    SHAPES,
    TEMPLATES,
    caption_for,
    parse_caption,
    template_regex,
)
from vidcore.train.data import (
    PALETTE,
    SamplingRanges,
    ShapeVideoDataset,
    ShapeVideoSpec,
    _signed_distance,
    render,
    sample_spec,
    to_frames,
)

torch.set_num_threads(1)

_DIR = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1), "still": (0, 0)}


def _word_in(text: str, word: str) -> bool:
    import re

    return re.search(r"(?<![\w-])" + re.escape(word) + r"(?![\w-])", text) is not None


def test_same_seed_same_stream_other_seed_differs():
    a, b = ShapeVideoDataset(seed=3), ShapeVideoDataset(seed=3)
    x, y = a.batch(6), b.items(0, 6)
    assert torch.equal(x["video"], y["video"])
    assert x["caption"] == y["caption"] and x["specs"] == y["specs"]
    # The stream advances, and item i is the same whether read alone or in a batch.
    nxt = a.batch(2)
    assert nxt["index"] == [6, 7]
    assert torch.equal(nxt["video"][1], a[7]["video"])
    assert a[7]["caption"] == nxt["caption"][1]
    it = b.batches(3, start=6)
    assert torch.equal(next(it)["video"][:2], nxt["video"])
    other = ShapeVideoDataset(seed=4).items(0, 6)
    assert other["caption"] != x["caption"]
    assert (other["video"] - x["video"]).abs().max() > 0.5


def test_video_layout_value_range_and_palette():
    ds = ShapeVideoDataset(seed=0)
    batch = ds.items(0, 16)
    v = batch["video"]
    assert v.shape == (16, 3, 17, 64, 64) and v.dtype == torch.float32
    assert v.min() >= -1.0 and v.max() <= 1.0
    frames = to_frames(v)
    assert frames.shape == (16, 17, 64, 64, 3)
    for i, spec in enumerate(batch["specs"]):
        # Background is dark (<= 0.25 everywhere on the border) and the shape's centre has its exact colour.
        border = torch.cat([frames[i, :, 0], frames[i, :, -1]], dim=1)
        assert border.max() <= 0.25
        cx, cy = spec.centre(8)
        if spec.shape == "triangle":
            cy += 0.25 * 1.3 * spec.radius  # the centroid is below the bbox centre
        pixel = frames[i, 8, int(cy), int(cx)]
        assert torch.allclose(pixel, torch.tensor(PALETTE[spec.colour]), atol=1e-5), (spec, pixel)


def test_configurable_size_and_length():
    ds = ShapeVideoDataset(seed=1, num_frames=9, height=32, width=48)
    v = ds.items(0, 4)["video"]
    assert v.shape == (4, 3, 9, 32, 48)
    spec = ds.items(0, 1)["specs"][0]
    # Radii scale with min(H, W) / 64 = 0.5: 3.5 .. 6.5 px.
    radii = [ds.spec_and_caption(i)[0].radius for i in range(200)]
    assert 3.5 - 1e-9 <= min(radii) and max(radii) <= 6.5 + 1e-9
    assert spec.radius > 0


def test_object_stays_fully_inside_the_frame():
    t, h, w = 17, 64, 64
    specs = [sample_spec(random.Random(f"fit{i}"), t, h, w) for i in range(240)]
    alpha = (0.5 - _signed_distance(specs, t, h, w)).clamp(0, 1)  # [B, T, H, W] pixel coverage
    ring = torch.ones(h, w, dtype=torch.bool)
    ring[2:-2, 2:-2] = False
    assert alpha[:, :, ring].max() == 0.0  # nothing on the 2-pixel border in any frame
    area = alpha.sum(dim=(2, 3))  # never clipped: the covered area is the same in every frame
    assert ((area.max(1).values - area.min(1).values) / area.mean(1)).max() < 0.01
    # Covered area matches the analytic area of each shape (anti-aliasing is area-faithful).
    for spec, a in zip(specs[:60], area[:60, 0], strict=True):
        r = spec.radius
        exact = {
            "circle": math.pi * r * r,
            "square": (1.8 * r) ** 2,
            "triangle": 3 * math.sqrt(3) / 4 * (1.3 * r) ** 2,
        }
        assert abs(float(a) / exact[spec.shape] - 1) < 0.02, (spec.shape, float(a), exact[spec.shape])


def test_motion_per_frame_equals_speed_and_direction():
    t, h, w = 17, 64, 64
    specs = [sample_spec(random.Random(f"mv{i}"), t, h, w) for i in range(120)]
    assert {s.direction for s in specs} == set(DIRECTIONS)
    alpha = (0.5 - _signed_distance(specs, t, h, w)).clamp(0, 1)
    ys = torch.arange(h, dtype=torch.float32)[:, None] + 0.5
    xs = torch.arange(w, dtype=torch.float32)[None, :] + 0.5
    mass = alpha.sum(dim=(2, 3))
    cx = (alpha * xs).sum(dim=(2, 3)) / mass
    cy = (alpha * ys).sum(dim=(2, 3)) / mass
    for i, spec in enumerate(specs):
        ux, uy = _DIR[spec.direction]
        dx, dy = cx[i, 1:] - cx[i, :-1], cy[i, 1:] - cy[i, :-1]
        # Each step within 0.05 px of speed * direction (pixel-grid jitter of the coverage centroid),
        # the whole clip's mean step within 0.005 px.
        assert (dx - ux * spec.speed).abs().max() < 0.05, (spec, dx)
        assert (dy - uy * spec.speed).abs().max() < 0.05, (spec, dy)
        assert (
            abs(float(dx.mean()) - ux * spec.speed) < 5e-3 and abs(float(dy.mean()) - uy * spec.speed) < 5e-3
        )
        if spec.direction == "still":
            assert spec.speed == 0.0
        else:
            assert 1.0 <= spec.speed <= 2.5


def test_labels_cover_every_value():
    specs = [ShapeVideoDataset(seed=2).spec_and_caption(i)[0] for i in range(400)]
    assert {s.shape for s in specs} == set(SHAPES)
    assert {s.colour for s in specs} == set(COLOURS)
    assert {s.background for s in specs} == {"plain", "texture"}


def test_captions_map_back_to_labels_in_both_splits():
    rng = random.Random(0)
    for split, n in (("train", 1500), ("heldout", 600)):
        for _ in range(n):
            labels = {
                "shape": rng.choice(SHAPES),
                "colour": rng.choice(COLOURS),
                "direction": rng.choice(DIRECTIONS),
            }
            text = caption_for(labels["shape"], labels["colour"], labels["direction"], rng, split, "texture")
            assert parse_caption(text) == labels, (split, text)
    ds = ShapeVideoDataset(seed=5).items(0, 50)
    assert all(parse_caption(c) == lab for c, lab in zip(ds["caption"], ds["labels"], strict=True))


def test_heldout_phrasings_never_in_training_captions():
    ds = ShapeVideoDataset(seed=11)
    train = [ds.spec_and_caption(i)[1] for i in range(5000)]
    assert len(set(train)) > 1500  # many distinct phrasings, not a lookup table
    heldout_res = [template_regex(t) for t in HELDOUT_TEMPLATES]
    for text in train:
        assert not any(_word_in(text, w) for w in HELDOUT_WORDS), text
        assert not any(r.match(text) for r in heldout_res), text
    # Every training template and the main synonyms are actually used.
    train_res = [template_regex(t) for t in TEMPLATES]
    assert all(any(r.match(text) for text in train) for r in train_res)
    assert all(any(_word_in(text, w) for text in train) for w in ("crimson", "disc", "wedge", "motionless"))
    # Held-out captions always contain a held-out word or template.
    rng = random.Random(1)
    for _ in range(600):
        text = caption_for(rng.choice(SHAPES), rng.choice(COLOURS), rng.choice(DIRECTIONS), rng, "heldout")
        assert any(_word_in(text, w) for w in HELDOUT_WORDS) or any(r.match(text) for r in heldout_res), text


def test_bad_input_raises_naming_the_value():
    with pytest.raises(ValueError, match="hexagon"):
        ShapeVideoSpec("hexagon", "red", "left", 8.0, 1.0, 30.0, 30.0)
    with pytest.raises(ValueError, match="speed"):
        ShapeVideoSpec("circle", "red", "still", 8.0, 1.0, 30.0, 30.0)
    with pytest.raises(ValueError, match="split"):
        ShapeVideoDataset(seed=0, split="val")
    with pytest.raises(ValueError, match="num_frames=65"):
        ShapeVideoDataset(seed=0, num_frames=65)
    with pytest.raises(ValueError, match="radius"):
        SamplingRanges(radius=(9.0, 7.0))
    with pytest.raises(ValueError, match="specs"):
        render([])
    with pytest.raises(ValueError, match="colour='ruby'"):
        caption_for("circle", "ruby", "left", random.Random(0))


def test_shape_twins_differ_only_in_the_shape_and_its_word():
    t, h, w = 17, 64, 64
    ds = ShapeVideoDataset(seed=3)
    changed_words = 0
    for i in range(120):
        spec, caption = ds.spec_and_caption(i)
        twin, twin_caption = ds.twin(i)
        assert twin.shape == SHAPES[(SHAPES.index(spec.shape) + 1) % 3]
        same = ("colour", "direction", "speed", "x0", "y0", "background", "bg_level", "bg_tint", "bg_texture")
        assert all(getattr(twin, k) == getattr(spec, k) for k in same)
        assert parse_caption(twin_caption) == {**parse_caption(caption), "shape": twin.shape}
        a, b = caption.split(), twin_caption.split()
        changed_words += len(set(a) ^ set(b)) > 0
        assert len(a) - 3 <= len(b) <= len(a) + 3  # same template: only the shape phrase differs
    assert changed_words == 120
    # The twin stays inside the frame and inside the original's box (nothing on the 2-pixel border).
    twins = [ds.twin(i)[0] for i in range(120)]
    alpha = (0.5 - _signed_distance(twins, t, h, w)).clamp(0, 1)
    ring = torch.ones(h, w, dtype=torch.bool)
    ring[2:-2, 2:-2] = False
    assert alpha[:, :, ring].max() == 0.0
    batch = ds.twin_items(10, 4)
    assert batch["video"].shape == (4, 3, t, h, w) and batch["index"] == [10, 11, 12, 13]
    assert batch["caption"] == [ds.twin(10 + k)[1] for k in range(4)]
    with pytest.raises(ValueError, match="index=-1 must be an int >= 0"):
        ds.twin(-1)
    with pytest.raises(ValueError, match="n=0 must be an int >= 1"):
        ds.twin_items(0, 0)
