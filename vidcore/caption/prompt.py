"""SmolVLM2 video prompt text and frame sampling, written out by hand (no processor, no torchvision).

Replicates transformers 5.x ``SmolVLMProcessor`` video expansion and ``SmolVLMVideoProcessor.sample_frames``
(transformers src/transformers/models/smolvlm/processing_smolvlm.py and video_processing_smolvlm.py).
Pure Python: nothing here imports transformers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_to_words(n: int) -> str:
    """English cardinal 0..999 as ``num2words`` writes it ("four", "twenty-one", "one hundred and one")."""
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= 999:
        raise ValueError(f"n={n!r} must be an int in 0..999 (frame counts)")
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + ("-" + _ONES[ones] if ones else "")
    hundreds, rest = divmod(n, 100)
    return _ONES[hundreds] + " hundred" + (" and " + number_to_words(rest) if rest else "")


@dataclass(frozen=True)
class SmolVLMTokens:
    """The special token strings a SmolVLM tokenizer uses (defaults = the hub tokenizers')."""

    image: str = "<image>"
    fake_image: str = "<fake_token_around_image>"
    global_image: str = "<global-img>"
    start: str = "<|im_start|>"
    end_of_utterance: str = "<end_of_utterance>"


def image_block(image_seq_len: int, tokens: SmolVLMTokens = SmolVLMTokens()) -> str:
    """One un-split image: ``<fake><global-img>`` + ``<image>`` x image_seq_len + ``<fake>``."""
    return tokens.fake_image + tokens.global_image + tokens.image * image_seq_len + tokens.fake_image


def format_timestamp(seconds: float) -> str:
    """Frame time as zero-padded ``MM:SS`` (whole seconds, truncated), as the processor writes it."""
    return f"{int(seconds // 60):02d}:{int(seconds % 60):02d}"


def video_block(
    timestamps: list[float], duration: float, image_seq_len: int, tokens: SmolVLMTokens = SmolVLMTokens()
) -> str:
    """The processor's ``<video>`` expansion: intro, then per frame ``\\nFrame from MM:SS:`` + image block."""
    if not timestamps:
        raise ValueError("timestamps=[]: a video prompt needs at least one frame")
    text = (
        f"You are provided the following series of {number_to_words(len(timestamps))} frames "
        f"from a {timedelta(seconds=int(duration))} [H:MM:SS] video.\n"
    )
    for t in timestamps:
        text += f"\nFrame from {format_timestamp(t)}:" + image_block(image_seq_len, tokens)
    return text + "\n\n"


def chat_prompt(user_text: str, tokens: SmolVLMTokens = SmolVLMTokens()) -> str:
    """One user turn + generation prompt, as SmolVLM's default chat template renders it."""
    return f"{tokens.start}User: {user_text}{tokens.end_of_utterance}\nAssistant:"


def video_prompt(
    question: str,
    timestamps: list[float],
    duration: float,
    image_seq_len: int,
    tokens: SmolVLMTokens = SmolVLMTokens(),
) -> str:
    """Prompt for ``[{"type": "video"}, {"type": "text", "text": question}]`` + the generation prompt."""
    return chat_prompt(video_block(timestamps, duration, image_seq_len, tokens) + question, tokens)


def uniform_indices(start: int, end: int, n: int) -> list[int]:
    """``unique(int(linspace(start, end, n)))`` as numpy computes it (start + i*step, last = end)."""
    if n == 1:
        return [start]
    step = (end - start) / (n - 1)
    values = [int(start + i * step) for i in range(n - 1)] + [end]
    return sorted(set(values))


def sample_frame_indices(
    total_frames: int,
    video_fps: float,
    num_frames: int | None = None,
    fps: float | None = 1.0,
    max_frames: int = 64,
    skip_secs: float = 1.0,
) -> list[int]:
    """Indices of the frames to show the model.

    ``num_frames`` given: that many frames spread uniformly over the whole video (fewer if it is shorter).
    Otherwise SmolVLM's own rule: ``n = clamp(round(fps * duration), 1, max_frames)`` frames uniformly
    between ``start`` and ``end``, skipping ``skip_secs`` at both ends of long videos.
    """
    if isinstance(total_frames, bool) or not isinstance(total_frames, int) or total_frames < 1:
        raise ValueError(f"the video has total_frames={total_frames!r}; it needs at least one frame")
    if not isinstance(video_fps, (int, float)) or not video_fps > 0:
        raise ValueError(f"video_fps={video_fps!r} must be a positive number (the source frame rate)")
    if num_frames is not None:
        if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
            raise ValueError(f"num_frames={num_frames!r} must be an int >= 1")
        return uniform_indices(0, total_frames - 1, min(num_frames, total_frames))
    if fps is None or not isinstance(fps, (int, float)) or not fps > 0:
        raise ValueError(f"fps={fps!r} must be a positive number when num_frames is not given")
    if isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 1:
        raise ValueError(f"max_frames={max_frames!r} must be an int >= 1")
    duration = total_frames / video_fps
    n = max(1, min(int(round(fps * duration)), max_frames))
    start, end = 0, total_frames - 1
    if skip_secs > 0 and duration - 2 * skip_secs > max_frames * fps:
        start, end = int(skip_secs * video_fps), int(total_frames - skip_secs * video_fps)
    start, end = max(0, start), min(end, total_frames - 1)
    if start >= end:
        start, end = 0, total_frames - 1
    return uniform_indices(start, end, n)
