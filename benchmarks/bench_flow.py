"""Flow benchmark: our pure-torch estimators vs OpenCV Farneback and DIS on synthetic ground truth.

Smooth random textures warped by known translations, rotations, smooth fields and their mix
(max displacement 0.5-4 px), quantised to 8 bit; EPE over pixels whose match stays in the frame.
Times are the median over pairs of the best of ``--repeats`` runs, single-threaded (torch and OpenCV),
reported as ratios against Farneback measured in the same run.

Needs ``opencv-python-headless`` (benchmark-only dependency). Run: ``python benchmarks/bench_flow.py``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from vidcore.flow import end_point_error, estimate_flow, warp_with_mask
from vidcore.flow.synthetic import MOTIONS, synthetic_pair

Estimator = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _opencv_methods() -> dict[str, Estimator]:
    import cv2  # benchmark-only dependency, imported lazily

    cv2.setNumThreads(1)

    def to_u8(x: torch.Tensor) -> np.ndarray:
        return (x[0, 0].numpy() * 255).round().astype(np.uint8)

    def farneback(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        f = cv2.calcOpticalFlowFarneback(to_u8(a), to_u8(b), None, 0.5, 3, 15, 3, 5, 1.2, 0)
        return torch.from_numpy(f).permute(2, 0, 1)[None]

    def dis(preset: int, finest: int | None) -> Estimator:
        def run(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            d = cv2.DISOpticalFlow_create(preset)
            if finest is not None:
                d.setFinestScale(finest)
            return torch.from_numpy(d.calc(to_u8(a), to_u8(b), None)).permute(2, 0, 1)[None]

        return run

    return {
        "cv Farneback (tutorial)": farneback,
        "cv DIS medium": dis(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM, None),
        "cv DIS medium fs0": dis(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM, 0),
    }


def _ours() -> dict[str, Estimator]:
    return {
        "zero flow": lambda a, b: torch.zeros(1, 2, *a.shape[2:]),
        "ours lucas_kanade": lambda a, b: estimate_flow(a, b, method="lucas_kanade"),
        "ours horn_schunck": lambda a, b: estimate_flow(a, b, method="horn_schunck"),
        # Stronger smoothing wins on these smooth fields but blurs motion boundaries (not the default).
        "ours HS alpha=0.12": lambda a, b: estimate_flow(a, b, method="horn_schunck", alpha=0.12),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--pairs", type=int, default=4, help="pairs per motion type and size")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1000, help="first seed (disjoint from the tests' seeds)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    methods = {**_ours(), **_opencv_methods()}
    rng = np.random.default_rng(args.seed)
    rows = []
    for size in args.sizes:
        data = []
        for m_i, motion in enumerate(MOTIONS):
            for p in range(args.pairs):
                disp = float(rng.uniform(0.5, 4.0))
                a, b, gt = synthetic_pair(size, size, motion, max_disp=disp, seed=args.seed + 100 * m_i + p)
                data.append((motion, a, b, gt, warp_with_mask(b, gt)[1]))
        for fn in methods.values():
            fn(data[0][1], data[0][2])  # warm-up
        epe = {name: {m: [] for m in MOTIONS} for name in methods}
        times: dict[str, list[float]] = {name: [] for name in methods}
        for motion, a, b, gt, valid in data:
            # Interleave the methods in each repeat: load changes on a shared machine then hit all alike.
            best = dict.fromkeys(methods, float("inf"))
            flows = {}
            for _ in range(args.repeats):
                for name, fn in methods.items():
                    t0 = time.perf_counter()
                    flows[name] = fn(a, b)
                    best[name] = min(best[name], time.perf_counter() - t0)
            for name in methods:
                epe[name][motion].append(float(end_point_error(flows[name].float(), gt, valid)))
                times[name].append(best[name])
        for name in methods:
            rows.append(
                (
                    size,
                    name,
                    {m: statistics.fmean(v) for m, v in epe[name].items()},
                    statistics.median(times[name]),
                )
            )
    header = f"{'size':>4}  {'method':<24}" + "".join(f"{m:>12}" for m in MOTIONS)
    header += f"{'EPE all':>9}{'EPE/Farn':>9}{'ms':>9}{'t/Farn':>8}"
    print(header)
    print("-" * len(header))
    for size in args.sizes:
        ref = next(r for r in rows if r[0] == size and r[1].startswith("cv Farneback"))
        ref_epe, ref_ms = statistics.fmean(ref[2].values()), ref[3] * 1000
        for s, name, row_epe, seconds in rows:
            if s != size:
                continue
            all_epe = statistics.fmean(row_epe.values())
            line = f"{size:>4}  {name:<24}" + "".join(f"{row_epe[m]:>12.4f}" for m in MOTIONS)
            ms = seconds * 1000
            line += f"{all_epe:>9.4f}{all_epe / ref_epe:>9.2f}{ms:>9.1f}{ms / ref_ms:>8.2f}"
            print(line)
    print(f"\n{args.pairs} pairs per motion and size, max displacement U[0.5, 4] px, 8-bit frames, 1 thread.")


if __name__ == "__main__":
    main()
