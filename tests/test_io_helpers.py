"""The shared helpers: atomic writes (one permission rule), frames/video checks and conversions, the
``vidcore.io`` public names, device/dtype arguments and tokenizer-file checks."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vidcore.io import atomic
from vidcore.io.atomic import atomic_folder, atomic_write, check_target, write_bytes, write_text
from vidcore.io.frames import check_frames, check_video, frames_to_video, video_to_frames

ROOT = Path(__file__).resolve().parents[1]
torch.set_num_threads(1)


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    try:
        yield
    finally:
        os.umask(old)


# ---------------------------------------------------------------------------------------- atomic writes


def test_write_text_mode_overwrite_and_flag(tmp_path: Path, umask_027) -> None:
    path = write_text(tmp_path / "a.json", "{}\n")
    assert path.read_text() == "{}\n" and mode(path) == 0o644 & ~0o027
    with pytest.raises(FileExistsError, match=r"a\.json' already exists; pass --overwrite to replace it"):
        write_text(path, "new", flag="--overwrite")
    assert path.read_text() == "{}\n"
    write_bytes(path, b"new", overwrite=True)
    assert path.read_bytes() == b"new" and mode(path) == 0o640
    assert listing(tmp_path) == ["a.json"]


def test_mode_does_not_depend_on_the_writer(tmp_path: Path) -> None:
    # A writer that deletes and recreates the file by name gets the umask's 0o666 default; the rule wins.
    with atomic_write(tmp_path / "x.bin") as tmp:
        expected = mode(tmp)
        tmp.unlink()
        tmp.write_bytes(b"x")
        os.chmod(tmp, 0o666)
    assert mode(tmp_path / "x.bin") == expected == 0o644 & ~_umask()


def _umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_never_replaces_a_device(tmp_path: Path) -> None:
    with pytest.raises(
        ValueError, match=r"'/dev/full' exists and is not a regular file \(a character device\)"
    ):
        write_bytes("/dev/full", b"x", overwrite=True)
    link = tmp_path / "null.mp4"
    link.symlink_to("/dev/null")
    with pytest.raises(ValueError, match=r"null\.mp4' exists .*a symlink to a character device"):
        write_bytes(link, b"x", overwrite=True)
    assert link.is_symlink() and listing(tmp_path) == ["null.mp4"]


def test_refuses_folders_and_dangling_links_and_missing_parents(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    with pytest.raises(ValueError, match=r"'.*d' exists and is not a regular file \(a directory\)"):
        write_text(tmp_path / "d", "x", overwrite=True)
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="a dangling symlink"):
        write_text(tmp_path / "dangling", "x", overwrite=True)
    with pytest.raises(FileNotFoundError, match=r"output folder .*nope' does not exist"):
        check_target(tmp_path / "nope" / "a.txt", overwrite=True)
    assert listing(tmp_path) == ["d", "dangling"]


def test_error_removes_the_temporary_file(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="disk full"), atomic_write(tmp_path / "x.txt") as tmp:
        tmp.write_text("half")
        assert listing(tmp_path) == [tmp.name] and tmp.name.startswith(".x.txt.")
        raise RuntimeError("disk full")
    assert listing(tmp_path) == []


def test_target_created_meanwhile_is_not_clobbered(tmp_path: Path) -> None:
    target = tmp_path / "race.txt"
    with pytest.raises(FileExistsError, match="race.txt"), atomic_write(target) as tmp:
        tmp.write_text("mine")
        target.write_text("someone else")
    assert target.read_text() == "someone else" and listing(tmp_path) == ["race.txt"]


def test_folder_swap_modes_and_rollback(tmp_path: Path, umask_027) -> None:
    out = tmp_path / "model"
    with atomic_folder(out) as tmp:
        (tmp / "a.txt").write_text("1")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "b.txt").write_text("2")
        os.chmod(tmp / "sub" / "b.txt", 0o777)
    assert mode(out) == mode(out / "sub") == 0o750
    assert mode(out / "a.txt") == mode(out / "sub" / "b.txt") == 0o640
    with pytest.raises(FileExistsError, match="pass overwrite=True"), atomic_folder(out):
        pass
    with pytest.raises(RuntimeError, match="copy failed"), atomic_folder(out, overwrite=True) as tmp:
        (tmp / "a.txt").write_text("new")
        raise RuntimeError("copy failed")
    assert (out / "a.txt").read_text() == "1" and listing(tmp_path) == ["model"]
    with atomic_folder(out, overwrite=True) as tmp:
        (tmp / "c.txt").write_text("3")
    assert listing(out) == ["c.txt"] and listing(tmp_path) == ["model"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is not a folder"), atomic_folder(tmp_path / "file", overwrite=True):
        pass


def test_no_other_temp_file_code_in_vidcore() -> None:
    # One home for atomic writes: nothing else in vidcore makes temp files or renames into place.
    offenders = []
    for path in (ROOT / "vidcore").rglob("*.py"):
        if path == Path(atomic.__file__):
            continue
        text = path.read_text(encoding="utf-8")
        for needle in ("mkstemp", "mkdtemp", "os.replace(", "os.chmod("):
            if needle in text:
                offenders.append(f"{path.relative_to(ROOT)}: {needle}")
    assert offenders == []


# ---------------------------------------------------------------------------------------- frames / video


@pytest.mark.parametrize(
    ("frames", "kwargs", "error", "match"),
    [
        ([[0.0]], {}, TypeError, r"frames must be a torch.Tensor \[T, H, W, 3\], got list"),
        (torch.zeros(8, 8, 3), {}, ValueError, r"layout \[T, H, W, 3\] \(RGB last\), got shape \(8, 8, 3\)"),
        (torch.zeros(2, 8, 8, 3), {"batched": True}, ValueError, r"\[B, T, H, W, 3\]"),
        (torch.zeros(0, 8, 8, 3), {}, ValueError, "has zero frames; at least one frame is needed"),
        (torch.zeros(1, 8, 8, 3), {"min_frames": 2}, ValueError, "T=1 frame.*at least 2 frames are needed"),
        (torch.zeros(2, 0, 8, 3), {}, ValueError, "at least one 1x1 frame"),
        (
            torch.zeros(2, 8, 8, 3, dtype=torch.uint8),
            {},
            TypeError,
            "floating point in 0..1, got dtype torch.uint8",
        ),
        (
            torch.full((2, 8, 8, 3), float("nan")),
            {"name": "ref"},
            ValueError,
            r"ref contain NaN .*\(384 of 384\)",
        ),
        (
            torch.full((2, 8, 8, 3), 1.01),
            {},
            ValueError,
            r"values span min 1\.01 and max 1\.01; expected 0..1",
        ),
    ],
)
def test_check_frames_refuses(frames, kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        check_frames(frames, **kwargs)


def test_check_frames_accepts_rounding_noise_and_uint8() -> None:
    x = torch.rand(2, 4, 4, 3)
    x[0, 0, 0, 0], x[0, 0, 0, 1] = -5e-4, 1 + 5e-4
    assert check_frames(x) is x
    u = torch.zeros(1, 4, 4, 3, dtype=torch.uint8)
    assert check_frames(u, allow_uint8=True) is u
    assert check_frames(torch.empty(2, 4, 4, 3, device="meta")).is_meta


def test_check_video() -> None:
    v = torch.zeros(1, 3, 2, 4, 4)
    assert check_video(v) is v
    with pytest.raises(ValueError, match=r"video shape=\(1, 4, 2, 4, 4\) must be \[B, 3, T, H, W\]"):
        check_video(torch.zeros(1, 4, 2, 4, 4))
    with pytest.raises(ValueError, match=r"latents shape=\(0, 3, 2, 4, 4\)"):
        check_video(torch.zeros(0, 3, 2, 4, 4), "latents")
    with pytest.raises(TypeError, match="video dtype=torch.int64 must be floating point"):
        check_video(torch.zeros(1, 3, 2, 4, 4, dtype=torch.long))
    with pytest.raises(TypeError, match="got ndarray"):
        check_video(torch.zeros(1).numpy())


def test_frames_video_round_trip_numbers() -> None:
    g = torch.Generator().manual_seed(0)
    frames = torch.rand(2, 3, 4, 5, 3, generator=g)
    video = frames_to_video(frames)
    assert video.shape == (2, 3, 3, 4, 5)
    assert torch.equal(video, frames.permute(0, 4, 1, 2, 3) * 2 - 1)
    assert torch.equal(frames_to_video(frames[0]), video[:1])
    back = video_to_frames(video)
    assert back.is_contiguous() and back.dtype == torch.float32
    assert torch.equal(back, ((video + 1) / 2).clamp(0, 1).permute(0, 2, 3, 4, 1))
    # Decoders overshoot: converted back, values are clamped; bf16 comes back as float32.
    over = video_to_frames(torch.full((1, 3, 1, 2, 2), 1.2, dtype=torch.bfloat16))
    assert over.dtype == torch.float32 and torch.equal(over, torch.ones(1, 1, 2, 2, 3))
    with pytest.raises(ValueError, match="frames contain NaN"):
        frames_to_video(torch.full((2, 4, 4, 3), float("nan")))
    with pytest.raises(ValueError, match=r"\[T, H, W, 3\] or \[B, T, H, W, 3\], got \(4, 3\)"):
        frames_to_video(torch.zeros(4, 3))
    with pytest.raises(TypeError, match="int64"):
        frames_to_video(torch.zeros(1, 4, 4, 3, dtype=torch.long))


# ---------------------------------------------------------------------------------------- public names


def test_vidcore_io_exports_load_lazily() -> None:
    code = (
        "import sys, vidcore, vidcore.io\n"
        "print(sorted(m for m in ('torch', 'av', 'numpy') if m in sys.modules))\n"
        "from vidcore.io import read_video, write_video, check_frames, atomic_write, save_checkpoint\n"
        "import vidcore.io.video as v\n"
        "print(read_video is v.read_video and write_video is v.write_video)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["[]", "True"]
    import vidcore.io

    assert set(vidcore.io.__all__) <= set(dir(vidcore.io))
    for name in vidcore.io.__all__:
        assert getattr(vidcore.io, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'probe'"):
        vidcore.io.probe  # noqa: B018


def test_devices_have_one_home() -> None:
    from vidcore import devices
    from vidcore.text import base, resolve_device, resolve_dtype

    assert resolve_device is devices.resolve_device is base.resolve_device
    assert resolve_dtype is devices.resolve_dtype and base.DTYPES is devices.DTYPES
    assert resolve_device(None) == torch.device("cpu") and resolve_dtype("bf16") == torch.bfloat16
    with pytest.raises(TypeError, match="device=3 must be None, a str or a torch.device"):
        resolve_device(3)


def test_tokenizer_files(tmp_path: Path) -> None:
    from vidcore.text.files import folder_listing, has_tokenizer, tokenizer_options

    assert tokenizer_options("t5") == "tokenizer.json or spiece.model"
    assert tokenizer_options("clip") == "tokenizer.json or vocab.json + merges.txt"
    assert not has_tokenizer(tmp_path, "clip") and not has_tokenizer(tmp_path / "missing")
    (tmp_path / "vocab.json").write_text("{}")
    assert not has_tokenizer(tmp_path, "clip") and folder_listing(tmp_path) == "vocab.json"
    (tmp_path / "merges.txt").write_text("")
    assert has_tokenizer(tmp_path, "clip") and has_tokenizer(tmp_path) and not has_tokenizer(tmp_path, "t5")
    with pytest.raises(ValueError, match="model_type='gpt2' must be None or one of"):
        has_tokenizer(tmp_path, "gpt2")
