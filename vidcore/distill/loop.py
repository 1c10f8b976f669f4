"""The distillation training loop: a student SpacetimeDiT learns the guided teacher's few-step map on the
procedural shape videos of ``vidcore train dit``, with the trainer's AdamW, EMA, resumable state and bar."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..io.atomic import write_text
from ..io.checkpoint import read_metadata
from ..models.dit import SpacetimeDiT
from ..train.data import ShapeVideoDataset
from ..train.trainer import STATE_FILE, LatentCache, Run, _bar
from .adapters import velocity_fn
from .config import DistillConfig
from .objectives import DistillBatch, DMDDistillation, GuidedTeacher, make_method

STUDENT_FILE = "student.safetensors"
SUMMARY_FILE = "distill.json"
FAKE_STATE_FILE = "fake_score.safetensors"  # DMD: the fake score and its optimiser


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 of a model's tensors (names, dtypes, shapes, bytes; in name order): the teacher of a run."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _summary(cfg: DistillConfig, run: Run, teacher_name: str, teacher_digest: str) -> dict[str, Any]:
    recent = [h["loss"] for h in run.history[-50:] if "loss" in h]
    return {
        "method": cfg.method,
        "student_steps": cfg.student_steps,
        "student_timesteps": list(cfg.timesteps),
        "teacher": teacher_name,
        # weights_digest of the teacher as loaded: a shipped student can be checked against its teacher.
        "teacher_digest": teacher_digest,
        "teacher_guidance": cfg.teacher_guidance,
        "teacher_steps": cfg.teacher_steps,
        "train_steps": run.step,
        "loss_first": run.history[0]["loss"] if run.history else None,
        "loss_last50_mean": sum(recent) / len(recent) if recent else None,
        "losses": [round(h["loss"], 6) for h in run.history if "loss" in h],
        # Wall time of the steps in the history (runs written before step_s was recorded: None).
        "wall_s": sum(h["step_s"] for h in run.history) if all("step_s" in h for h in run.history) else None,
        "config": cfg.to_dict(),
    }


def distill(
    teacher_pipe: Any,
    cfg: DistillConfig,
    log: Callable[[str], None] = print,
    teacher_name: str = "",
) -> Path:
    """Distil ``teacher_pipe`` (a built-in VideoPipeline: SpacetimeDiT + CausalVAE3D + text encoder) into a
    student that samples in ``cfg.student_steps`` steps without CFG; returns ``out_dir/student.safetensors``.

    Resumes from ``out_dir/state.safetensors`` when present. Each step draws its batch and times from
    generators seeded by ``(seed, step)``, so a resumed run repeats an uninterrupted one.
    """
    teacher = getattr(teacher_pipe, "dit", None)
    if not isinstance(teacher, SpacetimeDiT):
        got = type(teacher).__name__ if teacher is not None else type(teacher_pipe).__name__
        raise TypeError(
            "the teacher must be a flow-matching vidcore model (a SpacetimeDiT pipeline: the built-in data "
            f"path of `vidcore distill`); got {got}. For LTX / Wan transformers use "
            "vidcore.distill.objectives with vidcore.distill.velocity_fn."
        )
    if cfg.teacher_guidance is None:  # the teacher's own default CFG, recorded in the run's config
        own = teacher_pipe.default_options()
        if own.guidance_boundary is not None:
            raise ValueError(
                f"the teacher's default CFG steps from {own.guidance:g} to {own.guidance_2:g} below noise "
                f"level {own.guidance_boundary:g}; distillation bakes in one scale: set teacher_guidance"
            )
        cfg = dataclasses.replace(cfg, teacher_guidance=float(own.guidance))
        log(f"teacher guidance: {cfg.teacher_guidance:g} (the teacher's default)")
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    teacher.eval().requires_grad_(False)
    student = SpacetimeDiT(teacher.config)
    student.load_state_dict(teacher.state_dict())
    student.train()
    # Checked before Run touches the folder (it rewrites config.json), so a refused run changes nothing.
    digest = weights_digest(teacher)
    state = Path(cfg.out_dir) / STATE_FILE
    recorded = (
        json.loads(read_metadata(state).get("info", "{}")).get("teacher_digest") if state.is_file() else None
    )
    if recorded is not None and recorded != digest:
        raise ValueError(
            f"run folder {cfg.out_dir!r} holds a distillation of another teacher (weights digest "
            f"{recorded[:12]}, this teacher {digest[:12]}); give a fresh out_dir (--out-dir) for a new "
            "teacher"
        )
    run = Run(cfg, student, log)  # type: ignore[arg-type]  (DistillConfig has the fields Run reads)
    method = make_method(cfg, teacher)
    fake_state = run.out / FAKE_STATE_FILE
    if isinstance(method, DMDDistillation) and state.is_file():
        if not fake_state.is_file():
            raise ValueError(
                f"run folder {cfg.out_dir!r} has a training state but no {FAKE_STATE_FILE} (the DMD fake "
                "score): it was not a dmd run, or the file was removed; give a fresh out_dir"
            )
        at = method.load(fake_state)
        if at != run.step:
            log(f"note: the fake score in {fake_state} is from step {at}, the student from step {run.step}")
    name = teacher_name or getattr(getattr(teacher_pipe, "config", None), "name", "")

    def publish() -> None:  # the EMA student and the run's summary, under this invocation's config
        summary = _summary(cfg, run, name, digest)
        meta = {"distill": json.dumps({k: v for k, v in summary.items() if k != "losses"})}
        run.ema_model(lambda: SpacetimeDiT(teacher.config)).save(
            run.out / STUDENT_FILE, overwrite=True, extra_metadata=meta
        )
        write_text(run.out / SUMMARY_FILE, json.dumps(summary, indent=2), overwrite=True)

    if run.step >= cfg.steps:  # a finished run invoked again (e.g. to --export): no data needed
        publish()
        return run.out / STUDENT_FILE
    data = ShapeVideoDataset(cfg.seed, cfg.num_frames, cfg.height, cfg.width)
    cache = LatentCache(teacher_pipe.vae, teacher_pipe.text_encoder, data, cfg.latent_cache, log=log)
    pooled_on = teacher.config.pooled_text
    empty = [cache.empty] * cfg.batch
    uncond = velocity_fn(
        teacher, cache.emb[empty], cache.mask[empty], cache.pooled[empty] if pooled_on else None
    )
    bar = _bar(cfg.steps, run.step)
    bar.set_description(f"distill {cfg.method}")
    t0 = time.time()

    while run.step < cfg.steps:
        started = time.perf_counter()
        rng = random.Random(cfg.seed * 1_000_003 + run.step)
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + run.step)
        idx = [rng.randrange(cfg.latent_cache) for _ in range(cfg.batch)]
        x0 = cache.latents[idx]
        emb, mask = cache.emb[idx], cache.mask[idx]
        pooled = cache.pooled[idx] if pooled_on else None
        noise = torch.randn(x0.shape, generator=gen)
        guided = GuidedTeacher(velocity_fn(teacher, emb, mask, pooled), uncond, cfg.teacher_guidance)
        batch = DistillBatch(x0, noise, gen, lambda net: velocity_fn(net, emb, mask, pooled))  # noqa: B023
        loss, parts = method.loss(velocity_fn(student, emb, mask, pooled), guided, batch, run.step)
        parts["grad_norm"] = run.optimise(loss)
        parts["step_s"] = time.perf_counter() - started
        run.record(parts)
        bar.update(1)
        bar.set_postfix(loss=f"{parts['loss']:.4g}")
        if run.step % cfg.ckpt_every == 0 or run.step == cfg.steps:
            if isinstance(method, DMDDistillation):  # first: a student state never outruns its fake score
                method.save(fake_state, run.step)
            run.checkpoint({"wall_s": time.time() - t0, "teacher_digest": digest})
            publish()
    bar.close()
    return run.out / STUDENT_FILE


__all__ = ["STATE_FILE", "STUDENT_FILE", "SUMMARY_FILE", "distill"]
