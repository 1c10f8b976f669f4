"""UniPC multistep predictor-corrector sampler for flow matching (Zhao et al. 2023, arXiv:2302.04867).

Written in the paper's data-prediction form on the flow path x_s = (1 - s) x0 + s eps, i.e. alpha = 1 - s
and sigma = s, with the half log-SNR lambda = log(alpha / sigma) as the time variable. From sigma_s to
sigma_t, h = lambda_t - lambda_s and m_k are the x0 predictions (x0 = x - s v) at earlier sigmas s_k:

    x_t = (sigma_t / sigma_s) x_s - alpha_t (e^{-h} - 1) m_0 - alpha_t sum_k w_k (m_k - m_0) / r_k

with r_k = (lambda_k - lambda_s) / h. The predictor UniP-p uses the p - 1 earlier points; the corrector
UniC-p re-does the step once the model has been called at its end, adding that prediction as the point
r = 1 (so correcting costs no model call). The weights w_k = B(h) a_k solve the Vandermonde system
sum_k a_k r_k^(i-1) = g_i(-h) / B(h), g_i(x) = i! phi_i(x) - 1 (the paper's noise-prediction system with
h -> -h for data prediction), except that UniP-2 and UniC-1 take a_1 = 1/2; only there does B(h) matter:
"bh1" B(h) = -h, "bh2" B(h) = e^{-h} - 1. The equivalent implementations are diffusers
src/diffusers/schedulers/scheduling_unipc_multistep.py (``use_flow_sigmas=True``) and Wan-Video/Wan2.1
wan/utils/fm_solvers_unipc.py; like both, the order warms up (step i uses at most i + 1 points) and drops
at the end (``lower_order_final``: the last step is first order, landing on the x0 prediction at sigma 0).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from .flow import Denoiser, x0_from_velocity
from .loop import Callback, call_denoiser, report, step_range
from .schedules import check_sigmas

UNIPC_VARIANTS = ("bh1", "bh2")
UNIPC_ORDERS = (1, 2, 3)


def half_log_snr(sigma: float) -> float:
    """lambda = log(alpha / sigma) = log((1 - s) / s) on the flow path: -inf at s = 1, +inf at s = 0."""
    if sigma >= 1:
        return -math.inf
    if sigma <= 0:
        return math.inf
    return math.log1p(-sigma) - math.log(sigma)


def phi(x: float, k: int) -> float:
    """phi_k(x) = sum_j x^j / (j + k)!, i.e. phi_0 = e^x, phi_{k+1}(x) = (phi_k(x) - 1/k!) / x (the
    exponential integrator functions, Hochbruck & Ostermann 2010); a series near 0, where the recursion
    cancels."""
    if k == 0:
        return math.exp(x)
    if abs(x) < 1:
        return sum(x**j / math.factorial(j + k) for j in range(30))
    value = math.expm1(x) / x  # phi_1; expm1(-inf) / -inf = 0, the limit of an infinite step
    for i in range(1, k):
        value = (value - 1 / math.factorial(i)) / x
    return value


def unipc_b(x: float, variant: str) -> float:
    """B(h) at x = -h (data prediction): "bh1" B = x, "bh2" B = e^x - 1 (Zhao et al. 2023's two choices)."""
    if variant == "bh1":
        return x
    if variant == "bh2":
        return math.expm1(x)
    raise ValueError(f"variant={variant!r} must be one of {list(UNIPC_VARIANTS)}")


def unipc_weights(rs: list[float], x: float, variant: str, half: bool) -> list[float]:
    """Weights w_k = B(h) a_k of the correction terms at nodes ``rs`` for x = -h: the solution of
    sum_k w_k r_k^i = g_{i+1}(x) (i = 0 .. len(rs) - 1), or w = B(h) / 2 for the single node of UniP-2 /
    UniC-1 (``half``)."""
    if not rs:
        return []
    if half:
        w = unipc_b(x, variant) / 2
        if not math.isfinite(w):
            raise ValueError(
                f"variant={variant!r}: B(h) = -h is infinite for a step from sigma = 1; use 'bh2' or a "
                "schedule that starts below 1 (e.g. wan_flow_sigmas)"
            )
        return [w]
    n = len(rs)
    g = [math.factorial(i) * phi(x, i) - 1 for i in range(1, n + 1)]
    vandermonde = torch.tensor([[r**i for r in rs] for i in range(n)], dtype=torch.float64)
    return torch.linalg.solve(vandermonde, torch.tensor(g, dtype=torch.float64)).tolist()


def unipc_update(
    x: Tensor,
    m0: Tensor,
    sigma: float,
    sigma_next: float,
    history: list[tuple[float, Tensor]],
    variant: str = "bh2",
    new: Tensor | None = None,
) -> Tensor:
    """One UniP step (``new`` None) or UniC step (``new`` = the x0 prediction at ``sigma_next``) from
    ``sigma`` to ``sigma_next`` for the state ``x`` whose x0 prediction is ``m0``. ``history`` holds the
    (sigma_k, x0 prediction) pairs of the earlier steps, most recent first: order p = len(history) + 1.

    A point at sigma = 1 sits at lambda = -inf and drops out (its term vanishes in the limit r -> -inf).
    """
    a_s, a_t = 1 - sigma, 1 - sigma_next
    # (sigma_t / sigma_s) x - alpha_t (e^{-h} - 1) m0, written to stay finite at sigma_s = 1 and sigma_t = 0
    out = (sigma_next / sigma) * x + (a_t - a_s * sigma_next / sigma) * m0
    order = len(history) + 1
    if new is None and order == 1:
        return out
    lam = half_log_snr(sigma)
    h = half_log_snr(sigma_next) - lam
    if history and not math.isfinite(h):
        raise ValueError(
            f"a multistep update from sigma={sigma} to sigma={sigma_next} has an infinite log-SNR step; "
            "steps from sigma = 1 or to sigma = 0 must be first order"
        )
    rs, diffs = [], []
    for sigma_k, m_k in history:
        r = (half_log_snr(sigma_k) - lam) / h
        if math.isfinite(r):
            rs.append(r)
            diffs.append((m_k - m0) / r)
    if new is not None:
        rs.append(1.0)
        diffs.append(new - m0)
    half = order == 2 if new is None else order == 1
    for w, d in zip(unipc_weights(rs, -h, variant, half), diffs, strict=True):
        out = out - (a_t * w) * d
    return out


@torch.no_grad()
def sample_unipc(
    model: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    extra_args: dict[str, Any] | None = None,
    callback: Callback | None = None,
    disable: bool | None = None,
    generator: torch.Generator | None = None,
    order: int = 2,
    variant: str = "bh2",
) -> Tensor:
    """UniPC multistep sampler (Zhao et al. 2023) in data prediction: UniP-``order`` steps, each corrected
    by UniC with the model call made at its end; one model call per step. Deterministic (``generator`` is
    ignored). ``sigmas`` must decrease strictly; with ``variant="bh1"`` they must start below 1.

    The callback's ``x`` is the predicted state: its correction is made at the next step, with the model
    call there (the step to the last sigma is never corrected). ``denoised`` is the x0 prediction at sigma.
    """
    if isinstance(order, bool) or not isinstance(order, int) or order not in UNIPC_ORDERS:
        raise ValueError(f"order={order!r} must be one of {list(UNIPC_ORDERS)}")
    if variant not in UNIPC_VARIANTS:
        raise ValueError(f"variant={variant!r} must be one of {list(UNIPC_VARIANTS)}")
    sig = check_sigmas(sigmas)
    if any(b >= a for a, b in zip(sig, sig[1:], strict=False)):
        raise ValueError(f"UniPC needs strictly decreasing sigmas (no repeated value), got {sig}")
    total = len(sig) - 1
    if variant == "bh1" and sig[0] >= 1 and total > 1:
        raise ValueError(
            "variant='bh1' has B(h) = -h, infinite for the step from sigma = 1; use variant='bh2' or a "
            "schedule that starts below 1 (e.g. wan_flow_sigmas)"
        )
    extra_args = {} if extra_args is None else extra_args
    points: list[tuple[float, Tensor]] = []  # (sigma, x0 prediction), most recent first
    x_prev, prev_order = x, 0
    for i in step_range(total, disable, "unipc"):
        s, s_next = sig[i], sig[i + 1]
        v = call_denoiser(model, x, s, i, extra_args).to(x.dtype)
        denoised = x0_from_velocity(x, s, v)
        if i > 0:
            # UniC-p for the step sig[i-1] -> sig[i] just taken with UniP-p, using the call made here.
            x = unipc_update(x_prev, points[0][1], sig[i - 1], s, points[1:prev_order], variant, denoised)
        points.insert(0, (s, denoised))
        del points[order:]
        # Warm up at the start, lower the order at the end (diffusers' lower_order_final).
        step_order = min(order, i + 1, total - i)
        x_prev, prev_order = x, step_order
        x = unipc_update(x, denoised, s, s_next, points[1:step_order], variant)
        report(callback, i=i, x=x, sigma=s, sigma_next=s_next, denoised=denoised, total=total)
    return x
