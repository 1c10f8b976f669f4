"""Held-out evaluation prompts: every colour x shape x direction, phrased as no training caption is.

Every prompt says which *kind* of held-out language it tests (``EvalPrompt.kind``):

- ``template``: a sentence frame that is not a training template (``HELDOUT_TEMPLATES``); its slots come in
  an order the training templates use, and the colour word, shape word and motion phrase are training ones
  (the frame may bring filler words of its own, such as "footage" or "hue", never a label word).
- ``order``: the colour, shape and motion slots in an order no training template uses (``ORDER_TEMPLATES``:
  shape-motion-colour, motion-shape-colour, colour-motion-shape), built only from words of the training
  captions; the colour word, shape word and motion phrase are training ones.
- ``combination``: a training template where one slot holds a phrase of training words that no training
  caption contains ("bright red", "round disc", "rising upward"; ``COMBINATION_*``).
- ``unseen_word``: a training template where one slot holds a word the training captions never contain
  (ruby, orb, eastward, ...; the held-out pools of :mod:`vidcore.train.captions`).

The first three are the headline (``HEADLINE_KINDS``): phrasings the model never saw, built from words it
did see. Unseen words are reported on their own, next to how far the text encoder alone carries them
(:mod:`vidcore.eval.text_probe`). tests/test_eval_kinds.py checks each kind's definition against the
training caption generator.

The set interleaves two parts. Version 1 is the original set, kept prompt for prompt so older reports compare:
prompt ``i`` of a pass over the 120 combinations holds out one slot, cycling template -> colour word ->
shape word -> motion phrase (kinds template and unseen_word), and cycles through that slot's held-out
choices; the other slots come from the training pool via a fixed seed. Version 2 adds one prompt per
combination, alternating kinds order and combination (the combination slot cycles colour, shape, motion).
Generation seeds follow ``EvalPrompt.seed_offset``: version-1 prompt ``k`` keeps offset ``k`` (its video in
earlier reports), version-2 prompt ``k`` has ``V2_SEED_OFFSET + k``.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass

from vidcore.train.captions import (
    BACKGROUND_PHRASES,
    COLOUR_WORDS,
    COLOURS,
    DIRECTIONS,
    HELDOUT_COLOUR_WORDS,
    HELDOUT_MOTION_PHRASES,
    HELDOUT_SHAPE_WORDS,
    HELDOUT_TEMPLATES,
    HELDOUT_WORDS,
    MOTION_PHRASES,
    SHAPE_WORDS,
    SHAPES,
    TEMPLATES,
    MotionPhrase,
    compose_caption,
)

HELDOUT_SLOTS: tuple[str, ...] = ("template", "colour", "shape", "motion")
KINDS: tuple[str, ...] = ("template", "order", "combination", "unseen_word")
HEADLINE_KINDS: tuple[str, ...] = ("template", "order", "combination")
# Which slot holds the held-out language, per kind.
KIND_SLOTS: dict[str, tuple[str, ...]] = {
    "template": ("template",),
    "order": ("order",),
    "combination": ("colour", "shape", "motion"),
    "unseen_word": ("colour", "shape", "motion"),
}
_SEED = "vidcore-eval-prompts-v1"
_SEED_V2 = "vidcore-eval-prompts-v2"
V2_SEED_OFFSET = 1_000_000  # version-2 prompt k is generated with seed + V2_SEED_OFFSET + k

# Slot orders no training template uses (they use colour-shape-motion, shape-colour-motion and
# motion-colour-shape); every literal word here occurs in the training templates.
ORDER_TEMPLATES: tuple[str, ...] = (
    "the {shape} that {verb} is {colour}",
    "a {shape} {ing}, coloured {colour}",
    "{ing}: a {shape} in {colour}",
    "{ing}, a {shape} painted {colour}",
    "the {colour} one that {verb} is a {shape}",
    "{colour}, {ing}: a single {shape}",
)
# Phrases of training words (modifiers from "deep blue", "bright white", "round shape", "toward the top",
# ...) that no training caption contains.
COMBINATION_COLOUR_WORDS: dict[str, tuple[str, ...]] = {
    "red": ("deep red", "bright red", "cherry red"),
    "green": ("deep green", "bright green", "emerald green"),
    "blue": ("bright blue", "cobalt blue", "navy blue"),
    "yellow": ("bright yellow", "lemon yellow", "golden yellow"),
    "white": ("snowy white", "milky white", "ivory white"),
    "purple": ("bright purple", "deep violet", "plum purple"),
    "orange": ("bright orange", "deep orange", "tangerine orange"),
    "cyan": ("bright cyan", "deep turquoise", "bright aqua"),
}
COMBINATION_SHAPE_WORDS: dict[str, tuple[str, ...]] = {
    "circle": ("round disc", "round ball", "circular disc"),
    "square": ("square box", "square block", "boxy crate"),
    "triangle": ("triangular wedge", "pointed wedge", "pointed triangle"),
}
COMBINATION_MOTION_PHRASES: dict[str, tuple[MotionPhrase, ...]] = {
    "left": (
        MotionPhrase("moving toward the left", "moves toward the left"),
        MotionPhrase("drifting toward the left", "drifts toward the left"),
    ),
    "right": (
        MotionPhrase("moving toward the right", "moves toward the right"),
        MotionPhrase("sliding toward the right", "slides toward the right"),
    ),
    "up": (MotionPhrase("rising upward", "rises upward"), MotionPhrase("soaring skyward", "soars skyward")),
    "down": (
        MotionPhrase("falling downward", "falls downward"),
        MotionPhrase("sinking toward the bottom", "sinks toward the bottom"),
    ),
    "still": (
        MotionPhrase("staying static", "stays static"),
        MotionPhrase("standing motionless", "stands motionless"),
    ),
}


def _words_in(phrase: MotionPhrase) -> set[str]:
    text = f" {phrase.ing} | {phrase.verb} "
    return {w for w in HELDOUT_WORDS if f" {w} " in text}


def _diverse_order(phrases: tuple[MotionPhrase, ...]) -> list[MotionPhrase]:
    """Order phrases greedily so that each next one brings the most held-out words not yet used."""
    left, seen, out = list(phrases), set(), []
    while left:
        best = max(left, key=lambda p: len(_words_in(p) - seen))
        left.remove(best)
        seen |= _words_in(best)
        out.append(best)
    return out


_MOTION_ORDER = {d: _diverse_order(HELDOUT_MOTION_PHRASES[d]) for d in DIRECTIONS}


@dataclass(frozen=True)
class EvalPrompt:
    """One evaluation prompt: the labels a correct video has, which slot holds the held-out language and of
    which kind it is (module docstring), the set version (1 or 2), the offset of its generation seed (its
    place in its version's list, so version-1 videos stay those of earlier reports) and the parts it was
    composed from."""

    prompt: str
    shape: str
    colour: str
    direction: str
    heldout_slot: str
    kind: str
    version: int
    seed_offset: int
    template: str
    colour_word: str
    shape_word: str
    motion: MotionPhrase
    background: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind={self.kind!r} must be one of {list(KINDS)}")
        if self.heldout_slot not in KIND_SLOTS[self.kind]:
            raise ValueError(
                f"heldout_slot={self.heldout_slot!r} must be one of {list(KIND_SLOTS[self.kind])} "
                f"for kind {self.kind!r}"
            )
        if self.version not in (1, 2):
            raise ValueError(f"version={self.version!r} must be 1 or 2")
        if (
            isinstance(self.seed_offset, bool)
            or not isinstance(self.seed_offset, int)
            or self.seed_offset < 0
        ):
            raise ValueError(f"seed_offset={self.seed_offset!r} must be an int >= 0")

    @property
    def labels(self) -> dict[str, str]:
        return {"shape": self.shape, "colour": self.colour, "direction": self.direction}


def _v1_prompts(per_combination: int, with_background: bool) -> list[EvalPrompt]:
    """The original 120-per-pass set (kinds template and unseen_word), unchanged prompt for prompt."""
    rng = random.Random(_SEED)
    # Word choices cycle per (slot, label) so every label meets each of its held-out words.
    word_counts: dict[tuple[str, str], int] = {}
    out: list[EvalPrompt] = []
    combos = list(itertools.product(COLOURS, SHAPES, DIRECTIONS))
    for i, (colour, shape, direction) in enumerate(combos * per_combination):
        slot = HELDOUT_SLOTS[i % len(HELDOUT_SLOTS)]
        label = {"template": "", "colour": colour, "shape": shape, "motion": direction}[slot]
        k = word_counts.get((slot, label), 0)
        word_counts[(slot, label)] = k + 1
        template = (
            HELDOUT_TEMPLATES[k % len(HELDOUT_TEMPLATES)] if slot == "template" else rng.choice(TEMPLATES)
        )
        pool = HELDOUT_COLOUR_WORDS[colour]
        colour_word = pool[k % len(pool)] if slot == "colour" else rng.choice(COLOUR_WORDS[colour])
        pool = HELDOUT_SHAPE_WORDS[shape]
        shape_word = pool[k % len(pool)] if slot == "shape" else rng.choice(SHAPE_WORDS[shape])
        order = _MOTION_ORDER[direction]
        motion = order[k % len(order)] if slot == "motion" else rng.choice(MOTION_PHRASES[direction])
        background = ""
        if with_background and i % 2 == 1:
            background = rng.choice(BACKGROUND_PHRASES["plain"] + BACKGROUND_PHRASES["texture"])
        parts = (template, colour_word, shape_word, motion, background)
        kind = "template" if slot == "template" else "unseen_word"
        out.append(EvalPrompt(compose_caption(*parts), shape, colour, direction, slot, kind, 1, i, *parts))
    return out


def _v2_prompts(per_combination: int, with_background: bool) -> list[EvalPrompt]:
    """One prompt per combination and pass, alternating kinds order and combination."""
    rng = random.Random(_SEED_V2)
    counts: dict[tuple[str, str], int] = {}
    out: list[EvalPrompt] = []
    combos = list(itertools.product(COLOURS, SHAPES, DIRECTIONS))
    n_combination = 0
    for i, (colour, shape, direction) in enumerate(combos * per_combination):
        kind = "order" if i % 2 == 0 else "combination"
        slot = "order"
        if kind == "combination":
            slot = ("colour", "shape", "motion")[n_combination % 3]
            n_combination += 1
        label = {"order": "", "colour": colour, "shape": shape, "motion": direction}[slot]
        k = counts.get((slot, label), 0)
        counts[(slot, label)] = k + 1
        template = ORDER_TEMPLATES[k % len(ORDER_TEMPLATES)] if slot == "order" else rng.choice(TEMPLATES)
        pool = COMBINATION_COLOUR_WORDS[colour]
        colour_word = pool[k % len(pool)] if slot == "colour" else rng.choice(COLOUR_WORDS[colour])
        pool = COMBINATION_SHAPE_WORDS[shape]
        shape_word = pool[k % len(pool)] if slot == "shape" else rng.choice(SHAPE_WORDS[shape])
        phrases = COMBINATION_MOTION_PHRASES[direction]
        motion = phrases[k % len(phrases)] if slot == "motion" else rng.choice(MOTION_PHRASES[direction])
        background = ""
        if with_background and (i // 2) % 2 == 1:  # every other prompt of each kind
            background = rng.choice(BACKGROUND_PHRASES["plain"] + BACKGROUND_PHRASES["texture"])
        parts = (template, colour_word, shape_word, motion, background)
        offset = V2_SEED_OFFSET + i
        out.append(
            EvalPrompt(compose_caption(*parts), shape, colour, direction, slot, kind, 2, offset, *parts)
        )
    return out


def eval_prompts(per_combination: int = 1, with_background: bool = False) -> list[EvalPrompt]:
    """The deterministic held-out prompt set: ``2 * per_combination`` prompts for each of the 120 label
    triples, alternating version 1 and version 2 prompts so that any prefix holds every kind.

    ``with_background`` appends a background phrase ("on a dark background", ...) to every other prompt of
    each version. The version-1 prompts, in order, are exactly the earlier set.
    """
    if isinstance(per_combination, bool) or not isinstance(per_combination, int) or per_combination < 1:
        raise ValueError(f"per_combination={per_combination!r} must be an int >= 1")
    v1 = _v1_prompts(per_combination, with_background)
    v2 = _v2_prompts(per_combination, with_background)
    return [p for pair in zip(v1, v2, strict=True) for p in pair]
