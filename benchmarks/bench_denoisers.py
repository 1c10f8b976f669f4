"""3D U-Net vs Spacetime DiT (issue 14's controlled comparison, the cost half): for each model folder, the
denoiser's parameters against the lecture's closed forms (12·C² per transformer block; 27·Cin·Cout per full
3x3x3 conv layer, 9·Cin·Cout + 3·Cout² factorized), FLOPs per forward and seconds per video (sampling with
the model's own steps + CFG on the flow schedule, decode included) at 17 and 33 frames, measured in one run.
Ratios are against the first model at 17 frames; the accuracy half is ``vidcore eval shapes --model FOLDER
--schedule flow [--frames 33]``.

Run: python benchmarks/bench_denoisers.py --models runs/cmp/dit_model runs/cmp/unet_model [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._util import median_time, print_table  # noqa: E402
from vidcore.models.dit import SpacetimeDiT  # noqa: E402
from vidcore.models.unet3d import Conv, forward_flops  # noqa: E402
from vidcore.pipelines import load_pipeline  # noqa: E402


def core_parameters(net: nn.Module) -> tuple[str, int, int, int | None]:
    """(what is counted, measured weights, the lecture's closed form for them, that form for a full 3x3x3
    layout with the same widths, None for a DiT). DiT: self-attention (qkv + out) and MLP weights of every
    block against 12·L·C² (at MLP ratio 4). U-Net: every convolution's weights against 27·Cin·Cout per
    spatio-temporal layer (full) and 9·Cin·Cout + 3·Cout² (factorized: a 1x3x3 conv then a 3x1x1 one)."""
    if isinstance(net, SpacetimeDiT):
        measured = 0
        for block in net.blocks:
            for lin in (block.attn.qkv, block.attn.proj, block.mlp[0], block.mlp[2]):
                measured += lin.weight.numel()
        c, depth = net.config.width, len(net.blocks)
        form = 12 * depth * c * c
        return f"attn+MLP weights, {depth} blocks x C={c}: 12LC^2", measured, form, None
    measured = form = full = 0
    layers = [m for m in net.modules() if isinstance(m, Conv)]  # the spatio-temporal conv layers
    inside = {id(c) for m in layers for c in m.modules() if isinstance(c, nn.Conv3d)}
    for m in layers:
        cout, cin = m.spatial.weight.shape[:2]
        measured += sum(c.weight.numel() for c in m.modules() if isinstance(c, nn.Conv3d))
        form += 27 * cin * cout if m.temporal is None else 9 * cin * cout + 3 * cout * cout
        full += 27 * cin * cout
    for m in net.modules():  # 1x3x3 down/up-sampling and 1x1x1 skip convs: the same in both layouts
        if isinstance(m, nn.Conv3d) and id(m) not in inside:
            measured, form, full = (v + m.weight.numel() for v in (measured, form, full))
    convs = sum(isinstance(m, nn.Conv3d) for m in net.modules())
    what = (
        f"conv weights, {len(layers)} layers ({convs} convs): sum 27CinCout (full) / 9CinCout+3Cout^2 (2+1)D"
    )
    return what, measured, form, full


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", required=True, help="model names or folders")
    parser.add_argument("--frames", type=int, nargs="+", default=[17, 33])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    prompt = "a red circle moving right"
    pipes = {m: load_pipeline(m) for m in args.models}

    rows = []
    for name, pipe in pipes.items():
        net = pipe.dit
        what, measured, form, full = core_parameters(net)
        total = sum(p.numel() for p in net.parameters())
        rows.append([name, type(net).__name__, total, measured, form, "-" if full is None else full, what])
    print_table(
        ["model", "denoiser", "params", "core measured", "closed form", "full 3x3x3 form", "counted"], rows
    )

    # Both on the flow schedule (tiny's default is pyramidal; the comparison is of the denoisers).
    opts = {m: p.default_options().replace(schedule="flow") for m, p in pipes.items()}
    rows, ref_s, ref_f = [], None, None
    for frames in args.frames:
        for name, pipe in pipes.items():
            o = opts[name]
            shape = pipe.latent_shape(frames, pipe.config.height, pipe.config.width)
            cond, _ = pipe.encode_prompts(prompt)
            model = pipe.denoiser(o, (1, *shape))
            x = torch.randn(1, *shape)
            flops = forward_flops(model, x, torch.full((1,), 0.5), **cond.model_kwargs())
            sec = median_time(
                lambda p=pipe, f=frames, o=o: p.generate(prompt, num_frames=f, options=o),
                repeats=args.repeats,
            )
            ref_s = sec if ref_s is None else ref_s
            ref_f = flops if ref_f is None else ref_f
            rows.append(
                [name, frames, "x".join(map(str, shape[1:])), flops / 1e9, flops / ref_f, sec, sec / ref_s]
            )
    own = ", ".join(f"{m}: {o.steps} steps, CFG {o.guidance:g}" for m, o in opts.items())
    print(
        f"\n{args.threads} thread(s), median of {args.repeats}, own defaults on flow ({own}), decode included"
    )
    print_table(["model", "frames", "latent T'xH'xW'", "GFLOP/forward", "x ref", "s/video", "x ref"], rows)


if __name__ == "__main__":
    main()
