"""Video read/write through PyAV: round trips, frame selection, atomic writes and clear errors."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from vidcore.io import video
from vidcore.io.video import frames_to_uint8, read_video, unique_path, write_video

torch.set_num_threads(1)

FORMATS = ["mp4", "webm", "gif", "webp"]
# Mean abs error bounds (0..1 scale) for the smooth clip; measured: mp4 0.012, webm 0.012,
# gif 0.014, webp 0.007 (mostly 4:2:0 chroma subsampling and palette quantisation).
MAX_MEAN_ERROR = {"mp4": 0.03, "webm": 0.03, "gif": 0.03, "webp": 0.03}


def smooth_clip(t: int = 8, h: int = 32, w: int = 48, seed: int = 0) -> torch.Tensor:
    """Gradients plus a moving sinusoid with a seeded phase: smooth, coloured, changing over time."""
    g = torch.Generator().manual_seed(seed)
    phase = float(torch.rand(1, generator=g)) * 2 * math.pi
    tt = torch.arange(t, dtype=torch.float32)[:, None, None]
    yy = torch.arange(h, dtype=torch.float32)[None, :, None] / h
    xx = torch.arange(w, dtype=torch.float32)[None, None, :] / w
    r = (0.2 + 0.6 * xx).expand(t, h, w)
    gch = (0.2 + 0.6 * yy).expand(t, h, w)
    b = 0.5 + 0.3 * torch.sin(phase + tt / 2 + 6 * xx + 3 * yy)
    return torch.stack([r, gch, b], dim=-1)


def index_clip(t: int = 12, h: int = 16, w: int = 16) -> torch.Tensor:
    """Frame i is uniform grey (10 + 20 i) / 255, so its index can be read back from its brightness."""
    levels = (10 + 20 * torch.arange(t, dtype=torch.float32)) / 255
    return levels[:, None, None, None].expand(t, h, w, 3).contiguous()


def indices_of(frames: torch.Tensor) -> list[int]:
    return [round((float(f.mean()) * 255 - 10) / 20) for f in frames]


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_smooth(tmp_path: Path, fmt: str) -> None:
    clip = smooth_clip()
    out = write_video(tmp_path / f"clip.{fmt}", clip, fps=25)
    assert out == tmp_path / f"clip.{fmt}" and out.stat().st_size > 0
    frames, fps = read_video(out)
    assert frames.dtype == torch.float32 and tuple(frames.shape) == (8, 32, 48, 3)
    assert fps == 25.0
    assert 0.0 <= float(frames.min()) and float(frames.max()) <= 1.0
    err = (frames - clip).abs().mean().item()
    print(f"{fmt}: mean abs error {err:.4f}")
    assert err < MAX_MEAN_ERROR[fmt]
    # Frames stay in order: each decoded frame is closest to its own source frame.
    dist = (frames[:, None] - clip[None]).abs().mean(dim=(2, 3, 4))
    assert dist.argmin(dim=1).tolist() == list(range(8))
    assert listing(tmp_path) == [f"clip.{fmt}"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_index_clip_frames_exact_order(tmp_path: Path, fmt: str) -> None:
    frames, _ = read_video(write_video(tmp_path / f"i.{fmt}", index_clip(), fps=20))
    assert indices_of(frames) == list(range(12))
    # Uniform greys survive every codec almost exactly.
    assert (frames - index_clip()).abs().max().item() < 3 / 255


@pytest.mark.parametrize("fmt", ["mp4", "gif", "webp"])
def test_stride_start_and_cap(tmp_path: Path, fmt: str) -> None:
    path = write_video(tmp_path / f"i.{fmt}", index_clip(), fps=20)
    assert indices_of(read_video(path, stride=3, start=1)[0]) == [1, 4, 7, 10]
    assert indices_of(read_video(path, stride=3, start=1, max_frames=3)[0]) == [1, 4, 7]
    assert indices_of(read_video(path, max_frames=5)[0]) == [0, 1, 2, 3, 4]
    assert indices_of(read_video(path, start=11)[0]) == [11]
    with pytest.raises(ValueError, match="has 12 frames: none selected with start=12"):
        read_video(path, start=12)


def test_mp4_odd_size_padded_by_edge_replication(tmp_path: Path) -> None:
    clip = smooth_clip(t=4, h=31, w=33)
    frames, _ = read_video(write_video(tmp_path / "odd.mp4", clip, fps=24))
    assert tuple(frames.shape) == (4, 32, 34, 3)
    assert (frames[:, :31, :33] - clip).abs().mean().item() < 0.03
    # The added row/column repeat the last real ones (up to compression error).
    assert (frames[:, 31] - frames[:, 30]).abs().mean().item() < 0.02
    assert (frames[:, :, 33] - frames[:, :, 32]).abs().mean().item() < 0.02


@pytest.mark.parametrize("fmt", ["webm", "gif", "webp"])
def test_odd_size_kept_exactly(tmp_path: Path, fmt: str) -> None:
    clip = smooth_clip(t=3, h=31, w=33)
    frames, _ = read_video(write_video(tmp_path / f"odd.{fmt}", clip, fps=24))
    assert tuple(frames.shape) == (3, 31, 33, 3)
    assert (frames - clip).abs().mean().item() < 0.03


def test_crf_controls_quality(tmp_path: Path) -> None:
    clip = smooth_clip(seed=1)
    errors = {}
    for crf in (10, 40):
        frames, _ = read_video(write_video(tmp_path / f"c{crf}.mp4", clip, fps=25, crf=crf))
        errors[crf] = (frames - clip).abs().mean().item()
    assert errors[10] < 0.01 and errors[40] > 2 * errors[10]


@pytest.mark.parametrize(
    ("fps", "expected"),
    [(Fraction(30000, 1001), 30000 / 1001), (23.976, 23.976), (12.5, 12.5), (8, 8.0)],
)
def test_fps_round_trip_mp4(tmp_path: Path, fps: float | Fraction, expected: float) -> None:
    _, got = read_video(write_video(tmp_path / "f.mp4", index_clip(t=4), fps=fps))
    assert isinstance(got, float) and got == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("fmt", ["gif", "webp"])
def test_fps_from_delays(tmp_path: Path, fmt: str) -> None:
    # 24 fps is not a whole number of centiseconds: GIF stores 4-4-5 cs delays, read back as 24.
    _, got = read_video(write_video(tmp_path / f"f.{fmt}", index_clip(t=9), fps=24))
    assert got == 24.0


def test_overwrite(tmp_path: Path) -> None:
    path = write_video(tmp_path / "o.mp4", index_clip(t=3), fps=10)
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="o.mp4"):
        write_video(path, smooth_clip(t=3), fps=10)
    assert path.read_bytes() == before
    write_video(path, smooth_clip(t=3), fps=10, overwrite=True)
    assert path.read_bytes() != before
    assert read_video(path)[0].shape[0] == 3
    assert listing(tmp_path) == ["o.mp4"]


def test_target_created_during_write_is_not_clobbered(tmp_path: Path, monkeypatch) -> None:
    original = video._encode_into

    def racing(*args, **kwargs):
        original(*args, **kwargs)
        (tmp_path / "race.mp4").write_bytes(b"someone else")

    monkeypatch.setattr(video, "_encode_into", racing)
    with pytest.raises(FileExistsError, match="race.mp4"):
        write_video(tmp_path / "race.mp4", index_clip(t=2), fps=10)
    assert (tmp_path / "race.mp4").read_bytes() == b"someone else"
    assert listing(tmp_path) == ["race.mp4"]


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope"):
        write_video(tmp_path / "nope" / "a.mp4", index_clip(t=2), fps=10)
    assert listing(tmp_path) == []


@pytest.mark.parametrize(
    ("frames", "error", "match"),
    [
        (torch.full((2, 8, 8, 3), float("nan")), ValueError, "NaN"),
        (torch.full((2, 8, 8, 3), 1.01), ValueError, r"max 1\.01"),
        (torch.full((2, 8, 8, 3), -0.5), ValueError, r"min -0\.5"),
        (torch.zeros(8, 8, 3), ValueError, r"\[T, H, W, 3\]"),
        (torch.zeros(2, 8, 8, 4), ValueError, r"\[T, H, W, 3\]"),
        (torch.zeros(0, 8, 8, 3), ValueError, "at least one"),
        (torch.zeros(2, 8, 8, 3, dtype=torch.int32), TypeError, "int32"),
        ([[0.0]], TypeError, "list"),
    ],
)
def test_bad_frames_rejected_and_nothing_written(tmp_path: Path, frames, error, match) -> None:
    with pytest.raises(error, match=match):
        write_video(tmp_path / "bad.mp4", frames, fps=10)
    assert listing(tmp_path) == []


def test_failure_during_encoding_leaves_no_temp_file(tmp_path: Path, monkeypatch) -> None:
    original = video._encode_into
    seen = {}

    def failing(container, *args, **kwargs):
        original(container, *args, **kwargs)
        seen["files"] = listing(tmp_path)
        raise RuntimeError("disk full")

    monkeypatch.setattr(video, "_encode_into", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        write_video(tmp_path / "x.webm", smooth_clip(t=2), fps=10)
    assert len(seen["files"]) == 1 and seen["files"][0].startswith(".x.webm.")  # the hidden temp file
    assert listing(tmp_path) == []


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"fps": 0}, "fps=0"),
        ({"fps": float("nan")}, "fps=nan"),
        ({"fps": -24}, "fps=-24"),
        ({"fps": 24, "crf": 52}, r"crf=52 must be an int in \[0, 51\]"),
        ({"fps": 24, "quality": 80}, "quality=80 does not apply to mp4"),
        ({"fps": 24, "format": "avi"}, "format='avi'"),
        ({"fps": 24, "format": "webm"}, "contradicts"),
    ],
)
def test_bad_write_options(tmp_path: Path, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        write_video(tmp_path / "a.mp4", index_clip(t=2), **kwargs)
    assert listing(tmp_path) == []


def test_format_argument_and_unknown_suffix(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot infer the format"):
        write_video(tmp_path / "clip.bin", index_clip(t=2), fps=10)
    path = write_video(tmp_path / "clip.bin", index_clip(t=2), fps=10, format="webm")
    frames, fps = read_video(path)
    assert indices_of(frames) == [0, 1] and fps == 10.0
    with pytest.raises(TypeError, match="fps must be a number"):
        write_video(tmp_path / "b.mp4", index_clip(t=2), fps="24")


def test_webp_quality_and_missing_encoder(tmp_path: Path, monkeypatch) -> None:
    clip = smooth_clip(seed=2)
    low, _ = read_video(write_video(tmp_path / "q10.webp", clip, fps=25, quality=10))
    high, _ = read_video(write_video(tmp_path / "q95.webp", clip, fps=25, quality=95))
    assert (high - clip).abs().mean() < (low - clip).abs().mean()
    monkeypatch.setattr(video, "_available_codecs", lambda: {"libx264", "gif"})
    with pytest.raises(ValueError, match="no WebP encoder"):
        write_video(tmp_path / "none.webp", clip, fps=25)
    assert listing(tmp_path) == ["q10.webp", "q95.webp"]


def test_frames_to_uint8_numbers() -> None:
    x = torch.tensor([0.0, 0.25, 0.5, 1.0, 1.0 + 5e-4, -5e-4]).reshape(1, 1, 6, 1).expand(1, 1, 6, 3)
    assert frames_to_uint8(x)[0, 0, :, 0].tolist() == [0, 64, 128, 255, 255, 0]
    u = torch.randint(0, 256, (2, 3, 4, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(frames_to_uint8(u), u)
    assert torch.equal(frames_to_uint8(u.numpy()), u)
    assert frames_to_uint8(x.to(torch.float16)).dtype == torch.uint8


def test_uint8_frames_write_like_floats(tmp_path: Path) -> None:
    clip = index_clip(t=3)
    a = write_video(tmp_path / "f.gif", clip, fps=10)
    b = write_video(tmp_path / "u.gif", frames_to_uint8(clip), fps=10)
    assert torch.equal(read_video(a)[0], read_video(b)[0])


def test_read_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        read_video(tmp_path / "missing.mp4")
    text = tmp_path / "notes.mp4"
    text.write_text("not a video at all\n" * 20)
    with pytest.raises(ValueError, match="notes.mp4"):
        read_video(text)
    with pytest.raises(ValueError, match="is not a file"):
        read_video(tmp_path)
    # An audio-only file: the error says what was found instead.
    wav = tmp_path / "tone.wav"
    with av.open(str(wav), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            container.mux(packet)
    with pytest.raises(ValueError, match=r"no video stream .*found: audio"):
        read_video(wav)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"stride": 0}, "stride=0"),
        ({"stride": 1.5}, "stride=1.5"),
        ({"max_frames": 0}, "max_frames=0"),
        ({"start": -1}, "start=-1"),
        ({"max_frames": True}, "max_frames=True"),
    ],
)
def test_bad_read_arguments(tmp_path: Path, kwargs: dict, match: str) -> None:
    path = write_video(tmp_path / "a.gif", index_clip(t=2), fps=10)
    with pytest.raises(ValueError, match=match):
        read_video(path, **kwargs)


def test_unique_path(tmp_path: Path) -> None:
    assert unique_path(tmp_path, "clip", ".mp4") == tmp_path / "clip_00001.mp4"
    for n in (1, 2, 4):
        (tmp_path / f"clip_{n:05d}.mp4").touch()
    (tmp_path / "clip_00003.gif").touch()  # another suffix does not count
    assert unique_path(tmp_path, "clip", "mp4") == tmp_path / "clip_00003.mp4"
    (tmp_path / "clip_00003.mp4").touch()
    assert unique_path(tmp_path, "clip", ".mp4") == tmp_path / "clip_00005.mp4"
    with pytest.raises(ValueError, match="prefix"):
        unique_path(tmp_path, "a/b", ".mp4")
    with pytest.raises(FileNotFoundError, match="nope"):
        unique_path(tmp_path / "nope", "clip", ".mp4")


@pytest.mark.parametrize(("suffix", "codec"), [("mkv", "libx264"), ("mov", "libx264"), ("avi", "mpeg4")])
def test_reads_other_containers(tmp_path: Path, suffix: str, codec: str) -> None:
    # Written with PyAV directly: read_video takes anything FFmpeg decodes, not only our own output.
    path = tmp_path / f"other.{suffix}"
    clip = frames_to_uint8(index_clip(t=6)).numpy()
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=15)
        stream.width, stream.height, stream.pix_fmt = 16, 16, "yuv420p"
        stream.options = {"qscale": "2"} if codec == "mpeg4" else {"crf": "10"}
        for image in clip:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    frames, fps = read_video(path, stride=2)
    assert indices_of(frames) == [0, 2, 4] and fps == 15.0


def test_reads_still_images(tmp_path: Path) -> None:
    from PIL import Image

    image = frames_to_uint8(smooth_clip(t=1))[0].numpy()
    for name in ("still.png", "still.webp"):
        Image.fromarray(image).save(tmp_path / name, lossless=True)
        frames, fps = read_video(tmp_path / name)
        assert tuple(frames.shape) == (1, 32, 48, 3) and fps == 25.0
        assert (frames[0] * 255 - torch.from_numpy(image).float()).abs().max().item() < 0.5
