"""Wan transformer: vidcore vs diffusers forward time on CPU, measured in the same run.

Run: python benchmarks/bench_wan.py [--repeats 7] [--threads 1]. Needs diffusers (test extra). Prints one
table with the ratio vidcore / diffusers per case (target <= 1.0). The Wan VAEs are benchmarked in
benchmarks/bench_wan_vae.py.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Small but not tiny: 4 blocks of 2 heads x 128 (the released head width), 5x16x16 latents = 320 tokens,
# 512 text rows as the pipelines pass them.
SMALL = dict(
    num_attention_heads=2,
    attention_head_dim=128,
    in_channels=16,
    out_channels=16,
    text_dim=256,
    ffn_dim=1024,
    num_layers=4,
)
I2V = dict(SMALL, in_channels=36, image_dim=128, added_kv_proj_dim=256)
LATENT = (2, 16, 5, 16, 16)  # B=2: a CFG pair
TEXT_TOKENS = 512
CLIP_TOKENS = 257


def _median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def _pair(cfg: dict):
    from diffusers import WanTransformer3DModel

    from vidcore.models.wan import WanTransformer, WanTransformerConfig

    torch.manual_seed(0)
    ref = WanTransformer3DModel(**cfg).eval()
    ours = WanTransformer(WanTransformerConfig.from_diffusers(dict(ref.config))).eval()
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def bench_transformer(repeats: int) -> None:
    g = torch.Generator().manual_seed(0)
    b, c, f, h, w = LATENT
    tokens = f * (h // 2) * (w // 2)
    x = torch.randn(LATENT, generator=g)
    ctx = torch.randn(b, TEXT_TOKENS, SMALL["text_dim"], generator=g)
    ctx[:, 40:] = 0  # zero-padded umT5 rows
    t = torch.tensor([870.0, 870.0])
    t_tok = t[:, None].repeat(1, tokens)
    t_tok[:, : tokens // f] = 0.0  # TI2V: clean first latent frame
    y = torch.randn(b, 20, f, h, w, generator=g)
    clip = torch.randn(b, CLIP_TOKENS, I2V["image_dim"], generator=g)

    cases = []
    ref, ours = _pair(SMALL)
    cases.append(("t2v, t [B]", ref, ours, (x, t, ctx), dict(x=x, timestep=t, context=ctx)))
    cases.append(("ti2v-style t [B, S]", ref, ours, (x, t_tok, ctx), dict(x=x, timestep=t_tok, context=ctx)))
    ref_i, ours_i = _pair(I2V)
    cases.append(
        (
            "i2v (CLIP + k_img)",
            ref_i,
            ours_i,
            (torch.cat([x, y], 1), t, ctx, clip),
            dict(x=x, timestep=t, context=ctx, clip_fea=clip, y=y),
        )
    )
    rows = []
    with torch.no_grad():
        for name, r, o, ref_args, our_kwargs in cases:
            want = r(*ref_args, return_dict=False)[0]
            got = o(**our_kwargs)
            err = ((want - got).abs().max() / want.abs().max()).item()
            # Alternate the order so drift of the shared machine hits both sides alike.
            d1 = _median_ms(lambda r=r, a=ref_args: r(*a, return_dict=False), repeats)
            v1 = _median_ms(lambda o=o, k=our_kwargs: o(**k), repeats)
            v2 = _median_ms(lambda o=o, k=our_kwargs: o(**k), repeats)
            d2 = _median_ms(lambda r=r, a=ref_args: r(*a, return_dict=False), repeats)
            rows.append((name, min(d1, d2), min(v1, v2), err))
    print(
        f"\nWan transformer forward (4 blocks, 2x128 heads, ffn 1024, B=2, latent {list(LATENT[1:])} = "
        f"{tokens} tokens, {TEXT_TOKENS} text rows, fp32, {torch.get_num_threads()} thread(s))"
    )
    print(f"{'case':<22}{'diffusers ms':>14}{'vidcore ms':>12}{'ratio':>8}{'rel err':>10}")
    for name, d, v, err in rows:
        print(f"{name:<22}{d:>14.2f}{v:>12.2f}{v / d:>8.2f}{err:>10.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    bench_transformer(args.repeats)


if __name__ == "__main__":
    main()
