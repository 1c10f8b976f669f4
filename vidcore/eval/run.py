"""``vidcore eval shapes``: generate one video per held-out prompt and judge it with the frame analyser."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import torch

from .analyser import VideoAnalysis, evaluate
from .prompts import HEADLINE_KINDS, HELDOUT_SLOTS, EvalPrompt, eval_prompts
from .shapes import evaluate_generator


def evaluate_model(
    model: str = "tiny",
    steps: int | None = None,
    guidance: float | None = None,
    schedule: str | None = None,
    limit: int | None = None,
    seed: int = 0,
    threads: int | None = None,
    progress: bool = False,
    num_frames: int | None = None,
    sampler: str | None = None,
) -> dict[str, Any]:
    """Accuracy (colour, shape, direction, all three), single-object rate and temporal consistency on
    held-out phrasings, with the settings used and the mean generation time per video (same run, machine).

    ``metrics`` and ``by_heldout_slot`` cover the version-1 prompts only (the original 120-prompt set, so
    older reports compare); ``all_prompts`` covers every prompt run; ``headline`` (held-out templates, word
    orders and combinations of known words), ``by_kind`` and ``unseen_word`` (with the text-probe ceiling
    of the model's own text encoder) come from :func:`vidcore.eval.shapes.kind_report`; ``videos`` lists
    each prompt with the labels it asked for and the ones the analyser read.
    ``num_frames`` samples other lengths than the model's default (e.g. 33 instead of 17, to see how a
    model trained on 17 frames holds up when the frame count doubles). ``sampler`` (default: the model's
    own) is recorded in the report with the other settings.
    """
    from ..pipelines import load_pipeline

    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit={limit!r} must be an int >= 1")
    if threads is not None:
        torch.set_num_threads(threads)
    pipe = load_pipeline(model)
    if num_frames is not None:  # refused before any video is generated (e.g. 10 frames for a 1 + 4k VAE)
        pipe.latent_shape(num_frames, pipe.config.height, pipe.config.width)
    prompts = eval_prompts()
    if limit is not None:
        prompts = prompts[:limit]
    times: list[float] = []

    def generate(prompt: str, s: int) -> torch.Tensor:
        start = time.perf_counter()
        frames = pipe.generate(
            prompt,
            num_frames=num_frames,
            steps=steps,
            guidance=guidance,
            schedule=schedule,
            sampler=sampler,
            seed=s,
        )
        times.append(time.perf_counter() - start)
        return frames

    metrics, results = evaluate_generator(
        generate, prompts, seed=seed, text_encoder=pipe.text_encoder, progress=progress
    )
    v1 = [(p, r) for p, r in zip(prompts, results, strict=True) if p.version == 1]
    cfg = pipe.config
    return {
        "model": model,
        "prompts": len(prompts),
        "num_frames": cfg.num_frames if num_frames is None else num_frames,
        "steps": cfg.steps if steps is None else steps,
        "guidance": cfg.guidance if guidance is None else guidance,
        # A scale given alone holds at every step; the model's own may step down below a noise level.
        "guidance_2": getattr(cfg, "guidance_2", None) if guidance is None else None,
        "guidance_boundary": getattr(cfg, "guidance_boundary", None) if guidance is None else None,
        # The schedule that ran: the model's own where it can run these settings (generate's rule).
        "schedule": schedule
        if schedule is not None
        else pipe.default_schedule(
            steps=steps,
            sampler=sampler,
            size=(cfg.num_frames if num_frames is None else num_frames, cfg.height, cfg.width),
        ),
        "sampler": cfg.sampler if sampler is None else sampler,
        "threads": torch.get_num_threads(),
        "seconds_per_video_mean": sum(times) / len(times),
        "seconds_per_video_median": sorted(times)[len(times) // 2],
        "metrics": evaluate([r for _, r in v1], [p.labels for p, _ in v1]),
        "by_heldout_slot": metrics_by_slot(prompts, results),
        "all_prompts": {k: v for k, v in metrics.items() if k not in ("headline", "by_kind", "unseen_word")},
        "headline": metrics["headline"],
        "by_kind": metrics["by_kind"],
        "unseen_word": metrics["unseen_word"],
        # One row per prompt (what was asked, what the analyser read), so any subset can be re-scored.
        "videos": [
            {
                "prompt": p.prompt,
                "kind": p.kind,
                "seed": seed + p.seed_offset,
                "want": p.labels,
                "got": r.labels,
                "single_object": r.single_object,
                "fill": r.fill if r.found else None,
            }
            for p, r in zip(prompts, results, strict=True)
        ],
    }


def metrics_by_slot(prompts: list[EvalPrompt], results: list[VideoAnalysis]) -> dict[str, dict[str, float]]:
    """Metrics of the version-1 prompts grouped by the slot that held out language (template, colour,
    shape, motion), as reported before the held-out kinds existed."""
    out = {}
    for slot in HELDOUT_SLOTS:
        rows = [
            (r, p) for r, p in zip(results, prompts, strict=True) if p.version == 1 and p.heldout_slot == slot
        ]
        if rows:
            out[slot] = evaluate([r for r, _ in rows], [p.labels for _, p in rows])
    return out


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def format_kind_table(report: Mapping[str, Any]) -> str:
    """Markdown tables of an :func:`evaluate_model` report: the headline by held-out kind, then the
    unseen-word slots beside the text-probe ceiling."""
    columns = "colour | shape | direction | all three | single-object frames | single-object videos"
    lines = [f"| held-out kind | prompts | {columns} |", "|---|---|---|---|---|---|---|---|"]
    rows = [(k, report["by_kind"].get(k)) for k in HEADLINE_KINDS]
    rows += [("**headline**", report["headline"]), ("unseen word", report["by_kind"].get("unseen_word"))]
    for name, m in rows:
        if m is not None:
            cells = [m["colour_acc"], m["shape_acc"], m["direction_acc"], m["all_acc"]]
            cells += [m["single_object_rate"], m["single_object_videos"]]
            lines.append(f"| {name} | {int(m['count'])} | " + " | ".join(_pct(c) for c in cells) + " |")
    unseen = report.get("unseen_word")
    if unseen:
        lines += ["", "| unseen word in | prompts | accuracy on it | text-probe ceiling |"]
        lines.append("|---|---|---|---|")
        for slot, part in unseen["by_slot"].items():
            n = int(part["metrics"]["count"])
            lines.append(
                f"| {slot} | {n} | {part['attribute']} {_pct(part['accuracy'])} | "
                f"{_pct(part['text_probe_ceiling'])} |"
            )
    return "\n".join(lines)
