"""Memory a generation needs, and what the device has free: checked before sampling, so a size that cannot
fit is refused in one line (with the largest size that would fit) instead of an allocation failure minutes
into the run."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

GIB = 1024**3


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a generation needs on top of the loaded weights at its peak, by what holds them (only tensors
    that exist at the same time are counted)."""

    latents: int  # sampler state: noise, x, denoised, velocity (CFG doubles the batch)
    activations: int  # one denoiser layer's activations for every token at once
    attention: int  # attention scores of one layer when the attention backend materialises them
    decode: int  # the decoded video in float32 and its frames copy

    @property
    def total(self) -> int:
        return self.latents + self.activations + self.attention + self.decode

    def describe(self) -> str:
        parts = (
            ("activations", self.activations),
            ("attention scores", self.attention),
            ("decoded video", self.decode),
            ("latents", self.latents),
        )
        return ", ".join(f"{name} {gib(n)}" for name, n in parts if n >= GIB // 100)


def gib(n: float) -> str:
    return f"{n / GIB:.2f} GiB" if n < 10 * GIB else f"{n / GIB:.0f} GiB"


def attention_materialises() -> bool:
    """Whether self-attention holds the full ``tokens x tokens`` score matrix: only the ``math`` reference
    backend does (``VIDCORE_ATTENTION=math``); PyTorch SDPA (also on the CPU, measured with torch 2.13) and
    xformers work in blocks."""
    return os.environ.get("VIDCORE_ATTENTION", "").strip().lower() == "math"


def generation_memory(
    latent_shape: tuple[int, ...],
    video_shape: tuple[int, int, int],
    *,
    tokens: int,
    width: int,
    heads: int,
    mlp_ratio: float = 4.0,
    cfg: bool = True,
) -> MemoryEstimate:
    """Estimate for one clip: ``latent_shape`` ``(C, T', H', W')``, ``video_shape`` ``(T, H, W)``, a denoiser
    with ``tokens`` tokens of ``width`` channels and ``heads`` attention heads (``tokens=0`` when unknown).

    At its peak a transformer block holds, per token, the residual stream plus either the normed input,
    q/k/v and the attention output (5 x width) or the MLP hidden before and after its activation
    (2 x mlp_ratio x width), in float32; materialised attention adds ``tokens² x heads`` float32 scores
    (Vaswani et al. 2017)."""
    batch = 2 if cfg else 1
    latent = 4
    for n in latent_shape:
        latent *= int(n)
    per_token = (1 + max(5.0, 2 * mlp_ratio)) * width * 4
    activations = int(batch * tokens * per_token)
    attention = batch * tokens * tokens * heads * 4 if attention_materialises() else 0
    t, h, w = video_shape
    decode = 2 * 3 * t * h * w * 4
    return MemoryEstimate(4 * batch * latent, activations, attention, decode)


def available_memory(device: torch.device) -> int | None:
    """Bytes free for new tensors on ``device`` (None when it cannot be told): on CUDA what the driver
    reports free plus what torch's caching allocator holds unused; on the CPU ``MemAvailable`` of
    /proc/meminfo, else the free physical pages."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    if device.type != "cpu":
        return None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None
