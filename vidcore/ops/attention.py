"""One attention dispatch point with registered backends (xformers, sdpa, math).

The backend is chosen at call time: explicit ``backend`` argument > ``VIDCORE_ATTENTION`` env var > auto
(xformers when importable and the inputs are on CUDA, else sdpa). Tensors are ``[B, heads, L, head_dim]``.

Self-attention over a model's token sequence goes through :func:`sequence_attention` (or
:func:`video_self_attention` for the video patterns), and a model marks where its sequence starts and ends
with :func:`sequence_shard` (``split`` after patchify, ``gather`` before unpatchify). On one process these
are the plain calls; inside ``vidcore.distributed.sequence_parallel(...)`` an implementation of
:class:`SequenceParallel` installed here runs them sharded over processes, so no model forks for it.
"""

from __future__ import annotations

import importlib
import logging
import math
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Protocol

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

log = logging.getLogger("vidcore")

ENV_VAR = "VIDCORE_ATTENTION"

# backend(q, k, v, mask, causal) -> out; mask is a bool keep-mask or an additive float bias,
# broadcastable to [B, heads, Lq, Lk].
Backend = Callable[[Tensor, Tensor, Tensor, "Tensor | None", bool], Tensor]


class _Registry:
    def __init__(self) -> None:
        self.backends: dict[str, Backend] = {}
        self.available: dict[str, Callable[[Tensor], bool]] = {}
        self.warned: set[str] = set()


_REGISTRY = _Registry()


def register_backend(name: str, fn: Backend, available: Callable[[Tensor], bool] | None = None) -> None:
    """Register an attention backend; ``available(q)`` says whether it can run on ``q``'s device."""
    _REGISTRY.backends[name] = fn
    _REGISTRY.available[name] = available or (lambda q: True)


def list_backends() -> list[str]:
    return sorted(_REGISTRY.backends)


def _causal_bool_mask(lq: int, lk: int, device: torch.device) -> Tensor:
    # Query i sees keys j <= i + (lk - lq): the last query is aligned with the last key.
    return torch.ones(lq, lk, dtype=torch.bool, device=device).tril(diagonal=lk - lq)


def _as_bias(mask: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    if mask is None:
        return None
    if mask.dtype == torch.bool:
        bias = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
        return bias.masked_fill(~mask, float("-inf"))
    return mask.to(dtype)


def math_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, causal: bool) -> Tensor:
    """Reference softmax(q kᵀ / √d + bias) v, computed in float32."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    scores = torch.einsum("bhqd,bhkd->bhqk", q.float(), k.float()) * scale
    bias = _as_bias(mask, torch.float32)
    if bias is not None:
        scores = scores + bias
    if causal:
        keep = _causal_bool_mask(q.shape[-2], k.shape[-2], q.device)
        scores = scores.masked_fill(~keep, float("-inf"))
    probs = scores.softmax(dim=-1)
    # Rows with every key masked give NaN from softmax(-inf...): define them as zero output.
    probs = torch.nan_to_num(probs, nan=0.0)
    return torch.einsum("bhqk,bhkd->bhqd", probs, v.float()).to(q.dtype)


def sdpa_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, causal: bool) -> Tensor:
    """PyTorch scaled_dot_product_attention (flash / memory-efficient / math kernels as torch picks)."""
    if causal and mask is not None:
        keep = _causal_bool_mask(q.shape[-2], k.shape[-2], q.device)
        if mask.dtype == torch.bool:
            mask = mask & keep
        else:
            mask = mask.to(q.dtype).masked_fill(~keep, float("-inf"))
        causal = False
    if causal and q.shape[-2] != k.shape[-2]:
        mask, causal = _causal_bool_mask(q.shape[-2], k.shape[-2], q.device), False
    if mask is not None and mask.dtype != torch.bool:
        mask = mask.to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)


def _xformers_available(q: Tensor) -> bool:
    return q.is_cuda and importlib.util.find_spec("xformers") is not None


def xformers_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, causal: bool) -> Tensor:
    """xformers memory-efficient attention (CUDA only); layout [B, L, H, D] on its side."""
    import xformers.ops as xops  # lazy: heavy and GPU-only

    b, h, lq, _ = q.shape
    lk = k.shape[-2]
    bias = _as_bias(mask, q.dtype)
    if causal:
        keep = _causal_bool_mask(lq, lk, q.device)
        causal_bias = torch.zeros(lq, lk, dtype=q.dtype, device=q.device).masked_fill(~keep, float("-inf"))
        bias = causal_bias if bias is None else bias + causal_bias
    if bias is not None:
        # xformers wants a dense [B, H, Lq, Lk] bias whose last dim is 8-aligned in memory.
        pad = (-lk) % 8
        full = torch.zeros(b, h, lq, lk + pad, dtype=q.dtype, device=q.device)
        full[..., :lk] = bias.expand(b, h, lq, lk)
        bias = full[..., :lk]
    out = xops.memory_efficient_attention(
        rearrange(q, "b h l d -> b l h d"),
        rearrange(k, "b h l d -> b l h d"),
        rearrange(v, "b h l d -> b l h d"),
        attn_bias=bias,
    )
    return rearrange(out, "b l h d -> b h l d")


register_backend("math", math_attention)
register_backend("sdpa", sdpa_attention)
register_backend("xformers", xformers_attention, _xformers_available)


def resolve_backend(q: Tensor, backend: str | None = None) -> str:
    """Pick the backend name for ``q``: argument > env var > auto."""
    requested = backend or os.environ.get(ENV_VAR) or None
    if requested is not None and requested != "auto":
        if requested not in _REGISTRY.backends:
            raise ValueError(f"attention backend {requested!r} is unknown; registered: {list_backends()}")
        if not _REGISTRY.available[requested](q):
            where = "argument" if backend else f"{ENV_VAR} env var"
            raise RuntimeError(
                f"attention backend {requested!r} (from the {where}) cannot run on device {q.device}"
                + (" (xformers needs CUDA and the `gpu` extra installed)" if requested == "xformers" else "")
            )
        return requested
    if q.is_cuda:
        if _REGISTRY.available["xformers"](q):
            return "xformers"
        if "xformers" not in _REGISTRY.warned:
            _REGISTRY.warned.add("xformers")
            log.info("vidcore attention: xformers is not installed; using PyTorch SDPA on CUDA")
    return "sdpa"


def attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None = None,
    causal: bool = False,
    backend: str | None = None,
) -> Tensor:
    """softmax(q kᵀ/√d + mask) v over ``[B, heads, L, head_dim]`` tensors (Vaswani et al., 2017, eq. 1).

    ``mask``: bool (True = attend) or additive float bias, broadcastable to ``[B, heads, Lq, Lk]``.
    ``causal``: query i attends to keys j <= i (aligned at the end when Lq != Lk).
    """
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
        raise ValueError(
            f"attention expects [B, heads, L, head_dim] tensors, got q{tuple(q.shape)} "
            f"k{tuple(k.shape)} v{tuple(v.shape)}"
        )
    if q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2] or q.shape[:2] != k.shape[:2]:
        raise ValueError(
            f"attention shapes do not fit: q{tuple(q.shape)} k{tuple(k.shape)} v{tuple(v.shape)} "
            "(need equal batch/heads, equal q/k head_dim and equal k/v length)"
        )
    name = resolve_backend(q, backend)
    return _REGISTRY.backends[name](q, k, v, mask, causal)


# ---- the three patterns over video tokens [B, T, H, W, heads, head_dim] ---------------------------------
# What SpacetimeDiT's self-attention runs ("full" layout: full_attention; "factorized": spatial then
# temporal), so the attention benchmarks time the model's own code path.


def _check_video(q: Tensor, name: str) -> None:
    if q.ndim != 6:
        raise ValueError(f"{name} expects video tokens [B, T, H, W, heads, head_dim], got {tuple(q.shape)}")


def full_attention(
    q: Tensor, k: Tensor, v: Tensor, causal: bool = False, backend: str | None = None
) -> Tensor:
    """Every token attends to every token of the clip: cost O((T·H·W)²).

    ``causal``: block-causal over frames, a token of frame i attends to every token of frames <= i.
    Apply RoPE (or any other position encoding) to ``q``/``k`` before the call.
    """
    _check_video(q, "full_attention")
    b, t, h, w, _, _ = q.shape
    seq = [rearrange(x, "b t h w n d -> b n (t h w) d") for x in (q, k, v)]
    mask = None
    if causal:
        frame = torch.arange(t, device=q.device).repeat_interleave(h * w)
        mask = frame[:, None] >= frame[None, :]  # [L, L] keep-mask, tokens t-major as in `seq`
    out = attention(*seq, mask=mask, backend=backend)
    return rearrange(out, "b n (t h w) d -> b t h w n d", t=t, h=h, w=w)


def spatial_attention(q: Tensor, k: Tensor, v: Tensor, backend: str | None = None) -> Tensor:
    """Tokens attend within their own frame: T independent problems of H·W tokens."""
    _check_video(q, "spatial_attention")
    b, t, h, w, _, _ = q.shape
    seq = [rearrange(x, "b t h w n d -> (b t) n (h w) d") for x in (q, k, v)]
    out = attention(*seq, backend=backend)
    return rearrange(out, "(b t) n (h w) d -> b t h w n d", b=b, h=h, w=w)


def temporal_attention(
    q: Tensor, k: Tensor, v: Tensor, causal: bool = False, backend: str | None = None
) -> Tensor:
    """Each spatial position attends across frames (``causal``: only to its own and earlier frames)."""
    _check_video(q, "temporal_attention")
    b, t, h, w, _, _ = q.shape
    seq = [rearrange(x, "b t h w n d -> (b h w) n t d") for x in (q, k, v)]
    out = attention(*seq, causal=causal, backend=backend)
    return rearrange(out, "(b h w) n t d -> b t h w n d", b=b, h=h, w=w)


def video_self_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    grid: tuple[int, int, int],
    pattern: str,
    causal: bool = False,
    backend: str | None = None,
) -> Tensor:
    """Self-attention of video tokens ``[B, heads, T·H·W, head_dim]`` (t-major) on the token ``grid``
    (T, H, W) in one of the three patterns ("full", "spatial", "temporal"); under sequence parallelism
    ``q/k/v`` hold this rank's share of the tokens and ``grid`` is the whole clip's."""
    if pattern not in ("full", "spatial", "temporal"):
        raise ValueError(f"pattern={pattern!r} must be 'full', 'spatial' or 'temporal'")
    impl = _SEQUENCE_PARALLEL.get()
    if impl is not None:
        return impl.video_attention(q, k, v, grid, pattern, causal, backend)
    t, h, w = grid
    video = [rearrange(z, "b n (t h w) d -> b t h w n d", t=t, h=h, w=w) for z in (q, k, v)]
    if pattern == "full":
        out = full_attention(*video, causal=causal, backend=backend)
    elif pattern == "spatial":
        out = spatial_attention(*video, backend=backend)
    else:
        out = temporal_attention(*video, causal=causal, backend=backend)
    return rearrange(out, "b t h w n d -> b n (t h w) d")


# ---- sequence parallelism hook -----------------------------------------------------------------------


class TokenShard(Protocol):
    """This process's share of a token sequence: ``split`` a full-sequence tensor (or a tuple of them, None
    passes) along ``dim``; ``gather`` the shares of every process back into the full sequence."""

    def split(self, x: object, dim: int) -> object: ...

    def gather(self, x: Tensor, dim: int) -> Tensor: ...


class SequenceParallel(Protocol):
    """What ``vidcore.distributed`` installs while a model runs sequence-parallel."""

    def shard(self, length: int) -> TokenShard: ...

    def attention(
        self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, causal: bool, backend: str | None
    ) -> Tensor: ...

    def video_attention(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        grid: tuple[int, int, int],
        pattern: str,
        causal: bool,
        backend: str | None,
    ) -> Tensor: ...


class _WholeSequence:
    """The one-process shard: the whole sequence (both methods return their input object)."""

    def split(self, x: object, dim: int) -> object:
        return x

    def gather(self, x: Tensor, dim: int) -> Tensor:
        return x


_WHOLE = _WholeSequence()
_SEQUENCE_PARALLEL: ContextVar[SequenceParallel | None] = ContextVar(
    "vidcore_sequence_parallel", default=None
)


@contextmanager
def using_sequence_parallel(impl: SequenceParallel | None) -> Iterator[None]:
    """Run the enclosed model calls with ``impl`` (None: one process); ``vidcore.distributed`` calls this."""
    token = _SEQUENCE_PARALLEL.set(impl)
    try:
        yield
    finally:
        _SEQUENCE_PARALLEL.reset(token)


def sequence_is_sharded() -> bool:
    """Whether model calls run sequence-parallel here (each rank holding a slice of the tokens)."""
    return _SEQUENCE_PARALLEL.get() is not None


def sequence_shard(length: int) -> TokenShard:
    """The share of a ``length``-token sequence this process holds: the whole of it on one process; under
    sequence parallelism the tokens padded to a multiple of the group size, one slice per rank."""
    impl = _SEQUENCE_PARALLEL.get()
    return _WHOLE if impl is None else impl.shard(length)


def sequence_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None = None,
    causal: bool = False,
    backend: str | None = None,
) -> Tensor:
    """Self-attention over the model's token sequence: :func:`attention` on one process; under sequence
    parallelism ``q/k/v`` are this rank's tokens and ``mask`` (broadcastable to ``[B, 1, L, L]``) is over
    the whole sequence."""
    impl = _SEQUENCE_PARALLEL.get()
    if impl is None:
        return attention(q, k, v, mask=mask, causal=causal, backend=backend)
    return impl.attention(q, k, v, mask, causal, backend)
