"""Deterministic frame analyser and the held-out evaluation prompts."""

import itertools
import re

import pytest
import torch
import torch.nn.functional as F

from vidcore.eval import analyse, analyse_batch, eval_prompts, evaluate, evaluate_generator, format_table
from vidcore.eval.analyser import (
    MIN_OBJECT_AREA,
    classify_colour,
    classify_direction,
    classify_shape,
    component_areas,
    count_objects,
    foreground_mask,
    label_components,
    min_object_area,
)
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
    everything = eval_prompts()
    assert everything == eval_prompts()  # deterministic
    assert len(everything) == 240 and len({p.prompt for p in everything}) == 240
    assert [p.version for p in everything[:6]] == [1, 2] * 3  # the two versions alternate
    prompts = [p for p in everything if p.version == 1]  # the original set, prompt for prompt
    for part in (prompts, [p for p in everything if p.version == 2]):
        assert len(part) == 120
        assert {(p.colour, p.shape, p.direction) for p in part} == set(
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
    assert len(eval_prompts(per_combination=2)) == 480


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
    # Version-1 slots cycle template, colour, shape, motion; version-2 prompts are left out of this table.
    prompts = eval_prompts()[:16]

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


def _partition(labels: torch.Tensor) -> set[frozenset[tuple[int, int]]]:
    """The components of one frame's labels as sets of pixels (independent of the label ids)."""
    out: dict[int, set[tuple[int, int]]] = {}
    for y, x in (labels > 0).nonzero().tolist():
        out.setdefault(int(labels[y, x]), set()).add((y, x))
    return {frozenset(v) for v in out.values()}


def test_components_two_blobs_one_blob_specks_and_diagonals():
    m = torch.zeros(4, 24, 24, dtype=torch.bool)
    m[0, 2:8, 2:8] = True  # two 6x6 blobs far apart
    m[0, 14:20, 12:18] = True
    m[1, 2:12, 2:12] = True  # one 10x10 blob with a hole: still one component
    m[1, 5:7, 5:7] = False
    m[2, 3, 3] = m[2, 10, 10:12] = m[2, 20, 5] = True  # specks of one or two pixels
    m[3, 2:8, 2:8] = True  # two 6x6 blocks that touch only at one corner (8-connected: one object)
    m[3, 8:14, 8:14] = True
    assert count_objects(m, min_area=1).tolist() == [2, 1, 3, 1]
    assert count_objects(m).tolist() == [2, 1, 0, 1]  # default minimum area ignores the specks
    assert min_object_area(24, 24) == MIN_OBJECT_AREA * (24 / 64) ** 2
    labels = label_components(m)
    assert _partition(labels[0]) == {
        frozenset((y, x) for y in range(2, 8) for x in range(2, 8)),
        frozenset((y, x) for y in range(14, 20) for x in range(12, 18)),
    }
    assert len(_partition(labels[3])) == 1 and (labels[3] > 0).sum() == 72
    areas = component_areas(labels)
    assert sorted(areas[0][areas[0] > 0].tolist()) == [36, 36] and areas[1].max() == 96
    # A one-pixel diagonal staircase is one 8-connected component but many 4-connected ones.
    stair = torch.zeros(1, 12, 12, dtype=torch.bool)
    idx = torch.arange(12)
    stair[0, idx, idx] = True
    assert count_objects(stair, min_area=1).tolist() == [1]
    assert not label_components(torch.zeros(2, 8, 8, dtype=torch.bool)).any()
    with pytest.raises(ValueError, match=r"bool tensor \[N, H, W\]"):
        label_components(torch.zeros(8, 8, dtype=torch.bool))


def test_components_match_scipy_on_random_masks_and_a_serpentine():
    ndimage = pytest.importorskip("scipy.ndimage", reason="scipy (a test extra) is the reference labeller")
    g = torch.Generator().manual_seed(0)
    masks = torch.rand(12, 32, 32, generator=g) < torch.linspace(0.2, 0.6, 12)[:, None, None]
    # A serpentine: one component whose labels need many propagation rounds (17) to settle.
    snake = torch.zeros(32, 32, dtype=torch.bool)
    snake[0:31:2] = True
    snake[1:31:4, -1] = snake[3:31:4, 0] = True
    masks = torch.cat([masks, snake[None], snake.T[None]])
    labels = label_components(masks)
    for i in range(len(masks)):
        ref, _ = ndimage.label(masks[i].numpy(), structure=[[1, 1, 1]] * 3)
        assert _partition(labels[i]) == _partition(torch.from_numpy(ref)), i
    assert count_objects(snake[None], min_area=1).tolist() == [1]


def test_single_object_rate_on_a_synthetic_video():
    spec = ShapeVideoSpec("circle", "red", "right", 9.0, 1.5, 16.0, 32.0)
    frames = to_frames(render([spec]))[0].clone()
    one = analyse(frames)
    assert one.objects == (1,) * 17 and one.single_object == 1.0 and one.components == 1.0
    # A second (smaller) red blob in frames 0-5, a 4x4 blob (16 px, under the minimum) in frames 6-9 and a
    # 6x6 one (36 px) in frame 10: 2 objects in 7 frames, 1 in the other 10.
    split = frames.clone()
    split[:6, 50:57, 45:52] = torch.tensor([0.9, 0.12, 0.12])
    split[6:10, 52:56, 50:54] = torch.tensor([0.9, 0.12, 0.12])
    split[10, 50:56, 50:56] = torch.tensor([0.9, 0.12, 0.12])
    r = analyse(split)
    assert r.objects == (2,) * 6 + (1,) * 4 + (2,) + (1,) * 6
    assert r.single_object == pytest.approx(10 / 17) and r.components == pytest.approx(24 / 17)
    assert (r.colour, r.shape, r.direction) == ("red", "circle", "right")  # read from the largest blob
    mask = foreground_mask(split[None])[0]
    assert count_objects(mask).tolist() == list(r.objects)
    empty = analyse(torch.full((17, 64, 64, 3), 0.05))
    assert empty.objects == (0,) * 17 and empty.single_object == 0.0 and empty.components == 0.0
    metrics = evaluate([one, r, empty], [spec.labels] * 3)
    assert metrics["single_object_rate"] == pytest.approx((1 + 10 / 17) / 3)
    assert metrics["single_object_videos"] == pytest.approx(1 / 3)
    assert metrics["objects_per_frame"] == pytest.approx((1 + 24 / 17) / 3)
    table = format_table(metrics)
    assert "| single_object_rate | 52.9 % |" in table and "| single_object_videos | 33.3 % |" in table
