"""Bad input from issue 16, table-driven: each case a clear error naming the value / file, or the right
behaviour. Also the writer's guarantees: only regular files replaced, one permission rule, reproducible
bytes, a frame-exact lossless mode."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from vidcore.cli import main as cli_main
from vidcore.config import config_from_file
from vidcore.flow import estimate_flow, warp
from vidcore.io.checkpoint import CheckpointError, load_state_dict, read_config, read_shapes
from vidcore.io.video import check_fps, read_video, write_video
from vidcore.metrics import dynamic_degree, tcs
from vidcore.metrics.i3d import load_i3d
from vidcore.pipelines.options import SamplingOptions

torch.set_num_threads(1)
FORMATS = ("mp4", "webm", "gif", "webp")


def clip(t: int = 5, h: int = 16, w: int = 24, seed: int = 0) -> torch.Tensor:
    return torch.rand(t, h, w, 3, generator=torch.Generator().manual_seed(seed))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    try:
        yield
    finally:
        os.umask(old)


# ------------------------------------------------------------------------------- outputs and the writer


@pytest.mark.parametrize("kind", ["directory", "fifo", "symlink to directory"])
def test_writer_replaces_only_regular_files(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "out.mp4"
    if kind == "directory":
        target.mkdir()
    elif kind == "fifo":
        os.mkfifo(target)
    else:
        (tmp_path / "d").mkdir()
        target.symlink_to(tmp_path / "d")
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(ValueError, match=r"out\.mp4' exists and is not a regular file \(.*(directory|FIFO)"):
        write_video(target, clip(), fps=8, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no temporary file left behind


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_cli_never_replaces_a_device_or_folder(tmp_path: Path, capsys) -> None:
    (tmp_path / "dir.mp4").mkdir()
    for target in ("/dev/full", str(tmp_path / "dir.mp4")):
        with pytest.raises(SystemExit) as exc:
            cli_main(["generate", "x", "-o", target, "--format", "mp4", "--overwrite"])
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("vidcore generate: error: ") and err.count("\n") == 1, err
        assert "is not a regular file" in err and target in err, err
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode) and (tmp_path / "dir.mp4").is_dir()


def test_score_outputs_get_the_video_permissions(tmp_path: Path, umask_027, capsys) -> None:
    video = write_video(tmp_path / "v.mp4", clip(t=4), fps=8)
    plot, report = tmp_path / "p.png", tmp_path / "r.json"
    assert cli_main(["score", str(video), "--plot", str(plot), "--output", str(report)]) == 0
    modes = {stat.S_IMODE(os.stat(p).st_mode) for p in (video, plot, report)}
    assert modes == {0o644 & ~0o027}
    assert json.loads(report.read_text())["num_frames"] == 4 and plot.read_bytes()[:4] == b"\x89PNG"
    # a directory in --plot's place is refused before scoring, in one line
    (tmp_path / "d.png").mkdir()
    assert cli_main(["score", str(video), "--plot", str(tmp_path / "d.png"), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vidcore score: error: ") and "d.png' exists and is not a regular file" in err


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("lossless", [False, True])
def test_identical_frames_give_identical_files(tmp_path: Path, fmt: str, lossless: bool) -> None:
    if lossless and fmt == "gif":
        with pytest.raises(ValueError, match="lossless=True is not possible for gif"):
            write_video(tmp_path / "a.gif", clip(), fps=8, lossless=True)
        return
    frames = clip(t=6, h=33, w=47)  # odd sizes too
    a = write_video(tmp_path / f"a.{fmt}", frames, fps=12, lossless=lossless)
    b = write_video(tmp_path / f"b.{fmt}", frames.clone(), fps=12, lossless=lossless)
    assert digest(a) == digest(b)
    c = write_video(tmp_path / f"c.{fmt}", clip(t=6, h=33, w=47, seed=1), fps=12, lossless=lossless)
    assert digest(c) != digest(a)  # the check can fail: different frames, different bytes


@pytest.mark.parametrize("fmt", ["mp4", "webm", "webp"])
def test_lossless_round_trips_frames_exactly(tmp_path: Path, fmt: str) -> None:
    frames = (clip(t=5, h=17, w=23) * 255).round().to(torch.uint8)
    out = write_video(tmp_path / f"x.{fmt}", frames, fps=10, lossless=True)
    back, fps = read_video(out)
    assert fps == 10.0 and tuple(back.shape) == (5, 17, 23, 3)
    assert torch.equal((back * 255).round().to(torch.uint8), frames)
    lossy, _ = read_video(write_video(tmp_path / f"y.{fmt}", frames, fps=10))
    assert not torch.equal((lossy * 255).round().to(torch.uint8)[:, :17, :23], frames)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"fps": 1e9}, ValueError, r"fps=1000000000.0 must be a finite number in \(0, 1000\] for mp4"),
        ({"fps": 1000, "format": "gif"}, ValueError, r"in \(0, 100\] for gif"),
        ({"fps": float("nan")}, ValueError, "must be a finite number"),
        ({"fps": "8"}, TypeError, "fps must be a number"),
        ({"fps": 8, "lossless": True, "crf": 0}, ValueError, "crf=0 does not apply with lossless=True"),
        ({"fps": 8, "lossless": 1}, TypeError, "lossless=1 must be True or False"),
    ],
)
def test_bad_write_arguments(tmp_path: Path, kwargs: dict, error: type, match: str) -> None:
    fmt = kwargs.pop("format", "mp4")
    with pytest.raises(error, match=match):
        write_video(tmp_path / f"x.{fmt}", clip(), **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_check_fps_names_the_flag() -> None:
    with pytest.raises(
        ValueError, match=r"--fps 1000000000.0 must be a finite number in \(0, 1000\] for webm"
    ):
        check_fps(1e9, "webm", "--fps")
    assert check_fps(24, "gif") == 24.0


# ----------------------------------------------------------------------------------------- bad files


def _good_safetensors(path: Path) -> bytes:
    save_file({"w": torch.ones(4, 4), "b": torch.zeros(4)}, str(path), metadata={"vidcore_config": "{}"})
    return path.read_bytes()


def _damaged(data: bytes) -> dict[str, bytes]:
    header_len = struct.unpack("<Q", data[:8])[0]
    flipped = bytearray(data)
    flipped[10] ^= 0x20  # inside the JSON header
    return {
        "empty": b"",
        "random bytes": os.urandom(200),
        "truncated in the length field": data[:5],
        "truncated in the header": data[: 8 + header_len // 2],
        "truncated in the data": data[: 8 + header_len + 10],
        "one byte short": data[:-1],
        "bit-flipped header": bytes(flipped),
        "header length 10**12": struct.pack("<Q", 10**12) + data[8:],
        "header not an object": struct.pack("<Q", 2) + b"[]",
    }


@pytest.mark.parametrize("case", list(_damaged(b"\x10" + b"\0" * 7 + b" " * 16)))
def test_damaged_safetensors_name_the_file(tmp_path: Path, case: str) -> None:
    good = _good_safetensors(tmp_path / "good.safetensors")
    path = tmp_path / "model.safetensors"
    path.write_bytes(_damaged(good)[case])
    for reader in (read_config, load_state_dict, read_shapes):
        with pytest.raises(CheckpointError) as exc:
            reader(path)
        message = str(exc.value)
        assert str(path) in message and "re-download it or write it again" in message, message


def test_corrupt_i3d_cache_says_delete_it(tmp_path: Path) -> None:
    good = _good_safetensors(tmp_path / "good.safetensors")
    cache = tmp_path / "i3d_kinetics400.safetensors"
    for data in (good[: len(good) // 2], b"", struct.pack("<Q", 10**12) + good[8:], good):
        cache.write_bytes(data)
        with pytest.raises(CheckpointError) as exc:
            load_i3d(cache, convert_if_missing=False)
        message = str(exc.value)
        assert f"delete {str(cache)!r}" in message and "rebuilt" in message, message


def test_vidcore_checkpoint_config_damage(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    for config, match in (('{"depth": ', "metadata is not valid JSON"), ("[1, 2]", "a JSON list")):
        save_file({"w": torch.ones(1)}, str(path), metadata={"vidcore_config": config, "vidcore_kind": "dit"})
        with pytest.raises(CheckpointError, match=match) as exc:
            read_config(path)
        assert str(path) in str(exc.value)


def _pipeline_config():
    from vidcore.pipelines.builtin import PipelineConfig

    return PipelineConfig


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('{"name": "x", "steps": ', "is not valid JSON .*truncated"),
        ("", "is not valid JSON"),
        ("[1, 2]", "holds a JSON list; expected an object of PipelineConfig keys"),
        ('"tiny"', "holds a JSON str"),
        ('{"stepz": 3}', r"unknown PipelineConfig keys \['stepz'\]"),
        ('{"steps": 0}', "steps=0 must be a positive integer"),
    ],
)
def test_bad_pipeline_json_names_the_file(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "pipeline.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=match) as exc:
        config_from_file(_pipeline_config(), path)
    assert str(path) in str(exc.value)


def test_missing_pipeline_json_keys_are_named(tmp_path: Path, caplog) -> None:
    path = tmp_path / "pipeline.json"
    cls = _pipeline_config()
    full = cls().to_dict()
    path.write_text(json.dumps({k: v for k, v in full.items() if k not in ("fps", "steps")}))
    with caplog.at_level(logging.WARNING, logger="vidcore"):
        config = config_from_file(cls, path)
    assert config == cls()
    assert len(caplog.records) == 1 and "leaves out fps, steps" in caplog.text and str(path) in caplog.text
    caplog.clear()
    path.write_text(json.dumps(full))
    with caplog.at_level(logging.WARNING, logger="vidcore"):
        config_from_file(cls, path)
    assert caplog.records == []


# -------------------------------------------------------------------------------- silent acceptances

_GOOD = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
_NAN = _GOOD.clone()
_NAN[0, 1, 3, 4] = float("nan")
_NAN_FLOW = torch.zeros(1, 2, 16, 16)
_NAN_FLOW[0, 0, 2, 2] = float("nan")
_NAN_VIDEO = torch.rand(3, 16, 16, 3)
_NAN_VIDEO[1, 2, 2, 0] = float("nan")


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: estimate_flow(_NAN, _GOOD), "a holds NaN or infinite values"),
        (lambda: estimate_flow(_GOOD, _NAN), "b holds NaN or infinite values"),
        (lambda: estimate_flow(_GOOD, _GOOD * float("inf")), "b holds NaN or infinite"),
        (
            lambda: estimate_flow(_GOOD, _GOOD[:, :1]),
            r"same shape, got \(1, 3, 16, 16\) and \(1, 1, 16, 16\)",
        ),
        (lambda: warp(_NAN, torch.zeros(1, 2, 16, 16)), "b holds NaN or infinite values"),
        (lambda: warp(_GOOD, _NAN_FLOW), "flow holds NaN or infinite values"),
        (lambda: tcs(torch.tensor([[1.0, float("nan")], [1.0, 2.0]])), "features hold NaN"),
        (lambda: dynamic_degree(_NAN_VIDEO), "NaN or infinite"),
        (lambda: SamplingOptions(guidance="4"), "guidance='4' must be a number, got str"),
        (lambda: SamplingOptions(guidance=float("inf")), "guidance=inf must be a finite number >= 1"),
        (lambda: SamplingOptions(guidance=float("nan")), "guidance=nan must be a finite number >= 1"),
        (lambda: SamplingOptions(guidance=1e30), "guidance=1e[+]30 is beyond the sane maximum 100"),
        (lambda: SamplingOptions(guidance_2=101), "guidance_2=101 is beyond the sane maximum 100"),
        (lambda: SamplingOptions(steps=10**11), r"steps=100000000000 must be an integer in \[1, 1000\]"),
    ],
)
def test_no_silent_acceptance(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


# ---------------------------------------------------------------------------------- CLI exit statuses


def test_cli_exit_statuses(tmp_path: Path, capsys, monkeypatch) -> None:
    video = write_video(tmp_path / "v.mp4", clip(t=4), fps=8)
    assert cli_main(["score", str(tmp_path / "missing.mp4")]) == 2  # usage: a missing file
    assert capsys.readouterr().err.startswith("vidcore score: error: video ")

    import vidcore.metrics.score as score

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    report = tmp_path / "r.json"
    for fake, status, words in ((interrupted, 130, "interrupted"), (disk_full, 1, "No space left")):
        monkeypatch.setattr(score, "score_video", fake)
        assert cli_main(["score", str(video), "--output", str(report)]) == status
        err = capsys.readouterr().err
        assert err.startswith("vidcore score: ") and words in err and err.count("\n") == 1, err
        assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]  # nothing partial left


@pytest.mark.parametrize("fmt", FORMATS)
def test_two_identical_generate_runs_write_identical_files(tmp_path: Path, fmt: str, capsys) -> None:
    """Same seed, same command -> byte-identical files in every format (the built-in model, 2 steps)."""
    args = ["generate", "a red circle moving right", "--steps", "2", "--frames", "9", "--seed", "3"]
    a, b = tmp_path / f"a.{fmt}", tmp_path / f"b.{fmt}"
    assert cli_main([*args, "-o", str(a)]) == 0 and cli_main([*args, "-o", str(b)]) == 0
    assert digest(a) == digest(b)
    assert cli_main([*args[:-1], "4", "-o", str(tmp_path / f"c.{fmt}")]) == 0
    assert digest(tmp_path / f"c.{fmt}") != digest(a)  # another seed, another file: the check can fail


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["-o", "x.mp4", "--fps", "1e9"], "--fps 1000000000.0 must be a finite number in (0, 1000] for mp4"),
        (["-o", "x.gif", "--fps", "500"], "--fps 500.0 must be a finite number in (0, 100] for gif"),
        (["-o", "x.gif", "--lossless"], "--lossless is not possible for gif"),
    ],
)
def test_generate_output_settings_refused_before_work(tmp_path: Path, capsys, monkeypatch, extra, words):
    import vidcore.pipelines as pipelines

    def never(*a, **k):
        raise AssertionError("the model was loaded before the check")

    monkeypatch.setattr(pipelines, "load_pipeline", never)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:  # early checks exit 2 (UsageExit), like parse errors
        cli_main(["generate", "a red circle", *extra])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("vidcore generate: error: ") and words in err, err
    assert list(tmp_path.iterdir()) == []


def test_generate_lossless_mp4_round_trips_the_frames(tmp_path: Path) -> None:
    import vidcore

    out = tmp_path / "v.mp4"
    assert (
        cli_main(["generate", "a blue square", "--steps", "2", "--frames", "9", "--lossless", "-o", str(out)])
        == 0
    )
    frames = vidcore.load_pipeline("tiny").generate("a blue square", steps=2, num_frames=9)
    expected = (frames.clamp(0, 1) * 255).round().to(torch.uint8)
    got, _ = read_video(out)
    assert torch.equal((got * 255).round().to(torch.uint8), expected)


# --------------------------------------------------------------- validate before working (CLI and API)


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    """(exit status, stderr) of ``vidcore ARGS``: early checks exit through SystemExit(2), the rest return."""
    try:
        code = cli_main(args)
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    # Progress bars (weights loading) redraw with "\r"; what is left must be the one-line message.
    lines = [line for line in err.split("\n") if "\r" not in line and "it/s]" not in line]
    return code, "\n".join(lines)


def _never(*args, **kwargs):
    raise AssertionError("reached work that the check should have prevented")


_NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--steps", "100000000000"], "--steps 100000000000 must be an integer in [1, 1000]"),
        (["--steps", "0"], "--steps 0 must be a positive integer"),
        (["--frames", "100001"], "--frames 100001 must be an integer in [1, 10000]"),
        (["--frames", "0"], "--frames 0 must be a positive integer"),
        (["--height", "0"], "--height 0 must be a positive integer"),
        (["--width", "20000"], "--width 20000 must be an integer in [1, 16384]"),
        (["--guidance", "1e30"], "--guidance 1e+30 is beyond the sane maximum 100"),
        (["--guidance", "inf"], "--guidance inf must be a finite number >= 1"),
        (["--guidance", "nan"], "--guidance nan must be a finite number >= 1"),
        (["--guidance", "0.5"], "--guidance 0.5 must be >= 1"),
        (["--guidance-2", "0.5"], "--guidance-2 0.5 must be a finite number >= 1"),
        (["--guidance-boundary", "1.5"], "--guidance-boundary 1.5 must be a noise level in (0, 1)"),
        (["--shift", "0"], "--shift 0.0 must be a finite number > 0"),
        (["--shift", "inf"], "--shift inf must be a finite number > 0"),
        (["--seed", "-1"], "--seed -1 must be an integer in [0, 2**64)"),
        (["--sigmas", "1,0.5,0.7,0"], "--sigmas [1.0, 0.5, 0.7, 0.0] must be strictly decreasing"),
        (["--sigmas", "1,a"], "--sigmas '1,a' must be comma-separated numbers"),
        pytest.param(
            ["--device", "cuda"],
            "--device cuda: CUDA is not available on this machine (torch built without CUDA",
            marks=_NO_CUDA,
        ),
        pytest.param(["--device", "cuda"], "use --device cpu", marks=_NO_CUDA),
        (["--device", "banana"], "--device banana is not a torch device; valid forms: cpu, cuda, cuda:N"),
        (["--device", "cuda:x"], "--device cuda:x is not a torch device"),
    ],
)
def test_generate_refuses_before_loading(tmp_path: Path, capsys, monkeypatch, extra, words) -> None:
    import vidcore.pipelines as pipelines

    monkeypatch.setattr(pipelines, "load_pipeline", _never)
    code, err = run_cli(["generate", "x", "-o", str(tmp_path / "x.mp4"), *extra], capsys)
    assert code == 2, err
    assert err.startswith("vidcore generate: error: ") and err.count("\n") == 1, err
    assert words in err, err
    assert "=" not in err.split("error: ", 1)[1].split(" ")[0]  # a flag, not an API parameter, comes first
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def no_sampling(monkeypatch):
    from vidcore.pipelines.base import Pipeline

    monkeypatch.setattr(Pipeline, "sample", _never)
    monkeypatch.setattr(Pipeline, "encode_prompts", _never)
    monkeypatch.setattr(Pipeline, "prepare_latents", _never)


def test_stepped_guidance_flags_reach_the_sampler(tmp_path, capsys, monkeypatch) -> None:
    from vidcore.pipelines.base import Pipeline

    seen = []

    def capture(self, noise, cond, uncond, options, **kwargs):
        seen.append((options, uncond is not None))
        raise AssertionError("reached work")

    monkeypatch.setattr(Pipeline, "sample", capture)
    flags = ["--guidance", "4", "--guidance-2", "1", "--guidance-boundary", "0.7"]
    with pytest.raises(AssertionError, match="reached work"):
        cli_main(["generate", "x", "-o", str(tmp_path / "x.mp4"), *flags])
    options, with_uncond = seen[0]
    assert (options.guidance, options.guidance_2, options.guidance_boundary) == (
        4.0,
        1.0,
        0.7,
    ) and with_uncond
    code, err = run_cli(["generate", "x", "-o", str(tmp_path / "x.mp4"), "--guidance-2", "2"], capsys)
    assert code == 2 and "--guidance-2 2.0 needs guidance_boundary (the noise level below which" in err, err
    assert list(tmp_path.iterdir()) == []


def _suggestions(err: str) -> list[int]:
    return [int(v) for v in err.split("(e.g. ")[-1].split(")")[0].split(", ")]


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--height", "63"], "--height 63 must be a multiple of 8 for this model (e.g. 56, 64)"),
        (["--width", "60"], "--width 60 must be a multiple of 8 for this model (e.g. 56, 64)"),
        (["--frames", "18"], "--frames 18 must be 1 + 4k for this VAE (e.g. 17, 21)"),
        (
            ["--schedule", "pyramidal", "--height", "48"],
            "--height 48 must be a multiple of 32 for this model (3 pyramid stages) (e.g. 32, 64)",
        ),
    ],
)
def test_size_hints_only_suggest_valid_values(tmp_path, capsys, no_sampling, extra, words) -> None:
    code, err = run_cli(["generate", "x", "-o", str(tmp_path / "x.gif"), *extra], capsys)
    assert code == 2 and words in err and err.count("\n") == 1, err
    flag = extra[-2]
    for value in _suggestions(err):  # every suggested value is accepted (it reaches the sampler)
        args = [a if a != extra[-1] else str(value) for a in extra]
        with pytest.raises(AssertionError, match="reached work"):
            cli_main(["generate", "x", "-o", str(tmp_path / "x.gif"), *args])
        assert flag in args
    assert list(tmp_path.iterdir()) == []


def test_memory_is_checked_before_sampling(tmp_path, capsys, monkeypatch, no_sampling) -> None:
    import vidcore
    import vidcore.pipelines.base as base
    from vidcore.resources import GIB

    monkeypatch.setattr(base, "available_memory", lambda device: 4 * GIB)
    code, err = run_cli(
        [
            "generate",
            "x",
            "-o",
            str(tmp_path / "x.mp4"),
            "--height",
            "8192",
            "--width",
            "4096",
            "--schedule",
            "flow",
        ],
        capsys,
    )
    assert code == 2 and err.count("\n") == 1, err
    assert "--frames 17, --height 8192, --width 4096 need about" in err and "4.00 GiB is free on cpu" in err
    h, w = (int(v) for v in err.split("is --height ")[1].split(", --width "))
    assert abs(h / w - 2) < 0.02  # the aspect ratio is kept (each side a multiple of 8)
    # The suggested size is valid and fits by the same estimate; one step larger does not.
    pipe = vidcore.load_pipeline("tiny")
    opts = pipe.default_options().replace(schedule="flow")  # tiny's default (pyramidal) takes multiples of 32
    shape = pipe.latent_shape(17, h, w)
    assert pipe.memory_estimate((17, h, w), shape, opts).total <= 4 * GIB
    bigger = pipe.latent_shape(17, h + 16, w + 8)
    assert pipe.memory_estimate((17, h + 16, w + 8), bigger, opts).total > 4 * GIB
    # The API says the same with parameter names.
    with pytest.raises(ValueError, match=r"num_frames=17, height=8192, width=4096 need about .* height=\d+"):
        pipe.generate("x", height=8192, width=4096, schedule="flow")


def test_api_refuses_the_same_values_by_parameter_name(monkeypatch, no_sampling) -> None:
    import vidcore
    from vidcore.models.dit import SpacetimeDiT

    pipe = vidcore.load_pipeline("tiny")
    cases = [
        (dict(steps=10**11), r"steps=100000000000 must be an integer in \[1, 1000\]"),
        (dict(num_frames=100001), r"num_frames=100001 must be an integer in \[1, 10000\]"),
        (dict(guidance=1e30), r"guidance=1e\+30 is beyond the sane maximum 100"),
        (dict(guidance="4"), "guidance='4' must be a number, got str"),
        (dict(height=63), r"height=63 must be a multiple of 8 for this model \(e.g. 56, 64\)"),
        (dict(height=48, schedule="pyramidal"), r"multiple of 32 for this model \(3 pyramid stages\)"),
    ]
    for kwargs, match in cases:
        with pytest.raises(ValueError, match=match):
            pipe.generate("x", **kwargs)
    monkeypatch.setattr(SpacetimeDiT, "from_checkpoint", _never)  # the device is refused before loading
    with pytest.raises(ValueError, match="device='banana' is not a torch device; valid forms: cpu, cuda"):
        vidcore.load_pipeline("tiny", device="banana")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device='cuda': CUDA is not available on this machine"):
            vidcore.load_pipeline("tiny", device="cuda")


@pytest.mark.parametrize("command", ["train", "distill"])
def test_config_missing_keys_named_with_the_file(tmp_path, capsys, monkeypatch, command) -> None:
    import vidcore.distill.cli as distill_cli
    import vidcore.train.trainer as trainer

    for name in ("train_vae", "train_dit", "train_unet"):
        monkeypatch.setattr(trainer, name, _never)
    if hasattr(distill_cli, "distill"):
        monkeypatch.setattr(distill_cli, "distill", _never)
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"kind": "vae"} if command == "train" else {}))
    args = (
        ["train", "vae", "--config", str(config)]
        if command == "train"
        else ["distill", "--config", str(config)]
    )
    code, err = run_cli(args, capsys)
    missing = "out_dir, steps, batch_size" if command == "train" else "out_dir"
    assert code == 2 and f"config {str(config)!r} is missing the keys {missing}" in err, err
    assert "positional argument" not in err


def test_internal_parameter_names_become_flags(tmp_path, capsys) -> None:
    from vidcore.cli import to_flags

    video = write_video(tmp_path / "v.mp4", clip(t=4), fps=8)
    code, err = run_cli(["score", str(video), "--max-frames", "0"], capsys)
    assert code == 2 and "--max-frames 0 must be" in err and "max_frames=" not in err, err
    assert to_flags("pass overwrite=True to replace it", "generate") == "pass --overwrite to replace it"
    # config keys and other objects' fields stay as they are
    assert to_flags("PipelineConfig.steps=0 must be", "generate") == "PipelineConfig.steps=0 must be"
    assert (
        to_flags("guidance_2=3 needs guidance_boundary", "generate")
        == "--guidance-2 3 needs guidance_boundary"
    )
    assert to_flags("guidance_boundary=1.5 must be", "generate") == "--guidance-boundary 1.5 must be"


def test_help_shows_defaults_everywhere(capsys) -> None:
    from vidcore.cli import build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # noqa: SLF001 - every subcommand's parser
    for name, sub in commands.items():
        text = sub.format_help()
        assert "default: None" not in text and "(default: False)" not in text, (name, text)
    generate = " ".join(commands["generate"].format_help().split())
    for words in ("--steps STEPS sampling steps (default: the model's own)", "--model", "(default: tiny)"):
        assert words in generate, generate
    assert "(default: 0)" in generate  # --seed
    train = " ".join(commands["train"].format_help().split())
    assert "override the total number of steps (default: from the config)" in train, train


def test_generate_checks_folder_writability_and_free_space_before_work(tmp_path: Path, capsys, monkeypatch):
    """A read-only output folder is refused before loading; a disk without room for the video before sampling
    (the issue: both were raised only after the whole generation ran)."""
    import collections

    import vidcore.io.atomic as atomic
    from vidcore.pipelines.base import Pipeline

    out = tmp_path / "v.mp4"
    real_access = os.access
    monkeypatch.setattr(
        atomic.os, "access", lambda p, mode: False if Path(p) == tmp_path else real_access(p, mode)
    )
    with pytest.raises(SystemExit) as exit_:
        cli_main(["generate", "a red circle", "-o", str(out)])
    assert (
        exit_.value.code == 2
        and f"output folder {str(tmp_path)!r} is not writable" in capsys.readouterr().err
    )
    monkeypatch.setattr(atomic.os, "access", real_access)

    def never(*a, **k):
        raise AssertionError("sampling started before the free-space check")

    monkeypatch.setattr(Pipeline, "sample", never)
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(atomic.shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 1000, 1000))
    assert cli_main(["generate", "a red circle", "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "has 0.0 MiB free; the file needs about" in err and not out.exists()
