"""Per-frame metric curves drawn as small stacked line plots, written as PNG without matplotlib or PIL."""

from __future__ import annotations

import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from vidcore.io.atomic import check_target, write_bytes

# A 3x5 pixel font: each glyph is five rows of three bits, enough to label the panels and their ranges.
_FONT = {
    "0": "111101101101111",
    "1": "010110010010111",
    "2": "111001111100111",
    "3": "111001111001111",
    "4": "101101111001001",
    "5": "111100111001111",
    "6": "111100111101111",
    "7": "111001001001001",
    "8": "111101111101111",
    "9": "111101111001111",
    ".": "000000000000010",
    "-": "000000111000000",
    "_": "000000000000111",
    " ": "000000000000000",
    ":": "000010000010000",
    "+": "000010111010000",
    "a": "010101111101101",
    "b": "110101110101110",
    "c": "011100100100011",
    "d": "110101101101110",
    "e": "111100110100111",
    "f": "111100110100100",
    "g": "011100101101011",
    "h": "101101111101101",
    "i": "111010010010111",
    "j": "001001001101010",
    "k": "101101110101101",
    "l": "100100100100111",
    "m": "101111111101101",
    "n": "110101101101101",
    "o": "010101101101010",
    "p": "110101110100100",
    "q": "010101101110011",
    "r": "110101110101101",
    "s": "011100010001110",
    "t": "111010010010010",
    "u": "101101101101111",
    "v": "101101101101010",
    "w": "101101111111101",
    "x": "101101010101101",
    "y": "101101010010010",
    "z": "111001010100111",
}
_COLORS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]


def _text(img: np.ndarray, x: int, y: int, text: str, color: tuple[int, int, int], scale: int = 2) -> None:
    for ch in text.lower():
        glyph = _FONT.get(ch, _FONT[" "])
        for i, bit in enumerate(glyph):
            if bit == "1":
                r, c = divmod(i, 3)
                y0, x0 = y + r * scale, x + c * scale
                img[y0 : y0 + scale, x0 : x0 + scale] = color
        x += 4 * scale


def _line(img: np.ndarray, x0: float, y0: float, x1: float, y1: float, color: tuple[int, int, int]) -> None:
    steps = int(max(abs(x1 - x0), abs(y1 - y0))) + 1
    xs = np.rint(np.linspace(x0, x1, steps + 1)).astype(int)
    ys = np.rint(np.linspace(y0, y1, steps + 1)).astype(int)
    for dy in (0, 1):  # two pixels thick
        img[np.clip(ys + dy, 0, img.shape[0] - 1), np.clip(xs, 0, img.shape[1] - 1)] = color


def _fmt(v: float) -> str:
    return f"{v:.4g}" if math.isfinite(v) else "inf"


def render_curves(curves: dict[str, list[float]], width: int = 640, panel_height: int = 120) -> np.ndarray:
    """Draw each named curve in its own panel (labelled, with its min/max): ``[H, W, 3]`` uint8."""
    if not curves:
        raise ValueError("curves is empty: nothing to plot")
    if width < 200 or panel_height < 60:
        raise ValueError(f"width={width} must be >= 200 and panel_height={panel_height} >= 60")
    img = np.full((panel_height * len(curves), width, 3), 255, dtype=np.uint8)
    left, right, top, bottom = 60, 10, 16, 10
    for k, (name, values) in enumerate(curves.items()):
        color = _COLORS[k % len(_COLORS)]
        y_off = k * panel_height
        vals = np.asarray(values, dtype=np.float64)
        finite = vals[np.isfinite(vals)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        span = hi - lo if hi > lo else 1.0
        x0, x1 = left, width - right
        y_top, y_bot = y_off + top, y_off + panel_height - bottom
        img[y_top : y_bot + 1, x0] = (0, 0, 0)
        img[y_bot, x0 : x1 + 1] = (0, 0, 0)
        _text(img, x0 + 4, y_off + 3, f"{name}: {len(vals)}", color)
        _text(img, 2, y_top, _fmt(hi)[:7], (0, 0, 0))
        _text(img, 2, y_bot - 10, _fmt(lo)[:7], (0, 0, 0))
        n = len(vals)
        pts = []
        for i, v in enumerate(vals):
            if not math.isfinite(v):
                pts.append(None)
                continue
            px = x0 + (x1 - x0) * (i / max(1, n - 1))
            py = y_bot - (y_bot - y_top) * ((v - lo) / span)
            pts.append((px, py))
        for p, q in zip(pts[:-1], pts[1:], strict=False):
            if p is not None and q is not None:
                _line(img, p[0], p[1], q[0], q[1], color)
        for p in pts:
            if p is not None:
                img[int(p[1]) - 1 : int(p[1]) + 2, int(p[0]) - 1 : int(p[0]) + 2] = color
    return img


def png_bytes(img: np.ndarray) -> bytes:
    """Encode an ``[H, W, 3]`` uint8 image as PNG (8-bit RGB, no filtering)."""
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"img must be [H, W, 3] uint8, got {img.shape} {img.dtype}")
    h, w, _ = img.shape
    raw = b"".join(b"\x00" + img[row].tobytes() for row in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )


def save_curves_png(path: str | os.PathLike, curves: dict[str, list[float]], overwrite: bool = False) -> Path:
    """Render ``curves`` and write them to ``path`` as PNG (atomically; refuses to overwrite unless asked)."""
    check_target(path, overwrite)  # before rendering
    return write_bytes(path, png_bytes(render_curves(curves)), overwrite)
