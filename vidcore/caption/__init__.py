"""SmolVLM2 video captioning and caption -> prompt refinement. transformers is imported lazily."""

from vidcore.caption.prompt import (
    SmolVLMTokens,
    chat_prompt,
    number_to_words,
    sample_frame_indices,
    video_block,
    video_prompt,
)
from vidcore.caption.refine import (
    LoopResult,
    caption_to_prompt,
    rewrite_with_vlm,
    understand_improve_generate,
)
from vidcore.caption.smolvlm import Captioner, VisionPreprocess, load_captioner, preprocess_frames
from vidcore.io.frames import check_frames  # the one frames validator, kept importable from here

__all__ = [
    "Captioner",
    "LoopResult",
    "SmolVLMTokens",
    "VisionPreprocess",
    "caption_to_prompt",
    "chat_prompt",
    "check_frames",
    "load_captioner",
    "number_to_words",
    "preprocess_frames",
    "rewrite_with_vlm",
    "sample_frame_indices",
    "understand_improve_generate",
    "video_block",
    "video_prompt",
]
