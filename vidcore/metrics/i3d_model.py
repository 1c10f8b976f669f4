"""Inflated 3D ConvNet (I3D, Carreira & Zisserman 2017), RGB stream, Kinetics-400: the FVD feature network.

Layout follows the TF-hub ``i3d-kinetics-400/1`` model: TF "SAME" padding (max-pools pad with -inf),
BatchNorm with bias only (no scale) and eps 1e-3, logits = time-mean of a 1x1x1 conv applied after a
(2, 7, 7) VALID average pool. Input: video ``[N, 3, T, 224, 224]`` in [-1, 1], T >= 9.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidcore.config import ConfigMixin, check_positive
from vidcore.io.frames import check_video

I3D_KIND = "i3d_kinetics400"
I3D_FILENAME = "i3d_kinetics400.safetensors"
MIN_FRAMES = 9  # three temporal halvings then a 2-frame VALID pool
# Inception blocks: name -> (b0, b1 reduce, b1, b2 reduce, b2, b3 pool-proj) output channels.
MIXED = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}


@dataclasses.dataclass(frozen=True)
class I3DConfig(ConfigMixin):
    """I3D hyper-parameters; only the class count and BatchNorm eps vary between released checkpoints."""

    num_classes: int = 400
    bn_eps: float = 1e-3

    def __post_init__(self) -> None:
        check_positive("num_classes", self.num_classes)
        check_positive("bn_eps", self.bn_eps)


def same_pad(x: Tensor, kernel: tuple[int, ...], stride: tuple[int, ...], value: float = 0.0) -> Tensor:
    """TF "SAME" padding of the last len(kernel) dims.

    total = max((ceil(n/s) - 1) s + k - n, 0); before = total // 2, the rest after.
    """
    pads: list[int] = []
    for n, k, s in zip(reversed(x.shape[-len(kernel) :]), reversed(kernel), reversed(stride), strict=True):
        total = max((math.ceil(n / s) - 1) * s + k - n, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads, value=value) if any(pads) else x


class Unit3D(nn.Module):
    """Conv3d (no bias, SAME) -> BatchNorm (bias only, frozen statistics) -> ReLU."""

    def __init__(
        self, cin: int, cout: int, kernel: tuple[int, int, int], stride: tuple[int, int, int], eps: float
    ):
        super().__init__()
        self.kernel, self.stride, self.eps = kernel, stride, eps
        self.conv = nn.Conv3d(cin, cout, kernel, stride, bias=False)
        self.bn_bias = nn.Parameter(torch.zeros(cout))
        self.register_buffer("bn_mean", torch.zeros(cout))
        self.register_buffer("bn_var", torch.ones(cout))

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(same_pad(x, self.kernel, self.stride))
        x = F.batch_norm(x, self.bn_mean, self.bn_var, None, self.bn_bias, training=False, eps=self.eps)
        return F.relu(x)


def max_pool_same(x: Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> Tensor:
    """Max pool with TF "SAME" padding; padded cells are -inf so they never win."""
    return F.max_pool3d(same_pad(x, kernel, stride, value=float("-inf")), kernel, stride)


class Mixed(nn.Module):
    """Inception block: 1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 | 3x3 max-pool -> 1x1, concatenated on channels."""

    def __init__(self, cin: int, widths: tuple[int, ...], eps: float):
        super().__init__()
        c0, c1a, c1b, c2a, c2b, c3 = widths
        one, three, unit = (1, 1, 1), (3, 3, 3), (1, 1, 1)
        self.b0 = Unit3D(cin, c0, one, unit, eps)
        self.b1a = Unit3D(cin, c1a, one, unit, eps)
        self.b1b = Unit3D(c1a, c1b, three, unit, eps)
        self.b2a = Unit3D(cin, c2a, one, unit, eps)
        self.b2b = Unit3D(c2a, c2b, three, unit, eps)
        self.b3b = Unit3D(cin, c3, one, unit, eps)
        self.out_channels = c0 + c1b + c2b + c3

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.b3b(max_pool_same(x, (3, 3, 3), (1, 1, 1)))
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), b3], dim=1)


class I3D(nn.Module):
    """I3D RGB network returning 400 Kinetics logits (the canonical FVD feature) or the 1024-d pool."""

    def __init__(self, config: I3DConfig | None = None):
        super().__init__()
        self.config = config or I3DConfig()
        eps = self.config.bn_eps
        self.Conv3d_1a_7x7 = Unit3D(3, 64, (7, 7, 7), (2, 2, 2), eps)
        self.Conv3d_2b_1x1 = Unit3D(64, 64, (1, 1, 1), (1, 1, 1), eps)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3), (1, 1, 1), eps)
        self.mixed = nn.ModuleDict()
        cin = 192
        for name, widths in MIXED.items():
            self.mixed[name] = Mixed(cin, widths, eps)
            cin = self.mixed[name].out_channels
        self.logits = nn.Conv3d(cin, self.config.num_classes, 1, bias=True)

    def pooled(self, video: Tensor) -> Tensor:
        """Mixed_5c after the (2, 7, 7) VALID average pool: ``[N, 1024, T', 1, 1]``."""
        check_video(video)
        if video.shape[2] < MIN_FRAMES:
            raise ValueError(f"I3D needs at least {MIN_FRAMES} frames, got T={video.shape[2]}")
        x = self.Conv3d_1a_7x7(video)
        x = max_pool_same(x, (1, 3, 3), (1, 2, 2))
        x = self.Conv3d_2c_3x3(self.Conv3d_2b_1x1(x))
        x = max_pool_same(x, (1, 3, 3), (1, 2, 2))
        for name, block in self.mixed.items():
            if name == "Mixed_4b":
                x = max_pool_same(x, (3, 3, 3), (2, 2, 2))
            elif name == "Mixed_5b":
                x = max_pool_same(x, (2, 2, 2), (2, 2, 2))
            x = block(x)
        if x.shape[-1] < 7 or x.shape[-2] < 7:
            raise ValueError(f"input {tuple(video.shape[-2:])} is too small for I3D's 7x7 pool; use 224x224")
        return F.avg_pool3d(x, (2, 7, 7), stride=1)

    def forward(self, video: Tensor) -> Tensor:
        """Kinetics logits ``[N, num_classes]``: 1x1x1 conv on the pooled features, mean over time/space."""
        return self.logits(self.pooled(video)).mean(dim=(2, 3, 4))

    def pool_features(self, video: Tensor) -> Tensor:
        """The 1024-d alternative feature: pooled Mixed_5c, mean over positions (not comparable to logits)."""
        return self.pooled(video).mean(dim=(2, 3, 4))


def default_i3d_path() -> Path:
    """Converted weights path: ``$VIDCORE_I3D_WEIGHTS``, else ``<cache>/vidcore/i3d_kinetics400.safetensors``.

    ``$VIDCORE_CACHE_DIR`` replaces ``<cache>/vidcore``; ``<cache>`` is ``$XDG_CACHE_HOME`` or ``~/.cache``.
    """
    explicit = os.environ.get("VIDCORE_I3D_WEIGHTS")
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get("VIDCORE_CACHE_DIR"):
        return Path(os.environ["VIDCORE_CACHE_DIR"]).expanduser() / I3D_FILENAME
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser()
    return base / "vidcore" / I3D_FILENAME
