"""End-to-end generation time of a model (default: the built-in `tiny`), flat vs pyramidal schedule at equal
steps, measured in one run. Target for `tiny`: one 17x64x64 video with 20 steps + CFG in <= 3 s on 2 CPU
cores; pyramidal >= 1.5x faster than flat.

Run: python benchmarks/bench_generate.py [--model tiny] [--threads 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._util import median_time, print_table  # noqa: E402
from vidcore.pipelines import load_pipeline  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=4.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pipe = load_pipeline(args.model)
    prompt = "a red circle moving right"
    rows = []
    ref = None
    for schedule in ("flow", "pyramidal"):
        for guidance in (1.0, args.guidance):
            sec = median_time(
                lambda s=schedule, g=guidance: pipe.generate(
                    prompt, steps=args.steps, guidance=g, schedule=s
                ),
                repeats=args.repeats,
            )
            if ref is None and guidance != 1.0:
                ref = sec
            rows.append([schedule, args.steps, guidance, sec])
    flat_cfg = next(r[3] for r in rows if r[0] == "flow" and r[2] != 1.0)
    table = [[*r, flat_cfg / r[3]] for r in rows]
    print(
        f"model {args.model}, {pipe.config.num_frames}x{pipe.config.height}x{pipe.config.width}, "
        f"{args.threads} thread(s), median of {args.repeats}"
    )
    print_table(["schedule", "steps", "guidance", "median s", "speed-up vs flat+CFG"], table)


if __name__ == "__main__":
    main()
