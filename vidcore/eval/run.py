"""``vidcore eval shapes``: generate one video per held-out prompt and judge it with the frame analyser."""

from __future__ import annotations

import time
from typing import Any

import torch

from .analyser import VideoAnalysis, evaluate
from .prompts import HELDOUT_SLOTS, EvalPrompt, eval_prompts
from .shapes import evaluate_generator


def evaluate_model(
    model: str = "tiny",
    steps: int | None = None,
    guidance: float | None = None,
    schedule: str | None = None,
    limit: int | None = None,
    seed: int = 0,
    threads: int | None = None,
) -> dict[str, Any]:
    """Accuracy (colour, shape, direction, all three) and temporal consistency on held-out phrasings,
    with the settings used and the mean generation time per video (same run, same machine)."""
    from ..pipelines import load_pipeline

    if threads is not None:
        torch.set_num_threads(threads)
    pipe = load_pipeline(model)
    prompts = eval_prompts()
    if limit is not None:
        if limit < 1:
            raise ValueError(f"limit={limit} must be >= 1")
        prompts = prompts[:limit]
    times: list[float] = []

    def generate(prompt: str, s: int) -> torch.Tensor:
        start = time.perf_counter()
        frames = pipe.generate(prompt, steps=steps, guidance=guidance, schedule=schedule, seed=s)
        times.append(time.perf_counter() - start)
        return frames

    metrics, results = evaluate_generator(generate, prompts, seed=seed)
    cfg = pipe.config
    return {
        "model": model,
        "prompts": len(prompts),
        "steps": cfg.steps if steps is None else steps,
        "guidance": cfg.guidance if guidance is None else guidance,
        "schedule": cfg.schedule if schedule is None else schedule,
        "threads": torch.get_num_threads(),
        "seconds_per_video_mean": sum(times) / len(times),
        "seconds_per_video_median": sorted(times)[len(times) // 2],
        "metrics": metrics,
        "by_heldout_slot": metrics_by_slot(prompts, results),
    }


def metrics_by_slot(prompts: list[EvalPrompt], results: list[VideoAnalysis]) -> dict[str, dict[str, float]]:
    """Metrics of the prompts grouped by the slot that held out language (template, colour, shape, motion)."""
    out = {}
    for slot in HELDOUT_SLOTS:
        rows = [(r, p) for r, p in zip(results, prompts, strict=True) if p.heldout_slot == slot]
        if rows:
            out[slot] = evaluate([r for r, _ in rows], [p.labels for _, p in rows])
    return out
