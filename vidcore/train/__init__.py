"""Training: procedural shape videos with captions (data, captions); training loops live beside them."""

from vidcore.train.captions import (
    COLOURS,
    DIRECTIONS,
    HELDOUT_TEMPLATES,
    HELDOUT_WORDS,
    SHAPES,
    TEMPLATES,
    caption_for,
    parse_caption,
)
from vidcore.train.data import (
    PALETTE,
    SamplingRanges,
    ShapeVideoDataset,
    ShapeVideoSpec,
    render,
    sample_spec,
    to_frames,
)

__all__ = [
    "COLOURS",
    "DIRECTIONS",
    "HELDOUT_TEMPLATES",
    "HELDOUT_WORDS",
    "PALETTE",
    "SHAPES",
    "TEMPLATES",
    "SamplingRanges",
    "ShapeVideoDataset",
    "ShapeVideoSpec",
    "caption_for",
    "parse_caption",
    "render",
    "sample_spec",
    "to_frames",
]
