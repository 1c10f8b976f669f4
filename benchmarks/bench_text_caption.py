"""Text encoder and captioner timings on CPU: MiniLM fp32 vs bf16, cache hit vs miss, tiny SmolVLM stages.

Usage: python benchmarks/bench_text_caption.py [--repeats 5]
Ratios are against the fp32 / uncached / full-caption reference measured in the same run. A real
SmolVLM2-256M needs its weights (not available offline here), so only the tiny random model is timed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import _tiny_hf as tiny  # noqa: E402

from benchmarks._util import median_time, print_table  # noqa: E402
from vidcore.caption import load_captioner  # noqa: E402
from vidcore.text import load_text_encoder  # noqa: E402

PROMPTS = [
    "a red circle moving right",
    "a blue square moving left on a black background",
    "the camera pans slowly across a sunny beach with waves",
    "a cat walks through a garden full of flowers at sunset",
    "cinematic shot of a city street at night with neon lights",
    "a green triangle bouncing up and down",
    "",
    "a small boat sails across a calm lake under a cloudy sky",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)

    rows = []
    fp32 = load_text_encoder("minilm", cache_size=0)
    bf16 = load_text_encoder("minilm", dtype="bf16", cache_size=0)
    t32 = median_time(lambda: fp32.encode(PROMPTS), args.repeats)
    t16 = median_time(lambda: bf16.encode(PROMPTS), args.repeats)
    a, m = fp32.encode(PROMPTS)
    b, _ = bf16.encode(PROMPTS)
    err = float((a - b.float())[m].norm() / a[m].norm())
    rows.append(["MiniLM encode 8 prompts fp32", t32 * 1e3, 1.0, "-"])
    rows.append(["MiniLM encode 8 prompts bf16", t16 * 1e3, t16 / t32, f"rel err {err:.2e}"])
    cached = load_text_encoder("minilm", cache_size=64)
    cached.encode(PROMPTS)
    tc = median_time(lambda: cached.encode(PROMPTS), args.repeats)
    rows.append(["MiniLM encode 8 prompts, all cached", tc * 1e3, tc / t32, f"{cached.model_calls} forward"])

    with tempfile.TemporaryDirectory() as tmp:
        cap = load_captioner(tiny.make_smolvlm_folder(Path(tmp) / "smol"))
        frames = torch.rand(48, 96, 160, 3, generator=torch.Generator().manual_seed(0))
        full = median_time(lambda: cap.caption(frames, video_fps=12.0, max_new_tokens=8), args.repeats)
        prep = median_time(lambda: cap.build_inputs([frames], video_fps=12.0), args.repeats)
        batch2 = median_time(
            lambda: cap.caption_batch([frames, frames], video_fps=[12.0, 12.0], max_new_tokens=8),
            args.repeats,
        )
        n_params = sum(p.numel() for p in cap.model.parameters())
        rows.append([f"tiny SmolVLM ({n_params} params) caption 4 frames, 8 tokens", full * 1e3, 1.0, "-"])
        rows.append(["  of which sampling + prompt + preprocess", prep * 1e3, prep / full, "-"])
        rows.append(["tiny SmolVLM caption_batch of 2 videos", batch2 * 1e3, batch2 / full, "per batch"])
        cap.release()
    print_table(["case", "median ms", "ratio", "note"], rows)


if __name__ == "__main__":
    main()
