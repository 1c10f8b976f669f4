"""Shape-video evaluation runs: judge a text-to-video generator on the held-out prompts, or a VAE's output."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from torch import Tensor

from vidcore.eval.analyser import VideoAnalysis, analyse, analyse_batch, evaluate
from vidcore.eval.prompts import EvalPrompt, eval_prompts
from vidcore.train.data import to_frames


def evaluate_generator(
    generate: Callable[[str, int], Tensor],
    prompts: Sequence[EvalPrompt] | None = None,
    seed: int = 0,
) -> tuple[dict[str, float], list[VideoAnalysis]]:
    """Run ``generate(prompt, seed + i) -> frames [T, H, W, 3] in [0, 1]`` on each prompt and judge it.

    Defaults to :func:`eval_prompts` (120 held-out prompts). Returns the :func:`evaluate` metrics and the
    per-prompt analyses, in prompt order.
    """
    prompts = eval_prompts() if prompts is None else list(prompts)
    if not prompts:
        raise ValueError("prompts must not be empty")
    results = [analyse(generate(p.prompt, seed + i)) for i, p in enumerate(prompts)]
    return evaluate(results, [p.labels for p in prompts]), results


def evaluate_videos(
    video: Tensor, labels: Sequence[Mapping[str, str]]
) -> tuple[dict[str, float], list[VideoAnalysis]]:
    """Judge internal-convention videos ``[B, 3, T, H, W]`` in [-1, 1] (e.g. VAE reconstructions)."""
    results = analyse_batch(to_frames(video))
    return evaluate(results, labels), results
