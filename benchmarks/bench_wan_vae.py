"""Wan VAE decode: peak CPU memory and time for 17 / 33 / 65 frames, vidcore vs diffusers (same weights).

Each cell runs in a fresh subprocess with glibc's mmap threshold pinned (freed buffers go back to the OS).
The child builds the model, warms it up on one latent frame, resets the kernel's peak-RSS counter
(``/proc/self/clear_refs``) and decodes: peak = VmHWM - VmRSS(before). "work" = peak - the output tensor's
size (the output must exist in full; the working set is what streaming keeps flat). Ratios: vidcore over
diffusers for the same frame count, and each implementation's 65-frame over its 17-frame run ("x17").

    python benchmarks/bench_wan_vae.py [--version 2.1|2.2|both] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks._util import reset_peak_rss, status_kib  # noqa: E402

FRAMES = (17, 33, 65)
# Small-but-not-tiny versions of the released layouts: the full channel multipliers and block counts.
SMALL = {
    "2.1": (dict(base_dim=32), 64),
    "2.2": (
        dict(
            base_dim=32,
            decoder_base_dim=48,
            z_dim=48,
            is_residual=True,
            in_channels=12,
            out_channels=12,
            patch_size=2,
            scale_factor_spatial=16,
            latents_mean=(0.0,) * 48,
            latents_std=(1.0,) * 48,
        ),
        128,
    ),
}


def child(impl: str, version: str, frames: int) -> None:
    import torch
    from diffusers import AutoencoderKLWan

    from vidcore.models.wan.vae import WanVAE
    from vidcore.models.wan.vae_config import WanVAEConfig

    torch.set_num_threads(1)
    fields, size = SMALL[version]
    cfg = WanVAEConfig(**fields)
    torch.manual_seed(0)
    ref = AutoencoderKLWan(**cfg.to_diffusers()).eval()
    if impl == "vidcore":
        model = WanVAE(cfg).eval()
        model.load_state_dict(ref.state_dict())
        del ref
        run = model.decode
    else:
        run = lambda z: ref.decode(z).sample  # noqa: E731
    s, r = cfg.spatial_ratio, cfg.temporal_ratio
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(1, cfg.z_dim, 1 + (frames - 1) // r, size // s, size // s, generator=g)
    with torch.inference_mode():
        run(latents[:, :, :1])  # warm-up: kernels and allocator pools, one latent frame
        base = reset_peak_rss()
        t0 = time.perf_counter()
        out = run(latents)
        seconds = time.perf_counter() - t0
        peak = status_kib("VmHWM")
    out_mib = out.numel() * out.element_size() / 2**20
    print(json.dumps({"peak_mib": (peak - base) / 1024, "out_mib": out_mib, "seconds": seconds}))


def run_child(impl: str, version: str, frames: int) -> dict[str, float]:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072", MALLOC_TRIM_THRESHOLD_="131072")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        impl,
        "--version",
        version,
        "--frames",
        str(frames),
    ]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if res.returncode:
        raise SystemExit(f"child {impl} {version} {frames} failed:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def measure(version: str, repeats: int) -> dict[tuple[str, int], dict[str, float]]:
    """Medians per (impl, frames); the two implementations alternate order from round to round, so drift
    of a shared machine hits both alike."""
    runs: dict[tuple[str, int], list[dict[str, float]]] = {}
    for rep in range(repeats):
        for frames in FRAMES:
            impls = ("diffusers", "vidcore") if rep % 2 == 0 else ("vidcore", "diffusers")
            for impl in impls:
                runs.setdefault((impl, frames), []).append(run_child(impl, version, frames))
    return {key: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for key, rs in runs.items()}


def table(version: str, repeats: int) -> None:
    fields, size = SMALL[version]
    rows = measure(version, repeats)
    print(
        f"\nWan {version} VAE decode, small config {fields_summary(fields)}, {size}x{size} frames, fp32 CPU, "
        f"1 thread, median of {repeats} fresh process(es)"
    )
    header = (
        f"{'frames':>6} {'impl':>9} {'peak MiB':>9} {'x17':>5} {'out MiB':>8} {'work MiB':>9} {'x17':>5} "
        f"{'s':>7} {'peak v/d':>9} {'work v/d':>9} {'time v/d':>9}"
    )
    print(header)
    print("-" * len(header))
    for f in FRAMES:
        for impl in ("diffusers", "vidcore"):
            m, m17, d = rows[(impl, f)], rows[(impl, FRAMES[0])], rows[("diffusers", f)]
            work, work17, dwork = (x["peak_mib"] - x["out_mib"] for x in (m, m17, d))
            ratios = ""
            if impl == "vidcore":
                ratios = (
                    f" {m['peak_mib'] / d['peak_mib']:>9.2f} {work / dwork:>9.2f} "
                    f"{m['seconds'] / d['seconds']:>9.2f}"
                )
            print(
                f"{f:>6} {impl:>9} {m['peak_mib']:>9.1f} {m['peak_mib'] / m17['peak_mib']:>5.2f} "
                f"{m['out_mib']:>8.1f} {work:>9.1f} {work / work17:>5.2f} {m['seconds']:>7.2f}" + ratios
            )


def fields_summary(fields: dict) -> str:
    keep = ("base_dim", "decoder_base_dim", "z_dim", "patch_size")
    return (
        "(" + ", ".join(f"{k}={fields[k]}" for k in keep if k in fields) + ", dim_mult 1,2,4,4, 2 res blocks)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", default="both", choices=("2.1", "2.2", "both"))
    parser.add_argument("--repeats", type=int, default=3, help="fresh-process runs per cell; medians shown")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--frames", type=int, default=17, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child, args.version, args.frames)
        return
    if not os.path.exists("/proc/self/clear_refs"):
        raise SystemExit("this benchmark needs Linux /proc (clear_refs, VmHWM)")
    for version in ("2.1", "2.2") if args.version == "both" else (args.version,):
        table(version, args.repeats)


if __name__ == "__main__":
    main()
