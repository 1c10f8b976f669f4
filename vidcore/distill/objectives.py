"""Step + guidance distillation objectives over velocity callables (any family: DiT, LTX, Wan).

A *velocity* here is ``fn(x [B, ...], t [B]) -> v`` on the rectified-flow path ``x_t = (1-t) x0 + t eps``,
``v = eps - x0`` (vidcore/sampling/flow.py), with its text conditioning already bound. The teacher is a
:class:`GuidedTeacher` (conditional + unconditional velocity, CFG scale); the student has no CFG, so the
guidance is distilled in.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops.attention import ENV_VAR
from ..sampling.flow import expand_sigma
from ..sampling.guidance import cfg_combine
from .config import DistillConfig

Velocity = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class GuidedTeacher:
    """The teacher's guided velocity ``v_u + g (v_c - v_u)`` (``g = 1``: the conditional one alone)."""

    cond: Velocity
    uncond: Velocity
    guidance: float

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        c = self.cond(x, t)
        if self.guidance == 1.0:
            return c
        return cfg_combine(c, self.uncond(x, t), self.guidance).to(c.dtype)


@dataclass(frozen=True)
class DistillBatch:
    """One step's inputs: data latents ``x0`` (sCM noises them), noise ``eps`` of the same shape (the
    trajectory method starts the teacher ODE from it), the step's generator (time draws) and ``bind``,
    which gives a network's velocity under this batch's text conditioning (DMD's fake score; None when
    the method needs no network of its own)."""

    x0: Tensor
    noise: Tensor
    generator: torch.Generator
    bind: Callable[[nn.Module], Velocity] | None = None


class DistillMethod(Protocol):
    """A distillation objective: ``loss(student, teacher, batch, step) -> (scalar loss, logged numbers)``."""

    name: str

    def loss(
        self, student: Velocity, teacher: GuidedTeacher, batch: DistillBatch, step: int
    ) -> tuple[Tensor, dict[str, float]]: ...


def _times(t: Tensor | float, like: Tensor) -> Tensor:
    """``t`` as a [B] tensor of ``like``'s dtype."""
    t = torch.as_tensor(t, dtype=like.dtype, device=like.device)
    return t.expand(like.shape[0]) if t.ndim == 0 else t


# ---- trajectory distillation ------------------------------------------------------------------------------


def teacher_grid(teacher_steps: int, keep: tuple[float, ...]) -> list[float]:
    """The teacher's uniform RF grid ``1 - k/N`` (k = 0..N) merged with the student's times ``keep``,
    decreasing from 1 to 0, so the trajectory passes through every student time exactly."""
    grid = {round(1.0 - k / teacher_steps, 9) for k in range(teacher_steps + 1)}
    grid |= {round(float(t), 9) for t in keep}
    return sorted(grid, reverse=True)


@torch.no_grad()
def teacher_trajectory(
    teacher: Velocity, noise: Tensor, grid: list[float], keep: tuple[float, ...], solver: str = "euler"
) -> tuple[Tensor, Tensor]:
    """Integrate the teacher ODE ``dx/dt = v(x, t)`` from ``x_1 = noise`` down ``grid`` (to 0).

    Returns the states at the times ``keep`` stacked ``[K, B, ...]`` and the endpoint x0 ``[B, ...]``.
    ``euler`` is the teacher's own sampler (Euler steps); ``heun`` is Heun's 2nd-order method (Karras et
    al. 2022, Algorithm 1 without churn), for targets closer to the exact ODE map.
    """
    if grid[0] != 1.0 or grid[-1] != 0.0:
        raise ValueError(f"teacher grid must run from 1 to 0, got {grid[0]} .. {grid[-1]}")
    wanted = {round(float(t), 9): i for i, t in enumerate(keep)}
    states: list[Tensor | None] = [None] * len(keep)
    x = noise
    for t_cur, t_next in zip(grid[:-1], grid[1:], strict=True):
        if t_cur in wanted:
            states[wanted[t_cur]] = x
        v = teacher(x, _times(t_cur, x))
        dt = t_next - t_cur
        if solver == "heun":
            x_pred = x + dt * v
            x = x + dt * 0.5 * (v + teacher(x_pred, _times(t_next, x)))
        else:
            x = x + dt * v
    missing = [t for t, i in wanted.items() if states[i] is None]
    if missing:
        raise ValueError(f"student times {missing} are not on the teacher grid (need 0 < t <= 1)")
    return torch.stack(states), x  # type: ignore[arg-type]


def trajectory_loss(student: Velocity, x_t: Tensor, t: Tensor, x0_teacher: Tensor) -> Tensor:
    """``mean ‖x_t - t·v_θ(x_t, t) - x0_T‖²``: the student's one-step x0 from a teacher-trajectory state
    regresses the guided teacher ODE's endpoint (the consistency-function target of CausVid's ODE init)."""
    x0_hat = x_t - expand_sigma(t, x_t) * student(x_t, t)
    return F.mse_loss(x0_hat, x0_teacher)


@dataclass(frozen=True)
class TrajectoryDistillation:
    """Forward-only distillation on the guided teacher's ODE (forward passes only, no JVP).

    For noise eps the teacher (CFG ``teacher_guidance``) integrates ``dx/dt = v_T`` from ``x_1 = eps`` over
    ``teacher_grid`` to ``x0_T``; each sample then draws one student time ``t_k`` and the loss is
    ``‖x_{t_k}^T - t_k·v_θ(x_{t_k}^T, t_k) - x0_T‖²`` (mean over elements): the student maps any state of
    the teacher trajectory at its own times straight to the teacher's final x0, which is what the
    re-noising few-step sampler uses (predict x0, re-noise to the next time). ``batch.x0`` is unused.
    """

    timesteps: tuple[float, ...]
    teacher_steps: int
    solver: str = "euler"
    name: str = "trajectory"

    def loss(
        self, student: Velocity, teacher: GuidedTeacher, batch: DistillBatch, step: int
    ) -> tuple[Tensor, dict[str, float]]:
        grid = teacher_grid(self.teacher_steps, self.timesteps)
        states, x0_t = teacher_trajectory(teacher, batch.noise, grid, self.timesteps, self.solver)
        b = batch.noise.shape[0]
        k = torch.randint(len(self.timesteps), (b,), generator=batch.generator)
        x_t = states[k, torch.arange(b)]
        t = torch.tensor(self.timesteps, dtype=batch.noise.dtype)[k].to(batch.noise.device)
        loss = trajectory_loss(student, x_t, t, x0_t)
        return loss, {"loss": loss.item()}


# ---- sCM / rCM consistency objective (TrigFlow time) ----------------------------------------------------


def trigflow_F(velocity: Velocity, x: Tensor, s: Tensor) -> Tensor:
    """TrigFlow output ``F(x, s)`` of an RF velocity model, ``x = cos s·x0 + sin s·eps`` (sigma_data = 1).

    The RF input is ``x / (cos s + sin s)`` at RF time ``t = sin s / (cos s + sin s)`` (the rectified-flow
    wrapper of Zheng et al. 2025, rCM §3); with ``x0 = x_rf - t·v``, ``F = (cos s·x - x0) / sin s``, which
    is ``cos s·eps - sin s·x0`` for an exact model (Lu & Song 2024, Eq. 6).
    """
    cs, sn = torch.cos(s), torch.sin(s)
    c = cs + sn
    t = sn / c
    x_rf = x / expand_sigma(c, x)
    x0 = x_rf - expand_sigma(t, x) * velocity(x_rf, t)
    return (expand_sigma(cs, x) * x - x0) / expand_sigma(sn, x)


@contextlib.contextmanager
def math_attention() -> Iterator[None]:
    """Run vidcore attention with the ``math`` backend (and torch SDPA on its MATH kernel): forward-mode
    AD is not implemented for the CPU flash SDPA kernel (pytorch#128971)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    old = os.environ.get(ENV_VAR)
    os.environ[ENV_VAR] = "math"
    try:
        with sdpa_kernel(SDPBackend.MATH):
            yield
    finally:
        if old is None:
            os.environ.pop(ENV_VAR, None)
        else:
            os.environ[ENV_VAR] = old


@torch.no_grad()
def trigflow_dF_ds(
    student: Velocity, x: Tensor, s: Tensor, f_teacher: Tensor, jvp: str = "fd", fd_step: float = 1e-3
) -> Tensor:
    """Total derivative of the student's F along the teacher's PF-ODE ``dx/ds = F_T``:
    ``dF/ds = ∂_x F·F_T + ∂_s F``. ``exact``: one ``torch.func.jvp`` with tangents ``(F_T, 1)`` under
    :func:`math_attention`; ``fd``: central difference ``[F(x + hF_T, s + h) - F(x - hF_T, s - h)] / 2h``
    (O(h²) error, two forwards)."""
    if jvp == "exact":
        with math_attention():
            _, tangent = torch.func.jvp(
                lambda x_, s_: trigflow_F(student, x_, s_), (x, s), (f_teacher, torch.ones_like(s))
            )
        return tangent
    h = fd_step
    hs = torch.full_like(s, h)
    plus = trigflow_F(student, x + h * f_teacher, s + hs)
    minus = trigflow_F(student, x - h * f_teacher, s - hs)
    return (plus - minus) / (2 * h)


def scm_tangent(
    f_student: Tensor, f_teacher: Tensor, df_ds: Tensor, x: Tensor, s: Tensor, r: float = 1.0
) -> Tensor:
    """sCM's tangent (Lu & Song 2024, Algorithm 1, sigma_data = 1) with warm-up factor ``r``:
    ``g = -cos²s·(F⁻ - F_T) - r·cos s·sin s·(x + dF⁻/ds)``.

    At ``r = 1`` this is ``cos s·d f/ds`` for the consistency function ``f = cos s·x - sin s·F⁻`` along the
    teacher ODE, so ``g = 0`` exactly when the student is the teacher's ODE map (f constant on a path).
    """
    cs, sn = expand_sigma(torch.cos(s), x), expand_sigma(torch.sin(s), x)
    return -(cs**2) * (f_student - f_teacher) - r * cs * sn * (x + df_ds)


def normalize_tangent(g: Tensor, c: float) -> Tensor:
    """Tangent normalisation ``g / (‖g‖₂ + c)`` per sample (Lu & Song 2024, §4.2)."""
    norm = g.flatten(1).norm(dim=1)
    return g / expand_sigma(norm + c, g)


def sample_trig_times(
    n: int, generator: torch.Generator, p_mean: float, p_std: float, t_min: float, t_max: float
) -> Tensor:
    """sCM's time proposal: ``tan s = exp(N(p_mean, p_std²))`` (sigma_data = 1), clamped so the RF time
    ``t = tan s / (1 + tan s)`` lies in ``[t_min, t_max]``; returns s [n] (float32)."""
    sigma = torch.exp(p_mean + p_std * torch.randn(n, generator=generator))
    t = (sigma / (1 + sigma)).clamp(t_min, t_max)
    return torch.atan2(t, 1 - t)


@dataclass(frozen=True)
class SCMDistillation:
    """Continuous-time consistency distillation (sCM, Lu & Song 2024 arXiv 2410.11081; the rCM setting of
    Zheng et al. 2025 arXiv 2510.08431 without its DMD term) in TrigFlow time with the RF wrapper.

    ``x = cos s·x0 + sin s·eps`` with s from :func:`sample_trig_times`; ``F_T`` the guided teacher (CFG),
    ``F⁻`` the stop-grad student, ``dF⁻/ds`` by :func:`trigflow_dF_ds`; ``g`` = :func:`scm_tangent` with
    ``r = min(1, step / tangent_warmup)``, normalised by :func:`normalize_tangent`; the loss is
    ``loss_scale · mean (F_θ - F⁻ - g)²``, whose gradient is ``-2·loss_scale·g·∂F_θ/∂θ / numel``
    (its value is ``loss_scale·mean g²``).
    """

    jvp: str = "fd"
    fd_step: float = 1e-3
    tangent_warmup: int = 0
    tangent_norm_c: float = 0.1
    loss_scale: float = 100.0
    p_mean: float = -0.8
    p_std: float = 1.6
    t_min: float = 0.02
    t_max: float = 0.9999
    name: str = "scm"

    def warmup(self, step: int) -> float:
        return 1.0 if self.tangent_warmup == 0 else min(1.0, step / self.tangent_warmup)

    def loss(
        self, student: Velocity, teacher: GuidedTeacher, batch: DistillBatch, step: int
    ) -> tuple[Tensor, dict[str, float]]:
        x0, eps = batch.x0, batch.noise
        s = sample_trig_times(x0.shape[0], batch.generator, self.p_mean, self.p_std, self.t_min, self.t_max)
        # Keep s ± h inside (0, pi/2) for the central difference.
        s = s.clamp(2 * self.fd_step, math.pi / 2 - 2 * self.fd_step).to(x0.device, x0.dtype)
        x = expand_sigma(torch.cos(s), x0) * x0 + expand_sigma(torch.sin(s), x0) * eps
        with torch.no_grad():
            f_teacher = trigflow_F(teacher, x, s)
        f_student = trigflow_F(student, x, s)
        f_minus = f_student.detach()
        df_ds = trigflow_dF_ds(student, x, s, f_teacher, self.jvp, self.fd_step)
        g = scm_tangent(f_minus, f_teacher, df_ds, x, s, self.warmup(step))
        g_rms = g.square().mean().sqrt().item()
        g = normalize_tangent(g, self.tangent_norm_c)
        loss = self.loss_scale * (f_student - f_minus - g).square().mean()
        return loss, {"loss": loss.item(), "g_rms": g_rms, "r": self.warmup(step)}


# ---- distribution matching (DMD2) ------------------------------------------------------------------------


def _uniform_times(n: int, generator: torch.Generator, t_min: float, t_max: float, like: Tensor) -> Tensor:
    t = t_min + (t_max - t_min) * torch.rand(n, generator=generator)
    return t.to(like.device, like.dtype)


def _noised(x0: Tensor, t: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """``(x_t, eps)`` on the RF path ``x_t = (1-t) x0 + t eps``."""
    eps = torch.randn(x0.shape, generator=generator).to(x0.device, x0.dtype)
    tt = expand_sigma(t, x0)
    return (1 - tt) * x0 + tt * eps, eps


class DMDDistillation:
    """Distribution matching distillation (DMD2: Yin et al. 2024, arXiv 2405.14867, without its GAN term
    and, as there, without a regression loss): the student's samples are pushed along the difference of
    two x0 predictions at a random noise level, the *fake* score's (a copy of the teacher trained online on
    the student's samples, with ``fake_updates`` updates per student update: DMD2's two time-scale rule)
    and the guided teacher's (the *real* score, CFG baked in). Minimises the reverse KL between the
    student's sample distribution and the teacher's, so it seeks the teacher's modes rather than the mean
    of its trajectories (trajectory regression) - the case of shapes that blur towards circles.

    Student samples come from the student's own re-noising chain (DMD2's backward simulation): from pure
    noise, ``k`` steps of predict-x0 / re-noise to the next time without gradients (``k`` uniform over the
    student's times, one per batch), then the x0 prediction at time ``t_k`` with gradients. The per-sample
    normaliser ``w = 1 / mean|x0_gen - x0_real|`` is DMD's; the loss
    ``0.5·mean(x0_gen - sg(x0_gen - w·(x0_fake - x0_real)))²`` has that direction as its gradient (its
    value, 0.5·mean(w·Δ)², is not a progress measure).
    """

    name = "dmd"

    def __init__(
        self,
        fake: nn.Module,
        timesteps: tuple[float, ...],
        lr: float = 1e-4,
        updates: int = 2,
        t_min: float = 0.02,
        t_max: float = 0.98,
        weight_decay: float = 0.01,
    ) -> None:
        if not isinstance(fake, nn.Module):
            raise TypeError(f"the fake score must be a torch module, got {type(fake).__name__}")
        if isinstance(updates, bool) or not isinstance(updates, int) or updates < 0:
            raise ValueError(f"fake_updates={updates!r} must be an integer >= 0")
        self.fake = fake.train()
        self.timesteps = tuple(float(t) for t in timesteps)
        self.updates, self.t_min, self.t_max = updates, t_min, t_max
        self.opt = torch.optim.AdamW(fake.parameters(), lr=lr, weight_decay=weight_decay)

    def sample(self, student: Velocity, noise: Tensor, generator: torch.Generator) -> Tensor:
        """The student's x0 with gradients, after a random number of its own steps without them."""
        ts = self.timesteps
        k = int(torch.randint(len(ts), (1,), generator=generator))
        x = noise
        with torch.no_grad():
            for i in range(k):
                x0 = x - ts[i] * student(x, _times(ts[i], x))
                x, _ = _noised(x0, _times(ts[i + 1], x), generator)
        return x - ts[k] * student(x, _times(ts[k], x))

    def fake_loss(self, fake: Velocity, x0: Tensor, generator: torch.Generator) -> Tensor:
        """Flow matching of the fake score on (detached) student samples ``x0``."""
        t = _uniform_times(x0.shape[0], generator, self.t_min, self.t_max, x0)
        x_t, eps = _noised(x0, t, generator)
        return F.mse_loss(fake(x_t, t), eps - x0)

    def loss(
        self, student: Velocity, teacher: GuidedTeacher, batch: DistillBatch, step: int
    ) -> tuple[Tensor, dict[str, float]]:
        if batch.bind is None:
            raise ValueError("DMD needs DistillBatch.bind (the fake score's text conditioning)")
        gen = batch.generator
        fake = batch.bind(self.fake)
        x0_gen = self.sample(student, batch.noise, gen)
        samples = x0_gen.detach()
        fake_losses = []
        for _ in range(self.updates):  # the fake score follows the student's current distribution
            f_loss = self.fake_loss(fake, samples, gen)
            self.opt.zero_grad(set_to_none=True)
            f_loss.backward()
            torch.nn.utils.clip_grad_norm_(self.fake.parameters(), 1.0)
            self.opt.step()
            fake_losses.append(f_loss.item())
        t = _uniform_times(samples.shape[0], gen, self.t_min, self.t_max, samples)
        with torch.no_grad():
            x_t, _ = _noised(samples, t, gen)
            tt = expand_sigma(t, x_t)
            real = x_t - tt * teacher(x_t, t)
            fake_x0 = x_t - tt * fake(x_t, t)
            dims = tuple(range(1, samples.ndim))
            w = 1.0 / (samples - real).abs().mean(dim=dims, keepdim=True).clamp_min(1e-6)
            direction = w * (fake_x0 - real)
            target = samples - direction
        loss = 0.5 * F.mse_loss(x0_gen, target)
        parts = {"loss": loss.item(), "dm_rms": direction.square().mean().sqrt().item()}
        if fake_losses:
            parts["fake_loss"] = sum(fake_losses) / len(fake_losses)
        return loss, parts

    def save(self, path: str | os.PathLike, step: int) -> None:
        """Write the fake score and its optimiser state to ``path`` (a training-state file, no EMA)."""
        from ..train.state import save_training_state

        save_training_state(path, self.fake, None, self.opt, step, {})

    def load(self, path: str | os.PathLike) -> int:
        """Restore what :meth:`save` wrote; returns the step it was written at."""
        from ..train.state import load_training_state

        return load_training_state(path, self.fake, None, self.opt)[0]


def make_method(
    cfg: DistillConfig, teacher: nn.Module | None = None
) -> TrajectoryDistillation | SCMDistillation | DMDDistillation:
    """The objective a :class:`DistillConfig` names (``dmd`` copies ``teacher`` as its fake score)."""
    if cfg.method == "trajectory":
        return TrajectoryDistillation(cfg.timesteps, cfg.teacher_steps, cfg.teacher_solver)
    if cfg.method == "dmd":
        if teacher is None:
            raise ValueError("method 'dmd' needs the teacher network (its fake score starts as a copy)")
        fake = copy.deepcopy(teacher).float().requires_grad_(True)
        return DMDDistillation(
            fake, cfg.timesteps, cfg.fake_lr, cfg.fake_updates, cfg.time_min, cfg.time_max, cfg.weight_decay
        )
    return SCMDistillation(
        jvp=cfg.jvp,
        fd_step=cfg.fd_step,
        tangent_warmup=cfg.tangent_warmup,
        tangent_norm_c=cfg.tangent_norm_c,
        loss_scale=cfg.loss_scale,
        p_mean=cfg.time_p_mean,
        p_std=cfg.time_p_std,
        t_min=cfg.time_min,
        t_max=cfg.time_max,
    )
