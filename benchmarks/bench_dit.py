"""SpacetimeDiT forward throughput as a fraction of a same-run fp32 matmul (goal >= 50 % at width >= 256
and >= 1024 tokens). FLOPs are counted by torch's FlopCounterMode on a run with the math attention backend:
FlopCounterMode sees no FLOPs in the CPU SDPA kernel, while the math reference's two matmuls per attention
(QK^T and PV) are the FLOPs SDPA does. The timed runs use the default (SDPA) backend.

Run: python benchmarks/bench_dit.py [--threads N]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._util import median_time, print_table  # noqa: E402
from vidcore.models.dit import DiTConfig, SpacetimeDiT  # noqa: E402
from vidcore.ops.attention import ENV_VAR  # noqa: E402


def count_flops(fn) -> int:
    old = os.environ.get(ENV_VAR)
    os.environ[ENV_VAR] = "math"
    try:
        counter = FlopCounterMode(display=False)
        with counter:
            fn()
    finally:
        if old is None:
            del os.environ[ENV_VAR]
        else:
            os.environ[ENV_VAR] = old
    return counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    n = 1024
    a, b = torch.randn(n, n), torch.randn(n, n)
    t_mm = median_time(lambda: a @ b, repeats=7)
    mm_gflops = 2 * n**3 / t_mm / 1e9
    print(f"reference fp32 matmul {n}x{n}x{n}: {mm_gflops:.1f} GFLOP/s ({args.threads} thread(s))\n")

    cases = [
        ("w128 d4 full, 5x8x8=320 tok (tiny)", DiTConfig(width=128, depth=4, heads=4), (5, 8, 8)),
        ("w256 d4 full, 4x16x16=1024 tok", DiTConfig(width=256, depth=4, heads=4), (4, 16, 16)),
        (
            "w256 d4 factorized, 4x16x16=1024 tok",
            DiTConfig(width=256, depth=4, heads=4, layout="factorized"),
            (4, 16, 16),
        ),
        ("w384 d4 full, 5x16x16=1280 tok", DiTConfig(width=384, depth=4, heads=6), (5, 16, 16)),
        ("w512 d4 full, 4x16x32=2048 tok", DiTConfig(width=512, depth=4, heads=8), (4, 16, 32)),
    ]
    rows = []
    for name, cfg, (t, h, w) in cases:
        model = SpacetimeDiT(cfg).eval()
        x = torch.randn(1, cfg.in_channels, t, h, w)
        ctx = torch.randn(1, 16, cfg.text_dim)
        pooled = torch.randn(1, cfg.text_dim)
        mask = torch.ones(1, 16, dtype=torch.bool)

        def run(model=model, x=x, ctx=ctx, mask=mask, pooled=pooled):
            with torch.no_grad():
                return model(x, 0.5, ctx, mask, pooled)

        flops = count_flops(run)
        sec = median_time(run, repeats=5)
        gflops = flops / sec / 1e9
        rows.append(
            [
                name,
                f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M",
                flops / 1e9,
                sec,
                gflops,
                gflops / mm_gflops,
            ]
        )
    print_table(["case", "params", "GFLOP", "median s", "GFLOP/s", "fraction of matmul"], rows)


if __name__ == "__main__":
    main()
