"""Video files <-> frames ``[T, H, W, 3]`` float32 in 0..1, through PyAV (FFmpeg).

Writing supports mp4 (H.264), webm (VP9), gif and animated webp; reading supports whatever FFmpeg
decodes, plus animated WebP through Pillow (FFmpeg's WebP decoder does not decode animations).

Writes are reproducible: identical frames give byte-identical files (encoders on one thread, whose
decisions would otherwise depend on the machine's core count; muxers in bitexact mode, so no random
Matroska UIDs, creation times or library version strings).
"""

from __future__ import annotations

import math
import os
import re
import warnings
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from torch import Tensor

from vidcore.io.atomic import atomic_write
from vidcore.io.frames import check_frames

# Largest fps denominator kept: exact for NTSC rates (30000/1001) and decimal rates like 23.976.
FPS_MAX_DENOMINATOR = 1001
WRITE_FORMATS = ("mp4", "webm", "gif", "webp")
# FFmpeg muxer per format.
_MUXERS = {"mp4": "mp4", "webm": "webm", "gif": "gif", "webp": "webp"}
# crf: mp4/webm (lower = better); quality: webp (higher = better). (default, min, max)
_CRF_RANGE = {"mp4": (18, 0, 51), "webm": (24, 0, 63)}
_WEBP_QUALITY = (90, 0, 100)
# Frame-delay resolution of formats that store per-frame delays (seconds).
_DELAY_QUANTUM = {"gif": 0.01, "webp": 0.001}
# Highest frame rate written: one frame per delay unit for GIF / WebP, and 1000 fps for the video codecs
# (beyond any display; a larger value is a mistake such as --fps 1e9, not a wish).
MAX_FPS = {"mp4": 1000.0, "webm": 1000.0, "gif": 100.0, "webp": 1000.0}
# Encoder threads: x264 and libvpx make thread-count-dependent decisions, so a fixed count keeps files
# byte-identical from one machine to the next.
ENCODER_THREADS = 1
# Muxer and encoder flags that drop everything run- or build-dependent from the file.
_BITEXACT_FORMAT = {"fflags": "+bitexact"}
_BITEXACT_CODEC = {"flags": "+bitexact"}
LOSSLESS_FORMATS = ("mp4", "webm", "webp")


class PartialVideoWarning(UserWarning):
    """A video decoded only in part; ``read_video(..., allow_partial=True)`` returned the frames before the
    damage."""


def frames_to_uint8(frames: Tensor | np.ndarray) -> Tensor:
    """Check frames ``[T, H, W, 3]`` (float 0..1 or uint8) and return them as a uint8 CPU tensor."""
    if isinstance(frames, np.ndarray):
        frames = torch.from_numpy(frames)
    if not isinstance(frames, Tensor):
        raise TypeError(f"frames must be a torch.Tensor or numpy array, got {type(frames).__name__}")
    frames = check_frames(frames, allow_uint8=True).detach().cpu()
    if frames.dtype == torch.uint8:
        return frames.contiguous()
    return frames.float().mul(255).round_().clamp_(0, 255).to(torch.uint8)


def unique_path(folder: str | os.PathLike, prefix: str, suffix: str) -> Path:
    """Return the first free name ``folder/prefix_00001.suffix`` (counting up; gaps are reused).

    Not a lock: another process may take the name before it is written. ``write_video`` with
    ``overwrite=False`` links its temporary file into place atomically, so a race ends in a
    ``FileExistsError``, never in a clobbered file; callers may retry with a fresh name.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"output folder {str(folder)!r} does not exist")
    if not prefix or "/" in prefix or os.sep in prefix or prefix in (".", ".."):
        raise ValueError(f"prefix={prefix!r} must be a non-empty file name without path separators")
    if not suffix or "/" in suffix or os.sep in suffix:
        raise ValueError(f"suffix={suffix!r} must be a non-empty extension like '.mp4' or 'mp4'")
    suffix = suffix if suffix.startswith(".") else "." + suffix
    pattern = re.compile(re.escape(prefix) + r"_(\d+)" + re.escape(suffix) + r"\Z")
    taken = {int(m.group(1)) for name in os.listdir(folder) if (m := pattern.match(name))}
    counter = 1
    while counter in taken or (folder / f"{prefix}_{counter:05d}{suffix}").exists():
        counter += 1
    return folder / f"{prefix}_{counter:05d}{suffix}"


# ----------------------------------------------------------------------------------------------- reading


def _check_count(name: str, value: int | None, minimum: int, allow_none: bool) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        allowed = f"an int >= {minimum}" + (" or None" if allow_none else "")
        raise ValueError(f"{name}={value!r} must be {allowed}")


def _is_webp(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(12)
    return head[:4] == b"RIFF" and head[8:12] == b"WEBP"


def _fps_from_delays(n: int, total: float, quantum: float) -> float | None:
    """fps from ``n`` frames lasting ``total`` seconds of delays rounded to ``quantum`` seconds.

    Per-frame delays are quantised (GIF 1/100 s, WebP 1/1000 s), so a 24 fps animation stores
    4-4-5 centiseconds, and the muxer guesses the last delay. When the nearest integer rate explains
    the total within two quanta it is returned exactly, otherwise the measured mean rate.
    """
    if n < 1 or total <= 0:
        return None
    measured = n / total
    nearest = round(measured)
    if nearest > 0 and abs(n / nearest - total) <= 2 * quantum + 1e-9:
        return float(nearest)
    return measured


def _stream_fps(stream: av.video.stream.VideoStream) -> float | None:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate is not None and rate > 0:
            return float(rate)
    return None


def _gif_fps(path: Path) -> float | None:
    """GIF fps from packet delays: FFmpeg's ``average_rate`` for GIF reflects only the first delay."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        n, ticks = 0, 0
        for packet in container.demux(stream):
            if packet.size and packet.duration:
                n += 1
                ticks += packet.duration
        return _fps_from_delays(n, float(ticks * stream.time_base), _DELAY_QUANTUM["gif"]) if n else None


def _select(index: int, start: int, stride: int) -> bool:
    return index >= start and (index - start) % stride == 0


def _partial(path: Path, kept: list[np.ndarray], index: int, error: Exception, allow_partial: bool) -> None:
    """Raise for a decode failure after ``index`` frames, or (``allow_partial`` and frames kept) warn."""
    if not allow_partial or not kept:
        hint = "" if allow_partial else "; pass allow_partial=True to keep the frames decoded before it"
        raise ValueError(f"failed decoding {str(path)!r} after {index} frames: {error}{hint}") from error
    warnings.warn(
        f"{str(path)!r} is damaged: decoding stopped after {index} frames ({error}); returning the "
        f"{len(kept)} frames kept before it",
        PartialVideoWarning,
        stacklevel=4,
    )


def _read_pyav(
    path: Path, max_frames: int | None, stride: int, start: int, allow_partial: bool = False
) -> tuple[list[np.ndarray], float, int]:
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as e:
        raise ValueError(f"cannot read {str(path)!r} as a video: {e}") from e
    with container:
        if not container.streams.video:
            found = ", ".join(s.type for s in container.streams) or "no streams"
            raise ValueError(
                f"{str(path)!r} has no video stream (format {container.format.name!r}, found: {found})"
            )
        stream = container.streams.video[0]
        # Frame threading is safe here: we decode sequentially from the start and never seek.
        stream.thread_type = "AUTO"
        fps = _stream_fps(stream)
        kept: list[np.ndarray] = []
        index = 0
        try:
            for frame in container.decode(stream):
                if _select(index, start, stride):
                    # Only kept frames pay for the RGB conversion.
                    kept.append(frame.to_ndarray(format="rgb24"))
                    if max_frames is not None and len(kept) >= max_frames:
                        break
                index += 1
        except av.error.FFmpegError as e:
            _partial(path, kept, index, e, allow_partial)
        format_name = container.format.name
    if format_name == "gif":
        try:
            fps = _gif_fps(path) or fps
        except av.error.FFmpegError as e:
            if not allow_partial:
                raise ValueError(f"failed reading the frame delays of {str(path)!r}: {e}") from e
    if fps is None:
        raise ValueError(f"{str(path)!r}: the video stream reports no frame rate")
    return kept, fps, index


def _read_webp_pillow(
    path: Path, max_frames: int | None, stride: int, start: int, allow_partial: bool = False
) -> tuple[list[np.ndarray], float, int]:
    try:
        from PIL import Image
    except ImportError as e:
        raise ImportError(
            f"reading WebP {str(path)!r} needs Pillow, as FFmpeg does not decode animated WebP: "
            "pip install pillow"
        ) from e
    kept: list[np.ndarray] = []
    total_ms, index = 0, 0
    try:
        with Image.open(path) as image:
            count = getattr(image, "n_frames", 1)
            for index in range(count):
                image.seek(index)
                image.load()  # the frame's duration is known only once it is decoded
                total_ms += int(image.info.get("duration") or 0)
                if _select(index, start, stride) and (max_frames is None or len(kept) < max_frames):
                    # Alpha is dropped: frames are RGB by convention.
                    kept.append(np.asarray(image.convert("RGB")))
    except (OSError, ValueError, EOFError, SyntaxError) as e:
        if not kept:
            raise ValueError(f"cannot read WebP {str(path)!r}: {e}") from e
        _partial(path, kept, index, e, allow_partial)
        count = index
    fps = _fps_from_delays(count, total_ms / 1000, _DELAY_QUANTUM["webp"])
    # A still WebP has no delay: use FFmpeg's default rate for still images.
    return kept, (fps if fps is not None else 25.0), count


def read_video(
    path: str | os.PathLike,
    max_frames: int | None = None,
    stride: int = 1,
    start: int = 0,
    allow_partial: bool = False,
) -> tuple[Tensor, float]:
    """Decode a video into frames ``[T, H, W, 3]`` float32 in 0..1 and its fps.

    Keeps decoded frames ``start, start + stride, ...`` (indices in display order), at most
    ``max_frames`` of them. fps is the stream's average rate (GIF/WebP: from the frame delays).
    A file that fails to decode part-way raises ValueError naming it; with ``allow_partial=True`` the
    frames decoded before the damage are returned with a :class:`PartialVideoWarning` (a file with no
    decodable frame still raises). Damage the decoder conceals (e.g. flipped bits inside a frame) gives
    frames without an error: no container format vidcore reads carries checksums.
    """
    if not isinstance(allow_partial, bool):
        raise TypeError(f"allow_partial={allow_partial!r} must be True or False")
    _check_count("max_frames", max_frames, 1, allow_none=True)
    _check_count("stride", stride, 1, allow_none=False)
    _check_count("start", start, 0, allow_none=False)
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"video {str(path)!r} does not exist")
    if not path.is_file():
        raise ValueError(f"video path {str(path)!r} is not a file")
    if _is_webp(path):
        kept, fps, count = _read_webp_pillow(path, max_frames, stride, start, allow_partial)
    else:
        kept, fps, count = _read_pyav(path, max_frames, stride, start, allow_partial)
    if not kept:
        raise ValueError(f"{str(path)!r} has {count} frames: none selected with start={start}")
    shapes = {a.shape for a in kept}
    if len(shapes) > 1 and allow_partial:
        first = kept[0].shape
        cut = next(i for i, a in enumerate(kept) if a.shape != first)
        warnings.warn(
            f"{str(path)!r}: the frame size changes at kept frame {cut} ({first} -> {kept[cut].shape}); "
            f"returning the {cut} frames before it",
            PartialVideoWarning,
            stacklevel=2,
        )
        kept, shapes = kept[:cut], {first}
    if len(shapes) > 1:
        raise ValueError(f"{str(path)!r}: frame size changes within the video ({sorted(shapes)})")
    frames = torch.from_numpy(np.stack(kept)).to(torch.float32).div_(255)
    return frames, fps


# ----------------------------------------------------------------------------------------------- writing


def _resolve_format(path: Path, format: str | None) -> str:
    suffix = path.suffix.lower().lstrip(".")
    if format is None:
        if suffix not in WRITE_FORMATS:
            raise ValueError(
                f"cannot infer the format of {str(path)!r} from its suffix; use one of "
                f"{['.' + f for f in WRITE_FORMATS]} or pass format="
            )
        return suffix
    fmt = format.lower().lstrip(".")
    if fmt not in WRITE_FORMATS:
        raise ValueError(f"format={format!r} must be one of {list(WRITE_FORMATS)}")
    if suffix in WRITE_FORMATS and suffix != fmt:
        raise ValueError(f"format={format!r} contradicts the suffix of {str(path)!r}")
    return fmt


def check_fps(fps: object, fmt: str, name: str = "fps") -> float:
    """Raise unless ``fps`` is a finite number in ``(0, MAX_FPS[fmt]]``; the message names ``name`` (the
    CLI passes ``"--fps"``). Returns it as a float."""
    if isinstance(fps, bool) or not isinstance(fps, (int, float, Fraction)):
        raise TypeError(f"{name} must be a number or Fraction, got {type(fps).__name__}")
    top = MAX_FPS[fmt]
    if not math.isfinite(float(fps)) or not 0 < fps <= top:
        shown = f"{name} {fps!r}" if name.startswith("-") else f"{name}={fps!r}"
        raise ValueError(f"{shown} must be a finite number in (0, {top:g}] for {fmt}")
    return float(fps)


def _to_fraction(fps: float | Fraction, fmt: str) -> Fraction:
    check_fps(fps, fmt)
    rate = Fraction(fps).limit_denominator(FPS_MAX_DENOMINATOR)
    if rate <= 0:
        raise ValueError(f"fps={fps!r} is too small to represent (at most 1/{FPS_MAX_DENOMINATOR} precision)")
    return rate


def _check_setting(
    name: str, value: int | None, fmt: str, ranges: dict[str, tuple[int, int, int]]
) -> int | None:
    if value is None:
        return ranges[fmt][0] if fmt in ranges else None
    if fmt not in ranges:
        raise ValueError(f"{name}={value!r} does not apply to {fmt}; it is for {sorted(ranges)}")
    _, lo, hi = ranges[fmt]
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{name}={value!r} must be an int in [{lo}, {hi}] for {fmt}")
    return value


def _available_codecs() -> set[str]:
    return set(av.codecs_available)


def _webp_encoder() -> str:
    available = _available_codecs()
    for name in ("libwebp_anim", "libwebp"):
        if name in available:
            return name
    raise ValueError(
        "this PyAV/FFmpeg build has no WebP encoder (libwebp_anim or libwebp); write mp4, webm or gif"
    )


def _pad_even(image: np.ndarray) -> np.ndarray:
    """Pad H and W up to even sizes by repeating the last row/column (4:2:0 H.264 needs even sizes)."""
    h, w = image.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return image
    return np.pad(image, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


class _GifPalette:
    """palettegen + paletteuse with a palette per frame (GIF local colour tables): better colours."""

    def __init__(self, width: int, height: int, rate: Fraction) -> None:
        self.graph = av.filter.Graph()
        self.source = self.graph.add_buffer(width=width, height=height, format="rgb24", time_base=1 / rate)
        split = self.graph.add("split")
        palette = self.graph.add("palettegen", "stats_mode=single:reserve_transparent=0")
        use = self.graph.add("paletteuse", "new=1")
        self.sink = self.graph.add("buffersink")
        self.source.link_to(split)
        split.link_to(palette, 0, 0)
        split.link_to(use, 1, 0)
        palette.link_to(use, 0, 1)
        use.link_to(self.sink)
        self.graph.configure()

    def drain(self) -> list[av.VideoFrame]:
        """Every frame the graph can give now (all remaining ones after the source got ``None``)."""
        out = []
        while True:
            try:
                out.append(self.sink.pull())
            except (BlockingIOError, av.error.EOFError):
                return out


def _encode_into(
    container: av.container.OutputContainer,
    images: np.ndarray,
    rate: Fraction,
    fmt: str,
    crf: int | None,
    quality: int | None,
    lossless: bool = False,
) -> None:
    t, h, w, _ = images.shape
    threads = {"threads": str(ENCODER_THREADS)}
    pix_fmt = "yuv420p"
    if fmt == "mp4" and lossless:
        # x264's RGB variant at qp 0 stores the RGB values themselves: no colour conversion, no loss.
        stream = container.add_stream("libx264rgb", rate=rate)
        stream.options = {"qp": "0", **threads, "x264-params": "sync-lookahead=0", **_BITEXACT_CODEC}
        pix_fmt = "rgb24"
    elif fmt == "mp4":
        stream = container.add_stream("libx264", rate=rate)
        # sync-lookahead=0: no lookahead thread, whose timing otherwise changes frame-type decisions.
        # mbtree=0: x264's macroblock-tree rate control gave different bytes for identical frames in about
        # half the runs (measured with x264 core 165: 4 distinct files of 10; with mbtree off, 1 of 40).
        params = "sync-lookahead=0:mbtree=0"
        stream.options = {"crf": str(crf), **threads, "x264-params": params, **_BITEXACT_CODEC}
        h, w = h + h % 2, w + w % 2
    elif fmt == "webm":
        stream = container.add_stream("libvpx-vp9", rate=rate)
        if lossless:
            stream.options = {"lossless": "1", **threads, **_BITEXACT_CODEC}
            pix_fmt = "gbrp"  # planar RGB (VP9 profile 1): exact, unlike a YUV round trip
        else:
            # b=0 selects VP9's constant-quality mode, where crf alone sets the quality.
            stream.options = {"crf": str(crf), "b": "0", **threads, **_BITEXACT_CODEC}
    elif fmt == "gif":
        stream = container.add_stream("gif", rate=rate)
        stream.options = dict(_BITEXACT_CODEC)
        pix_fmt = "pal8"
    else:
        stream = container.add_stream(_webp_encoder(), rate=rate)
        if lossless:
            stream.options = {"lossless": "1", **_BITEXACT_CODEC}
            pix_fmt = "bgra"
        else:
            stream.options = {"quality": str(quality), **_BITEXACT_CODEC}
    stream.width, stream.height = w, h
    stream.pix_fmt = pix_fmt
    stream.time_base = 1 / rate
    graph = _GifPalette(w, h, rate) if fmt == "gif" else None

    def emit(frame: av.VideoFrame, index: int) -> None:
        frame.pts, frame.time_base = index, 1 / rate
        for packet in stream.encode(frame):
            container.mux(packet)

    written = 0
    for index in range(t):
        image = _pad_even(images[index]) if fmt == "mp4" and not lossless else images[index]
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        if graph is None:
            emit(frame, index)
            continue
        frame.pts, frame.time_base = index, 1 / rate
        graph.source.push(frame)
        for out in graph.drain():
            emit(out, written)
            written += 1
    if graph is not None:
        graph.source.push(None)
        for out in graph.drain():
            emit(out, written)
            written += 1
        if written != t:
            raise RuntimeError(f"the GIF palette filter returned {written} of {t} frames")
    for packet in stream.encode():
        container.mux(packet)


def write_video(
    path: str | os.PathLike,
    frames: Tensor | np.ndarray,
    fps: float | Fraction,
    format: str | None = None,
    crf: int | None = None,
    quality: int | None = None,
    overwrite: bool = False,
    lossless: bool = False,
) -> Path:
    """Write frames ``[T, H, W, 3]`` (float 0..1 or uint8) as mp4, webm, gif or animated webp.

    ``format`` defaults to the suffix. ``crf``: mp4 (H.264, 0..51, default 18) and webm (VP9, 0..63,
    default 24), lower is better; ``quality``: webp (0..100, default 90). mp4 frames of odd width or
    height are padded to even size by repeating the last row/column, so reading back gives the even
    size. GIF and WebP loop forever and store per-frame delays (1/100 s, 1/1000 s), so rates that
    are not a whole number of those units play slightly uneven. The file is written to a hidden
    temporary name in the same folder and moved into place; nothing is left behind on failure.

    Reproducible: identical frames and settings give byte-identical files, in every format (one encoder
    thread, bitexact muxing; the same PyAV/FFmpeg build is assumed).

    ``lossless=True`` stores the uint8 frames exactly, so :func:`read_video` returns them bit for bit (at
    their own size, odd sizes included): mp4 as H.264 RGB at qp 0 (``libx264rgb``, High 4:4:4 Predictive;
    FFmpeg-based players decode it, browsers and phones mostly do not), webm as lossless VP9 in planar
    RGB, webp as lossless WebP. GIF is refused (256-colour palettes). ``crf`` / ``quality`` then do not
    apply. Files are several times larger; for frame-exact archives and tests, not for sharing.
    """
    path = Path(path)
    fmt = _resolve_format(path, format)
    if not isinstance(lossless, bool):
        raise TypeError(f"lossless={lossless!r} must be True or False")
    if lossless:
        if fmt not in LOSSLESS_FORMATS:
            raise ValueError(
                f"lossless=True is not possible for {fmt} (a 256-colour palette); "
                f"use one of {list(LOSSLESS_FORMATS)}"
            )
        for name, value in (("crf", crf), ("quality", quality)):
            if value is not None:
                raise ValueError(f"{name}={value!r} does not apply with lossless=True; leave it unset")
    crf = _check_setting("crf", crf, fmt, _CRF_RANGE)
    quality = _check_setting("quality", quality, fmt, {"webp": _WEBP_QUALITY})
    rate = _to_fraction(fps, fmt)
    images = frames_to_uint8(frames).numpy()
    if fmt == "webp":
        _webp_encoder()  # fail before creating anything
    # Loop forever, as players expect of animations (the webp muxer defaults to playing once).
    options = {"loop": "0", **_BITEXACT_FORMAT} if fmt in ("gif", "webp") else dict(_BITEXACT_FORMAT)
    with atomic_write(path, overwrite) as tmp:
        with av.open(str(tmp), "w", format=_MUXERS[fmt], options=options) as container:
            _encode_into(container, images, rate, fmt, crf, quality, lossless)
    return path
