"""Fréchet distance between Gaussian fits of two feature sets (Heusel et al. 2017), in float64.

FD = |mu1 - mu2|^2 + tr S1 + tr S2 - 2 tr (S1 S2)^{1/2}. The trace term is computed with symmetric
eigendecompositions only (S1 S2 is similar to the PSD matrix S1^{1/2} S2 S1^{1/2}), or, from raw
features, as the nuclear norm of the centred cross product, which is exact when N < d.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

FD_METHODS = ("auto", "eigh", "nuclear")


def _check_features(x: Tensor, name: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor [N, D], got {type(x).__name__}")
    if x.ndim != 2:
        raise ValueError(f"{name} must be [N, D] features, got shape {tuple(x.shape)}")
    if x.shape[0] < 2:
        raise ValueError(f"{name} has N={x.shape[0]} samples; the Fréchet distance needs at least 2")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return x.to(torch.float64)


def _check_ddof(ddof: int) -> None:
    if ddof not in (0, 1):
        raise ValueError(f"ddof={ddof!r} must be 0 (divide by N, StyleGAN-V) or 1 (divide by N-1, TF-GAN)")


def feature_statistics(features: Tensor, ddof: int = 1) -> tuple[Tensor, Tensor]:
    """Mean ``[D]`` and covariance ``[D, D]`` in float64; the divisor is ``N - ddof``."""
    _check_ddof(ddof)
    x = _check_features(features, "features")
    mu = x.mean(0)
    xc = x - mu
    return mu, xc.T @ xc / (x.shape[0] - ddof)


def _psd_sqrt(s: Tensor) -> Tensor:
    w, v = torch.linalg.eigh((s + s.T) / 2)
    return (v * w.clamp_min(0).sqrt()) @ v.T


def trace_sqrt_product(sigma1: Tensor, sigma2: Tensor) -> Tensor:
    """``tr (S1 S2)^{1/2}`` via the symmetric form ``sum sqrt(eig(S1^{1/2} S2 S1^{1/2}))``, float64."""
    a = _psd_sqrt(sigma1.to(torch.float64))
    m = a @ sigma2.to(torch.float64) @ a
    return torch.linalg.eigvalsh((m + m.T) / 2).clamp_min(0).sqrt().sum()


def frechet_distance_from_stats(mu1: Tensor, sigma1: Tensor, mu2: Tensor, sigma2: Tensor) -> float:
    """Fréchet distance between N(mu1, S1) and N(mu2, S2), all in float64 (symmetric eigh form)."""
    d = mu1.shape[-1]
    for name, mu, sigma in (("1", mu1, sigma1), ("2", mu2, sigma2)):
        if mu.shape != (d,) or sigma.shape != (d, d):
            raise ValueError(
                f"mu{name} {tuple(mu.shape)} / sigma{name} {tuple(sigma.shape)} must be [{d}] and [{d}, {d}]"
            )
    mu1, mu2 = mu1.to(torch.float64), mu2.to(torch.float64)
    sigma1, sigma2 = sigma1.to(torch.float64), sigma2.to(torch.float64)
    diff = (mu1 - mu2).square().sum()
    fd = diff + torch.trace(sigma1) + torch.trace(sigma2) - 2 * trace_sqrt_product(sigma1, sigma2)
    return float(fd)


def frechet_distance(features_a: Tensor, features_b: Tensor, ddof: int = 1, method: str = "auto") -> float:
    """Fréchet distance between two feature sets ``[N_a, D]`` and ``[N_b, D]`` (float64 throughout).

    ``method="eigh"`` uses the covariance matrices, ``"nuclear"`` the identity
    ``tr (S1 S2)^{1/2} = ||X1c X2c^T||_* / sqrt(c1 c2)`` on centred features (exact, no d x d root);
    ``"auto"`` picks nuclear when either N < D. Warns when N < D: the covariance is then rank-deficient
    and FD is strongly biased by N.
    """
    _check_ddof(ddof)
    if method not in FD_METHODS:
        raise ValueError(f"method={method!r} must be one of {list(FD_METHODS)}")
    xa = _check_features(features_a, "features_a")
    xb = _check_features(features_b, "features_b")
    if xa.shape[1] != xb.shape[1]:
        raise ValueError(
            f"feature dims differ: features_a has D={xa.shape[1]}, features_b has D={xb.shape[1]}"
        )
    n_a, n_b, d = xa.shape[0], xb.shape[0], xa.shape[1]
    if min(n_a, n_b) < d:
        warnings.warn(
            f"Fréchet distance with N_a={n_a}, N_b={n_b} samples of D={d} features: the covariance is "
            f"rank-deficient (N < D), so the value is strongly biased; use at least {d} samples per set",
            stacklevel=2,
        )
    if method == "auto":
        method = "nuclear" if min(n_a, n_b) < d else "eigh"
    if method == "eigh":
        mu_a, s_a = feature_statistics(xa, ddof)
        mu_b, s_b = feature_statistics(xb, ddof)
        return frechet_distance_from_stats(mu_a, s_a, mu_b, s_b)
    ca, cb = xa - xa.mean(0), xb - xb.mean(0)
    div_a, div_b = n_a - ddof, n_b - ddof
    tr_a = ca.square().sum() / div_a
    tr_b = cb.square().sum() / div_b
    cross = torch.linalg.svdvals(ca @ cb.T).sum() / (div_a * div_b) ** 0.5
    diff = (xa.mean(0) - xb.mean(0)).square().sum()
    return float(diff + tr_a + tr_b - 2 * cross)
