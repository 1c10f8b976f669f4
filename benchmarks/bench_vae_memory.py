"""Peak CPU memory of CausalVAE3D.decode for 17/33/65 frames, whole vs temporally chunked.

Each measurement runs in a fresh subprocess (so allocator state never carries over) with glibc's mmap
threshold pinned, so large buffers are returned to the OS when freed. The child resets the kernel's peak-RSS
counter (``/proc/self/clear_refs``, value 5) right before the decode and reads ``VmHWM`` after it:
peak = VmHWM - VmRSS(before). "work" = peak - the output tensor's size (the output must exist in full;
the working set is what chunking bounds). Ratios are against the 17-frame chunked run of the same table.

    python benchmarks/bench_vae_memory.py [--size 256] [--chunk 1] [--repeats 3]
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


def child(frames: int, size: int, chunk: int | None) -> None:
    import torch

    from vidcore.models.vae import CausalVAE3D, VAEConfig

    torch.set_num_threads(1)
    model = CausalVAE3D(VAEConfig()).eval()
    r, s = model.config.temporal_compression, model.config.spatial_compression
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(
        (1, model.config.latent_channels, 1 + (frames - 1) // r, size // s, size // s), generator=g
    )
    with torch.inference_mode():
        model.decode(latents[:, :, :1])  # warm-up: load kernels; one latent frame only
        base = reset_peak_rss()
        t0 = time.perf_counter()
        out = model.decode(latents, temporal_chunk=chunk)
        seconds = time.perf_counter() - t0
        peak = status_kib("VmHWM")
    out_mib = out.numel() * out.element_size() / 2**20
    print(json.dumps({"peak_mib": (peak - base) / 1024, "out_mib": out_mib, "seconds": seconds}))


def measure(frames: int, size: int, chunk: int | None, repeats: int) -> dict[str, float]:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072", MALLOC_TRIM_THRESHOLD_="131072")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    runs = []
    for _ in range(repeats):
        cmd = [sys.executable, os.path.abspath(__file__), "--child", str(frames), "--size", str(size)]
        if chunk is not None:
            cmd += ["--chunk", str(chunk)]
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        runs.append(json.loads(res.stdout.strip().splitlines()[-1]))
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=256, help="frame height = width in pixels (default 256)")
    parser.add_argument("--chunk", type=int, default=1, help="latent frames per chunk (default 1)")
    parser.add_argument("--repeats", type=int, default=3, help="subprocess runs per cell; medians shown")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child, args.size, None if "--chunk" not in sys.argv else args.chunk)
        return
    if not os.path.exists("/proc/self/clear_refs"):
        raise SystemExit("this benchmark needs Linux /proc (clear_refs, VmHWM)")
    rows = []
    for frames in FRAMES:
        for mode, chunk in (("whole", None), (f"chunk={args.chunk}", args.chunk)):
            rows.append((frames, mode, measure(frames, args.size, chunk, args.repeats)))
    ref = next(m for f, mode, m in rows if f == FRAMES[0] and mode != "whole")
    ref_work = ref["peak_mib"] - ref["out_mib"]
    print(
        f"CausalVAE3D default config, decode {args.size}x{args.size}, fp32 CPU, 1 thread, "
        f"median of {args.repeats} fresh processes; ratios vs 17-frame chunked"
    )
    header = (
        f"{'frames':>6} {'mode':>9} {'peak MiB':>9} {'x ref':>6} {'out MiB':>8} {'work MiB':>9} "
        f"{'x ref':>6} {'s':>6}"
    )
    print(header)
    print("-" * len(header))
    for frames, mode, m in rows:
        work = m["peak_mib"] - m["out_mib"]
        print(
            f"{frames:>6} {mode:>9} {m['peak_mib']:>9.1f} {m['peak_mib'] / ref['peak_mib']:>6.2f} "
            f"{m['out_mib']:>8.1f} {work:>9.1f} {work / ref_work:>6.2f} {m['seconds']:>6.2f}"
        )


if __name__ == "__main__":
    main()
