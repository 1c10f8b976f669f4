"""Fuzzed files: damaged videos through ``read_video`` and ``vidcore score``, damaged safetensors through the
checkpoint readers. Every case ends in a clear error (ValueError / FileNotFoundError, CheckpointError is
one) or in frames / tensors of the right dtype and shape; never another exception, never a hang.

The mutations are drawn from a seeded ``random.Random`` per case, so a failure names a case that
reproduces exactly (``FUZZ_SEED`` in the environment picks another seed for exploration).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import struct
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from vidcore.cli import main as cli_main
from vidcore.io.checkpoint import (
    CheckpointError,
    load_state_dict,
    read_config,
    read_shapes,
    stream_state,
)
from vidcore.io.video import PartialVideoWarning, read_video, write_video

torch.set_num_threads(1)

SEED = int(os.environ.get("FUZZ_SEED", "1234"))
CASE_SECONDS = 10  # one case over this is a hang
CLEAR_ERRORS = (ValueError, FileNotFoundError)  # CheckpointError is a ValueError
VIDEO_FORMATS = ("mp4", "webm", "gif", "webp")
T, H, W = 6, 24, 32


@contextlib.contextmanager
def time_budget(seconds: int, case: str) -> Iterator[None]:
    """Fail the case (instead of hanging the run) when it takes longer than ``seconds``."""

    def expired(signum, frame):
        raise TimeoutError(f"{case}: still running after {seconds} s (a hang)")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def mutations(data: bytes, rng: random.Random) -> Iterator[tuple[str, bytes]]:
    """Damaged versions of ``data``: empty, truncations, bit flips, overwritten runs, random bytes."""
    yield "empty", b""
    for frac in (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99):
        yield f"truncated at {frac:.3f}", data[: int(len(data) * frac)]
    yield "one byte short", data[:-1]
    for k in range(40):
        flipped = bytearray(data)
        for _ in range(rng.choice((1, 2, 8, 64))):
            i = rng.randrange(len(flipped))
            flipped[i] ^= 1 << rng.randrange(8)
        yield f"bit flips #{k}", bytes(flipped)
    for k in range(6):
        garbled = bytearray(data)
        i, n = rng.randrange(len(garbled)), rng.randrange(1, 128)
        garbled[i : i + n] = rng.randbytes(n)
        yield f"overwritten run #{k}", bytes(garbled)
    yield "random bytes", rng.randbytes(len(data))
    yield "header then random", data[:64] + rng.randbytes(4096)
    yield "doubled", data + data


# ------------------------------------------------------------------------------------------------ videos


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("sources")
    clip = torch.rand(T, H, W, 3, generator=torch.Generator().manual_seed(SEED))
    return {fmt: write_video(folder / f"clip.{fmt}", clip, fps=8).read_bytes() for fmt in VIDEO_FORMATS}


def check_frames_result(frames: torch.Tensor, fps: float, case: str) -> None:
    assert frames.dtype == torch.float32, case
    assert frames.ndim == 4 and frames.shape[0] >= 1 and frames.shape[-1] == 3, (case, frames.shape)
    assert bool(torch.isfinite(frames).all()) and 0 <= float(frames.min()) <= float(frames.max()) <= 1, case
    assert fps > 0, case


@pytest.mark.parametrize("fmt", VIDEO_FORMATS)
def test_fuzzed_videos(tmp_path: Path, sources: dict[str, bytes], fmt: str, capsys) -> None:
    """~60 mutations per format through read_video (strict and allow_partial) and `vidcore score`."""
    rng = random.Random(f"{SEED}-{fmt}")
    outcomes = {"error": 0, "frames": 0, "partial": 0}
    for name, data in mutations(sources[fmt], rng):
        case = f"{fmt} {name} (FUZZ_SEED={SEED})"
        path = tmp_path / f"fuzzed.{fmt}"
        path.write_bytes(data)
        with time_budget(CASE_SECONDS, case):
            try:
                frames, fps = read_video(path)
            except CLEAR_ERRORS as e:
                assert str(path) in str(e), (case, str(e))
                outcomes["error"] += 1
                strict_failed = True
            else:
                check_frames_result(frames, fps, case)
                outcomes["frames"] += 1
                strict_failed = False
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    partial, pfps = read_video(path, allow_partial=True)
                except CLEAR_ERRORS as e:
                    assert str(path) in str(e), (case, str(e))
                else:
                    check_frames_result(partial, pfps, case)
                    if strict_failed:  # the frames before the damage, and a warning saying so
                        assert any(issubclass(w.category, PartialVideoWarning) for w in caught), case
                        outcomes["partial"] += 1
                    else:
                        assert torch.equal(partial, frames), case
            code = cli_main(["score", str(path)])
            captured = capsys.readouterr()
            if code == 0:
                assert '"flicker"' in captured.out, case
            else:
                assert code == 2, (case, code)
                assert captured.err.startswith("vidcore score: error: ") and "Traceback" not in captured.err
                assert captured.err.count("\n") == 1, (case, captured.err)
    # The corpus must exercise both outcomes, or it tests nothing.
    assert outcomes["error"] >= 5 and outcomes["frames"] >= 5, outcomes


def test_partial_read_keeps_the_frames_before_the_damage(tmp_path: Path) -> None:
    """A GIF cut inside its last frames: strict reading refuses, allow_partial returns the first frames."""
    clip = torch.rand(8, H, W, 3, generator=torch.Generator().manual_seed(SEED))
    full = write_video(tmp_path / "full.gif", clip, fps=8).read_bytes()
    good, _ = read_video(tmp_path / "full.gif")
    for cut in range(len(full) - 1, len(full) // 2, -8):  # the first truncation the decoder notices
        path = tmp_path / "cut.gif"
        path.write_bytes(full[:cut])
        try:
            read_video(path)
        except ValueError as e:
            assert "allow_partial=True" in str(e) and str(path) in str(e)
            break
    else:
        pytest.fail("no truncation of the GIF raised a decoding error")
    with pytest.warns(PartialVideoWarning, match="decoding stopped after"):
        partial, fps = read_video(path, allow_partial=True)
    assert 1 <= partial.shape[0] < 8 and fps == 8.0
    assert torch.equal(partial, good[: partial.shape[0]])


# ----------------------------------------------------------------------------------------- safetensors


@pytest.fixture(scope="module")
def checkpoint_bytes(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("ckpt") / "model.safetensors"
    g = torch.Generator().manual_seed(SEED)
    tensors = {"a.weight": torch.randn(8, 4, generator=g), "a.bias": torch.randn(8, generator=g)}
    tensors["steps"] = torch.arange(5, dtype=torch.int64)
    save_file(tensors, str(path), metadata={"vidcore_config": '{"width": 8}', "vidcore_kind": "toy"})
    return path.read_bytes()


ORIGINAL_LAYOUT = {
    "a.weight": (torch.float32, (8, 4)),
    "a.bias": (torch.float32, (8,)),
    "steps": (torch.int64, (5,)),
}


def safetensors_mutations(data: bytes, rng: random.Random) -> Iterator[tuple[str, bytes]]:
    """The generic mutations plus header-targeted ones: lying header lengths and flips inside the JSON."""
    yield from mutations(data, rng)
    (header_len,) = struct.unpack("<Q", data[:8])
    for claim in (0, 1, 7, header_len - 1, header_len + 1, len(data), 10**12, 2**63, 2**64 - 1):
        yield f"header length {claim}", struct.pack("<Q", claim) + data[8:]
    for k in range(40):
        flipped = bytearray(data)
        i = 8 + rng.randrange(header_len)
        flipped[i] ^= 1 << rng.randrange(8)
        yield f"header flip #{k}", bytes(flipped)
    yield "header not an object", struct.pack("<Q", 8) + b"[1, 2]  "
    yield "header is null", struct.pack("<Q", 4) + b"null"


def read_all(path: Path) -> dict[str, torch.Tensor]:
    """Every reader over one file; returns the state dict when all of them succeed."""
    shapes, metadata = read_shapes(path)
    state = load_state_dict(path)
    streamed = stream_state([path], lambda k: k)
    assert set(shapes) == set(state) == set(streamed)
    for key, tensor in state.items():
        assert tuple(tensor.shape) == shapes[key] and torch.equal(streamed[key], tensor)
    return state


def test_fuzzed_safetensors(tmp_path: Path, checkpoint_bytes: bytes) -> None:
    """~100 damaged files x 3 copies of the run's seed: a CheckpointError naming the file, or tensors."""
    outcomes = {"error": 0, "tensors": 0}
    header_end = 8 + struct.unpack("<Q", checkpoint_bytes[:8])[0]
    for copy in range(3):
        rng = random.Random(f"{SEED}-safetensors-{copy}")
        for name, data in safetensors_mutations(checkpoint_bytes, rng):
            case = f"safetensors {name} copy {copy} (FUZZ_SEED={SEED})"
            path = tmp_path / "model.safetensors"
            path.write_bytes(data)
            with time_budget(CASE_SECONDS, case):
                try:
                    state = read_all(path)
                except CheckpointError as e:
                    assert str(path) in str(e), (case, str(e))
                    outcomes["error"] += 1
                    continue
                try:
                    kind, config = read_config(path)
                except CheckpointError as e:
                    assert str(path) in str(e), (case, str(e))
                else:
                    assert isinstance(kind, str) and isinstance(config, dict), case
            if data[:header_end] == checkpoint_bytes[:header_end]:
                # damage past the header leaves the names, shapes and dtypes as written
                assert {k: (t.dtype, tuple(t.shape)) for k, t in state.items()} == ORIGINAL_LAYOUT, case
            outcomes["tensors"] += 1
    assert outcomes["error"] >= 100 and outcomes["tensors"] >= 10, outcomes
