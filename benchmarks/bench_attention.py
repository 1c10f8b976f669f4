"""Attention patterns and backends, measured in one run.

1. Full spacetime vs factorized (spatial + temporal) attention on a 17x32x32 token grid (the helpers
   SpacetimeDiT's blocks call for its "full" and "factorized" layouts), against the FLOP ratio theory
   predicts: full costs (T·S)² per head-dim, factorized T·S² + S·T² (S = H·W), so
   full / factorized = T·S / (S + T).
2. SDPA vs the math reference on the same shapes.

Run: python benchmarks/bench_attention.py [--threads N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._util import median_time, print_table  # noqa: E402
from vidcore.ops.attention import attention, full_attention, spatial_attention, temporal_attention  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--heads", type=int, default=1)
    parser.add_argument("--head-dim", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    t, h, w, n, d = 17, 32, 32, args.heads, args.head_dim
    s = h * w
    q, k, v = (torch.randn(1, t, h, w, n, d) for _ in range(3))
    with torch.no_grad():
        t_full = median_time(lambda: full_attention(q, k, v), repeats=3)
        t_spatial = median_time(lambda: spatial_attention(q, k, v), repeats=3)
        t_temporal = median_time(lambda: temporal_attention(q, k, v), repeats=3)
    t_fact = t_spatial + t_temporal
    theory = (t * s) / (s + t)
    print(f"\n== full vs factorized attention, grid {t}x{h}x{w} ({t * s} tokens), heads {n}, head dim {d} ==")
    print_table(
        ["pattern", "median s", "time / factorized", "theory FLOP ratio"],
        [
            ["full spacetime", t_full, t_full / t_fact, theory],
            ["spatial", t_spatial, t_spatial / t_fact, s / (s + t)],
            ["temporal", t_temporal, t_temporal / t_fact, t / (s + t)],
            ["factorized (sum)", t_fact, 1.0, 1.0],
        ],
    )

    print("\n== SDPA vs math reference ==")
    rows = []
    for name, lq in (("spatial-sized", s), ("2048 tokens", 2048), ("4096 tokens", 4096)):
        qq, kk, vv = (torch.randn(t if name == "spatial-sized" else 1, 4, lq, d) for _ in range(3))
        with torch.no_grad():
            t_sdpa = median_time(lambda qq=qq, kk=kk, vv=vv: attention(qq, kk, vv, backend="sdpa"), repeats=3)
            t_math = median_time(lambda qq=qq, kk=kk, vv=vv: attention(qq, kk, vv, backend="math"), repeats=3)
            err = (attention(qq, kk, vv, backend="sdpa") - attention(qq, kk, vv, backend="math")).abs().max()
        rows.append([name, tuple(qq.shape), t_sdpa, t_math, t_math / t_sdpa, float(err)])
    print_table(["case", "q shape", "sdpa s", "math s", "math / sdpa", "max abs diff"], rows)


if __name__ == "__main__":
    main()
