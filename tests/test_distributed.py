"""vidcore.distributed on CPU with gloo: sequence parallelism (Ulysses, Ring, both), CFG parallelism and
FSDP2 give the one-process output, for SpacetimeDiT (full and factorized), LTX-Video and Wan, and for a
whole ``generate`` of the built-in model; bad launches are refused clearly.

Each world of 2 or 4 processes is started once per module (``python this_file.py SUITE OUT`` with torchrun's
environment variables, so the library's own torchrun path initialises the process group) and runs every case
of its suite; the tests then assert each case's recorded result. The reference output of every case is
computed by the same worker without parallelism.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

HERE = Path(__file__).resolve()
TOL = 1e-5
PROMPT = "a red circle moving right"
GEN = dict(num_frames=9, height=40, width=24, steps=2, seed=1)  # 3 x 5 x 3 = 45 tokens: padded for 2 and 4

# model name -> grids (T, H, W of the token grid): an odd token count (27: padded) and an even one.
GRIDS = {"odd": (3, 3, 3), "even": (4, 2, 2)}
MODELS = ("dit_full", "dit_causal", "dit_factorized", "ltx", "ltx_per_token", "wan", "wan_per_token")
MODES_2 = (
    "ulysses=2",
    "ring=2",
    "ulysses=2,comm=all_gather",
    "cfg=2",
    "ulysses=2,fsdp",
    "ring=2,fsdp",
    "cfg=2,fsdp",
)
CASES_2 = [f"{m}/{mode}/{g}" for mode in MODES_2[:4] for m in MODELS for g in GRIDS]
CASES_2 += [f"{m}/ulysses=2,fsdp/odd" for m in MODELS]  # FSDP2 setup is the slow part: one grid
CASES_2 += [f"{m}/{mode}/odd" for mode in MODES_2[5:] for m in ("dit_factorized", "ltx", "wan")]
CASES_2 += ["dit4_full/ulysses=2/odd", "api/with_sequence_parallel"]
# sequence_attention itself with the masks a model may pass: none, causal, bool keep + causal, float bias.
ATTN_2 = [f"{mode}/{kind}" for mode in ("ulysses=2", "ring=2") for kind in ("none", "causal", "bool", "bias")]
BYTES_2 = ("ulysses=2", "ring=2", "ulysses=2,comm=all_gather", "cfg=2")
BYTES_4 = ("ulysses=2,ring=2", "ring=4", "cfg=2,ulysses=2")
GEN_MODES = ("ulysses=2", "ring=2", "cfg=2", "ulysses=2,fsdp")
# A representative 4-process subset (4 processes share 2 cores): 2x2 for every model and grid, the other
# 4-rank layouts on a few models.
CASES_4 = [f"{m}/ulysses=2,ring=2/odd" for m in MODELS]
CASES_4 += [f"{m}/ulysses=2,ring=2/even" for m in ("dit_full", "dit_factorized")]
CASES_4 += [f"{m}/ring=4/odd" for m in ("dit_full", "wan")]
CASES_4 += [f"{m}/cfg=2,ulysses=2/odd" for m in ("dit_factorized", "ltx")]
CASES_4 += [f"{m}/ulysses=2,ring=2,fsdp/odd" for m in ("dit_full", "wan")]
CASES_4 += [
    "ltx/ulysses=2,ring=2,comm=all_gather/odd",
    "dit4_full/ulysses=4/odd",
    "dit4_factorized/ulysses=4/odd",
]


# ---- the worker side (runs in the spawned processes) ------------------------------------------------------


def _randomized(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Seeded noise on every parameter (zero-initialised gates and heads would hide most of the network)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    return model.eval()


def _build(name: str) -> torch.nn.Module:
    """The same tiny model on every rank (and for every call)."""
    torch.manual_seed(0)
    if name.startswith(("dit", "api")):
        from vidcore.models.dit import DiTConfig, SpacetimeDiT

        heads = 4 if name.startswith("dit4") else 2
        layout = "factorized" if "factorized" in name else "full"
        causal = "causal" in name or "factorized" in name
        cfg = DiTConfig(
            in_channels=4, out_channels=4, width=8 * heads, depth=2, heads=heads, text_dim=12, layout=layout
        )
        cfg = cfg.replace(temporal_causal=causal)
        return _randomized(SpacetimeDiT(cfg), 1)
    if name.startswith("ltx"):
        from vidcore.models.ltx.config import LTXTransformerConfig
        from vidcore.models.ltx.transformer import LTXVideoTransformer

        cfg = LTXTransformerConfig(
            in_channels=8,
            out_channels=8,
            num_attention_heads=2,
            attention_head_dim=16,
            cross_attention_dim=32,
            num_layers=2,
            caption_channels=12,
        )
        model = LTXVideoTransformer(cfg)
        model.initialize_weights(torch.Generator().manual_seed(0))
        return _randomized(model, 1)
    from vidcore.models.wan.config import WanTransformerConfig
    from vidcore.models.wan.transformer import WanTransformer

    cfg = WanTransformerConfig(
        dim=24, ffn_dim=32, num_heads=2, num_layers=2, in_channels=4, out_channels=4, text_dim=12, text_len=8
    )
    cfg = cfg.replace(rope_max_seq_len=32)
    return _randomized(WanTransformer(cfg), 1)


def _inputs(name: str, grid: tuple[int, int, int]) -> tuple[tuple, dict]:
    """(x, sigma) and keyword arguments of a denoiser call ``fn(x, sigma, **kwargs)``, batch 2 (the CFG
    batch [uncond; cond]: different text per sample)."""
    g = torch.Generator().manual_seed(2)
    t, h, w = grid
    ctx = torch.randn(2, 5, 12, generator=g)
    mask = torch.tensor([[True, True, False, False, False], [True] * 5])
    if name.startswith(("dit", "api")):
        x = torch.randn(2, 4, t, h, w, generator=g)
        return (x, torch.tensor([0.3, 0.7])), dict(
            context=ctx, context_mask=mask, pooled=torch.randn(2, 12, generator=g)
        )
    if name.startswith("ltx"):
        x = torch.randn(2, t * h * w, 8, generator=g)
        sigma = torch.tensor([0.3, 0.7])
        if name.endswith("per_token"):
            sigma = torch.rand(2, t * h * w, generator=g)
        return (x, sigma), dict(context=ctx, context_mask=mask)
    x = torch.randn(2, 4, t, 2 * h, 2 * w, generator=g)  # Wan patch (1, 2, 2)
    sigma = torch.tensor([0.3, 0.7])
    if name.endswith("per_token"):  # TI2V: a few distinct per-token timesteps
        sigma = torch.tensor([0.0, 0.5, 0.9])[torch.randint(0, 3, (2, t * h * w), generator=g)]
    return (x, sigma), dict(context=ctx)


def _denoiser(model: torch.nn.Module, name: str, grid: tuple[int, int, int]):
    """The model as ``fn(x, sigma, **kwargs)`` (what a pipeline's denoiser looks like)."""
    if name.startswith(("dit", "api")):
        return lambda x, sigma, **kw: model(x, sigma, **kw)
    if name.startswith("ltx"):
        t, h, w = grid

        def ltx(x, sigma, context, context_mask):
            return model(x, context, sigma * 1000, context_mask, t, h, w, rope_scale=(0.4, 32.0, 32.0))

        return ltx
    return lambda x, sigma, context: model(x, sigma * 1000, context)


def _model_case(case: str, meshes: dict) -> float:
    from vidcore.distributed import ParallelDenoiser, init_parallel, sequence_parallel, shard_weights

    name, mode, grid_name = (
        case.split("/") if case.count("/") == 2 else (case.split("/")[0], "ulysses=2", "odd")
    )
    grid = GRIDS[grid_name]
    (x, sigma), kw = _inputs(name, grid)
    model = _build(name)
    with torch.no_grad():
        ref = _denoiser(model, name, grid)(x, sigma, **kw)
    if mode not in meshes:
        meshes[mode] = init_parallel(mode.replace(",fsdp", "") + ",timeout=60")
    mesh = meshes[mode]
    if "fsdp" in mode:
        model = shard_weights(_build(name), mesh.device)
    with torch.no_grad():
        if name == "api":  # the context manager alone, every rank calling the model on the same inputs
            with sequence_parallel(mesh):
                out = model(x, sigma, **kw)
        else:
            out = ParallelDenoiser(_denoiser(model, name, grid), mesh)(x, sigma, **kw)
    if out.shape != ref.shape:
        raise AssertionError(f"{case}: shape {tuple(out.shape)} != {tuple(ref.shape)}")
    return float((out - ref).abs().max())


def _attention_case(case: str, meshes: dict) -> float:
    """sequence_attention on this rank's shard of 13 tokens (padded) against attention on all of them."""
    from vidcore.distributed import sequence_parallel
    from vidcore.ops.attention import attention, sequence_attention, sequence_shard

    mode, kind = case.split("/")
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(2, 2, 13, 8, generator=g) for _ in range(3))
    mask = None
    if kind == "bool":
        mask = torch.rand(2, 1, 13, 13, generator=g) > 0.3
        mask[..., 0] = True  # key 0 kept: no query loses every key to mask + causal
    elif kind == "bias":
        mask = torch.randn(1, 1, 13, 13, generator=g)
    causal = kind in ("causal", "bool")
    ref = attention(q, k, v, mask=mask, causal=causal, backend="math")
    with sequence_parallel(meshes[mode]):
        sp = sequence_shard(13)
        out = sequence_attention(*(sp.split(z, dim=2) for z in (q, k, v)), mask=mask, causal=causal)
        out = sp.gather(out, dim=2)
    return float((out - ref).abs().max())


def _fsdp_mixed_case(meshes: dict) -> float:
    """Wan as it loads in bfloat16 (norms and modulation tables kept float32): FSDP2 units take one dtype,
    so shard_weights leaves the float32 ones whole; the sharded model must compute what the whole one does."""
    from vidcore.distributed import ParallelDenoiser, shard_weights
    from vidcore.models.wan.transformer import keeps_fp32

    def mixed():
        model = _build("wan")
        for name, param in model.named_parameters():
            if not keeps_fp32(name):
                param.data = param.data.to(torch.bfloat16)
        return model

    (x, sigma), kw = _inputs("wan", GRIDS["odd"])
    x, kw = x.bfloat16(), {"context": kw["context"].bfloat16()}
    mesh = meshes["ulysses=2"]
    with torch.no_grad():
        ref = ParallelDenoiser(_denoiser(mixed(), "wan", GRIDS["odd"]), mesh)(x, sigma, **kw)
        sharded = shard_weights(mixed(), mesh.device)
        out = ParallelDenoiser(_denoiser(sharded, "wan", GRIDS["odd"]), mesh)(x, sigma, **kw)
    return float((out.float() - ref.float()).abs().max())


def _no_split_case(mesh) -> list[str]:
    """A denoiser whose model never splits tokens (a U-Net) still gives its output, with a warning."""
    import logging

    from vidcore.distributed import ParallelDenoiser

    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    logging.getLogger("vidcore").addHandler(handler)
    try:
        out = ParallelDenoiser(lambda x, sigma: 2 * x, mesh)(torch.ones(2, 3), torch.zeros(2))
    finally:
        logging.getLogger("vidcore").removeHandler(handler)
    return records if torch.equal(out, torch.full((2, 3), 2.0)) else ["wrong output"]


def _bytes_case(mode: str, meshes: dict) -> dict:
    """Bytes this rank sends in one forward of the tiny Wan model (odd grid), per collective label."""
    from vidcore.distributed import ParallelDenoiser, count_comm, init_parallel

    (x, sigma), kw = _inputs("wan", GRIDS["odd"])
    model = _build("wan")
    if mode not in meshes:
        meshes[mode] = init_parallel(mode + ",timeout=60")
    with torch.no_grad(), count_comm() as counter:
        ParallelDenoiser(_denoiser(model, "wan", GRIDS["odd"]), meshes[mode])(x, sigma, **kw)
    return dict(counter.bytes)


def _digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()


def _suite_two(rank: int, out: Path) -> dict:
    import vidcore
    from vidcore.distributed import ParallelDenoiser, ParallelError, init_parallel

    res: dict = {"models": {}, "errors": {}, "generate": {}}
    meshes: dict = {}
    for case in CASES_2:
        res["models"][case] = _model_case(case, meshes)
    res["bytes"] = {mode: _bytes_case(mode, meshes) for mode in BYTES_2}
    res["attention"] = {case: _attention_case(case, meshes) for case in ATTN_2}
    res["fsdp_mixed"] = _fsdp_mixed_case(meshes)
    res["comm_auto"] = meshes["ulysses=2"].comm
    res["no_split_warning"] = _no_split_case(meshes["ulysses=2"])

    # Refusals: raised on every rank before any collective, so no rank is left waiting.
    try:
        init_parallel("ulysses=4")
    except ValueError as e:
        res["errors"]["world"] = str(e)
    three = _build("dit_full").__class__(_build("dit_full").config.replace(width=48, heads=3))
    (x, sigma), kw = _inputs("dit_full", GRIDS["odd"])
    try:
        with torch.no_grad():
            ParallelDenoiser(lambda x, s, **k: three(x, s, **k), meshes["ulysses=2"])(x, sigma, **kw)
    except ValueError as e:
        res["errors"]["heads"] = str(e)

    # Whole generate() of the built-in model against one process.
    ref = vidcore.load_pipeline("tiny").generate(PROMPT, **GEN)
    for mode in GEN_MODES:
        pipe = vidcore.load_pipeline("tiny", parallel=mode + ",timeout=60")
        frames = pipe.generate(PROMPT, **GEN)
        res["generate"][mode] = {"err": float((frames - ref).abs().max()), "digest": _digest(frames)}
    pipe = vidcore.load_pipeline("tiny", parallel="ulysses=2,timeout=60")
    # Same token count on both ranks, so the text embeddings are compared by value (not by shape).
    other = ("a red circle moving right", "a blue circle moving right")[rank]
    res["same_shape"] = (
        pipe.encode_prompts(other)[0].embeddings.shape == pipe.encode_prompts(PROMPT)[0].embeddings.shape
    )
    for what, kwargs in (
        ("seed", dict(GEN, seed=1 + rank)),
        ("prompt", dict(GEN, prompt=other)),
    ):
        try:
            pipe.generate(**{"prompt": PROMPT, **kwargs})
            res["errors"][f"disagree_{what}"] = None
        except ParallelError as e:
            res["errors"][f"disagree_{what}"] = str(e)

    # The CLI under the same (torchrun-style) world: rank 0 writes the file, once.
    from vidcore.cli import main

    target = out / "cli.mp4"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        args = ["generate", PROMPT, "-o", str(target), "--frames", "9", "--height", "40", "--width", "24"]
        rc = main(args + ["--steps", "2", "--parallel", "ulysses=2,timeout=60"])
    res["cli"] = {"rc": rc, "stdout": buf.getvalue()}
    return res


def _suite_four(rank: int, out: Path) -> dict:
    meshes: dict = {}
    res = {"models": {case: _model_case(case, meshes) for case in CASES_4}}
    res["bytes"] = {mode: _bytes_case(mode, meshes) for mode in BYTES_4}
    return res


def _suite_dies(rank: int, out: Path) -> dict:
    """Rank 1 exits during its second denoiser forward; rank 0 must stop with a clear error, write nothing."""
    from vidcore.cli import main
    from vidcore.models.dit import SpacetimeDiT

    if rank == 1:
        forward, calls = SpacetimeDiT.forward, []

        def dying(self, *args, **kwargs):
            calls.append(1)
            if len(calls) == 2:
                os._exit(3)
            return forward(self, *args, **kwargs)

        SpacetimeDiT.forward = dying
    target = out / "dies.mp4"
    args = ["generate", PROMPT, "-o", str(target), "--frames", "9", "--height", "40", "--width", "24"]
    start = time.monotonic()
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            rc = main(args + ["--steps", "3", "--parallel", "ulysses=2,timeout=20"])
        except RuntimeError as e:  # the ParallelError itself, where main() lets runtime errors through
            print(e, file=sys.stderr)
            rc = 1
    elapsed = time.monotonic() - start
    return {"rc": rc, "message": err.getvalue(), "seconds": elapsed, "files": os.listdir(out)}


SUITES = {"two": _suite_two, "four": _suite_four, "dies": _suite_dies}


# ---- the pytest side -------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _launch(suite: str, world: int, out: Path, timeout: float) -> tuple[list, list[int], str]:
    """Start ``world`` workers as torchrun would (RANK, WORLD_SIZE, MASTER_*): results, codes, logs."""
    port = _free_port()
    procs = []
    for rank in range(world):
        env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world))
        env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
        log = open(out / f"rank{rank}.log", "w")  # noqa: SIM115 - closed below
        procs.append(
            (
                subprocess.Popen(
                    [sys.executable, str(HERE), suite, str(out)], env=env, stdout=log, stderr=log
                ),
                log,
            )
        )
    deadline = time.monotonic() + timeout
    codes = []
    for proc, log in procs:
        try:
            codes.append(proc.wait(timeout=max(1.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            for p, _ in procs:
                p.kill()
            codes.append(-9)
        log.close()
    logs = "\n".join(f"--- rank {r}\n" + (out / f"rank{r}.log").read_text()[-3000:] for r in range(world))
    results = []
    for rank in range(world):
        path = out / f"rank{rank}.json"
        results.append(json.loads(path.read_text()) if path.is_file() else None)
    return results, codes, logs


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    out = tmp_path_factory.mktemp("world2")
    results, codes, logs = _launch("two", 2, out, timeout=240)
    assert codes == [0, 0], f"workers failed: {codes}\n{logs}"
    return results, out


@pytest.fixture(scope="module")
def four(tmp_path_factory):
    out = tmp_path_factory.mktemp("world4")
    results, codes, logs = _launch("four", 4, out, timeout=240)
    assert codes == [0] * 4, f"workers failed: {codes}\n{logs}"
    return results


@pytest.mark.parametrize("case", CASES_2)
def test_two_processes_equal_one(two, case):
    results, _ = two
    for rank, res in enumerate(results):
        err = res["models"][case]
        assert err <= TOL, f"{case} rank {rank}: max |parallel - one process| = {err:.3g}"


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES_4)
def test_four_processes_equal_one(four, case):
    for rank, res in enumerate(four):
        err = res["models"][case]
        assert err <= TOL, f"{case} rank {rank}: max |parallel - one process| = {err:.3g}"


@pytest.mark.parametrize("case", ATTN_2)
def test_sequence_attention_masks_equal_one_process(two, case):
    for rank, res in enumerate(two[0]):
        assert res["attention"][case] <= TOL, (case, rank, res["attention"][case])


def test_fsdp_leaves_float32_parts_of_a_bfloat16_model_whole(two):
    for rank, res in enumerate(two[0]):
        assert res["fsdp_mixed"] == 0.0, (rank, res["fsdp_mixed"])


def test_a_model_that_splits_no_tokens_is_warned_about(two):
    for res in two[0]:
        assert len(res["no_split_warning"]) == 1 and "splits no token sequence" in res["no_split_warning"][0]


def test_auto_picks_all_to_all_on_gloo(two):
    # The all_gather fallback is forced with comm=all_gather in the *comm=all_gather cases above.
    assert [res["comm_auto"] for res in two[0]] == ["all_to_all", "all_to_all"]


def _expected_bytes(mode: str) -> dict[str, float]:
    """The closed forms of vidcore.distributed.cost for the tiny Wan model of _bytes_case (2 layers, width 24,
    16 output channels per token, float32, batch 2, 27 tokens)."""
    from vidcore.distributed import ParallelConfig
    from vidcore.distributed.cost import gather_bytes, ring_bytes, ulysses_bytes

    cfg = ParallelConfig.parse(mode)
    u, r, batch = cfg.ulysses, cfg.ring, 2
    comm = "all_gather" if cfg.comm == "all_gather" else "all_to_all"
    b = batch // cfg.cfg  # the CFG ranks split the batch
    want = {}
    if u > 1:
        want["ulysses"] = 2 * ulysses_bytes(27, 24, 4, u, r, b, comm)
    if r > 1:
        want["ring"] = 2 * ring_bytes(27, 24, 4, u, r, b)
    if cfg.sequence_degree > 1:
        want["gather"] = gather_bytes(27, 16, 4, u, r, b)
    if cfg.cfg > 1:
        want["cfg"] = 16 * 27 * 4 * (batch // cfg.cfg) * (cfg.cfg - 1)  # the output [B/2, C, F, H, W]
    return want


def _check_bytes(results: list, modes: tuple) -> None:
    for mode in modes:
        want = _expected_bytes(mode)
        for rank, res in enumerate(results):
            got = res["bytes"][mode]
            assert set(got) == set(want), (mode, rank, got, want)
            for label, value in want.items():
                assert got[label] == round(value), (
                    f"{mode} rank {rank} {label}: sent {got[label]}, formula {value}"
                )


def test_bytes_sent_equal_the_formulas(two):
    _check_bytes(two[0], BYTES_2)


@pytest.mark.slow
def test_bytes_sent_equal_the_formulas_on_four(four):
    _check_bytes(four, BYTES_4)


@pytest.mark.parametrize("mode", GEN_MODES)
def test_generate_equals_one_process_on_every_rank(two, mode):
    results, _ = two
    for rank, res in enumerate(results):
        assert res["generate"][mode]["err"] <= TOL, (mode, rank, res["generate"][mode]["err"])
    assert len({res["generate"][mode]["digest"] for res in results}) == 1, (
        f"{mode}: ranks hold different frames"
    )


def test_cli_writes_the_video_once_on_rank_zero(two):
    results, out = two
    assert [res["cli"]["rc"] for res in results] == [0, 0]
    assert results[0]["cli"]["stdout"].strip() == str(out / "cli.mp4")
    assert results[1]["cli"]["stdout"].strip() == ""
    assert (out / "cli.mp4").stat().st_size > 0
    assert not [p for p in os.listdir(out) if p.startswith(".")], "a temporary file was left behind"


def test_world_size_must_be_the_product(two):
    results, _ = two
    for res in results:
        msg = res["errors"]["world"]
        assert "cfg x ring x ulysses = 1 x 1 x 4 = 4 processes, but 2 were launched" in msg


def test_heads_not_divisible_names_valid_degrees_and_ring(two):
    results, _ = two
    msg = results[0]["errors"]["heads"]
    assert "ulysses=2 does not divide the model's 3 attention heads" in msg
    assert "valid Ulysses degrees for 3 heads: 1, 3" in msg and "ulysses=1,ring=2" in msg


def test_ranks_that_disagree_are_refused_on_every_rank(two):
    results, _ = two
    for res in results:
        assert res["same_shape"]
        assert "seed: rank 0 has 1, rank 1 has 2" in res["errors"]["disagree_seed"]
        assert "prompt (its text embeddings) differs between ranks 0 vs 1" in res["errors"]["disagree_prompt"]


@pytest.mark.slow
def test_a_dead_worker_stops_the_others_without_output(tmp_path):
    results, codes, logs = _launch("dies", 2, tmp_path, timeout=120)
    assert codes[1] == 3, logs  # the rank that died
    res = results[0]
    assert res is not None and res["rc"] != 0, logs
    assert "another rank probably exited" in res["message"], res["message"]
    assert res["seconds"] < 60, res
    assert not [f for f in res["files"] if f.endswith(".mp4") or f.startswith(".")], res["files"]


# ---- in-process checks (no process group) -----------------------------------------------------------------


def test_parse_and_validate_parallel_config():
    from vidcore.distributed import ParallelConfig

    cfg = ParallelConfig.parse("ulysses=2, ring=2,cfg=2,fsdp,comm=all_gather,timeout=30")
    assert cfg == ParallelConfig(ulysses=2, ring=2, cfg=2, fsdp=True, comm="all_gather", timeout=30.0)
    assert cfg.world_size == 8 and cfg.sequence_degree == 4
    assert ParallelConfig.parse(cfg.spec()) == cfg
    for bad, match in (
        ("ulysses=two", "ulysses='two' must be a positive integer"),
        ("ulises=2", "cannot read 'ulises=2'"),
        ("ring=0", "ring=0 must be a positive integer"),
        ("ring=2,ring=2", "gives ring twice"),
        ("comm=nccl", "comm='nccl' must be one of"),
        ("fsdp=maybe", "fsdp='maybe' must be true or false"),
    ):
        with pytest.raises(ValueError, match=match):
            ParallelConfig.parse(bad)
    with pytest.raises(ValueError, match="needs cfg x ring x ulysses = 2 x 2 x 2 = 8 processes, but 4"):
        cfg.check_world(4)
    with pytest.raises(
        ValueError, match="valid Ulysses degrees for 12 heads: 1, 2, 3, 4, 6, 12.*ulysses=4,ring=2"
    ):
        ParallelConfig(ulysses=8).check_heads(12)


def test_without_a_process_group_says_how_to_launch(monkeypatch):
    import torch.distributed as dist

    import vidcore
    from vidcore.distributed import ParallelError, init_parallel

    assert not dist.is_initialized()
    for var in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ParallelError, match="torchrun --nproc-per-node 4 -m vidcore.cli generate"):
        init_parallel("ulysses=2,ring=2")
    with pytest.raises(ParallelError, match="not initialised"):
        vidcore.load_pipeline("tiny", parallel="cfg=2")


@pytest.mark.parametrize("masked", [False, True])
def test_log_sum_exp_merge_of_key_blocks_equals_attention(masked):
    from vidcore.distributed.sequence import attention_lse, merge_lse
    from vidcore.ops.attention import attention

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 7, 8, generator=g) for _ in range(3))
    keep = torch.rand(2, 1, 7, 7, generator=g) > 0.4 if masked else torch.ones(1, 1, 1, 7, dtype=torch.bool)
    keep[..., 0] = True  # every query keeps a key
    ref = attention(q, k, v, mask=keep, backend="math")
    a = attention_lse(q, k[..., :3, :], v[..., :3, :], keep[..., :3])
    b = attention_lse(q, k[..., 3:, :], v[..., 3:, :], keep[..., 3:])
    out, _ = merge_lse(*a, *b)
    assert (out - ref).abs().max().item() <= 1e-6


def test_one_process_path_is_untouched():
    """Outside sequence_parallel the shard is the identity (same objects), sequence_attention is attention."""
    from vidcore.ops.attention import attention, sequence_attention, sequence_is_sharded, sequence_shard

    x = torch.randn(2, 5, 4)
    sp = sequence_shard(5)
    assert not sequence_is_sharded() and sp.split(x, dim=1) is x and sp.gather(x, dim=1) is x
    q, k, v = (torch.randn(1, 2, 5, 8) for _ in range(3))
    assert torch.equal(sequence_attention(q, k, v, causal=True), attention(q, k, v, causal=True))


if (
    __name__ == "__main__"
):  # a worker: python test_distributed.py SUITE OUT_DIR (torchrun's env variables set)
    torch.set_num_threads(1)
    suite, out_dir = sys.argv[1], Path(sys.argv[2])
    rank = int(os.environ["RANK"])
    start = time.monotonic()
    result = SUITES[suite](rank, out_dir)
    (out_dir / f"rank{rank}.json").write_text(json.dumps(result))
    print(f"{suite} rank {rank}: {time.monotonic() - start:.1f} s", file=sys.stderr)
