"""LTX-Video: vidcore vs diffusers transformer forward time, and VAE decode peak memory (CPU, same run).

Run: python benchmarks/bench_ltx.py [--repeats 7]. Needs diffusers (test extra). Prints two tables with
ratios vidcore / diffusers (time: target <= 1.0; memory: lower is better).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._util import reset_peak_rss, status_kib  # noqa: E402

SMALL = dict(
    in_channels=128,
    out_channels=128,
    num_attention_heads=4,
    attention_head_dim=32,
    cross_attention_dim=128,
    num_layers=4,
    caption_channels=256,
)
VAE_091 = dict(
    latent_channels=16,
    block_out_channels=(8, 16, 32, 32),
    decoder_block_out_channels=(16, 32, 64),
    layers_per_block=(1, 1, 1, 1, 1),
    decoder_layers_per_block=(1, 1, 1, 1),
    spatio_temporal_scaling=(True, True, True, False),
    decoder_spatio_temporal_scaling=(True, True, True),
    decoder_inject_noise=(True, True, True, False),
    upsample_residual=(True, True, True),
    upsample_factor=(2, 2, 2),
    timestep_conditioning=True,
)
LATENT = (1, 16, 9, 6, 6)  # -> 65 frames of 192x192


def _median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def bench_transformer(repeats: int) -> None:
    from diffusers import LTXVideoTransformer3DModel

    from vidcore.models.ltx.config import LTXTransformerConfig
    from vidcore.models.ltx.transformer import LTXVideoTransformer

    torch.manual_seed(0)
    ref = LTXVideoTransformer3DModel(**SMALL).eval()
    ours = LTXVideoTransformer(LTXTransformerConfig.from_diffusers(dict(ref.config))).eval()
    ours.load_state_dict(ref.state_dict())
    g = torch.Generator().manual_seed(0)
    x, ctx = torch.randn(2, 4 * 16 * 16, 128, generator=g), torch.randn(2, 32, 256, generator=g)
    mask, t, scale = torch.ones(2, 32), torch.tensor([500.0, 500.0]), (0.32, 32, 32)
    mask[1, 20:] = 0
    with torch.no_grad():
        err = ref(x, ctx, t, mask, 4, 16, 16, scale, return_dict=False)[0] - ours(
            x, ctx, t, mask, 4, 16, 16, scale
        )
        rows = []
        # Alternate the order so drift of the shared machine hits both sides alike.
        d1 = _median_ms(lambda: ref(x, ctx, t, mask, 4, 16, 16, scale, return_dict=False), repeats)
        v1 = _median_ms(lambda: ours(x, ctx, t, mask, 4, 16, 16, scale), repeats)
        v2 = _median_ms(lambda: ours(x, ctx, t, mask, 4, 16, 16, scale), repeats)
        d2 = _median_ms(lambda: ref(x, ctx, t, mask, 4, 16, 16, scale, return_dict=False), repeats)
        rows.append(("diffusers", min(d1, d2)))
        rows.append(("vidcore", min(v1, v2)))
    print(
        "\nLTX transformer forward (4 layers, 4x32 heads, B=2, 1024 tokens, 32 text tokens, fp32, 1 thread)"
    )
    print(f"{'impl':<12}{'median ms':>12}{'ratio':>8}")
    for name, ms in rows:
        print(f"{name:<12}{ms:>12.2f}{ms / rows[0][1]:>8.2f}")
    print(f"max |diff| = {err.abs().max().item():.2e}")


def _decode_child(mode: str) -> None:
    """Run one decode in a fresh process; print peak RSS growth (MiB) over the pre-decode baseline."""
    torch.set_num_threads(1)
    from diffusers import AutoencoderKLLTXVideo

    from vidcore.models.ltx.config import LTXVAEConfig
    from vidcore.models.ltx.vae import LTXVideoVAE

    torch.manual_seed(0)
    ref = AutoencoderKLLTXVideo(**VAE_091).eval()
    z = torch.randn(LATENT)
    t = torch.tensor([0.05])
    if mode.startswith("vidcore"):
        vae = LTXVideoVAE(LTXVAEConfig.from_diffusers(dict(ref.config))).eval()
        vae.load_state_dict(ref.state_dict())
        del ref
        chunk = None if mode == "vidcore-full" else 3
        run = lambda: vae.decode(z, t, generator=torch.Generator().manual_seed(0), temporal_chunk=chunk)  # noqa: E731
    else:
        if mode == "diffusers-tiled":
            # diffusers' temporal tiling: 16-frame tiles, stride 8 (= 3 latent frames per tile)
            ref.enable_tiling()
            ref.use_framewise_decoding = True
        run = lambda: ref.decode(z, t).sample  # noqa: E731
    # Peak growth over the RSS right before the decode (the high-water mark is reset there, so memory
    # freed earlier, e.g. the diffusers copy in the vidcore modes, does not hide any growth).
    base = reset_peak_rss()
    with torch.no_grad():
        t0 = time.perf_counter()
        out = run()
        ms = (time.perf_counter() - t0) * 1000
    peak = status_kib("VmHWM")
    print(json.dumps({"mode": mode, "peak_mib": (peak - base) / 1024, "ms": ms, "shape": list(out.shape)}))


def bench_decode_memory() -> None:
    rows = []
    for mode in ("diffusers-full", "diffusers-tiled", "vidcore-full", "vidcore-chunked"):
        res = subprocess.run(
            [sys.executable, __file__, "--child", mode], capture_output=True, text=True, check=True
        )
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
    print(f"\nLTX VAE decode peak memory (tiny 0.9.1-layout VAE, latent {list(LATENT)} -> 65x192x192)")
    print(f"{'mode':<18}{'peak MiB':>10}{'vs diffusers-full':>19}{'ms':>10}")
    for r in rows:
        print(
            f"{r['mode']:<18}{r['peak_mib']:>10.1f}"
            f"{r['peak_mib'] / rows[0]['peak_mib']:>19.2f}{r['ms']:>10.0f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.child:
        _decode_child(args.child)
        return
    bench_transformer(args.repeats)
    bench_decode_memory()


if __name__ == "__main__":
    main()
