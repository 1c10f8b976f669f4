"""Held-out evaluation prompts: every colour x shape x direction, each phrased with held-out language.

Prompt ``i`` of a pass over the 120 combinations holds out one slot, cycling template -> colour word ->
shape word -> motion phrase, and cycles through that slot's held-out choices, so every held-out word,
motion phrase kind and template appears; the other slots come from the training pool via a fixed seed.
No prompt can be a training caption (see :mod:`vidcore.train.captions` for the split).
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
_SEED = "vidcore-eval-prompts-v1"


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
    """One evaluation prompt with the labels a correct video has and the slot that was held out."""

    prompt: str
    shape: str
    colour: str
    direction: str
    heldout_slot: str

    @property
    def labels(self) -> dict[str, str]:
        return {"shape": self.shape, "colour": self.colour, "direction": self.direction}


def eval_prompts(per_combination: int = 1, with_background: bool = False) -> list[EvalPrompt]:
    """The deterministic held-out prompt set: ``per_combination`` prompts for each of the 120 label triples.

    ``with_background`` appends a background phrase ("on a dark background", ...) to every other prompt.
    """
    if isinstance(per_combination, bool) or not isinstance(per_combination, int) or per_combination < 1:
        raise ValueError(f"per_combination={per_combination!r} must be an int >= 1")
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
        prompt = compose_caption(template, colour_word, shape_word, motion, background)
        out.append(EvalPrompt(prompt, shape, colour, direction, slot))
    return out
