"""Procedural training videos: one anti-aliased shape moving at constant speed on a dark background.

Deterministic and endless: item ``i`` of ``ShapeVideoDataset(seed, split)`` depends only on
``(seed, split, i)``. Rendering is vectorised over batch, time and pixels; edges are anti-aliased
analytically (pixel coverage from a signed distance, clamp(0.5 - d, 0, 1)).

Coordinates are in pixels, x to the right and y down, pixel (row i, column j) centred at (j + 0.5, i + 0.5).
A spec's (x0, y0) is the centre of the shape's bounding box at frame 0; it moves by ``speed`` pixels per
frame in its direction.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from vidcore.io.frames import video_to_frames
from vidcore.train.captions import COLOURS, DIRECTIONS, SHAPES, SPLITS, caption_for

# Fixed palette in linear 0..1 RGB; hues are well apart (red 0, orange ~31, yellow ~57, green ~125,
# cyan ~183, blue ~225, purple ~278 degrees) so a judge can tell them apart after blur or a VAE.
PALETTE: dict[str, tuple[float, float, float]] = {
    "red": (0.90, 0.12, 0.12),
    "green": (0.15, 0.80, 0.20),
    "blue": (0.15, 0.35, 0.95),
    "yellow": (0.95, 0.90, 0.15),
    "white": (0.95, 0.95, 0.95),
    "purple": (0.60, 0.20, 0.85),
    "orange": (0.98, 0.55, 0.10),
    "cyan": (0.10, 0.85, 0.90),
}
if tuple(PALETTE) != COLOURS:  # the palette and the caption vocabulary must name the same colours
    raise RuntimeError(f"PALETTE keys {list(PALETTE)} differ from COLOURS {list(COLOURS)}")
BACKGROUNDS: tuple[str, ...] = ("plain", "texture")

# Unit motion per direction (x right, y down).
_DIRECTION_VECTORS: dict[str, tuple[float, float]] = {
    "left": (-1.0, 0.0),
    "right": (1.0, 0.0),
    "up": (0.0, -1.0),
    "down": (0.0, 1.0),
    "still": (0.0, 0.0),
}
# Half extents of each shape's bounding box in units of its radius: (half width, half height).
# The square's half side is 0.9 r and the upward equilateral triangle's circumradius 1.3 r, so the
# three shapes have similar areas (3.14 r^2, 3.24 r^2, 2.20 r^2).
_TRI_R = 1.3
HALF_EXTENT: dict[str, tuple[float, float]] = {
    "circle": (1.0, 1.0),
    "square": (0.9, 0.9),
    "triangle": (_TRI_R * math.sqrt(3.0) / 2.0, 0.75 * _TRI_R),
}
_MARGIN = 2.0  # pixels kept free between the shape and the frame edge (at 64 px; scaled)


@dataclass(frozen=True)
class ShapeVideoSpec:
    """Everything that defines one video: labels, geometry (pixels at the render size) and background."""

    shape: str
    colour: str
    direction: str
    radius: float
    speed: float
    x0: float
    y0: float
    background: str = "plain"
    bg_level: float = 0.05
    bg_tint: tuple[float, float, float] = (0.0, 0.0, 0.0)
    bg_texture: float = 0.0
    bg_seed: int = 0

    def __post_init__(self) -> None:
        for name, value, allowed in (
            ("shape", self.shape, SHAPES),
            ("colour", self.colour, COLOURS),
            ("direction", self.direction, DIRECTIONS),
            ("background", self.background, BACKGROUNDS),
        ):
            if value not in allowed:
                raise ValueError(f"{name}={value!r} must be one of {list(allowed)}")
        if not self.radius > 0:
            raise ValueError(f"radius={self.radius!r} must be > 0")
        if self.speed < 0 or (self.direction == "still") != (self.speed == 0):
            raise ValueError(f"speed={self.speed!r} must be 0 for direction 'still' and > 0 otherwise")

    @property
    def labels(self) -> dict[str, str]:
        return {"shape": self.shape, "colour": self.colour, "direction": self.direction}

    def centre(self, t: float) -> tuple[float, float]:
        """Bounding-box centre (x, y) in pixels at frame ``t``."""
        ux, uy = _DIRECTION_VECTORS[self.direction]
        return self.x0 + ux * self.speed * t, self.y0 + uy * self.speed * t


@dataclass(frozen=True)
class SamplingRanges:
    """Ranges of the random parameters, in pixels at a 64-pixel frame (scaled with min(H, W) / 64)."""

    radius: tuple[float, float] = (7.0, 13.0)
    speed: tuple[float, float] = (1.0, 2.5)
    bg_level: tuple[float, float] = (0.02, 0.10)
    bg_texture: tuple[float, float] = (0.02, 0.05)
    p_texture: float = 0.5

    def __post_init__(self) -> None:
        for name in ("radius", "speed", "bg_level", "bg_texture"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ValueError(f"{name}={(lo, hi)!r} must satisfy 0 <= low <= high")
        if self.radius[0] <= 0 or self.speed[0] <= 0:
            raise ValueError(f"radius={self.radius} and speed={self.speed} must start above 0")
        if not 0.0 <= self.p_texture <= 1.0:
            raise ValueError(f"p_texture={self.p_texture!r} must be in [0, 1]")


def _check_size(num_frames: int, height: int, width: int) -> None:
    for name, value, low in (("num_frames", num_frames, 1), ("height", height, 16), ("width", width, 16)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name}={value!r} must be an int >= {low}")


def _fits(shape: str, radius: float, speed: float, direction: str, num_frames: int, h: int, w: int) -> bool:
    ex, ey = HALF_EXTENT[shape]
    margin = _MARGIN * min(h, w) / 64.0
    travel = speed * (num_frames - 1)
    need_x = 2 * ex * radius + 2 * margin + (travel if direction in ("left", "right") else 0.0)
    need_y = 2 * ey * radius + 2 * margin + (travel if direction in ("up", "down") else 0.0)
    return need_x <= w and need_y <= h


def check_ranges_fit(ranges: SamplingRanges, num_frames: int, height: int, width: int) -> None:
    """Raise ValueError unless the smallest shape at the slowest speed fits inside the frame for the clip."""
    _check_size(num_frames, height, width)
    scale = min(height, width) / 64.0
    r, s = ranges.radius[0] * scale, ranges.speed[0] * scale
    for shape in SHAPES:
        for direction in ("right", "down"):
            if not _fits(shape, r, s, direction, num_frames, height, width):
                raise ValueError(
                    f"a {shape} of radius {r:.1f}px moving {s:.2f}px/frame for num_frames={num_frames} "
                    f"does not fit in {height}x{width}; use fewer frames or smaller radius/speed ranges"
                )


def sample_spec(
    rng: random.Random,
    num_frames: int = 17,
    height: int = 64,
    width: int = 64,
    ranges: SamplingRanges | None = None,
) -> ShapeVideoSpec:
    """Draw one random spec whose shape stays fully inside the frame (plus a margin) for every frame."""
    ranges = ranges or SamplingRanges()
    check_ranges_fit(ranges, num_frames, height, width)
    scale = min(height, width) / 64.0
    shape = rng.choice(SHAPES)
    colour = rng.choice(COLOURS)
    direction = rng.choice(DIRECTIONS)
    r_lo, r_hi = ranges.radius[0] * scale, ranges.radius[1] * scale
    ex, ey = HALF_EXTENT[shape]
    margin = _MARGIN * scale
    speed = 0.0
    if direction != "still":
        # Cap the speed so the smallest radius fits; check_ranges_fit guarantees the cap >= the minimum.
        length, extent = (width, ex) if direction in ("left", "right") else (height, ey)
        s_cap = (length - 2 * margin - 2 * extent * r_lo) / max(num_frames - 1, 1)
        speed = rng.uniform(ranges.speed[0] * scale, min(ranges.speed[1] * scale, s_cap))
    # Largest radius that still fits at this speed.
    travel = speed * (num_frames - 1)
    tx = travel if direction in ("left", "right") else 0.0
    ty = travel if direction in ("up", "down") else 0.0
    r_max = min(r_hi, (width - 2 * margin - tx) / (2 * ex), (height - 2 * margin - ty) / (2 * ey))
    radius = rng.uniform(r_lo, max(r_lo, r_max))
    # Start so that the whole trajectory [start, start + travel] stays inside [margin + e, size - margin - e].
    ux, uy = _DIRECTION_VECTORS[direction]
    lo_x, hi_x = margin + ex * radius, width - margin - ex * radius - tx
    lo_y, hi_y = margin + ey * radius, height - margin - ey * radius - ty
    x0 = rng.uniform(lo_x, hi_x) + (tx if ux < 0 else 0.0)
    y0 = rng.uniform(lo_y, hi_y) + (ty if uy < 0 else 0.0)
    background = "texture" if rng.random() < ranges.p_texture else "plain"
    tint = tuple(rng.uniform(-0.015, 0.015) for _ in range(3))
    return ShapeVideoSpec(
        shape=shape,
        colour=colour,
        direction=direction,
        radius=radius,
        speed=speed,
        x0=x0,
        y0=y0,
        background=background,
        bg_level=rng.uniform(*ranges.bg_level),
        bg_tint=tint,  # type: ignore[arg-type]
        bg_texture=rng.uniform(*ranges.bg_texture) if background == "texture" else 0.0,
        bg_seed=rng.randrange(2**31),
    )


def _background(specs: list[ShapeVideoSpec], height: int, width: int) -> Tensor:
    """Static backgrounds [B, 3, H, W]: dark level + tint + smooth low-frequency texture (0..1)."""
    b = len(specs)
    level = torch.tensor([[s.bg_level + t for t in s.bg_tint] for s in specs], dtype=torch.float32)
    out = level[:, :, None, None].expand(b, 3, height, width).clone()
    amp = torch.tensor([s.bg_texture for s in specs], dtype=torch.float32)
    if bool((amp > 0).any()):
        # Soft texture: bilinear upsampling of a coarse grid plus a finer, weaker one, seeded per video.
        coarse, fine = [], []
        for s in specs:
            g = torch.Generator().manual_seed(s.bg_seed)
            coarse.append(torch.randn(1, 6, 6, generator=g))
            fine.append(torch.randn(1, 16, 16, generator=g))
        size = (height, width)
        tex = torch.nn.functional.interpolate(
            torch.stack(coarse), size=size, mode="bicubic", align_corners=False
        )
        tex = tex + 0.5 * torch.nn.functional.interpolate(
            torch.stack(fine), size=size, mode="bilinear", align_corners=False
        )
        out = out + amp[:, None, None, None] * tex
    return out.clamp(0.0, 1.0)


def _shape_distance(shape: str, dx: Tensor, dy: Tensor, r: Tensor) -> Tensor:
    """Signed distance in pixels (< 0 inside) to one shape kind centred (bbox centre) at the origin."""
    if shape == "circle":
        return torch.sqrt(dx * dx + dy * dy) - r
    if shape == "square":
        # Exact box SDF: length(max(q, 0)) + min(max(qx, qy), 0) with q = |d| - half side.
        qx, qy = dx.abs() - 0.9 * r, dy.abs() - 0.9 * r
        return torch.sqrt(qx.clamp(min=0) ** 2 + qy.clamp(min=0) ** 2) + torch.maximum(qx, qy).clamp(max=0)
    # Upward equilateral triangle (circumradius R, centroid 0.25 R below the bbox centre). Inside, the
    # exact signed distance of a convex polygon is the max of its edge half-plane distances; outside, it
    # is the distance to the nearest edge segment (the half-plane max would leak coverage past corners).
    big_r = _TRI_R * r
    ty = dy - 0.25 * big_r
    ax = dx.abs()  # symmetric about the vertical axis: only the right half's two edges are needed
    planes = torch.maximum(ty - 0.5 * big_r, ax * (math.sqrt(3.0) / 2.0) - ty * 0.5 - 0.5 * big_r)
    half_w = big_r * (math.sqrt(3.0) / 2.0)
    base = torch.sqrt((ax - half_w).clamp(min=0) ** 2 + (ty - 0.5 * big_r) ** 2)  # segment y = R/2, |x| <= w
    # Right edge from the apex (0, -R) to (w, R/2): length sqrt(3) R.
    ex, ey = half_w, 1.5 * big_r
    proj = ((ax * ex + (ty + big_r) * ey) / (ex * ex + ey * ey)).clamp(0.0, 1.0)
    side = torch.sqrt((ax - proj * ex) ** 2 + (ty + big_r - proj * ey) ** 2)
    return torch.where(planes < 0, planes, torch.minimum(base, side))


def _signed_distance(specs: list[ShapeVideoSpec], num_frames: int, height: int, width: int) -> Tensor:
    """Signed distance in pixels (< 0 inside) of each shape at each frame and pixel: [B, T, H, W]."""
    t = torch.arange(num_frames, dtype=torch.float32)
    px = (torch.arange(width, dtype=torch.float32) + 0.5)[None, None, None, :]
    py = (torch.arange(height, dtype=torch.float32) + 0.5)[None, None, :, None]
    out = torch.empty(len(specs), num_frames, height, width)
    for shape in SHAPES:
        # One shape kind at a time: three times less work than evaluating every SDF for every video.
        idx = [i for i, s in enumerate(specs) if s.shape == shape]
        if not idx:
            continue
        group = [specs[i] for i in idx]
        x0 = torch.tensor([s.x0 for s in group])[:, None]
        y0 = torch.tensor([s.y0 for s in group])[:, None]
        vx = torch.tensor([_DIRECTION_VECTORS[s.direction][0] * s.speed for s in group])[:, None]
        vy = torch.tensor([_DIRECTION_VECTORS[s.direction][1] * s.speed for s in group])[:, None]
        cx = (x0 + vx * t)[:, :, None, None]  # [b, T, 1, 1]
        cy = (y0 + vy * t)[:, :, None, None]
        r = torch.tensor([s.radius for s in group])[:, None, None, None]
        out[idx] = _shape_distance(shape, px - cx, py - cy, r)
    return out


def render(specs: list[ShapeVideoSpec], num_frames: int = 17, height: int = 64, width: int = 64) -> Tensor:
    """Render specs to video ``[B, 3, T, H, W]`` in [-1, 1] (vidcore's internal video convention)."""
    if not isinstance(specs, (list, tuple)) or not specs:
        raise ValueError(f"specs must be a non-empty list of ShapeVideoSpec, got {type(specs).__name__}")
    if not all(isinstance(s, ShapeVideoSpec) for s in specs):
        raise TypeError("specs must contain only ShapeVideoSpec instances")
    _check_size(num_frames, height, width)
    specs = list(specs)
    alpha = (0.5 - _signed_distance(specs, num_frames, height, width)).clamp_(0.0, 1.0)  # pixel coverage
    colour = torch.tensor([PALETTE[s.colour] for s in specs], dtype=torch.float32)[:, :, None, None, None]
    bg = _background(specs, height, width)[:, :, None] * 2.0 - 1.0  # [B, 3, 1, H, W] in [-1, 1]
    # Alpha compositing directly in [-1, 1]: bg + (colour - bg) * alpha.
    return torch.addcmul(bg, colour * 2.0 - 1.0 - bg, alpha[:, None])


# Internal video [B, 3, T, H, W] in [-1, 1] -> public frames [B, T, H, W, 3] in [0, 1] (the one conversion).
to_frames = video_to_frames


class ShapeVideoDataset:
    """Endless deterministic stream of shape videos with captions; item ``i`` depends on (seed, split, i)."""

    def __init__(
        self,
        seed: int = 0,
        num_frames: int = 17,
        height: int = 64,
        width: int = 64,
        split: str = "train",
        ranges: SamplingRanges | None = None,
    ) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed={seed!r} must be an int")
        if split not in SPLITS:
            raise ValueError(f"split={split!r} must be one of {list(SPLITS)}")
        self.ranges = ranges or SamplingRanges()
        check_ranges_fit(self.ranges, num_frames, height, width)
        self.seed, self.split = seed, split
        self.num_frames, self.height, self.width = num_frames, height, width
        self._next = 0

    def spec_and_caption(self, index: int) -> tuple[ShapeVideoSpec, str]:
        """The spec and caption of item ``index`` (no rendering)."""
        return self._draw(index, twin=False)

    def twin(self, index: int) -> tuple[ShapeVideoSpec, str]:
        """Item ``index`` with its shape swapped for the next one in ``SHAPES`` (a counterfactual twin):
        same colour, motion, centre track and background, the radius scaled so the twin's box stays inside
        the original's, and the caption drawn from the same random stream (same template, colour word,
        motion phrase and shape-word position), so the pair differs in the shape and its word only."""
        return self._draw(index, twin=True)

    def _draw(self, index: int, twin: bool) -> tuple[ShapeVideoSpec, str]:
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise ValueError(f"index={index!r} must be an int >= 0")
        # str seeds are hashed with SHA-512 by random.Random, so this is stable across runs and machines.
        rng = random.Random(f"vidcore-shapes:{self.seed}:{self.split}:{index}")
        spec = sample_spec(rng, self.num_frames, self.height, self.width, self.ranges)
        if twin:
            shape = SHAPES[(SHAPES.index(spec.shape) + 1) % len(SHAPES)]
            (ex, ey), (tx, ty) = HALF_EXTENT[spec.shape], HALF_EXTENT[shape]
            spec = dataclasses.replace(spec, shape=shape, radius=spec.radius * min(ex / tx, ey / ty))
        return spec, caption_for(spec.shape, spec.colour, spec.direction, rng, self.split, spec.background)

    def items(self, start: int, n: int) -> dict:
        """Items ``start .. start + n - 1`` as a batch dict: video [n, 3, T, H, W], caption, labels, specs."""
        return self._batch(self.spec_and_caption, start, n)

    def twin_items(self, start: int, n: int) -> dict:
        """:meth:`twin` of items ``start .. start + n - 1`` as a batch dict like :meth:`items`."""
        return self._batch(self.twin, start, n)

    def _batch(self, draw: Callable[[int], tuple[ShapeVideoSpec, str]], start: int, n: int) -> dict:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n={n!r} must be an int >= 1")
        pairs = [draw(start + k) for k in range(n)]
        specs = [p[0] for p in pairs]
        return {
            "video": render(specs, self.num_frames, self.height, self.width),
            "caption": [p[1] for p in pairs],
            "labels": [s.labels for s in specs],
            "specs": specs,
            "index": list(range(start, start + n)),
        }

    def __getitem__(self, index: int) -> dict:
        """One item: video [3, T, H, W], caption str, labels dict, spec."""
        batch = self.items(index, 1)
        return {
            "video": batch["video"][0],
            "caption": batch["caption"][0],
            "labels": batch["labels"][0],
            "spec": batch["specs"][0],
            "index": index,
        }

    def batch(self, n: int) -> dict:
        """The next ``n`` items of the stream (advances the stream position)."""
        out = self.items(self._next, n)
        self._next += n
        return out

    def batches(self, n: int, start: int = 0) -> Iterator[dict]:
        """Endless iterator of batches of ``n`` items starting at item ``start`` (resumable by index)."""
        index = start
        while True:
            yield self.items(index, n)
            index += n
