"""Caption -> generation prompt (template or VLM rewrite), and the understand -> improve -> generate loop."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from vidcore.caption.smolvlm import DEFAULT_QUESTION, Captioner, VideoInput

REWRITE_MODES = ("template", "vlm")
# Narration openers that describe the clip instead of its content ("The video shows ...").
_LEAD_IN = re.compile(
    r"^(?:in (?:the|this) (?:video|clip|footage),?\s*"
    r"|(?:the|this) (?:video|clip|footage|scene) (?:begins with|starts with|shows|depicts|features|captures"
    r"|displays|presents|is of)\s+)",
    re.IGNORECASE,
)
VLM_REWRITE_REQUEST = (
    "Rewrite the following video description as one short, vivid prompt for a text-to-video generator. "
    "Keep the subjects, colours and motion. Answer with the prompt only.{style}\n\nDescription: {caption}"
)


def _check_terms(extra_terms: Sequence[str]) -> list[str]:
    if isinstance(extra_terms, str) or not isinstance(extra_terms, (list, tuple)):
        raise TypeError(f"extra_terms must be a list of strings, got {type(extra_terms).__name__}")
    for i, t in enumerate(extra_terms):
        if not isinstance(t, str):
            raise TypeError(f"extra_terms[{i}] is {type(t).__name__}; every term must be a str")
    return [t.strip() for t in extra_terms if t.strip()]


def _check_text(name: str, value: Any, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name}={value!r} must be a non-empty string")


def caption_to_prompt(caption: str, style: str | None = None, extra_terms: Sequence[str] = ()) -> str:
    """Template rewrite: drop the "The video shows" opener and final full stop, then append style and terms.

    ``"The video shows a red circle moving right."`` with style ``"cinematic"`` and terms ``["4k"]`` ->
    ``"a red circle moving right, cinematic, 4k"``.
    """
    _check_text("caption", caption)
    _check_text("style", style, allow_none=True)
    terms = _check_terms(extra_terms)
    text = " ".join(caption.split())
    text = _LEAD_IN.sub("", text, count=1)
    text = text.rstrip(" .")
    if not text:
        raise ValueError(f"caption={caption!r} has no content once its opener is removed")
    return ", ".join([text] + ([style.strip()] if style else []) + terms)


def rewrite_with_vlm(
    captioner: Captioner,
    caption: str,
    style: str | None = None,
    extra_terms: Sequence[str] = (),
    max_new_tokens: int = 77,
    seed: int = 0,
    temperature: float = 0.0,
) -> str:
    """Ask the captioner's language model to rewrite the caption as a prompt; extra terms are appended.
    ``temperature`` 0 is greedy (``seed`` unused); above 0 the rewrite is sampled with ``seed``."""
    _check_text("caption", caption)
    _check_text("style", style, allow_none=True)
    request = VLM_REWRITE_REQUEST.format(
        caption=" ".join(caption.split()), style=f" Use a {style.strip()} style." if style else ""
    )
    answer = captioner.ask(request, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)
    if not answer.strip():
        raise RuntimeError(f"the VLM returned an empty rewrite for caption {caption[:60]!r}")
    return caption_to_prompt(answer, None, extra_terms)


@dataclass(frozen=True)
class LoopResult:
    """What the understand -> improve -> generate loop produced at each stage."""

    caption: str
    prompt: str
    frames: Tensor  # [T, H, W, 3] in 0..1


def understand_improve_generate(
    video: VideoInput,
    captioner: Captioner,
    generate: Callable[..., Tensor],
    rewrite: str = "template",
    style: str | None = None,
    extra_terms: Sequence[str] = (),
    question: str = DEFAULT_QUESTION,
    caption_frames: int | None = None,
    video_fps: float | None = None,
    max_new_tokens: int = 128,
    negative_prompt: str = "",
    num_frames: int | None = None,
    height: int | None = None,
    width: int | None = None,
    steps: int | None = None,
    guidance: float | None = None,
    seed: int = 0,
) -> LoopResult:
    """Caption a video with SmolVLM2, turn the caption into a prompt, generate a new video from it.

    ``generate`` is any callable shaped like ``pipeline.generate(prompt, negative_prompt=, num_frames=,
    height=, width=, steps=, guidance=, seed=) -> frames [T, H, W, 3]``; ``None`` settings let it use its
    own defaults.
    """
    if rewrite not in REWRITE_MODES:
        raise ValueError(f"rewrite={rewrite!r} must be one of {list(REWRITE_MODES)}")
    if not callable(generate):
        raise TypeError(f"generate must be callable (e.g. pipeline.generate), got {type(generate).__name__}")
    caption = captioner.caption(
        video,
        question,
        num_frames=caption_frames,
        video_fps=video_fps,
        max_new_tokens=max_new_tokens,
        seed=seed,
    )
    if not caption.strip():
        raise RuntimeError("the captioner returned an empty caption; try more frames or max_new_tokens")
    if rewrite == "vlm":
        prompt = rewrite_with_vlm(captioner, caption, style, extra_terms, seed=seed)
    else:
        prompt = caption_to_prompt(caption, style, extra_terms)
    frames = generate(
        prompt,
        negative_prompt=negative_prompt,
        num_frames=num_frames,
        height=height,
        width=width,
        steps=steps,
        guidance=guidance,
        seed=seed,
    )
    if not isinstance(frames, Tensor) or frames.ndim != 4 or frames.shape[-1] != 3:
        got = tuple(frames.shape) if isinstance(frames, Tensor) else type(frames).__name__
        raise TypeError(f"generate returned {got}; expected frames [T, H, W, 3]")
    return LoopResult(caption=caption, prompt=prompt, frames=frames)
