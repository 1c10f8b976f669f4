"""Held-out kinds of the evaluation prompts, checked against the training caption generator, and the report
by kind from ``evaluate_generator``.

The training captions are modelled from the generator's own pools (templates, colour / shape words, motion
phrases, background phrases): the words they can contain, and an exhaustive search for whether any of them
contains a given phrase. Real training captions (``ShapeVideoDataset(split="train")``) must fall inside that
model (each of their words, and each run of up to four consecutive words, is found), so a phrase the search
does not find occurs in no training caption.
"""

import random
import re
from collections import Counter

import pytest
import torch

from vidcore.eval import eval_prompts, format_table, shapes
from vidcore.eval.analyser import evaluate
from vidcore.eval.prompts import (
    COMBINATION_COLOUR_WORDS,
    COMBINATION_MOTION_PHRASES,
    COMBINATION_SHAPE_WORDS,
    HEADLINE_KINDS,
    KINDS,
    ORDER_TEMPLATES,
    EvalPrompt,
)
from vidcore.eval.run import format_kind_table
from vidcore.eval.shapes import evaluate_generator, kind_report, probe_ceiling
from vidcore.eval.text_probe import probe_text_encoder
from vidcore.text import load_text_encoder
from vidcore.train.captions import (
    BACKGROUND_PHRASES,
    COLOUR_WORDS,
    COLOURS,
    DIRECTIONS,
    HELDOUT_TEMPLATES,
    MOTION_PHRASES,
    SHAPE_WORDS,
    SHAPES,
    TEMPLATES,
    caption_for,
    compose_caption,
    parse_caption,
)
from vidcore.train.data import ShapeVideoDataset, ShapeVideoSpec, render, to_frames

from ._tiny_hf import make_bert_folder

torch.set_num_threads(1)

_SLOT_NAMES = {"colour": "colour", "shape": "shape", "ing": "motion", "verb": "motion"}


def words(text: str) -> list[str]:
    """Lower-case words; a hyphenated compound ("blood-red") is one word, punctuation is dropped."""
    return re.findall(r"[a-z]+(?:-[a-z]+)*", text.lower())


def slot_order(template: str) -> tuple[str, ...]:
    return tuple(_SLOT_NAMES[m] for m in re.findall(r"\{(\w+)\}", template))


def _pieces(template: str) -> list[list[tuple[str, ...]]]:
    """A template as word-bearing pieces, each a list of alternatives (literal text: one alternative), as
    word tuples with "an" read as "a"; the optional background phrase is the last piece."""
    slots = {
        "colour": [w for ws in COLOUR_WORDS.values() for w in ws],
        "shape": [w for ws in SHAPE_WORDS.values() for w in ws],
        "ing": [p.ing for ps in MOTION_PHRASES.values() for p in ps],
        "verb": [p.verb for ps in MOTION_PHRASES.values() for p in ps],
    }
    texts = []
    for part in re.split(r"(\{\w+\})", template):
        if part.startswith("{"):
            texts.append(slots[part[1:-1]])
        elif words(part):
            texts.append([part])
    texts.append([b for bs in BACKGROUND_PHRASES.values() for b in bs])
    return [[tuple(_norm(words(t))) for t in alternatives] for alternatives in texts]


def _norm(ws: list[str]) -> list[str]:
    return ["a" if w == "an" else w for w in ws]


PIECES = [_pieces(t) for t in TEMPLATES]
VOCAB = {w for pieces in PIECES for alts in pieces for alt in alts for w in alt} | {"an"}
# Where each word can start a match: (template, piece, alternative, word position).
STARTS: dict[str, list[tuple[int, int, int, int]]] = {}
for _t, _pieces_t in enumerate(PIECES):
    for _i, _alts in enumerate(_pieces_t):
        for _a, _alt in enumerate(_alts):
            for _j, _w in enumerate(_alt):
                STARTS.setdefault(_w, []).append((_t, _i, _a, _j))


def occurs(phrase: str) -> bool:
    """Whether some training caption (any template, any choice in every slot, with or without a background)
    contains the words of ``phrase`` consecutively. Exhaustive: a backtracking match over the pieces."""
    target = _norm(words(phrase))

    def match(k: int, t: int, i: int, alt: tuple[str, ...], j: int) -> bool:
        while j < len(alt) and k < len(target):
            if alt[j] != target[k]:
                return False
            j, k = j + 1, k + 1
        if k == len(target):
            return True
        if i + 1 == len(PIECES[t]):
            return False
        return any(match(k, t, i + 1, nxt, 0) for nxt in PIECES[t][i + 1])

    return any(match(0, t, i, PIECES[t][i][a], j) for t, i, a, j in STARTS.get(target[0], []))


TRAIN_ORDERS = {slot_order(t) for t in TEMPLATES}
PROMPTS = eval_prompts(with_background=True)


def _train_pool(p: EvalPrompt, slot: str) -> bool:
    """Whether the prompt's word for ``slot`` is one of the training pool's choices for its label."""
    if slot == "colour":
        return p.colour_word in COLOUR_WORDS[p.colour]
    if slot == "shape":
        return p.shape_word in SHAPE_WORDS[p.shape]
    return p.motion in MOTION_PHRASES[p.direction]


def _slot_text(p: EvalPrompt, slot: str) -> str:
    return {"colour": p.colour_word, "shape": p.shape_word, "motion": f"{p.motion.ing} {p.motion.verb}"}[slot]


def test_the_training_model_covers_real_training_captions():
    data = ShapeVideoDataset(seed=0)
    rng = random.Random(5)
    captions = [data.spec_and_caption(i)[1] for i in range(0, 40000, 40)]
    captions += [
        caption_for(rng.choice(SHAPES), rng.choice(COLOURS), rng.choice(DIRECTIONS), rng, background="plain")
        for _ in range(1000)
    ]
    for n, caption in enumerate(captions):
        ws = words(caption)
        assert set(ws) <= VOCAB, caption
        if n % 10 == 0:
            for size in (2, 3, 4):
                for k in range(len(ws) - size + 1):
                    assert occurs(" ".join(ws[k : k + size])), (caption, ws[k : k + size])
        assert occurs(caption), caption
    # The model is not vacuous: held-out words and new phrases of known words are outside it.
    assert "ruby" not in VOCAB and "toward" in VOCAB
    assert occurs("moving toward the top") and occurs("bright white circle") and occurs("an emerald")
    assert not occurs("moving toward the left") and not occurs("bright red") and not occurs("square circle")


def test_every_prompt_has_exactly_one_kind_and_its_parts_compose_it():
    counts = Counter(p.kind for p in PROMPTS)
    assert set(counts) == set(KINDS) and sum(counts.values()) == len(PROMPTS) == 240
    assert counts == {"template": 30, "order": 60, "combination": 60, "unseen_word": 90}
    assert set(HEADLINE_KINDS) == set(KINDS) - {"unseen_word"}
    for p in PROMPTS:
        assert compose_caption(p.template, p.colour_word, p.shape_word, p.motion, p.background) == p.prompt
        assert parse_caption(p.prompt) == p.labels, p
        assert (p.version == 1) == (p.kind in ("template", "unseen_word")), p
    assert sum(bool(p.background) for p in PROMPTS) == 120  # every other prompt of each version
    # Seeds: version-1 prompt k keeps seed offset k (its video in earlier reports); all offsets differ.
    assert [p.seed_offset for p in PROMPTS if p.version == 1] == list(range(120))
    assert len({p.seed_offset for p in PROMPTS}) == 240
    with pytest.raises(ValueError, match="kind='held-out' must be one of"):
        EvalPrompt("x", "circle", "red", "left", "template", "held-out", 1, 0, "{colour}", "red", "circle",
                   MOTION_PHRASES["left"][0])  # fmt: skip
    with pytest.raises(ValueError, match="heldout_slot='template' must be one of .* for kind 'order'"):
        EvalPrompt("x", "circle", "red", "left", "template", "order", 2, 0, "{colour}", "red", "circle",
                   MOTION_PHRASES["left"][0])  # fmt: skip


def test_template_kind_is_a_new_frame_around_training_words_in_a_training_order():
    group = [p for p in PROMPTS if p.kind == "template"]
    assert {p.template for p in group} == set(HELDOUT_TEMPLATES)
    for p in group:
        assert p.heldout_slot == "template" and p.template not in TEMPLATES
        assert slot_order(p.template) in TRAIN_ORDERS, p
        assert all(_train_pool(p, s) for s in ("colour", "shape", "motion")), p
        # A held-out template may bring its own filler words ("footage"), never an unseen label word.
        assert all(set(words(_slot_text(p, s))) <= VOCAB for s in ("colour", "shape", "motion")), p


def test_order_kind_puts_training_words_in_an_order_no_training_template_uses():
    group = [p for p in PROMPTS if p.kind == "order"]
    assert {p.template for p in group} == set(ORDER_TEMPLATES)
    assert len({slot_order(t) for t in ORDER_TEMPLATES}) == 3  # every unused order of three slots
    for p in group:
        assert p.heldout_slot == "order" and p.template not in TEMPLATES
        assert slot_order(p.template) not in TRAIN_ORDERS, p
        assert all(_train_pool(p, s) for s in ("colour", "shape", "motion")), p
        assert set(words(p.prompt)) <= VOCAB, p  # every word of the prompt occurs in training captions


def test_combination_kind_joins_training_words_into_a_phrase_no_training_caption_contains():
    group = [p for p in PROMPTS if p.kind == "combination"]
    assert Counter(p.heldout_slot for p in group) == {"colour": 20, "shape": 20, "motion": 20}
    pools = {
        "colour": (COMBINATION_COLOUR_WORDS, lambda p: (p.colour, p.colour_word)),
        "shape": (COMBINATION_SHAPE_WORDS, lambda p: (p.shape, p.shape_word)),
        "motion": (COMBINATION_MOTION_PHRASES, lambda p: (p.direction, p.motion)),
    }
    for slot, (pool, pick) in pools.items():
        used = [pick(p) for p in group if p.heldout_slot == slot]
        assert all(phrase in pool[label] for label, phrase in used), slot
        assert {label for label, _ in used} == set(pool), slot  # every label meets its combinations
    for p in group:
        assert p.template in TEMPLATES, p
        assert set(words(p.prompt)) <= VOCAB, p
        slot = p.heldout_slot
        assert not _train_pool(p, slot), p
        assert all(_train_pool(p, s) for s in ("colour", "shape", "motion") if s != slot), p
        phrases = [p.motion.ing, p.motion.verb] if slot == "motion" else [_slot_text(p, slot)]
        for phrase in phrases:
            assert not occurs(phrase), phrase


def test_unseen_word_kind_holds_a_word_no_training_caption_contains():
    group = [p for p in PROMPTS if p.kind == "unseen_word"]
    assert Counter(p.heldout_slot for p in group) == {"colour": 30, "shape": 30, "motion": 30}
    for p in group:
        assert p.template in TEMPLATES, p
        slot = p.heldout_slot
        assert all(_train_pool(p, s) for s in ("colour", "shape", "motion") if s != slot), p
        phrases = [p.motion.ing, p.motion.verb] if slot == "motion" else [_slot_text(p, slot)]
        for phrase in phrases:
            assert set(words(phrase)) - VOCAB, phrase
        outside = set(words(p.prompt)) - set(words(" ".join(phrases)))
        assert outside <= VOCAB, p  # the unseen word is the only new language in the prompt


def _spec(p: EvalPrompt, shape: str, colour: str, radius: float = 8.0, offset: float = 0.0) -> ShapeVideoSpec:
    speed = 0.0 if p.direction == "still" else 1.5
    x0 = {"left": 44.0, "right": 20.0}.get(p.direction, 32.0)
    y0 = {"up": 44.0, "down": 20.0}.get(p.direction, 32.0) + offset
    return ShapeVideoSpec(shape, colour, p.direction, radius, speed, x0, y0)


def _fake_generator(prompts: list[EvalPrompt]):
    """Draws every video with the dataset's renderer: right everywhere, except the wrong shape for order
    prompts, the wrong colour for unseen colour words and a second, smaller blob in every frame of
    combination prompts (the largest is still right)."""
    by_prompt = {p.prompt: p for p in prompts}

    def generate(prompt: str, seed: int) -> torch.Tensor:
        p = by_prompt[prompt]
        shape = SHAPES[(SHAPES.index(p.shape) + 1) % 3] if p.kind == "order" else p.shape
        wrong = p.kind == "unseen_word" and p.heldout_slot == "colour"
        colour = COLOURS[(COLOURS.index(p.colour) + 1) % 8] if wrong else p.colour
        frames = to_frames(render([_spec(p, shape, colour)]))[0]
        if p.kind == "combination":
            other = to_frames(render([_spec(p, p.shape, p.colour, radius=5.0, offset=-15.0)]))[0]
            frames = torch.maximum(frames, other)
        return frames

    return generate


@pytest.fixture(scope="module")
def report():
    prompts = PROMPTS[:48]  # 6 template, 12 order, 12 combination, 18 unseen-word prompts
    metrics, results = evaluate_generator(_fake_generator(prompts), prompts, seed=3)
    return prompts, metrics, results


def test_report_by_kind_from_a_fake_generator(report):
    prompts, metrics, results = report
    assert Counter(p.kind for p in prompts) == dict(template=6, order=12, combination=12, unseen_word=18)
    # Top level: evaluate() over all prompts, keys as before plus the object counts.
    assert metrics["count"] == 48.0 and metrics["shape_acc"] == pytest.approx(36 / 48)
    assert metrics["colour_acc"] == pytest.approx(42 / 48) and metrics["direction_acc"] == 1.0
    assert metrics["single_object_rate"] == pytest.approx(36 / 48)
    assert metrics["single_object_videos"] == pytest.approx(36 / 48)
    assert metrics["objects_per_frame"] == pytest.approx((36 + 2 * 12) / 48)
    table = format_table(metrics)  # the flat part only
    assert "| shape_acc | 75.0 % |" in table and "| single_object_rate | 75.0 % |" in table
    assert "by_kind" not in table
    by_kind = metrics["by_kind"]
    assert set(by_kind) == set(KINDS)
    assert by_kind["template"]["all_acc"] == 1.0 and by_kind["template"]["single_object_rate"] == 1.0
    assert by_kind["order"]["shape_acc"] == 0.0 and by_kind["order"]["colour_acc"] == 1.0
    comb = by_kind["combination"]
    assert comb["all_acc"] == 1.0 and comb["single_object_rate"] == 0.0 and comb["objects_per_frame"] == 2.0
    head = metrics["headline"]
    assert head["count"] == 30.0 and head["shape_acc"] == pytest.approx(18 / 30)
    assert head["single_object_rate"] == pytest.approx(18 / 30) and head["colour_acc"] == 1.0
    unseen = metrics["unseen_word"]
    assert unseen["metrics"]["count"] == 18.0 and unseen["text_probe"] is None
    assert unseen["metrics"]["colour_acc"] == pytest.approx(12 / 18)
    assert {s: (v["attribute"], v["accuracy"]) for s, v in unseen["by_slot"].items()} == {
        "colour": ("colour", 0.0),
        "shape": ("shape", 1.0),
        "motion": ("direction", 1.0),
    }
    assert all(v["text_probe_ceiling"] is None for v in unseen["by_slot"].values())
    # The per-kind numbers are evaluate() on exactly that kind's prompts.
    order = [i for i, p in enumerate(prompts) if p.kind == "order"]
    assert by_kind["order"] == evaluate([results[i] for i in order], [prompts[i].labels for i in order])


def test_report_without_some_kinds_and_bad_input(report):
    prompts, _, results = report
    only = [(p, r) for p, r in zip(prompts, results, strict=True) if p.kind == "order"]
    part = kind_report([p for p, _ in only], [r for _, r in only])
    assert set(part["by_kind"]) == {"order"} and part["unseen_word"] is None
    assert part["headline"] == part["by_kind"]["order"]
    with pytest.raises(ValueError, match="same length"):
        kind_report(prompts, results[:-1])
    with pytest.raises(ValueError, match="of kind 'order', not 'unseen_word'"):
        probe_ceiling([p for p, _ in only], {})


def test_unseen_word_slots_carry_the_text_probe_ceiling(report, tmp_path, monkeypatch):
    prompts, _, results = report
    # A tiny random BERT keeps this fast; the probe's numbers on MiniLM are tested in test_text_probe.py.
    encoder = load_text_encoder(str(make_bert_folder(tmp_path / "bert")))
    probe = probe_text_encoder(encoder)
    part = kind_report(prompts, results, probe)
    unseen = part["unseen_word"]
    assert set(unseen["text_probe"]) == {"colour", "shape", "motion"}
    for attribute in ("colour", "shape", "motion"):
        summary = unseen["text_probe"][attribute]
        assert summary == {k: probe[attribute][k] for k in summary} and "heldout_carried" in summary
    ceilings = []
    for slot in ("colour", "shape", "motion"):
        group = [p for p in prompts if p.kind == "unseen_word" and p.heldout_slot == slot]
        guesses = probe[slot]["heldout_guesses"]
        word = {"colour": lambda p: p.colour_word, "shape": lambda p: p.shape_word}.get(
            slot, lambda p: p.motion.ing
        )
        label = {"colour": "colour", "shape": "shape", "motion": "direction"}[slot]
        hits = [guesses[word(p)]["nearest"] == p.labels[label] for p in group]
        ceilings.append(sum(hits) / len(group))
        assert unseen["by_slot"][slot]["text_probe_ceiling"] == pytest.approx(ceilings[-1])
    assert max(ceilings) > 0  # this seeded encoder carries some words (measured 0 / 0.5 / 0.33)
    # evaluate_generator runs the probe on the encoder it is given, before generating anything.
    calls = []
    fake = _fake_generator(prompts[:8])
    monkeypatch.setattr(shapes, "probe_text_encoder", lambda enc: calls.append(enc) or probe)
    metrics, _ = evaluate_generator(
        lambda p, s: calls.append((p, s)) or fake(p, s), prompts[:8], seed=5, text_encoder=encoder
    )
    assert calls[0] is encoder and calls[1:] == [(p.prompt, 5 + p.seed_offset) for p in prompts[:8]]
    assert metrics["unseen_word"]["text_probe"] == unseen["text_probe"]
    table = format_kind_table(part)
    assert "| **headline** | 30 |" in table and "| order | 12 | 100.0 % | 0.0 % |" in table
    assert f"| colour | 6 | colour 0.0 % | {100 * ceilings[0]:.1f} % |" in table, table


def test_progress_bar_goes_to_stderr(capsys):
    prompts = PROMPTS[:2]
    evaluate_generator(_fake_generator(prompts), prompts, progress=True)
    captured = capsys.readouterr()
    assert "eval shapes" in captured.err and "2/2" in captured.err and captured.out == ""
    evaluate_generator(_fake_generator(prompts), prompts)
    assert capsys.readouterr().err == ""


def test_eval_shapes_command_names_a_bad_limit():
    from vidcore.cli import main

    with pytest.raises(SystemExit, match="--limit 0 must be >= 1"):
        main(["eval", "shapes", "--limit", "0"])


def test_eval_shapes_at_another_frame_count(capsys):
    import json

    from vidcore.cli import main

    assert main(["eval", "shapes", "--limit", "1", "--frames", "9", "--threads", "1"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["num_frames"] == 9 and report["prompts"] == 1
    assert report["all_prompts"]["found"] == 1.0  # a 9-frame video was generated and judged
    (row,) = report["videos"]  # one row per prompt: what was asked and what the analyser read
    first = eval_prompts()[0]
    assert (row["prompt"], row["kind"], row["want"]) == (first.prompt, first.kind, first.labels)
    got = report["all_prompts"]
    assert [row["got"][k] == row["want"][k] for k in ("colour", "shape", "direction")] == [
        got["colour_acc"] == 1.0,
        got["shape_acc"] == 1.0,
        got["direction_acc"] == 1.0,
    ]
    assert main(["eval", "shapes", "--limit", "1", "--frames", "10"]) == 2
    err = capsys.readouterr().err
    assert "--frames 10 must be 1 + 4k" in err and "eval shapes:" not in err  # refused before generating


def test_eval_shapes_with_another_sampler_records_it(capsys):
    import json

    import vidcore
    from vidcore.cli import main

    args = ["eval", "shapes", "--limit", "1", "--frames", "5", "--threads", "1", "--steps", "2"]
    assert main(args) == 0
    own = json.loads(capsys.readouterr().out)
    assert main([*args, "--sampler", "heun"]) == 0
    heun = json.loads(capsys.readouterr().out)
    assert (own["sampler"], heun["sampler"]) == (vidcore.load_pipeline("tiny").config.sampler, "heun")
    # The schedule that ran: tiny's pyramid cannot split 2 steps over its 3 stages: flow (as generate does).
    assert own["schedule"] == heun["schedule"] == "flow"
    assert main([*args[:-1], "3"]) == 0
    assert json.loads(capsys.readouterr().out)["schedule"] == "pyramidal"
    assert own["videos"][0]["fill"] != heun["videos"][0]["fill"]  # the video was sampled differently
    with pytest.raises(SystemExit):
        main([*args, "--sampler", "dpm"])
    assert "invalid choice: 'dpm'" in capsys.readouterr().err
