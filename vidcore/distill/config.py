"""The configuration of one distillation run and the student's timestep lists."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import ConfigMixin, check_choice, check_positive, check_positive_int, resolve_shipped_config
from ..sampling.schedules import RCM_MID_T, RCM_SIGMA_MAX, check_sigma_list, rcm_times, trig_to_rf

METHODS = ("trajectory", "scm", "dmd")
JVP_MODES = ("fd", "exact")
TEACHER_SOLVERS = ("euler", "heun")


def default_student_timesteps(method: str, steps: int) -> tuple[float, ...]:
    """RF times (noise = 1) the student is trained at and sampled from, first (noisiest) to last.

    ``trajectory`` and ``dmd``: the uniform grid 1 - k/N (progressive-distillation style, Salimans & Ho
    2022; a DMD run can start from a trajectory student of the same list).
    ``scm``: rCM's list for N <= 4 ([atan(80), 1.5, 1.4, 1.0][:N] in TrigFlow), else N uniform TrigFlow
    times from atan(80) down (exclusive of 0).
    """
    check_choice("method", method, METHODS)
    check_positive_int("student_steps", steps)
    if method in ("trajectory", "dmd"):
        return tuple(round(1.0 - k / steps, 6) for k in range(steps))
    if steps <= len(RCM_MID_T) + 1:
        return tuple(round(t, 6) for t in rcm_times(steps))
    top = math.atan(RCM_SIGMA_MAX)
    return tuple(round(trig_to_rf(top * (1 - k / steps)), 6) for k in range(steps))


@dataclass(frozen=True)
class DistillConfig(ConfigMixin):
    """One step + guidance distillation run (the student runs without CFG; ``teacher_guidance`` is baked in).

    Training-loop fields (``out_dir``, ``steps``, ``lr``, ``ema_decay``, ...) mean what they mean in
    :class:`vidcore.train.trainer.TrainConfig`; the data fields pick the same procedural shape videos.
    """

    out_dir: str
    method: str = "trajectory"
    student_steps: int = 4
    student_timesteps: tuple[float, ...] = ()  # empty: default_student_timesteps(method, student_steps)
    teacher_steps: int = 20
    teacher_solver: str = "euler"  # the teacher ODE integrator for trajectory targets
    # None: the teacher's own default CFG scale (pipeline.json): re-distilling follows a retrained teacher.
    teacher_guidance: float | None = None
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup_steps: int = 50
    grad_clip: float = 1.0
    batch: int = 8
    steps: int = 2000
    ema_decay: float = 0.999
    seed: int = 0
    threads: int = 2
    log_every: int = 10
    ckpt_every: int = 200
    init_from: str = ""  # student weights to start from instead of the teacher's (e.g. a trajectory run)
    # sCM (Lu & Song 2024, Alg. 1): tangent by finite differences ("fd") or an exact forward-mode JVP.
    jvp: str = "fd"
    fd_step: float = 1e-3  # TrigFlow step h of the central difference
    tangent_warmup: int = 500  # steps over which r goes linearly 0 -> 1 (0 = r = 1 from the start)
    tangent_norm_c: float = 0.1  # g <- g / (||g|| + c)
    loss_scale: float = 100.0  # rCM's loss_scale
    # Noise-level lists for other step counts that the exported model declares beside its own (e.g. a 2-step
    # list chosen on training-style captions after a 4-step run); their inner levels must be student times.
    extra_step_sigmas: tuple[tuple[float, ...], ...] = ()
    # DMD (method "dmd"): the fake score's learning rate and its updates per student update (DMD2's two
    # time-scale rule); its noise levels are uniform in [time_min, time_max].
    fake_lr: float = 1e-4
    fake_updates: int = 2
    # sCM time proposal: log(tan s) ~ N(p_mean, p_std) (sigma_data = 1), clamped to RF t in [t_min, t_max].
    time_p_mean: float = -0.8
    time_p_std: float = 1.6
    time_min: float = 0.02
    time_max: float = 0.9999
    # Data: procedural shape videos as `vidcore train dit` (clip size, the latent cache size).
    num_frames: int = 17
    height: int = 64
    width: int = 64
    latent_cache: int = 1024

    def __post_init__(self) -> None:
        check_choice("DistillConfig.method", self.method, METHODS)
        check_choice("DistillConfig.jvp", self.jvp, JVP_MODES)
        check_choice("DistillConfig.teacher_solver", self.teacher_solver, TEACHER_SOLVERS)
        if not self.out_dir:
            raise ValueError("DistillConfig.out_dir must name the run folder")
        for name in (
            "student_steps",
            "teacher_steps",
            "batch",
            "steps",
            "threads",
            "log_every",
            "ckpt_every",
            "num_frames",
            "height",
            "width",
            "latent_cache",
        ):
            check_positive_int(f"DistillConfig.{name}", getattr(self, name))
        for name in ("lr", "fd_step", "tangent_norm_c", "loss_scale", "time_p_std", "fake_lr"):
            check_positive(f"DistillConfig.{name}", getattr(self, name))
        for name in ("warmup_steps", "tangent_warmup", "seed", "fake_updates"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"DistillConfig.{name}={value!r} must be an integer >= 0")
        g = self.teacher_guidance
        if g is not None and (isinstance(g, bool) or not (math.isfinite(g) and g >= 1.0)):
            raise ValueError(
                f"DistillConfig.teacher_guidance={g!r} must be >= 1 (1 = no guidance) or None (the teacher's "
                "default)"
            )
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"DistillConfig.ema_decay={self.ema_decay!r} must be in [0, 1)")
        if not self.fd_step < 0.1:
            raise ValueError(f"DistillConfig.fd_step={self.fd_step!r} must be < 0.1 (a TrigFlow time step)")
        if not 0.0 < self.time_min < self.time_max < 1.0:
            raise ValueError(
                f"DistillConfig.time_min={self.time_min!r} and time_max={self.time_max!r} must satisfy "
                "0 < time_min < time_max < 1"
            )
        ts = self.student_timesteps
        if ts:
            if len(ts) != self.student_steps:
                raise ValueError(
                    f"DistillConfig.student_timesteps={list(ts)} has {len(ts)} entries, "
                    f"student_steps={self.student_steps}"
                )
            if any(not 0.0 < t <= 1.0 for t in ts) or any(
                a <= b for a, b in zip(ts[:-1], ts[1:], strict=True)
            ):
                raise ValueError(
                    f"DistillConfig.student_timesteps={list(ts)} must decrease strictly within (0, 1] "
                    "(RF time, 1 = noise; the final step to 0 is implied)"
                )

        lists = tuple(
            check_sigma_list(v, "DistillConfig.extra_step_sigmas entry") for v in self.extra_step_sigmas
        )
        object.__setattr__(self, "extra_step_sigmas", lists)
        own = {round(t, 9) for t in self.timesteps}
        for levels in lists:
            foreign = [v for v in levels[:-1] if round(v, 9) not in own]
            if foreign or len(levels) - 1 == self.student_steps:
                raise ValueError(
                    f"DistillConfig.extra_step_sigmas entry {list(levels)} must use the student's own times "
                    f"{list(self.timesteps)} (then 0) for another step count than student_steps="
                    f"{self.student_steps}" + (f"; {foreign} are not among them" if foreign else "")
                )

    @property
    def timesteps(self) -> tuple[float, ...]:
        """The student's RF times: ``student_timesteps`` or the method's default list."""
        return self.student_timesteps or default_student_timesteps(self.method, self.student_steps)


CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def load_distill_config(path_or_name: str | Path, overrides: dict[str, Any] | None = None) -> DistillConfig:
    """DistillConfig from a JSON file or shipped config name, ``overrides`` on top; unknown keys raise."""
    from ..train.trainer import config_from_data, read_config_object

    path = resolve_shipped_config(path_or_name, CONFIG_DIR, "distillation config")
    data = read_config_object(path, "distillation config")
    data.update(overrides or {})
    return config_from_data(DistillConfig, data, path)
