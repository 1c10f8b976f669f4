"""`vidcore distill --teacher MODEL --config FILE [--steps N] [--method M]`: argument set and runner.

The lead's ``vidcore/cli.py`` registers the sub-command with :func:`add_distill_arguments` and calls
:func:`run_distill`.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from .config import METHODS


def add_distill_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the `distill` arguments to ``parser`` (a sub-parser) and return it."""
    parser.description = (
        "Step + guidance distillation: train a student that samples in --steps steps without CFG from a "
        "guided teacher (trajectory distillation, sCM consistency or DMD distribution matching). Resumes "
        "from OUT_DIR/state.safetensors; writes OUT_DIR/student.safetensors and OUT_DIR/distill.json."
    )
    parser.add_argument("--teacher", default="tiny", help="teacher model: built-in name or model folder")
    parser.add_argument(
        "--config",
        required=True,
        metavar="FILE",
        help="DistillConfig JSON file, or a shipped config name (tiny_turbo: the built-in tiny-turbo recipe)",
    )
    parser.add_argument("--steps", type=int, help="student sampling steps (overrides student_steps)")
    parser.add_argument("--method", choices=METHODS, help="objective (overrides the config's method)")
    parser.add_argument("--out-dir", help="run folder (overrides the config's out_dir)")
    parser.add_argument("--train-steps", type=int, help="optimiser steps (overrides the config's steps)")
    parser.add_argument(
        "--export",
        metavar="DIR",
        help="after training, write a model folder here (pipeline.json with the student's steps and noise "
        "levels, CFG 1, dit.safetensors, the teacher's VAE, MODEL_CARD.md); DIR must not exist",
    )
    parser.add_argument(
        "--export-dtype",
        choices=("float16", "bfloat16", "float32"),
        default="float16",
        help="storage dtype of the exported weights (loaded as float32 unless a dtype is asked for)",
    )
    return parser


def _command(args: argparse.Namespace) -> str:
    """The `vidcore distill` command line of parsed ``args`` (for the exported model card)."""
    words = ["vidcore", "distill", "--teacher", str(args.teacher), "--config", str(args.config)]
    for flag, value in (
        ("--steps", args.steps),
        ("--method", args.method),
        ("--out-dir", args.out_dir),
        ("--train-steps", args.train_steps),
        ("--export", args.export),
    ):
        if value is not None:
            words += [flag, str(value)]
    if args.export_dtype != "float16":
        words += ["--export-dtype", args.export_dtype]
    return shlex.join(words)


def run_distill(args: argparse.Namespace) -> int:
    """Run `vidcore distill` for parsed ``args``; prints the student checkpoint (or exported folder) path."""
    from vidcore.pipelines import load_pipeline, resolve_model

    from .config import load_distill_config
    from .export import export_student
    from .loop import distill

    overrides = {
        key: value
        for key, value in (
            ("student_steps", args.steps),
            ("method", args.method),
            ("out_dir", args.out_dir),
            ("steps", args.train_steps),
        )
        if value is not None
    }
    if args.steps is not None:
        overrides["student_timesteps"] = []  # the config's list was for its own student_steps
    cfg = load_distill_config(args.config, overrides)
    if args.export is not None and Path(args.export).exists():  # before hours of training, not after
        raise FileExistsError(f"--export {args.export!r} already exists (choose a new folder)")
    _, teacher_folder = resolve_model(args.teacher)
    pipe = load_pipeline(args.teacher)
    path = distill(pipe, cfg, log=lambda m: print(m, file=sys.stderr), teacher_name=str(args.teacher))
    if args.export is not None:
        command = _command(args)
        path = export_student(
            cfg.out_dir, teacher_folder, args.export, command=command, store_dtype=args.export_dtype
        )
    print(path)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point: ``python -m vidcore.distill.cli --config FILE ...``."""
    parser = add_distill_arguments(argparse.ArgumentParser(prog="vidcore distill"))
    return run_distill(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
