"""How far a text encoder itself carries the held-out words to their labels (``vidcore eval text-probe``).

A text-to-video model can only follow a word it never saw in training if its text encoder already puts that
word near the training words of the same label. This probe measures that ceiling without any video model:
each word's token states (mean over its tokens, in a few fixed caption contexts) are compared with the
centroid of each label's training words; a held-out word counts as carried when its nearest centroid
(cosine) is its own label. As a reference, every training word is also classified against centroids built
without it (leave-one-out).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from vidcore.train.captions import (
    COLOUR_WORDS,
    COLOURS,
    DIRECTIONS,
    HELDOUT_COLOUR_WORDS,
    HELDOUT_MOTION_PHRASES,
    HELDOUT_SHAPE_WORDS,
    MOTION_PHRASES,
    SHAPE_WORDS,
    SHAPES,
)

# Caption contexts per attribute: "{}" is the probed word, the other slots are fixed training words.
_CONTEXTS: dict[str, tuple[str, ...]] = {
    "colour": ("a {} circle moving right", "the {} square falls", "a {} triangle staying still"),
    "shape": ("a red {} moving right", "the blue {} falls", "a green {} staying still"),
    "motion": ("a red circle {}", "a blue square {}", "a green triangle {}"),
}


def _pools() -> dict[str, tuple[tuple[str, ...], dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]]]:
    motion_train = {d: tuple(p.ing for p in MOTION_PHRASES[d]) for d in DIRECTIONS}
    motion_held = {d: tuple(p.ing for p in HELDOUT_MOTION_PHRASES[d]) for d in DIRECTIONS}
    return {
        "colour": (COLOURS, COLOUR_WORDS, HELDOUT_COLOUR_WORDS),
        "shape": (SHAPES, SHAPE_WORDS, HELDOUT_SHAPE_WORDS),
        "motion": (DIRECTIONS, motion_train, motion_held),
    }


def word_vectors(encoder: Any, words: list[str], contexts: tuple[str, ...]) -> Tensor:
    """Unit vectors [N, D]: each word's token states averaged over its tokens and the ``contexts``."""
    texts = [c.format(w) for w in words for c in contexts]
    spans = [(c.index("{}"), c.index("{}") + len(w)) for w in words for c in contexts]
    emb, _ = encoder.encode(texts)
    offsets = encoder.tokenizer(texts, return_offsets_mapping=True)["offset_mapping"]
    rows = []
    for i, ((lo, hi), offs) in enumerate(zip(spans, offsets, strict=True)):
        idx = [j for j, (a, b) in enumerate(offs) if b > a and a >= lo and b <= hi]
        if not idx:
            raise ValueError(f"no token of {texts[i]!r} falls inside characters {lo}..{hi}")
        rows.append(emb[i, idx].float().mean(0))
    vecs = torch.stack(rows).view(len(words), len(contexts), -1).mean(1)
    return F.normalize(vecs, dim=-1)


def _centroid_votes(train: Tensor, label_of: Tensor, n_labels: int, held: Tensor) -> tuple[Tensor, Tensor]:
    """Nearest label centroid (cosine) of each held-out vector, and of each training vector with itself left
    out of its own label's centroid (leave-one-out). Centroids are label sums (same direction as means)."""
    sums = torch.zeros(n_labels, train.shape[1]).index_add_(0, label_of, train)
    held_guess = (F.normalize(sums, dim=-1) @ held.T).argmax(0)
    scores = F.normalize(sums, dim=-1) @ train.T  # [labels, N]
    own = (F.normalize(sums[label_of] - train, dim=-1) * train).sum(-1)
    scores[label_of, torch.arange(len(train))] = own
    return held_guess, scores.argmax(0)


def probe_text_encoder(
    encoder: Any, attributes: tuple[str, ...] = ("colour", "shape", "motion")
) -> dict[str, Any]:
    """Per attribute: share of held-out words carried to their label, training words leave-one-out, and
    each held-out word's nearest label."""
    pools = _pools()
    unknown = [a for a in attributes if a not in pools]
    if unknown or not attributes:
        raise ValueError(f"attributes={attributes!r} must be a non-empty subset of {list(pools)}")
    report: dict[str, Any] = {}
    for attribute in attributes:
        labels, train, held = pools[attribute]
        contexts = _CONTEXTS[attribute]
        train_words = [(lab, w) for lab in labels for w in train[lab]]
        held_words = [(lab, w) for lab in labels for w in held[lab]]
        tv = word_vectors(encoder, [w for _, w in train_words], contexts)
        hv = word_vectors(encoder, [w for _, w in held_words], contexts)
        label_of = torch.tensor([labels.index(lab) for lab, _ in train_words])
        held_guess, loo_guess = _centroid_votes(tv, label_of, len(labels), hv)
        guesses = {w: labels[int(k)] for (_, w), k in zip(held_words, held_guess, strict=True)}
        report[attribute] = {
            "heldout_carried": sum(guesses[w] == lab for lab, w in held_words) / len(held_words),
            "heldout_words": len(held_words),
            "train_leave_one_out": float((loo_guess == label_of).float().mean()),
            "train_words": len(train_words),
            "heldout_guesses": {w: {"label": lab, "nearest": guesses[w]} for lab, w in held_words},
        }
    return report
