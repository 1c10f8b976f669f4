"""Cheap latent -> RGB previews while sampling, and contact sheets of the frames.

A preview projects every latent pixel linearly to RGB, ``rgb = F @ z + b`` (a 3 x C matrix and a bias),
in -1..1 and then to 0..1: the "Latent2RGB" previews of ComfyUI (Comfy-Org/ComfyUI latent_preview.py),
one small matmul instead of a VAE decode. The factors act on the latents the sampler sees (each
family's normalised latents), so the preview of the current x0 prediction shows roughly the final video.

- LTX-Video (128 channels), Wan 2.1 (16) and Wan 2.2 (48): the factors ComfyUI publishes for those latent
  formats (Comfy-Org/ComfyUI comfy/latent_formats.py, classes LTXV, Wan21, Wan22: ``latent_rgb_factors``,
  one (r, g, b) row per channel, and ``latent_rgb_factors_bias``).
- Our causal VAE: least squares from its latents to the video averaged over each latent's pixels
  (:func:`fit_latent_rgb`, :func:`fit_for_vae`); the shipped tiny VAE's factors are stored below
  (:data:`TINY_VAE`), any other VAE of ours is fitted once on first use (a few procedural clips).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "LTX_VIDEO",
    "TINY_VAE",
    "WAN21",
    "WAN22",
    "LatentRGB",
    "contact_sheet",
    "fit_for_vae",
    "fit_latent_rgb",
    "latent_rgb_for_vae",
    "png_bytes",
    "to_pil",
    "write_contact_sheet",
]


@dataclass(frozen=True)
class LatentRGB:
    """A linear latent -> RGB map: ``rows[c]`` is channel c's (r, g, b) contribution, ``bias`` the offset;
    the result is in about -1..1 (ComfyUI's convention)."""

    rows: tuple[tuple[float, float, float], ...]
    bias: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        if not self.rows or any(len(r) != 3 for r in self.rows) or len(self.bias) != 3:
            raise ValueError(
                f"LatentRGB needs one (r, g, b) row per latent channel and a 3-value bias, got "
                f"{len(self.rows)} rows and bias {self.bias!r}"
            )
        values = [v for r in self.rows for v in r] + list(self.bias)
        if not all(math.isfinite(float(v)) for v in values):
            raise ValueError("LatentRGB rows and bias must be finite numbers")

    @property
    def channels(self) -> int:
        return len(self.rows)

    def project(self, latents: Tensor) -> Tensor:
        """Latents ``[B, C, T, H, W]`` (the first item is shown) or ``[C, T, H, W]`` -> frames
        ``[T, H, W, 3]`` float32 in 0..1 at latent resolution."""
        if not isinstance(latents, Tensor) or latents.ndim not in (4, 5):
            got = tuple(latents.shape) if isinstance(latents, Tensor) else type(latents).__name__
            raise ValueError(f"latents must be [B, C, T, H, W] or [C, T, H, W], got {got}")
        z = latents[0] if latents.ndim == 5 else latents
        if z.shape[0] != self.channels:
            raise ValueError(
                f"latents have {z.shape[0]} channels but these preview factors take {self.channels}"
            )
        z = z.detach().float()
        weight = torch.tensor(self.rows, dtype=torch.float32, device=z.device)  # [C, 3]
        bias = torch.tensor(self.bias, dtype=torch.float32, device=z.device)
        rgb = torch.einsum("cthw,ck->thwk", z, weight) + bias
        return ((rgb + 1.0) / 2.0).nan_to_num(0.5).clamp(0.0, 1.0)


# ComfyUI's published factors (see the module docstring); rows are latent channels.
# fmt: off
_LTXV_ROWS = (
    (0.0112, -0.0006, -0.01), (0.086, 0.0658, 0.001), (-0.0126, -0.0076, -0.0041),
    (0.0094, -0.0022, 0.0026), (0.0038, 0.0128, 0.0092), (0.021, -0.0053, 0.0034),
    (-0.0089, -0.0197, -0.0188), (-0.0132, -0.0105, 0.002), (-0.0015, -0.007, -0.0076),
    (-0.0017, 0.0005, -0.0034), (0.0136, 0.0047, -0.002), (0.0103, 0.0077, 0.0139),
    (-0.0161, -0.0062, 0.0012), (0.0073, 0.0156, 0.0004), (0.001, -0.003, -0.0148),
    (0.0191, 0.0109, 0.0123), (0.0045, 0.0, -0.0069), (-0.0005, 0.0033, 0.0078),
    (0.0339, 0.0334, 0.0375), (-0.023, -0.0025, -0.0031), (0.0503, 0.0388, 0.0335),
    (-0.0041, -0.0011, 0.0016), (-0.1269, -0.1311, -0.21), (0.0263, 0.0142, -0.0036),
    (-0.0049, 0.0088, 0.0078), (-0.0017, -0.0049, -0.0052), (-0.0021, 0.0024, 0.0094),
    (-0.0225, -0.0213, -0.0151), (-0.0158, -0.0106, -0.0065), (-0.0047, 0.005, -0.0067),
    (0.012, 0.0207, 0.0162), (-0.0064, -0.0085, -0.0095), (0.0073, -0.0099, -0.023),
    (-0.0009, 0.0063, 0.0096), (-0.0372, -0.0371, -0.0567), (-0.1337, -0.1072, -0.0538),
    (-0.0054, 0.0081, 0.0088), (-0.1525, -0.2144, -0.2184), (0.0314, 0.007, -0.0098),
    (0.0022, -0.009, -0.021), (0.0038, -0.0059, -0.015), (-0.0043, -0.0129, -0.016),
    (-0.0055, -0.0108, -0.003), (-0.0065, 0.0031, -0.0102), (-0.005, -0.0072, -0.0009),
    (-0.0086, -0.0024, 0.0011), (-0.009, -0.0096, 0.0016), (0.0051, 0.0121, 0.02),
    (0.0138, 0.0117, 0.0082), (-0.0105, -0.0116, -0.0041), (-0.0284, -0.0313, -0.0221),
    (0.0029, 0.0365, 0.0187), (-0.0167, -0.0167, -0.0045), (0.0488, 0.0401, 0.0087),
    (-0.0151, -0.0006, 0.003), (-0.0176, -0.0081, 0.0131), (-0.0093, 0.0108, -0.0063),
    (0.0031, 0.0005, 0.0123), (-0.0228, -0.023, -0.026), (-0.0248, -0.0154, -0.0221),
    (-0.0236, 0.0011, 0.0124), (-0.0079, -0.0012, -0.0061), (-0.0115, -0.0013, 0.0063),
    (-0.0542, 0.0266, 0.0063), (0.0044, -0.0073, -0.0105), (-0.0045, 0.0016, 0.0144),
    (0.0137, 0.0089, 0.0041), (-0.0101, 0.009, 0.0157), (-0.0056, 0.0012, 0.0081),
    (-0.0037, -0.0054, 0.0013), (0.0295, 0.0214, 0.0304), (-0.0349, -0.0243, -0.0253),
    (-0.0341, -0.0224, -0.0106), (-0.0173, -0.0132, -0.0107), (-0.0021, -0.0086, -0.003),
    (0.0012, -0.0042, -0.0069), (0.0009, -0.0067, -0.0001), (0.016, -0.0101, -0.0289),
    (0.0012, 0.0102, 0.0189), (0.0173, 0.0003, 0.0138), (-0.0135, -0.0036, 0.0007),
    (0.0047, -0.0052, 0.0024), (-0.0059, -0.0062, -0.0018), (0.0155, 0.0146, 0.002),
    (0.0075, 0.0016, -0.0082), (0.0191, 0.0016, -0.004), (-0.0057, -0.0027, -0.0041),
    (0.0017, 0.0146, 0.0258), (-0.0008, 0.0023, 0.0045), (0.0116, 0.0089, -0.0073),
    (0.0076, 0.0027, 0.0114), (0.0052, 0.0037, 0.014), (-0.0184, -0.0225, -0.0245),
    (0.0006, -0.0058, -0.0148), (-0.0161, -0.0086, -0.0145), (0.0205, 0.0207, 0.0064),
    (0.0034, -0.0112, -0.0164), (-0.0015, -0.0105, 0.0017), (0.0281, 0.0235, 0.0328),
    (-0.0185, -0.0128, -0.0088), (-0.0081, -0.0108, -0.0175), (-0.0039, 0.0162, 0.0334),
    (-0.0075, -0.0142, -0.0062), (0.0035, -0.0114, -0.0106), (0.0115, 0.0039, 0.0028),
    (0.0072, -0.0015, -0.0038), (0.0022, -0.0088, -0.0096), (0.0241, 0.0217, 0.0281),
    (-0.0054, -0.0243, -0.0178), (0.0074, 0.0105, 0.0127), (0.0063, 0.0063, 0.0192),
    (0.0164, 0.0095, 0.0067), (0.0172, 0.0236, 0.0233), (-0.0146, -0.0098, -0.0116),
    (0.0144, 0.0144, 0.0066), (-0.0068, 0.0189, 0.0146), (0.0061, 0.0035, -0.0027),
    (-0.0027, -0.0059, -0.0092), (0.0102, 0.0074, -0.0076), (-0.0133, 0.0193, -0.0009),
    (0.0024, -0.0048, -0.0158), (0.0262, 0.026, 0.0202), (0.0157, 0.0185, 0.0027),
    (-0.0022, 0.0047, -0.0224), (-0.0075, 0.0074, 0.0144), (-0.0084, -0.008, 0.0098),
    (0.0383, 0.0097, -0.0193), (-0.0146, -0.0067, 0.004),
)
_LTXV_BIAS = (-0.0571, -0.1657, -0.2512)
_WAN21_ROWS = (
    (-0.1299, -0.1692, 0.2932), (0.0671, 0.0406, 0.0442), (0.3568, 0.2548, 0.1747),
    (0.0372, 0.2344, 0.142), (0.0313, 0.0189, -0.0328), (0.0296, -0.0956, -0.0665),
    (-0.3477, -0.4059, -0.2925), (0.0166, 0.1902, 0.1975), (-0.0412, 0.0267, -0.1364),
    (-0.1293, 0.074, 0.1636), (0.068, 0.3019, 0.1128), (0.0032, 0.0581, 0.0639),
    (-0.1251, 0.0927, 0.1699), (0.006, -0.0633, 0.0005), (0.3477, 0.2275, 0.295),
    (0.1984, 0.0913, 0.1861),
)
_WAN21_BIAS = (-0.1835, -0.0868, -0.336)
_WAN22_ROWS = (
    (0.0119, 0.0103, 0.0046), (-0.1062, -0.0504, 0.0165), (0.014, 0.0409, 0.0491),
    (-0.0813, -0.0677, 0.0607), (0.0656, 0.0851, 0.0808), (0.0264, 0.0463, 0.0912),
    (0.0295, 0.0326, 0.059), (-0.0244, -0.027, 0.0025), (0.0443, -0.0102, 0.0288),
    (-0.0465, -0.009, -0.0205), (0.0359, 0.0236, 0.0082), (-0.0776, 0.0854, 0.1048),
    (0.0564, 0.0264, 0.0561), (0.0006, 0.0594, 0.0418), (-0.0319, -0.0542, -0.0637),
    (-0.0268, 0.0024, 0.026), (0.0539, 0.0265, 0.0358), (-0.0359, -0.0312, -0.0287),
    (-0.0285, -0.1032, -0.1237), (0.1041, 0.0537, 0.0622), (-0.0086, -0.0374, -0.0051),
    (0.039, 0.067, 0.2863), (0.0069, 0.0144, 0.0082), (0.0006, -0.0167, 0.0079),
    (0.0313, -0.0574, -0.0232), (-0.1454, -0.0902, -0.0481), (0.0714, 0.0827, 0.0447),
    (-0.0304, -0.0574, -0.0196), (0.0401, 0.0384, 0.0204), (-0.0758, -0.0297, -0.0014),
    (0.0568, 0.1307, 0.1372), (-0.0055, -0.031, -0.038), (0.0239, -0.0305, 0.0325),
    (-0.0663, -0.0673, -0.014), (-0.0416, -0.0047, -0.0023), (0.0166, 0.0112, -0.0093),
    (-0.0211, 0.0011, 0.0331), (0.1833, 0.1466, 0.225), (-0.0368, 0.037, 0.0295),
    (-0.3441, -0.3543, -0.2008), (-0.0479, -0.0489, -0.042), (-0.066, -0.0153, 0.08),
    (-0.0101, 0.0068, 0.0156), (-0.069, -0.0452, -0.0927), (-0.0145, 0.0041, 0.0015),
    (0.0421, 0.0451, 0.0373), (0.0504, -0.0483, -0.0356), (-0.0837, 0.0168, 0.0055),
)
_WAN22_BIAS = (0.0317, -0.0878, -0.1388)
# fmt: on

LTX_VIDEO = LatentRGB(_LTXV_ROWS, _LTXV_BIAS)
WAN21 = LatentRGB(_WAN21_ROWS, _WAN21_BIAS)
WAN22 = LatentRGB(_WAN22_ROWS, _WAN22_BIAS)

# The shipped tiny model's VAE (vidcore/weights/tiny/vae.safetensors, 8 channels): fit_for_vae(vae) with
# its defaults, i.e. least squares over the posterior-mean latents of the first 16 clips of
# ShapeVideoDataset(seed=0, split="heldout") at 17 x 64 x 64, rounded to 4 decimals; tests/test_previews.py
# refits and compares.
TINY_VAE_CONFIG_SHA256 = "e310cb2298d868f792e908125b661445763d11f08d24266b3ba35d341bc41557"
TINY_VAE = LatentRGB(
    (
        (0.0837, -0.0075, -0.0889),
        (-0.0649, 0.0415, -0.0532),
        (0.0325, -0.1189, -0.1257),
        (0.0126, 0.069, -0.0408),
        (0.136, 0.1201, 0.1586),
        (0.2269, 0.2626, 0.1446),
        (-0.0086, -0.0084, 0.0228),
        (-0.0505, -0.018, -0.0145),
    ),
    (-0.7998, -0.798, -0.8019),
)

# ---------------------------------------------------------------------------------------------- fitting


def pooled_targets(video: Tensor, latent_frames: int, temporal: int, spatial: int) -> Tensor:
    """Video ``[B, 3, T, H, W]`` averaged over the pixels each latent covers in a causal VAE (frame 0 alone,
    then groups of ``temporal`` frames; ``spatial`` x ``spatial`` patches) -> ``[B, 3, T', H', W']``."""
    first = video[:, :, :1]
    rest = video[:, :, 1 : 1 + (latent_frames - 1) * temporal]
    if rest.shape[2]:
        rest = rest.unflatten(2, (latent_frames - 1, temporal)).mean(3)  # [B, 3, T'-1, H, W]
    grouped = torch.cat([first, rest], dim=2)
    b, c, t, h, w = grouped.shape
    pooled = F.avg_pool2d(grouped.transpose(1, 2).reshape(b * t, c, h, w), spatial)  # frames as a batch
    return pooled.reshape(b, t, c, h // spatial, w // spatial).transpose(1, 2)


def fit_latent_rgb(latents: Tensor, targets: Tensor, decimals: int = 4) -> LatentRGB:
    """Least-squares factors and bias from latents ``[B, C, T', H', W']`` to RGB ``[B, 3, T', H', W']`` in
    -1..1 (ordinary least squares over every latent pixel), rounded to ``decimals``."""
    if (
        latents.ndim != 5
        or targets.ndim != 5
        or latents.shape[2:] != targets.shape[2:]
        or targets.shape[1] != 3
    ):
        raise ValueError(
            f"latents {tuple(latents.shape)} and targets {tuple(targets.shape)} must be [B, C, T, H, W] and "
            "[B, 3, T, H, W] over the same grid"
        )
    x = latents.detach().double().transpose(0, 1).flatten(1).T  # [N, C]
    y = targets.detach().double().transpose(0, 1).flatten(1).T  # [N, 3]
    design = torch.cat([x, torch.ones(x.shape[0], 1, dtype=x.dtype)], dim=1)
    solution = torch.linalg.lstsq(design, y).solution  # [C + 1, 3]
    rows = tuple(tuple(round(float(v), decimals) for v in r) for r in solution[:-1])
    return LatentRGB(rows, tuple(round(float(v), decimals) for v in solution[-1]))  # type: ignore[arg-type]


@torch.no_grad()
def fit_for_vae(vae: Any, videos: int = 16, num_frames: int = 17, size: int = 64) -> LatentRGB:
    """Factors for one of our causal VAEs (``encode``, ``config.temporal_compression`` /
    ``spatial_compression``): procedural held-out clips (vidcore.train.data) encoded to their posterior
    mean, fitted by :func:`fit_latent_rgb` against the clips averaged over each latent's pixels."""
    from vidcore.train.data import ShapeVideoDataset  # noqa: PLC0415 - only needed when fitting

    r, s = vae.config.temporal_compression, vae.config.spatial_compression
    num_frames = 1 + max(1, (num_frames - 1) // r) * r
    size = max(s, size // s * s)
    data = ShapeVideoDataset(seed=0, num_frames=num_frames, height=size, width=size, split="heldout")
    video = data.items(0, videos)["video"]
    weight = next(vae.parameters())
    latents = vae.encode(video.to(weight.device, weight.dtype)).float().cpu()
    return fit_latent_rgb(latents, pooled_targets(video, latents.shape[2], r, s))


def config_sha256(vae: Any) -> str:
    """Identity of a VAE for its stored factors: its config (which holds the trained latent statistics)."""
    text = json.dumps(vae.config.to_dict(), sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


_fitted: weakref.WeakKeyDictionary[Any, LatentRGB] = weakref.WeakKeyDictionary()
_fit_lock = threading.Lock()


def latent_rgb_for_vae(vae: Any) -> LatentRGB:
    """The factors of one of our VAEs: :data:`TINY_VAE` for the shipped one, else fitted once per VAE."""
    with _fit_lock:
        found = _fitted.get(vae)
        if found is None:
            found = TINY_VAE if config_sha256(vae) == TINY_VAE_CONFIG_SHA256 else fit_for_vae(vae)
            _fitted[vae] = found
        return found


# ---------------------------------------------------------------------------------------- contact sheet


def contact_sheet(frames: Tensor, max_frames: int = 16, columns: int | None = None, gap: int = 1) -> Tensor:
    """Frames ``[T, H, W, 3]`` in 0..1 -> one image ``[H', W', 3]`` uint8: up to ``max_frames`` frames
    evenly spaced over the clip (first and last included), row-major, ``gap`` black pixels between them."""
    if not isinstance(frames, Tensor) or frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
        got = tuple(frames.shape) if isinstance(frames, Tensor) else type(frames).__name__
        raise ValueError(f"frames must be [T, H, W, 3] with T >= 1, got {got}")
    if max_frames < 1 or (columns is not None and columns < 1) or gap < 0:
        raise ValueError(f"max_frames={max_frames} and columns={columns} must be >= 1, gap={gap} >= 0")
    t, h, w, _ = frames.shape
    n = min(t, max_frames)
    picks = torch.linspace(0, t - 1, n).round().long() if n > 1 else torch.zeros(1, dtype=torch.long)
    cols = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    sheet = torch.zeros(rows * h + (rows - 1) * gap, cols * w + (cols - 1) * gap, 3, dtype=torch.uint8)
    pixels = (frames.detach().float().cpu().nan_to_num(0.0).clamp(0, 1) * 255).round().to(torch.uint8)
    for k, idx in enumerate(picks.tolist()):
        y, x = (k // cols) * (h + gap), (k % cols) * (w + gap)
        sheet[y : y + h, x : x + w] = pixels[idx]
    return sheet


def to_pil(image: Tensor, min_size: int = 0) -> Any:
    """A uint8 ``[H, W, 3]`` image as a PIL image, enlarged by a whole factor with nearest-neighbour pixels
    until its shorter side reaches ``min_size`` (latent-resolution previews are tiny)."""
    from PIL import Image  # noqa: PLC0415

    pil = Image.fromarray(image.numpy())
    scale = max(1, math.ceil(min_size / max(1, min(pil.size)))) if min_size else 1
    if scale > 1:
        pil = pil.resize((pil.width * scale, pil.height * scale), Image.NEAREST)
    return pil


def png_bytes(image: Tensor, min_size: int = 0) -> bytes:
    """A uint8 ``[H, W, 3]`` image as PNG bytes (see :func:`to_pil`)."""
    buf = io.BytesIO()
    to_pil(image, min_size).save(buf, format="PNG")
    return buf.getvalue()


def write_contact_sheet(
    path: str | os.PathLike, frames: Tensor, overwrite: bool = True, flag: str = "overwrite=True"
) -> Path:
    """Write the contact sheet of ``frames`` as a PNG, atomically (vidcore.io.atomic): readers never see a
    partial file; only a regular file is ever replaced."""
    from vidcore.io.atomic import write_bytes  # noqa: PLC0415

    return write_bytes(path, png_bytes(contact_sheet(frames), min_size=256), overwrite=overwrite, flag=flag)


class PreviewEvery:
    """A sampler callback that writes the contact sheet of the current x0 prediction every ``every`` steps
    and after the last step. ``project`` maps latents to frames ``[T, H, W, 3]`` (a pipeline's
    ``latent_preview``); ``then``: another callback run after it (progress)."""

    def __init__(self, every: int, path: str | os.PathLike, project: Any, then: Any = None) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every={every!r} must be an int >= 1 (steps between previews)")
        self.every, self.path, self.project, self.then = every, Path(path), project, then
        self.written = 0

    def __call__(self, info: dict) -> None:
        step = int(info["i"]) + 1
        total = info.get("total")
        last = total is not None and step >= int(total)
        if (step % self.every == 0 or last) and info.get("denoised") is not None:
            write_contact_sheet(self.path, self.project(info["denoised"]), overwrite=True)
            self.written += 1
        if self.then is not None:
            self.then(info)
