"""AdaLN-Zero modulation (Peebles & Xie, 2023, DiT §3.2): shift/scale/gate regressed from the condition."""

from __future__ import annotations

from torch import Tensor, nn


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """``x·(1 + scale) + shift``; per-sample ``shift/scale [B, D]`` broadcast over ``x [B, L, D]``."""
    return x * (1 + scale[:, None]) + shift[:, None]


class AdaLNZero(nn.Module):
    """SiLU -> Linear(cond -> n·dim); zero-initialised, every gate starts at 0 (block = identity)."""

    def __init__(self, cond_dim: int, dim: int, n: int) -> None:
        super().__init__()
        self.n = n
        self.act = nn.SiLU()
        self.linear = nn.Linear(cond_dim, n * dim)

    def zero_init(self) -> None:
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, c: Tensor) -> tuple[Tensor, ...]:
        return self.linear(self.act(c)).chunk(self.n, dim=-1)
