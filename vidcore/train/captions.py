"""Caption vocabulary of the procedural shape videos: labels, synonyms, templates and the held-out split.

The language is split in two disjoint pools. ``split="train"`` captions use only the training pool.
``split="heldout"`` captions contain at least one held-out component (a colour word, a shape word, a
motion verb or direction word, or a whole template) and are used only by the evaluation prompt set
(:mod:`vidcore.eval.prompts`), so a model can be tested on phrasings it never saw:

- colour words: ruby (red), jade (green), sapphire (blue), canary (yellow), pearl (white),
  amethyst (purple), apricot (orange), teal (cyan)
- shape words: orb, sphere (circle); tile, cube (square); pyramid, three-sided shape (triangle)
- motion: the verbs "travelling/travels" and "gliding/glides", the compass words east, eastward, west,
  westward, north, northward, south, southward, the verbs "ascending/ascends", "descending/descends",
  and the still phrases "at rest", "frozen in place", "unmoving" (and their finite forms)
- templates: ``HELDOUT_TEMPLATES`` below (e.g. "{shape} of {colour} colour {ing}")

:func:`parse_caption` maps any caption of either split back to its labels (every keyword belongs to
exactly one label), which is how the tests check caption/label agreement.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
COLOURS: tuple[str, ...] = ("red", "green", "blue", "yellow", "white", "purple", "orange", "cyan")
DIRECTIONS: tuple[str, ...] = ("left", "right", "up", "down", "still")
SPLITS: tuple[str, ...] = ("train", "heldout")

COLOUR_WORDS: dict[str, tuple[str, ...]] = {
    "red": (
        "red",
        "crimson",
        "scarlet",
        "cherry",
        "vermilion",
        "carmine",
        "garnet",
        "tomato",
        "strawberry",
        "blood-red",
        "cardinal",
        "fire-red",
    ),
    "green": (
        "green",
        "emerald",
        "lime",
        "mint",
        "grass-green",
        "leaf-green",
        "forest-green",
        "malachite",
        "fern",
        "pea-green",
        "moss-green",
        "kelly-green",
    ),
    "blue": (
        "blue",
        "azure",
        "cobalt",
        "navy",
        "royal blue",
        "ultramarine",
        "lapis",
        "denim",
        "cornflower",
        "blueberry",
        "deep blue",
        "indigo-blue",
    ),
    "yellow": (
        "yellow",
        "golden",
        "lemon",
        "sunflower",
        "banana",
        "butter-yellow",
        "daffodil",
        "mustard",
        "citrine",
        "buttercup",
        "gold",
        "sunny yellow",
    ),
    "white": (
        "white",
        "snowy",
        "ivory",
        "milky",
        "chalk-white",
        "alabaster",
        "frosty",
        "bright white",
        "cotton-white",
        "paper-white",
        "cloud-white",
        "snow-white",
    ),
    "purple": (
        "purple",
        "violet",
        "plum",
        "lilac",
        "lavender",
        "grape",
        "mauve",
        "orchid",
        "mulberry",
        "eggplant",
        "deep purple",
        "royal purple",
    ),
    "orange": (
        "orange",
        "amber",
        "tangerine",
        "pumpkin",
        "carrot",
        "mandarin",
        "marigold",
        "copper",
        "persimmon",
        "burnt orange",
        "clementine",
        "saffron",
    ),
    "cyan": (
        "cyan",
        "turquoise",
        "aqua",
        "aquamarine",
        "cerulean",
        "seafoam",
        "ice-blue",
        "sky-blue",
        "lagoon",
        "glacier-blue",
        "pool-blue",
        "robin-egg",
    ),
}
HELDOUT_COLOUR_WORDS: dict[str, tuple[str, ...]] = {
    "red": ("ruby",),
    "green": ("jade",),
    "blue": ("sapphire",),
    "yellow": ("canary",),
    "white": ("pearl",),
    "purple": ("amethyst",),
    "orange": ("apricot",),
    "cyan": ("teal",),
}
SHAPE_WORDS: dict[str, tuple[str, ...]] = {
    "circle": (
        "circle",
        "ball",
        "disc",
        "dot",
        "round shape",
        "globe",
        "marble",
        "bubble",
        "coin",
        "circular shape",
        "round blob",
        "disk",
    ),
    "square": (
        "square",
        "box",
        "block",
        "square shape",
        "crate",
        "four-sided shape",
        "rectangle",
        "checker",
        "quadrilateral",
        "brick",
        "boxy shape",
        "square panel",
    ),
    "triangle": (
        "triangle",
        "wedge",
        "triangular shape",
        "arrowhead",
        "delta",
        "spike",
        "trigon",
        "pointed shape",
        "triangle shape",
        "tent shape",
        "cone shape",
        "triangular panel",
    ),
}
HELDOUT_SHAPE_WORDS: dict[str, tuple[str, ...]] = {
    "circle": ("orb", "sphere"),
    "square": ("tile", "cube"),
    "triangle": ("pyramid", "three-sided shape"),
}

# Motion phrases are built from a verb (participle "ing" form and finite third-person form) and a
# direction phrase, plus a few verbs that carry the direction themselves ("rising", "sinking").
_VERBS = (
    ("moving", "moves"),
    ("sliding", "slides"),
    ("drifting", "drifts"),
    ("going", "goes"),
    ("heading", "heads"),
    ("floating", "floats"),
    ("shifting", "shifts"),
    ("rolling", "rolls"),
    ("flying", "flies"),
    ("coasting", "coasts"),
)
_HELDOUT_VERBS = (("travelling", "travels"), ("gliding", "glides"))
_DIR_WORDS: dict[str, tuple[str, ...]] = {
    "left": ("left", "to the left", "leftwards", "leftward", "towards the left"),
    "right": ("right", "to the right", "rightwards", "rightward", "towards the right"),
    "up": ("up", "upwards", "upward", "toward the top", "skyward"),
    "down": ("down", "downwards", "downward", "toward the bottom", "earthward"),
}
_HELDOUT_DIR_WORDS: dict[str, tuple[str, ...]] = {
    "left": ("west", "westward"),
    "right": ("east", "eastward"),
    "up": ("north", "northward"),
    "down": ("south", "southward"),
}
_SELF_DIRECTED: dict[str, tuple[tuple[str, str], ...]] = {
    "up": (("rising", "rises"), ("climbing", "climbs"), ("soaring", "soars"), ("lifting off", "lifts off")),
    "down": (
        ("falling", "falls"),
        ("sinking", "sinks"),
        ("dropping", "drops"),
        ("plunging", "plunges"),
        ("plummeting", "plummets"),
    ),
}
_HELDOUT_SELF_DIRECTED: dict[str, tuple[tuple[str, str], ...]] = {
    "up": (("ascending", "ascends"),),
    "down": (("descending", "descends"),),
}
_STILL = (
    ("staying still", "stays still"),
    ("standing still", "stands still"),
    ("not moving", "does not move"),
    ("static", "remains static"),
    ("motionless", "stays motionless"),
    ("stationary", "remains stationary"),
    ("immobile", "stays immobile"),
    ("fixed in place", "stays fixed in place"),
    ("resting", "rests"),
    ("at a standstill", "remains at a standstill"),
    ("holding still", "holds still"),
    ("not going anywhere", "goes nowhere"),
)
_HELDOUT_STILL = (
    ("at rest", "remains at rest"),
    ("frozen in place", "stays frozen in place"),
    ("unmoving", "stays unmoving"),
)

TEMPLATES: tuple[str, ...] = (
    "a {colour} {shape} {ing}",
    "{colour} {shape} {verb}",
    "the {colour} {shape} {verb}",
    "a {shape} in {colour}, {ing}",
    "a {colour} {shape}, {ing}",
    "video of a {colour} {shape} {ing}",
    "a single {colour} {shape} {ing}",
    "there is a {colour} {shape} {ing}",
    "a {shape} coloured {colour} {ing}",
    "one {colour} {shape} that {verb}",
    "{ing}: a {colour} {shape}",
    "a small {colour} {shape} {ing}",
    "an animation of a {colour} {shape} {ing}",
    "in this clip a {colour} {shape} {verb}",
    "{colour} {shape}, {ing}",
    "a {shape} painted {colour}, {ing}",
    "look: a {colour} {shape} {ing}",
    "a plain {shape}, {colour}, {ing}",
    "here the {colour} {shape} {verb}",
    "simple scene, a {colour} {shape} {ing}",
)
HELDOUT_TEMPLATES: tuple[str, ...] = (
    "{shape} of {colour} colour {ing}",
    "watch as the {colour} {shape} {verb}",
    "footage showing a {colour} {shape} {ing}",
    "a lone {shape}, {colour} in hue, {ing}",
)

BACKGROUND_PHRASES: dict[str, tuple[str, ...]] = {
    "plain": ("on a dark background", "against black", "on a plain dark backdrop", "in the dark"),
    "texture": (
        "on a dark textured background",
        "over a dim grainy backdrop",
        "on a mottled dark background",
    ),
}
_BACKGROUND_PROB = 0.3


@dataclass(frozen=True)
class MotionPhrase:
    """One way to say a motion: participle form ("moving right") and finite form ("moves right")."""

    ing: str
    verb: str


def _motion_phrases(direction: str, heldout: bool) -> tuple[MotionPhrase, ...]:
    """All motion phrases of ``direction`` in one pool (held-out = uses a held-out verb or word)."""
    if direction == "still":
        pairs = _HELDOUT_STILL if heldout else _STILL
        return tuple(MotionPhrase(i, v) for i, v in pairs)
    out: list[MotionPhrase] = []
    all_verbs = _VERBS + _HELDOUT_VERBS
    all_words = _DIR_WORDS[direction] + _HELDOUT_DIR_WORDS[direction]
    for ing, verb in all_verbs:
        for word in all_words:
            is_heldout = (ing, verb) in _HELDOUT_VERBS or word in _HELDOUT_DIR_WORDS[direction]
            if is_heldout == heldout:
                out.append(MotionPhrase(f"{ing} {word}", f"{verb} {word}"))
    pool = _HELDOUT_SELF_DIRECTED if heldout else _SELF_DIRECTED
    out.extend(MotionPhrase(i, v) for i, v in pool.get(direction, ()))
    return tuple(out)


MOTION_PHRASES: dict[str, tuple[MotionPhrase, ...]] = {d: _motion_phrases(d, False) for d in DIRECTIONS}
HELDOUT_MOTION_PHRASES: dict[str, tuple[MotionPhrase, ...]] = {
    d: _motion_phrases(d, True) for d in DIRECTIONS
}

# Words whose presence marks a caption as held-out (used by the tests to scan training captions).
HELDOUT_WORDS: tuple[str, ...] = tuple(
    sorted(
        {w for ws in HELDOUT_COLOUR_WORDS.values() for w in ws}
        | {w for ws in HELDOUT_SHAPE_WORDS.values() for w in ws}
        | {w for pair in _HELDOUT_VERBS for w in pair}
        | {w for ws in _HELDOUT_DIR_WORDS.values() for w in ws}
        | {w for ps in _HELDOUT_SELF_DIRECTED.values() for pair in ps for w in pair}
        | {"at rest", "frozen in place", "unmoving"}
    )
)

# Keywords that identify each label in any caption; longest phrases are matched first.
_DIRECTION_KEYWORDS: dict[str, tuple[str, ...]] = {
    "left": _DIR_WORDS["left"] + _HELDOUT_DIR_WORDS["left"],
    "right": _DIR_WORDS["right"] + _HELDOUT_DIR_WORDS["right"],
    "up": _DIR_WORDS["up"]
    + _HELDOUT_DIR_WORDS["up"]
    + tuple(w for pair in _SELF_DIRECTED["up"] + _HELDOUT_SELF_DIRECTED["up"] for w in pair),
    "down": _DIR_WORDS["down"]
    + _HELDOUT_DIR_WORDS["down"]
    + tuple(w for pair in _SELF_DIRECTED["down"] + _HELDOUT_SELF_DIRECTED["down"] for w in pair),
    "still": ("still", "not moving", "does not move", "static", "motionless", "stationary")
    + ("immobile", "fixed in place", "resting", "rests", "at a standstill", "not going anywhere")
    + ("goes nowhere", "at rest", "frozen in place", "unmoving"),
}


def _keyword_table() -> dict[str, dict[str, tuple[str, ...]]]:
    colour = {c: COLOUR_WORDS[c] + HELDOUT_COLOUR_WORDS[c] for c in COLOURS}
    shape = {s: SHAPE_WORDS[s] + HELDOUT_SHAPE_WORDS[s] for s in SHAPES}
    return {"colour": colour, "shape": shape, "direction": _DIRECTION_KEYWORDS}


_KEYWORDS = _keyword_table()


def _fix_articles(text: str) -> str:
    """Use "an" before a vowel sound ("an orange circle", "an orb")."""
    return re.sub(r"\b([aA]) (?=[aeiouAEIOU])", r"\1n ", text)


def compose_caption(
    template: str, colour_word: str, shape_word: str, motion: MotionPhrase, background: str = ""
) -> str:
    """Fill one template with the chosen words; ``background`` (may be empty) is appended."""
    text = template.format(colour=colour_word, shape=shape_word, ing=motion.ing, verb=motion.verb)
    if background:
        text = f"{text} {background}"
    return _fix_articles(text)


def _check_labels(shape: str, colour: str, direction: str) -> None:
    if shape not in SHAPES:
        raise ValueError(f"shape={shape!r} must be one of {list(SHAPES)}")
    if colour not in COLOURS:
        raise ValueError(f"colour={colour!r} must be one of {list(COLOURS)}")
    if direction not in DIRECTIONS:
        raise ValueError(f"direction={direction!r} must be one of {list(DIRECTIONS)}")


def caption_for(
    shape: str,
    colour: str,
    direction: str,
    rng: random.Random,
    split: str = "train",
    background: str | None = None,
) -> str:
    """Draw one caption for the labels; ``split="heldout"`` guarantees at least one held-out component.

    ``background`` is "plain", "texture" or None; when given, a matching phrase is appended with
    probability 0.3 (train pool only; backgrounds are never held out).
    """
    _check_labels(shape, colour, direction)
    if split not in SPLITS:
        raise ValueError(f"split={split!r} must be one of {list(SPLITS)}")
    if background is not None and background not in BACKGROUND_PHRASES:
        raise ValueError(f"background={background!r} must be one of {list(BACKGROUND_PHRASES)} or None")
    if split == "train":
        template = rng.choice(TEMPLATES)
        colour_word = rng.choice(COLOUR_WORDS[colour])
        shape_word = rng.choice(SHAPE_WORDS[shape])
        motion = rng.choice(MOTION_PHRASES[direction])
    else:
        # Pick which slot is held out first so each slot is exercised equally often.
        slot = rng.choice(("template", "colour", "shape", "motion"))
        template = rng.choice(HELDOUT_TEMPLATES if slot == "template" else TEMPLATES + HELDOUT_TEMPLATES)
        colour_pool = HELDOUT_COLOUR_WORDS[colour] if slot == "colour" else COLOUR_WORDS[colour]
        shape_pool = HELDOUT_SHAPE_WORDS[shape] if slot == "shape" else SHAPE_WORDS[shape]
        motion_pool = HELDOUT_MOTION_PHRASES[direction] if slot == "motion" else MOTION_PHRASES[direction]
        colour_word = rng.choice(colour_pool)
        shape_word = rng.choice(shape_pool)
        motion = rng.choice(motion_pool)
    bg = ""
    if background is not None and rng.random() < _BACKGROUND_PROB:
        bg = rng.choice(BACKGROUND_PHRASES[background])
    return compose_caption(template, colour_word, shape_word, motion, bg)


def _find(text: str, phrase: str) -> bool:
    return re.search(r"(?<![\w-])" + re.escape(phrase) + r"(?![\w-])", text) is not None


def parse_caption(text: str) -> dict[str, str | None]:
    """Labels named by a caption's keywords: {"colour", "shape", "direction"}; None where none or several."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    low = text.lower()
    out: dict[str, str | None] = {}
    for attribute, table in _KEYWORDS.items():
        # Longest keywords first, blanked out once found, so "not moving" is not also read as motion.
        found: set[str] = set()
        rest = low
        for label, phrase in sorted(
            ((lab, p) for lab, ps in table.items() for p in ps), key=lambda lp: -len(lp[1])
        ):
            if _find(rest, phrase):
                found.add(label)
                rest = re.sub(r"(?<![\w-])" + re.escape(phrase) + r"(?![\w-])", " ", rest)
        out[attribute] = found.pop() if len(found) == 1 else None
    return out


def template_regex(template: str) -> re.Pattern[str]:
    """A regex that matches any caption produced from ``template`` (articles a/an both accepted)."""
    parts = re.split(r"\{\w+\}", template)
    escaped = [re.escape(p).replace(r"a\ ", r"an?\ ") for p in parts]
    return re.compile("^" + "(.+?)".join(escaped) + r"( .+)?$")
