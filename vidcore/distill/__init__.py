"""Step + guidance distillation for any family: trajectory distillation, sCM/rCM consistency and DMD2-style
distribution matching."""

from ..sampling.schedules import rf_to_trig, trig_to_rf
from .adapters import velocity_fn
from .config import DistillConfig, default_student_timesteps, load_distill_config
from .loop import distill
from .objectives import (
    DistillBatch,
    DistillMethod,
    DMDDistillation,
    GuidedTeacher,
    SCMDistillation,
    TrajectoryDistillation,
    make_method,
    math_attention,
    normalize_tangent,
    scm_tangent,
    teacher_grid,
    teacher_trajectory,
    trajectory_loss,
    trigflow_dF_ds,
    trigflow_F,
)

__all__ = [
    "DMDDistillation",
    "DistillBatch",
    "DistillConfig",
    "DistillMethod",
    "GuidedTeacher",
    "SCMDistillation",
    "TrajectoryDistillation",
    "default_student_timesteps",
    "distill",
    "load_distill_config",
    "make_method",
    "math_attention",
    "normalize_tangent",
    "rf_to_trig",
    "scm_tangent",
    "teacher_grid",
    "teacher_trajectory",
    "trajectory_loss",
    "trig_to_rf",
    "trigflow_F",
    "trigflow_dF_ds",
    "velocity_fn",
]
