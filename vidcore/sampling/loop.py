"""Pieces every sampling loop shares: progress bar, finite check, callback invocation.

Callback and cancellation contract (all vidcore samplers):
- ``callback(info)`` is called once after every step with a dict holding at least
  ``{"i", "x", "sigma", "sigma_next", "denoised", "total"}``: ``i`` is the 0-based step just finished,
  ``x`` the state AFTER the step, ``sigma -> sigma_next`` the step taken, ``denoised`` the x0 estimate
  made at ``sigma`` and ``total`` the number of steps. Samplers may add keys (e.g. "stage").
- To cancel, raise from the callback (e.g. ``InterruptedError``); the exception propagates unchanged
  and sampling stops. There is no separate stop flag.
- ``disable``: ``False`` shows a tqdm bar on stderr; ``None`` (default) or ``True`` shows none.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from .flow import sigma_batch

Callback = Callable[[dict[str, Any]], None]


def step_range(total: int, disable: bool | None, desc: str = "sampling") -> Iterable[int]:
    """range(total), wrapped in a tqdm bar only when disable is False (tqdm imported lazily)."""
    if disable is False:
        from tqdm.auto import trange

        return trange(total, desc=desc)
    return range(total)


def check_finite(out: Tensor, step: int, sigma: float, what: str = "denoiser output") -> None:
    """Raise FloatingPointError naming the step and sigma if ``out`` holds NaN or Inf (one device sync)."""
    if not bool(torch.isfinite(out).all()):
        bad = "NaN" if bool(torch.isnan(out).any()) else "Inf"
        raise FloatingPointError(
            f"{what} contains {bad} at step {step} (sigma={sigma:.6g}); stopping instead of returning "
            "a corrupted sample (check the model dtype, weights and inputs)"
        )


def call_denoiser(
    model: Callable[..., Tensor],
    x: Tensor,
    sigma: float,
    step: int,
    extra_args: dict[str, Any],
    what: str = "denoiser output",
    step_sigma: float | None = None,
) -> Tensor:
    """model(x, sigma as float32 [B], **extra_args), checked for shape and NaN/Inf (errors name the step
    and ``step_sigma``, default ``sigma``)."""
    out = model(x, sigma_batch(sigma, x), **extra_args)
    if not isinstance(out, Tensor) or out.shape != x.shape:
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"{what} is {got} at step {step}; expected a tensor shaped {tuple(x.shape)}")
    check_finite(out, step, sigma if step_sigma is None else step_sigma, what)
    return out


def report(callback: Callback | None, **info: Any) -> None:
    """Call the step callback (if any); exceptions it raises propagate to stop sampling."""
    if callback is not None:
        callback(info)
