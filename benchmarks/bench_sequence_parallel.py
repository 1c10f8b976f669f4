"""Sequence parallelism: bytes moved per layer, measured against the closed forms, and a calibrated scaling
model for Wan 2.1 T2V-14B at 720p next to Wan's published timings.

1. Measured (CPU, gloo, 2 and 4 processes on this machine): a Wan-shaped transformer (width 256, 8 heads,
   2 layers, 5x9x16 = 720 tokens) runs one forward per mode under vidcore.distributed; the bytes each rank
   sends in the Ulysses all-to-alls and the ring steps (CommCounter) are compared with
   vidcore.distributed.cost, and the time spent waiting on collectives is shown as a share of the forward.
   CPU timings only show that the pieces work; gloo on 2 shared cores is no proxy for NVLink.
2. Model: T(P) = S + N · (F / (P · E) + layers · attention_bytes(P) / bw + gather / bw + FSDP weights / bw),
   no overlap of compute and communication. S = 66.5 s (T5, VAE; the serial part that makes Wan's H100 row
   fit Amdahl's law), N = 100 forwards (50 steps x 2 CFG branches), F = FLOPs of one forward, E calibrated so
   that T(1) equals Wan's measured 1-GPU H100 time (1837.9 s). Wan's numbers: Wan-Video/Wan2.1 README
   (assets/comp_effic.png), H800/H100 row, T2V-14B 720P, Ulysses + FSDP.

Run: python benchmarks/bench_sequence_parallel.py [--model-only]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._util import print_table  # noqa: E402
from vidcore.distributed.cost import (  # noqa: E402
    attention_bytes,
    gather_bytes,
    ring_bytes,
    ulysses_bytes,
    weight_gather_bytes,
)

# ---- measured on CPU ---------------------------------------------------------------------------------------

SMALL = dict(dim=256, ffn_dim=512, num_heads=8, num_layers=2, in_channels=16, out_channels=16, text_dim=64)
GRID = (5, 9, 16)  # latent frames x (H, W) / patch (1, 2, 2)
MODES = {
    2: ("ulysses=2", "ring=2", "ulysses=2,comm=all_gather"),
    4: ("ulysses=4", "ring=4", "ulysses=2,ring=2"),
}


def _worker(folder: Path) -> None:
    from vidcore.distributed import ParallelDenoiser, count_comm, init_parallel
    from vidcore.models.wan.config import WanTransformerConfig
    from vidcore.models.wan.transformer import WanTransformer

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = WanTransformer(WanTransformerConfig(**SMALL)).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # the zero-initialised head would make every output 0
        for param in model.parameters():
            param.add_(0.05 * torch.randn(param.shape, generator=g))
    t, h, w = GRID
    x = torch.randn(1, 16, t, 2 * h, 2 * w, generator=g)
    sigma, ctx = torch.tensor([0.5]), torch.randn(1, 32, 64, generator=g)
    world = int(os.environ["WORLD_SIZE"])
    rows = {}
    with torch.no_grad():
        ref = model(x, sigma * 1000, ctx)
        for mode in MODES[world]:
            mesh = init_parallel(mode + ",timeout=120")
            run = ParallelDenoiser(lambda x, s, context: model(x, s * 1000, context), mesh)
            run(x, sigma, context=ctx)  # warm-up
            times, counters = [], []
            for _ in range(3):
                with count_comm() as counter:
                    start = time.perf_counter()
                    out = run(x, sigma, context=ctx)
                    times.append(time.perf_counter() - start)
                counters.append(counter)
            c = counters[-1]
            rows[mode] = {
                "bytes": dict(c.bytes),
                "wait_s": sum(statistics.median(k.seconds[label] for k in counters) for label in c.seconds),
                "forward_s": statistics.median(times),
                "err": float((out - ref).abs().max()),
            }
    if int(os.environ["RANK"]) == 0:
        (folder / "result.json").write_text(json.dumps(rows))


def _measure(world: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp, socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
        sock.close()
        procs = []
        for rank in range(world):
            env = dict(
                os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), OMP_NUM_THREADS="1"
            )
            env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
            procs.append(subprocess.Popen([sys.executable, __file__, "--worker", tmp], env=env))
        codes = [p.wait(timeout=600) for p in procs]
        if any(codes):
            raise SystemExit(f"workers failed with exit codes {codes}")
        return json.loads((Path(tmp) / "result.json").read_text())


def measured_table() -> None:
    from vidcore.distributed import ParallelConfig

    t, h, w = GRID
    length, hidden, layers = t * h * w, SMALL["dim"], SMALL["num_layers"]
    rows = []
    for world in (2, 4):
        for mode, res in _measure(world).items():
            cfg = ParallelConfig.parse(mode)
            u, r = cfg.ulysses, cfg.ring
            comm = "all_gather" if cfg.comm == "all_gather" else "all_to_all"
            got = (res["bytes"].get("ulysses", 0) + res["bytes"].get("ring", 0)) / layers
            want = attention_bytes(length, hidden, 4, u, r, 1, comm)
            gathered = res["bytes"].get("gather", 0)
            rows.append(
                [
                    mode,
                    got / 1e3,
                    want / 1e3,
                    gathered / 1e3,
                    gather_bytes(length, 4 * SMALL["out_channels"], 4, u, r) / 1e3,
                    res["forward_s"] * 1e3,
                    100 * res["wait_s"] / res["forward_s"],
                    res["err"],
                ]
            )
    print(
        f"\n== measured: Wan-shaped model, {length} tokens, width {hidden}, {layers} layers, fp32, "
        "gloo on CPU =="
    )
    print_table(
        [
            "mode",
            "kB sent / layer",
            "formula kB",
            "output gather kB",
            "formula kB",
            "forward ms",
            "comm wait %",
            "max |diff| vs 1 proc",
        ],
        rows,
    )


# ---- calibrated model -------------------------------------------------------------------------------------

WAN14B = dict(layers=40, dim=5120, ffn=13824, heads=40, text=512, params=14.0e9)
TOKENS_720P = 21 * 45 * 80  # 81 frames -> 21 latent frames; 720x1280 / (8 VAE x 2 patch)
SERIAL_S = 66.5
FORWARDS = 100
BF16 = 2
WAN_H100 = {1: 1837.9, 2: 945.1, 4: 497.0, 8: 287.9}  # Wan2.1 README, H800/H100, T2V-14B 720P (s)
NVLINK, PCIE4, IB = 300e9, 20e9, 50e9  # bytes/s per GPU: NVLink (H100 SXM, usable), PCIe 4 x16, 400 Gb/s NIC


def forward_flops(length: int, m: dict = WAN14B) -> float:
    """Multiply-adds x 2 of one Wan forward: self-attention (projections + scores/values), cross-attention
    to the text, FFN; embeddings and the head are negligible."""
    c, lt = m["dim"], m["text"]
    self_attn = 8 * length * c * c + 4 * length * length * c
    cross = 4 * length * c * c + 4 * lt * c * c + 4 * length * lt * c
    ffn = 4 * length * c * m["ffn"]
    return m["layers"] * (self_attn + cross + ffn)


def step_comm_s(p: int, u: int, r: int, intra: float, inter: float | None = None) -> float:
    """Seconds of communication per forward: Ulysses all-to-alls on the intra-node links, ring steps on the
    inter-node links when ``inter`` is given (Ulysses inside a node, ring across nodes), the output gather and
    the FSDP weight gathers on the slowest link involved."""
    if p == 1:
        return 0.0
    length, c = TOKENS_720P, WAN14B["dim"]
    across = inter if inter is not None else intra
    uly = WAN14B["layers"] * ulysses_bytes(length, c, BF16, u, r) / intra
    ring = WAN14B["layers"] * ring_bytes(length, c, BF16, u, r) / across
    out = gather_bytes(length, 64, BF16, u, r) / across  # 16 channels x 1x2x2 patch
    weights = weight_gather_bytes(WAN14B["params"] * BF16, p) / across
    return uly + ring + out + weights


def modelled_table() -> None:
    flops = forward_flops(TOKENS_720P)
    eff = FORWARDS * flops / (WAN_H100[1] - SERIAL_S)
    print(
        f"\n== model: Wan2.1 T2V-14B 720P ({TOKENS_720P} tokens), {flops / 1e15:.2f} PFLOP per forward, "
        f"{FORWARDS} forwards, serial {SERIAL_S} s, calibrated {eff / 1e12:.0f} TFLOP/s effective =="
    )

    def total(p: int, comm_s: float) -> float:
        return SERIAL_S + FORWARDS * (flops / (p * eff) + comm_s)

    def share(p: int, comm_s: float) -> str:
        return f"{100 * comm_s / (flops / (p * eff) + comm_s):.0f}%"

    rows = []
    for p in (1, 2, 4, 8):
        nv = step_comm_s(p, p, 1, NVLINK)
        pcie_u, pcie_r = step_comm_s(p, p, 1, PCIE4), step_comm_s(p, 1, p, PCIE4)
        rows.append(
            [
                p,
                WAN_H100[p],
                total(p, nv),
                share(p, nv),
                total(p, pcie_u),
                share(p, pcie_u),
                total(p, pcie_r),
                share(p, pcie_r),
            ]
        )
    print("one node, Ulysses degree P (ring degree P in the ring column), FSDP over P, no overlap:")
    print_table(
        [
            "GPUs",
            "Wan H100 measured s",
            "NVLink Ulysses s",
            "comm",
            "PCIe4 Ulysses s",
            "comm",
            "PCIe4 ring s",
            "comm",
        ],
        rows,
    )
    rows = []
    for per_node in (1, 2, 4, 8):
        p = 2 * per_node
        usp = step_comm_s(p, per_node, 2, NVLINK, IB)
        uly_both = step_comm_s(p, p, 1, IB) if WAN14B["heads"] % p == 0 else None
        rows.append(
            [
                f"2 x {per_node}",
                f"ulysses={per_node},ring=2",
                total(p, usp),
                share(p, usp),
                "-" if uly_both is None else f"{total(p, uly_both):.4g}",
                WAN_H100.get(p, "-"),
            ]
        )
    print("\ntwo nodes (NVLink inside, 400 Gb/s per GPU between), Ulysses inside a node x ring across nodes:")
    print_table(
        ["GPUs", "layout", "USP s", "comm", "Ulysses over both nodes s", "Wan 1-node H100 s"],
        rows,
    )
    print(
        "Ulysses needs the 40 heads divisible by its degree "
        f"({[d for d in range(1, 41) if 40 % d == 0]}), so 16 GPUs run USP; per-layer bytes per GPU at 8 "
        "GPUs: Ulysses "
        f"{ulysses_bytes(TOKENS_720P, 5120, BF16, 8) / 1e6:.0f} MB, ring "
        f"{ring_bytes(TOKENS_720P, 5120, BF16, 1, 8) / 1e6:.0f} MB, USP 4x2 "
        f"{attention_bytes(TOKENS_720P, 5120, BF16, 4, 2) / 1e6:.0f} MB."
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model-only", action="store_true", help="skip the measured CPU part")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(Path(args.worker))
        return
    if not args.model_only:
        measured_table()
    modelled_table()


if __name__ == "__main__":
    main()
