"""A distillation run -> a model folder that `vidcore generate --model DIR` (and the nodes) run as is.

The folder is the teacher's folder layout (``pipeline.json``, ``dit.safetensors``, ``vae.safetensors``)
with the student's weights, its own noise levels (``step_sigmas``: the run's student times plus the final 0),
``guidance_distilled`` (CFG was distilled in: guidance 1 by default), the re-noising sampler, and a generated
``MODEL_CARD.md`` (command, config, losses). The VAE file is copied byte for byte: the student was trained in
that VAE's latent space, so the folder must not follow a later change of the teacher's VAE.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from ..io.atomic import atomic_folder
from ..io.checkpoint import load_state_dict, read_config
from ..models.dit import KIND as DIT_KIND
from ..models.dit import DiTConfig, SpacetimeDiT
from ..pipelines.builtin import PIPELINE_FILE, PipelineConfig
from ..train.export import STORE_DTYPES
from .loop import STUDENT_FILE, SUMMARY_FILE

CARD_FILE = "MODEL_CARD.md"


def student_pipeline_config(teacher: PipelineConfig, summary: dict[str, Any], name: str) -> PipelineConfig:
    """The teacher's generation defaults with the student's steps, noise levels, CFG 1 and `renoise`."""
    times = [float(t) for t in summary["student_timesteps"]]
    data = teacher.to_dict()
    data.update(
        name=name,
        steps=len(times),
        guidance=1.0,
        guidance_2=None,
        guidance_boundary=None,
        sampler="renoise",
        schedule="flow",
        step_sigmas=[[*times, 0.0], *(list(v) for v in summary["config"].get("extra_step_sigmas") or ())],
        guidance_distilled=True,
    )
    return PipelineConfig.from_dict(data)


def _method_text(summary: dict[str, Any], cfg: dict[str, Any]) -> str:
    g = summary["teacher_guidance"]
    if summary["method"] == "dmd":
        start = cfg.get("init_from") or "the teacher's weights"
        return (
            f"dmd (distribution matching: real score = the teacher at CFG {g:g}, fake score trained "
            f"online at lr {cfg.get('fake_lr', 0):g} with {cfg.get('fake_updates', 0)} update(s) per student "
            f"update; started from {start}; the loss value is not a progress measure)"
        )
    return (
        f"{summary['method']} (teacher: {summary['teacher_steps']} steps, "
        f"{cfg.get('teacher_solver', 'euler')}, CFG {g:g})"
    )


def _card(name: str, summary: dict[str, Any], command: str, store_dtype: str) -> str:
    cfg = summary["config"]
    losses = summary.get("losses") or []
    marks = sorted({0, *range(99, len(losses), 100), len(losses) - 1}) if losses else []
    curve = ", ".join(
        f"{sum(losses[max(0, i - 49) : i + 1]) / len(losses[max(0, i - 49) : i + 1]):.3f} at step {i + 1}"
        for i in marks
    )
    wall = summary.get("wall_s")
    known = isinstance(wall, (int, float)) and math.isfinite(wall)
    wall_text = f"{wall / 60:.1f} minutes" if known else "n/a"
    times = ", ".join(f"{t:g}" for t in summary["student_timesteps"])
    return (
        f"# `{name}` — {summary['student_steps']}-step student of `{summary['teacher']}`\n\n"
        f"Written by `vidcore distill --export`. Sampling defaults: {summary['student_steps']} steps of the "
        f"re-noising sampler at RF times {times} (then 0), guidance 1 (the teacher's CFG "
        f"{summary['teacher_guidance']:g} was distilled in).\n\n"
        f"## Command\n```\n{command}\n```\n\n"
        f"## Run\n- method: {_method_text(summary, cfg)}\n"
        f"- optimiser steps: {summary['train_steps']}, batch {cfg['batch']}, lr {cfg['lr']:g}, "
        f"EMA {cfg['ema_decay']:g}, {cfg['threads']} thread(s)\n"
        f"- wall time of the recorded steps: {wall_text}\n"
        f"- loss (50-step means): {curve or 'n/a'}\n"
        f"- weights stored as {store_dtype} (loaded as float32 unless a dtype is asked for)\n\n"
        f"## Config\n```json\n{json.dumps(cfg, indent=2)}\n```\n"
    )


def export_student(
    run_dir: str | os.PathLike,
    teacher_folder: str | os.PathLike,
    dest: str | os.PathLike,
    *,
    name: str | None = None,
    command: str = "",
    store_dtype: str = "float16",
) -> Path:
    """Write the model folder ``dest`` from the distillation run ``run_dir`` of the teacher in
    ``teacher_folder`` (a vidcore model folder). ``dest`` must not exist; it appears whole or not at all."""
    run, teacher, dest = Path(run_dir), Path(teacher_folder), Path(dest)
    if store_dtype not in STORE_DTYPES:
        raise ValueError(f"store_dtype={store_dtype!r} must be one of {sorted(STORE_DTYPES)}")
    if dest.exists():
        raise FileExistsError(f"export folder {str(dest)!r} already exists (choose a new folder)")
    needs = (run / STUDENT_FILE, run / SUMMARY_FILE, teacher / PIPELINE_FILE, teacher / "vae.safetensors")
    for needed in needs:
        if not needed.is_file():
            raise FileNotFoundError(f"cannot export: {str(needed)!r} does not exist")
    summary = json.loads((run / SUMMARY_FILE).read_text())
    teacher_cfg = PipelineConfig.from_dict(json.loads((teacher / PIPELINE_FILE).read_text()))
    config = student_pipeline_config(teacher_cfg, summary, name or dest.name)
    _, dit_cfg = read_config(run / STUDENT_FILE, expected_kind=DIT_KIND)
    with torch.device("meta"):
        student = SpacetimeDiT(DiTConfig.from_dict(dit_cfg))
    state = {k: v.to(STORE_DTYPES[store_dtype]) for k, v in load_state_dict(run / STUDENT_FILE).items()}
    student.load_state_dict(state, assign=True)
    meta = {"distill": json.dumps({k: v for k, v in summary.items() if k != "losses"})}

    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_folder(dest, flag="a new folder") as tmp:  # the folder appears whole or not at all
        student.save(tmp / "dit.safetensors", extra_metadata=meta)
        shutil.copyfile(teacher / "vae.safetensors", tmp / "vae.safetensors")
        (tmp / PIPELINE_FILE).write_text(json.dumps(config.to_dict(), indent=2) + "\n")
        (tmp / CARD_FILE).write_text(_card(config.name, summary, command, store_dtype))
    return dest


__all__ = ["export_student", "student_pipeline_config"]
