"""Shape-video evaluation runs: judge a text-to-video generator on the held-out prompts, or a VAE's output."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch import Tensor

from vidcore.eval.analyser import VideoAnalysis, analyse, analyse_batch, evaluate
from vidcore.eval.prompts import HEADLINE_KINDS, KIND_SLOTS, KINDS, EvalPrompt, eval_prompts
from vidcore.eval.text_probe import probe_text_encoder
from vidcore.train.data import to_frames

# The attribute an unseen word in each slot names, as the text probe and the metrics call it.
_SLOT_ATTRIBUTE = {"colour": "colour", "shape": "shape", "motion": "direction"}


def _heldout_phrase(prompt: EvalPrompt) -> str:
    """The unseen word or phrase of an unseen_word prompt, as the text probe names it."""
    return {"colour": prompt.colour_word, "shape": prompt.shape_word, "motion": prompt.motion.ing}[
        prompt.heldout_slot
    ]


def probe_ceiling(prompts: Sequence[EvalPrompt], probe: Mapping[str, Any]) -> float:
    """Share of unseen_word ``prompts`` whose unseen word the text encoder alone carries to the prompt's label
    (``probe`` is a :func:`probe_text_encoder` report): what a model conditioned on it can hope to follow."""
    if not prompts:
        raise ValueError("prompts must not be empty")
    hits = 0
    for p in prompts:
        if p.kind != "unseen_word":
            raise ValueError(f"prompt {p.prompt!r} is of kind {p.kind!r}, not 'unseen_word'")
        guesses = probe[p.heldout_slot]["heldout_guesses"]
        label = p.labels[_SLOT_ATTRIBUTE[p.heldout_slot]]
        hits += int(guesses[_heldout_phrase(p)]["nearest"] == label)
    return hits / len(prompts)


def kind_report(
    prompts: Sequence[EvalPrompt], results: Sequence[VideoAnalysis], probe: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Metrics by held-out kind: ``headline`` (template + order + combination pooled; None without such
    prompts), ``by_kind`` and ``unseen_word`` (None without such prompts): its metrics, and per slot the
    accuracy on the attribute the unseen word names beside the text-probe ceiling (None without ``probe``)."""
    if len(prompts) != len(results):
        raise ValueError(f"prompts ({len(prompts)}) and results ({len(results)}) must have the same length")

    def judge(keep: Callable[[EvalPrompt], bool]) -> dict[str, float] | None:
        rows = [(p, r) for p, r in zip(prompts, results, strict=True) if keep(p)]
        return evaluate([r for _, r in rows], [p.labels for p, _ in rows]) if rows else None

    by_kind = {k: m for k in KINDS if (m := judge(lambda p, k=k: p.kind == k)) is not None}
    unseen = None
    if "unseen_word" in by_kind:
        slots = {}
        for slot in KIND_SLOTS["unseen_word"]:
            group = [p for p in prompts if p.kind == "unseen_word" and p.heldout_slot == slot]
            if not group:
                continue
            metrics = judge(lambda p, s=slot: p.kind == "unseen_word" and p.heldout_slot == s)
            attribute = _SLOT_ATTRIBUTE[slot]
            slots[slot] = {
                "attribute": attribute,
                "accuracy": metrics[f"{attribute}_acc"],  # type: ignore[index]
                "text_probe_ceiling": None if probe is None else probe_ceiling(group, probe),
                "metrics": metrics,
            }
        summary = None
        if probe is not None:
            keys = ("heldout_carried", "heldout_words", "train_leave_one_out", "train_words")
            summary = {a: {k: part[k] for k in keys} for a, part in probe.items()}
        unseen = {"metrics": by_kind["unseen_word"], "by_slot": slots, "text_probe": summary}
    return {"headline": judge(lambda p: p.kind in HEADLINE_KINDS), "by_kind": by_kind, "unseen_word": unseen}


def evaluate_generator(
    generate: Callable[[str, int], Tensor],
    prompts: Sequence[EvalPrompt] | None = None,
    seed: int = 0,
    text_encoder: Any | None = None,
    progress: bool = False,
) -> tuple[dict[str, Any], list[VideoAnalysis]]:
    """Run ``generate(prompt, seed + p.seed_offset) -> frames [T, H, W, 3] in [0, 1]`` on each prompt ``p``
    and judge it (version-1 prompt k gets ``seed + k``, as before the held-out kinds existed).

    Defaults to :func:`eval_prompts` (240 held-out prompts). Returns the :func:`evaluate` metrics over all
    prompts plus :func:`kind_report`'s ``headline``, ``by_kind`` and ``unseen_word``, and the per-prompt
    analyses in prompt order. With ``text_encoder`` the unseen-word slots carry the text-probe ceiling
    (computed first, so an encoder the probe cannot read fails before any video is generated).
    ``progress`` shows a bar on stderr.
    """
    prompts = eval_prompts() if prompts is None else list(prompts)
    if not prompts:
        raise ValueError("prompts must not be empty")
    from tqdm.auto import tqdm

    probe = None if text_encoder is None else probe_text_encoder(text_encoder)
    bar = tqdm(prompts, desc="eval shapes", unit="video", file=sys.stderr, disable=not progress)
    results = [analyse(generate(p.prompt, seed + p.seed_offset)) for p in bar]
    metrics: dict[str, Any] = dict(evaluate(results, [p.labels for p in prompts]))
    metrics.update(kind_report(prompts, results, probe))
    return metrics, results


def evaluate_videos(
    video: Tensor, labels: Sequence[Mapping[str, str]]
) -> tuple[dict[str, float], list[VideoAnalysis]]:
    """Judge internal-convention videos ``[B, 3, T, H, W]`` in [-1, 1] (e.g. VAE reconstructions)."""
    results = analyse_batch(to_frames(video))
    return evaluate(results, labels), results
