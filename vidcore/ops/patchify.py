"""3D patchify / unpatchify: latents ``[B, C, T, H, W]`` <-> tokens ``[B, T', H', W', C·p_t·p_s²]``."""

from __future__ import annotations

from einops import rearrange
from torch import Tensor


def check_patchable(shape: tuple[int, ...], p_t: int, p_s: int) -> None:
    """Raise ValueError unless T, H and W of ``[B, C, T, H, W]`` divide by the patch size."""
    if len(shape) != 5:
        raise ValueError(f"expected latents [B, C, T, H, W], got shape {tuple(shape)}")
    _, _, t, h, w = shape
    for name, size, p in (("T", t, p_t), ("H", h, p_s), ("W", w, p_s)):
        if size % p:
            raise ValueError(f"latent {name}={size} must be divisible by the patch size {p}")


def patchify(x: Tensor, p_t: int, p_s: int) -> Tensor:
    check_patchable(tuple(x.shape), p_t, p_s)
    return rearrange(x, "b c (t pt) (h ph) (w pw) -> b t h w (c pt ph pw)", pt=p_t, ph=p_s, pw=p_s)


def unpatchify(tokens: Tensor, p_t: int, p_s: int) -> Tensor:
    """Inverse of :func:`patchify`: ``[B, T', H', W', C·p_t·p_s²] -> [B, C, T'·p_t, H'·p_s, W'·p_s]``."""
    return rearrange(tokens, "b t h w (c pt ph pw) -> b c (t pt) (h ph) (w pw)", pt=p_t, ph=p_s, pw=p_s)
