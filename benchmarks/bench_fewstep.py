"""Time per video of a few-step student against its teacher, measured in one run: the teacher at 20 steps +
CFG on the flow schedule (40 network evaluations: the reference of issue 13's target) and at its own defaults
(for `tiny`: 20 ancestral steps + CFG on the pyramidal schedule, most of them at reduced resolution) vs the
student's defaults (tiny-turbo: 4 re-noising steps, no CFG) and 2 / 1 steps on explicit noise-level lists,
with Euler and the re-noising sampler.
Target (issue 13): >= 8x lower time per video at 4 steps than the 20-step CFG teacher.

Run: python benchmarks/bench_fewstep.py [--model tiny] [--student tiny-turbo] [--threads 1] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._util import median_time, print_table  # noqa: E402
from vidcore.distill.config import default_student_timesteps  # noqa: E402
from vidcore.pipelines import load_pipeline  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="tiny", help="the teacher")
    parser.add_argument("--student", default="tiny-turbo", help="the few-step student")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pipe, student = load_pipeline(args.model), load_pipeline(args.student)
    prompt = "a red circle moving right"
    teacher, own = pipe.default_options(), student.default_options()
    nfe = 2 if teacher.guidance > 1 else 1
    runs = [
        (f"{args.model} {teacher.steps} steps + CFG, flow", pipe, {"schedule": "flow"}, nfe * teacher.steps)
    ]
    if teacher.schedule != "flow":
        runs.append((f"{args.model} defaults ({teacher.schedule})", pipe, {}, nfe * teacher.steps))
    runs.append((f"{args.student} defaults ({own.sampler})", student, {}, own.steps))
    for n in (2, 1):
        sigmas = [*default_student_timesteps("trajectory", n), 0.0]
        for sampler in ("euler", "renoise"):
            runs.append(
                (f"{args.student} {n}-step {sampler}", student, dict(sigmas=sigmas, sampler=sampler), n)
            )
    rows = []
    for name, model, kw, evals in runs:
        sec = median_time(lambda m=model, kw=kw: m.generate(prompt, **kw), repeats=args.repeats)
        rows.append([name, evals, sec])
    ref = rows[0][2]
    print(
        f"model {args.model}, {pipe.config.num_frames}x{pipe.config.height}x{pipe.config.width}, "
        f"{args.threads} thread(s), median of {args.repeats} (decode included)"
    )
    print_table(
        ["sampling", "network evals", "median s", "speed-up vs the first row"],
        [[*r, ref / r[2]] for r in rows],
    )


if __name__ == "__main__":
    main()
