"""Step + guidance distillation: closed-form Gaussian property test, tiny DiT / LTX / Wan runs, resume."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from vidcore.distill import (
    DistillBatch,
    DistillConfig,
    GuidedTeacher,
    SCMDistillation,
    TrajectoryDistillation,
    default_student_timesteps,
    load_distill_config,
    rf_to_trig,
    teacher_grid,
    teacher_trajectory,
    trig_to_rf,
    trigflow_dF_ds,
    trigflow_F,
    velocity_fn,
)
from vidcore.distill.loop import weights_digest

torch.set_num_threads(1)
sys.path.insert(0, str(Path(__file__).parent))

GUIDANCE = 7.0


# ---- closed-form problem -----------------------------------------------------------------------------------
# Data x0 ~ N(mu_c, diag S_c) for class c (conditional) and N(mu_u, diag S_u) (unconditional). On the RF
# path x_t = (1-t) x0 + t eps each velocity is affine in x:
#   E[eps|x] = t/D (x - (1-t) m),  E[x0|x] = m + (1-t) S/D (x - (1-t) m),  D = (1-t)² S + t²
#   v = E[eps|x] - E[x0|x] = alpha (x - (1-t) m) - m,  alpha = (t - (1-t) S) / D,
# so the guided field is dx/dt = A(t) x + B(t) and its exact map to t = 0 is Phi(x, t) = a(t) x + b(t) with
#   a(t) = exp(-∫_0^t A),  b(t) = -∫_0^t exp(-∫_0^u A) B(u) du   (48-node Gauss-Legendre, nested; float64).

DIM = 6
NODES, WEIGHTS = (torch.from_numpy(a) for a in np.polynomial.legendre.leggauss(48))


def gauss_velocity(x, t, m, s2):
    t = t.reshape(-1, *([1] * (x.ndim - 1))) if torch.is_tensor(t) else t
    d = (1 - t) ** 2 * s2 + t**2
    alpha = (t - (1 - t) * s2) / d
    return alpha * (x - (1 - t) * m) - m


class Gaussians:
    def __init__(self, n: int, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.mu_c = 1.5 * torch.randn(2, DIM, generator=g, dtype=torch.float64)
        self.s2_c = 0.05 + 0.3 * torch.rand(2, DIM, generator=g, dtype=torch.float64)
        self.mu_u = self.mu_c.mean(0, keepdim=True)
        self.s2_u = self.s2_c.mean(0, keepdim=True) + self.mu_c.var(0, keepdim=True)
        self.cls = torch.arange(n) % 2
        self.m, self.s2 = self.mu_c[self.cls], self.s2_c[self.cls]
        self.x0 = self.m + self.s2.sqrt() * torch.randn(n, DIM, generator=g, dtype=torch.float64)
        self.noise = torch.randn(n, DIM, generator=g, dtype=torch.float64)

    def teacher(self) -> GuidedTeacher:
        return GuidedTeacher(
            lambda x, t: gauss_velocity(x, t, self.m, self.s2),
            lambda x, t: gauss_velocity(x, t, self.mu_u, self.s2_u),
            GUIDANCE,
        )

    def AB(self, u):  # u [B, K] -> A, B [B, K, DIM] of the guided field
        u = u[..., None]
        m_c, s_c, m_u, s_u = self.m[:, None], self.s2[:, None], self.mu_u[:, None], self.s2_u[:, None]

        def alpha_beta(m, s2):
            a = (u - (1 - u) * s2) / ((1 - u) ** 2 * s2 + u**2)
            return a, -a * (1 - u) * m - m

        ac, bc = alpha_beta(m_c, s_c)
        au, bu = alpha_beta(m_u, s_u)
        return au + GUIDANCE * (ac - au), bu + GUIDANCE * (bc - bu)

    def int_A(self, t):  # ∫_0^t A, t [B, K] -> [B, K, DIM]
        u = t[..., None] / 2 * (1 + NODES)  # [B, K, 48]
        a, _ = self.AB(u.flatten(1))
        a = a.reshape(*u.shape, DIM)
        return t[..., None] / 2 * (WEIGHTS[:, None] * a).sum(-2)

    def exact_map(self, x, t):
        """Phi(x, t): the guided teacher ODE from (x, t) to t = 0 (differentiable in x and t)."""
        a = torch.exp(-self.int_A(t[:, None]))[:, 0]
        u = t[:, None] / 2 * (1 + NODES)  # [B, 48]
        _, bu = self.AB(u)
        inner = torch.exp(-self.int_A(u)) * bu  # [B, 48, DIM]
        b = -t[:, None] / 2 * (WEIGHTS[:, None] * inner).sum(1)
        return a * x + b

    def student(self, scale: float = 1.0):
        """The exact map as an x0-prediction turned into a velocity ``scale·(x - Phi(x, t)) / t``.

        The perturbation scales the velocity, not the x0 map: sCM's tangent vanishes for any function of
        the ODE's invariants (``c·Phi`` too), and only the RF wrapper's boundary ``x0 -> x`` at t -> 0 (finite
        velocity) pins the map, so ``1.05·Phi`` would read as exact (measured: g_rms 1.9e-7, exact JVP).
        """

        def v(x, t):
            return scale * (x - self.exact_map(x, t)) / t[:, None]

        return v


def test_gaussian_exact_map_solves_the_guided_ode():
    """The quadrature map agrees with a fine Heun solve of the guided teacher ODE (checks the fixture; the
    solve's own error, O(h²) plus the float32 CFG combine, is ~3e-6 relative at 400 steps)."""
    prob = Gaussians(8)
    keep = (1.0, 0.5)
    states, x0 = teacher_trajectory(prob.teacher(), prob.noise, teacher_grid(400, keep), keep, "heun")
    for k, t in enumerate(keep):
        phi = prob.exact_map(states[k], torch.full((8,), t, dtype=torch.float64))
        assert ((phi - x0).norm() / x0.norm()).item() < 1e-5


def test_trajectory_loss_is_zero_for_the_exact_map_and_not_for_a_perturbed_one():
    prob = Gaussians(64)
    method = TrajectoryDistillation((1.0, 0.75, 0.5, 0.25), teacher_steps=200, solver="heun")
    batch = DistillBatch(prob.x0, prob.noise, torch.Generator().manual_seed(0))
    scale = prob.x0.square().mean().item()
    exact, _ = method.loss(prob.student(), prob.teacher(), batch, 0)
    batch = DistillBatch(prob.x0, prob.noise, torch.Generator().manual_seed(0))
    perturbed, _ = method.loss(prob.student(1.05), prob.teacher(), batch, 0)
    rel_exact, rel_perturbed = exact.item() / scale, perturbed.item() / scale
    print(f"trajectory relative loss: exact {rel_exact:.3g}, perturbed (+5%) {rel_perturbed:.3g}")
    assert rel_exact < 1e-6
    assert rel_perturbed > 1e-3
    assert rel_perturbed > 1e4 * rel_exact


@pytest.mark.parametrize("jvp, bound", [("exact", 1e-6), ("fd", 1e-5)])
def test_scm_tangent_vanishes_for_the_exact_map(jvp, bound):
    """g = 0 along the guided ODE for the exact map: exact JVP to float32-teacher rounding, the central
    difference (h = 1e-3) to O(h²); a 5 %-perturbed student gives an O(0.1..1) tangent."""
    prob = Gaussians(64)
    method = SCMDistillation(jvp=jvp, fd_step=1e-3, tangent_warmup=0)
    out = {}
    for name, scale in (("exact", 1.0), ("perturbed", 1.05)):
        batch = DistillBatch(prob.x0, prob.noise, torch.Generator().manual_seed(1))
        loss, parts = method.loss(prob.student(scale), prob.teacher(), batch, 0)
        out[name] = (parts["g_rms"], loss.item())
    print(
        f"sCM {jvp}: g_rms exact {out['exact'][0]:.3g} perturbed {out['perturbed'][0]:.3g}; "
        f"loss exact {out['exact'][1]:.3g} perturbed {out['perturbed'][1]:.3g}"
    )
    g_scale = prob.x0.square().mean().sqrt().item()
    assert out["exact"][0] / g_scale < bound
    assert out["perturbed"][0] / g_scale > 1e-2
    assert out["perturbed"][1] > 1e4 * out["exact"][1]


def test_trigflow_wrapper_and_time_conversions():
    prob = Gaussians(8)
    s = torch.full((8,), 0.7, dtype=torch.float64)
    x = torch.cos(s)[:, None] * prob.x0 + torch.sin(s)[:, None] * prob.noise
    oracle = lambda x_rf, t: prob.noise - prob.x0  # noqa: E731  the true velocity of this pair
    expect = torch.cos(s)[:, None] * prob.noise - torch.sin(s)[:, None] * prob.x0
    torch.testing.assert_close(trigflow_F(oracle, x, s), expect)
    for t in (0.0, 0.25, 0.5, 0.9877, 1.0):
        assert trig_to_rf(rf_to_trig(t)) == pytest.approx(t, abs=1e-12)
    assert default_student_timesteps("scm", 2) == (0.987654, 0.933781)
    assert default_student_timesteps("trajectory", 2) == (1.0, 0.5)


# ---- tiny networks -----------------------------------------------------------------------------------------


def tiny_dit():
    from vidcore.models.dit import DiTConfig, SpacetimeDiT

    from ._node_fixtures import _randomize

    dit = SpacetimeDiT(
        DiTConfig(in_channels=4, out_channels=4, width=16, depth=1, heads=2, text_dim=8, patch_s=1)
    )
    return _randomize(dit, 1), (4, 2, 4, 4), 8


def tiny_ltx():
    import _ltx_fixtures as fx

    from vidcore.models.ltx.config import LTXTransformerConfig
    from vidcore.models.ltx.transformer import LTXVideoTransformer

    ref = fx.tiny_transformer(seed=3)
    model = LTXVideoTransformer(LTXTransformerConfig.from_diffusers(dict(ref.config)))
    model.load_state_dict(ref.state_dict())
    return model, (8, 2, 4, 4), 16


def tiny_wan():
    import _wan_fixtures as fx

    from vidcore.models.wan.config import WanTransformerConfig
    from vidcore.models.wan.transformer import WanTransformer

    ref = fx.tiny_transformer("t2v")
    model = WanTransformer(WanTransformerConfig.from_diffusers(dict(ref.config)))
    model.load_state_dict(ref.state_dict())
    return model, (4, 2, 4, 4), 16


FAMILIES = {"dit": tiny_dit, "ltx": tiny_ltx, "wan": tiny_wan}


def fixed_problem(family: str, batch: int = 2):
    import copy

    teacher, shape, text_dim = FAMILIES[family]()
    teacher.eval().requires_grad_(False)
    student = copy.deepcopy(teacher).train().requires_grad_(True)
    g = torch.Generator().manual_seed(5)
    ctx = torch.randn(batch, 6, text_dim, generator=g)
    mask = torch.ones(batch, 6, dtype=torch.bool)
    mask[:, 4:] = False
    x0 = torch.randn(batch, *shape, generator=g)
    noise = torch.randn(batch, *shape, generator=g)
    pooled = torch.randn(batch, text_dim, generator=g)
    guided = GuidedTeacher(
        velocity_fn(teacher, ctx, mask, pooled),
        velocity_fn(teacher, torch.zeros_like(ctx), mask, torch.zeros_like(pooled)),
        3.0,
    )
    return student, guided, (ctx, mask, pooled), x0, noise


def train_fixed(method, family: str, steps: int, lr: float) -> list[float]:
    torch.manual_seed(0)
    student, teacher, cond, x0, noise = fixed_problem(family)
    opt = torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=0.0)
    losses = []
    for step in range(steps):
        batch = DistillBatch(x0, noise, torch.Generator().manual_seed(11))  # same times every step
        loss, parts = method.loss(velocity_fn(student, *cond), teacher, batch, step)
        opt.zero_grad()
        loss.backward()
        opt.step()
        # sCM's loss value is loss_scale·mean(g/(‖g‖+c))², ~constant while ‖g‖ >> c; its residual is g.
        losses.append(parts.get("g_rms", parts["loss"]))
    return losses


# sCM runs inside its tangent warm-up (r = step / 10^6 ~ 0): on a random tiny teacher the full (r = 1)
# residual does not shrink within 30 steps on 2 fixed points (measured, lr 3e-5..1e-3: g_rms 5.1 -> 5.2..12
# on Wan, 8.1 -> 8.6..27 on LTX); it is a bootstrapped (TD-like) target anchored only at s -> 0.
METHODS = {
    "trajectory": (TrajectoryDistillation((1.0, 0.5), teacher_steps=4), 1e-3),
    "scm_fd": (SCMDistillation(jvp="fd", tangent_warmup=10**6, loss_scale=1.0), 1e-4),
    "scm_exact": (SCMDistillation(jvp="exact", tangent_warmup=10**6, loss_scale=1.0), 1e-4),
}


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("name", list(METHODS))
def test_loss_goes_down_on_a_fixed_batch(family, name):
    """Trajectory: the MSE; sCM: the RMS of the raw tangent g (the residual its loss drives to 0)."""
    if name == "scm_exact" and family == "ltx":
        pytest.skip("one exact-JVP family besides the DiT keeps the suite fast; Wan covers diffusers-style")
    method, lr = METHODS[name]
    losses = train_fixed(method, family, 30, lr)
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    print(f"{family} {name}: first-5 mean {first:.4g}, last-5 mean {last:.4g}")
    assert all(math.isfinite(v) for v in losses)
    assert last < first


# ---- DMD ---------------------------------------------------------------------------------------------------


def gaussian_velocity(mean: torch.Tensor | float):
    """Exact RF velocity of 1-D data N(mean, 1): E[x0|x_t] = mean + (1-t)/((1-t)² + t²)·(x_t - (1-t)·mean)."""

    def v(x, t):
        tt = t.reshape(-1, *([1] * (x.ndim - 1)))
        x0 = mean + (1 - tt) / ((1 - tt) ** 2 + tt**2) * (x - (1 - tt) * mean)
        return (x - x0) / tt

    return v


class _Mean(torch.nn.Module):
    def __init__(self, value: float) -> None:
        super().__init__()
        self.mean = torch.nn.Parameter(torch.tensor(value))


def test_dmd_moves_the_student_distribution_onto_the_teachers():
    """Closed form: teacher = the exact score of N(2, 1); the one-step student maps noise eps to eps + θ
    (its samples are N(θ, 1)); the fake score is the exact score of N(φ, 1) with φ learnt by flow matching on
    the student's samples. DMD must carry θ (and φ after it) from 0 to 2; with φ = 2 from the start and no
    fake updates the gradient is exactly 0."""
    from vidcore.distill import DMDDistillation

    teacher = GuidedTeacher(gaussian_velocity(2.0), gaussian_velocity(2.0), 1.0)

    def bind(net):
        return gaussian_velocity(net.mean)

    def run(theta0: float, phi0: float, steps: int, updates: int) -> tuple[_Mean, _Mean, list[float]]:
        student, fake = _Mean(theta0), _Mean(phi0)
        dmd = DMDDistillation(fake, (1.0,), lr=0.05, updates=updates, weight_decay=0.0)
        opt = torch.optim.Adam(student.parameters(), lr=0.05)
        grads = []
        for step in range(steps):
            gen = torch.Generator().manual_seed(step)
            noise = torch.randn(256, 1, generator=gen)
            batch = DistillBatch(torch.zeros_like(noise), noise, gen, bind)
            loss, parts = dmd.loss(lambda x, t: -student.mean / t.reshape(-1, 1), teacher, batch, step)
            opt.zero_grad()
            loss.backward()
            grads.append(float(student.mean.grad))
            opt.step()
        return student, fake, grads

    student, fake, _ = run(0.0, 0.0, 300, 2)
    assert abs(float(student.mean.detach()) - 2.0) < 0.15, float(student.mean.detach())
    assert abs(float(fake.mean.detach()) - float(student.mean.detach())) < 0.3, (
        float(fake.mean.detach()),
        float(student.mean.detach()),
    )
    _, _, grads = run(2.0, 2.0, 3, 0)  # at the optimum, with the fake score exact: no gradient
    assert max(abs(g) for g in grads) < 1e-6
    _, _, grads = run(0.0, 0.0, 1, 0)  # fake = the student's own distribution, below the data: pushed up
    assert grads[0] < -1e-3


@pytest.mark.parametrize("family", list(FAMILIES))
def test_dmd_updates_student_and_fake_score_on_every_family(family):
    """DMD is model-agnostic: on the tiny DiT / LTX / Wan transformers a few steps run, the loss stays finite
    and both the student and the fake score (a copy of the network) change."""
    import copy

    from vidcore.distill import DMDDistillation

    torch.manual_seed(0)
    student, teacher, cond, x0, noise = fixed_problem(family)
    fake = copy.deepcopy(student)
    before_s = {k: v.clone() for k, v in student.state_dict().items()}
    before_f = {k: v.clone() for k, v in fake.state_dict().items()}
    dmd = DMDDistillation(fake, (1.0, 0.5), lr=1e-3, updates=1)
    opt = torch.optim.AdamW(student.parameters(), lr=1e-3)
    for step in range(2):
        gen = torch.Generator().manual_seed(step)
        batch = DistillBatch(x0, noise, gen, lambda net: velocity_fn(net, *cond))
        loss, parts = dmd.loss(velocity_fn(student, *cond), teacher, batch, step)
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert math.isfinite(parts["loss"]) and math.isfinite(parts["fake_loss"]) and parts["dm_rms"] > 0
    moved = lambda a, b: any(not torch.equal(a[k], b[k]) for k in a)  # noqa: E731
    assert moved(before_s, student.state_dict()) and moved(before_f, fake.state_dict())
    with pytest.raises(ValueError, match="DMD needs DistillBatch.bind"):
        dmd.loss(velocity_fn(student, *cond), teacher, DistillBatch(x0, noise, gen), 0)


def test_exact_jvp_matches_finite_differences_on_the_tiny_dit():
    student, teacher, cond, x0, noise = fixed_problem("dit")
    s = torch.tensor([0.4, 1.1])
    x = torch.cos(s)[:, None, None, None, None] * x0 + torch.sin(s)[:, None, None, None, None] * noise
    f_t = trigflow_F(teacher, x, s)
    fn = velocity_fn(student, *cond)
    exact = trigflow_dF_ds(fn, x, s, f_t, "exact")
    err = {
        h: ((exact - trigflow_dF_ds(fn, x, s, f_t, "fd", h)).norm() / exact.norm()).item()
        for h in (1e-3, 1e-4)
    }
    # Measured: 3.1e-2 at h = 1e-3, 5.7e-4 at h = 1e-4 (O(h²); this random DiT's F is very curved).
    assert err[1e-4] < 5e-3
    assert err[1e-4] < err[1e-3] / 20


# ---- the loop: resume, outputs -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_pipe(tmp_path_factory):
    from vidcore.pipelines import load_pipeline

    from ._node_fixtures import make_models_root

    root = make_models_root(tmp_path_factory.mktemp("models"))
    return load_pipeline(str(root / "vidcore" / "tiny"))


def loop_config(out: Path, steps: int, method: str) -> DistillConfig:
    return DistillConfig(
        out_dir=str(out),
        method=method,
        student_steps=2,
        teacher_steps=4,
        teacher_guidance=3.0,
        lr=1e-3,
        warmup_steps=2,
        batch=2,
        steps=steps,
        ema_decay=0.9,
        threads=1,
        log_every=2,
        ckpt_every=2,
        num_frames=5,
        height=16,
        width=16,
        latent_cache=4,
        tangent_warmup=3,
    )


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def test_teacher_guidance_none_takes_the_teachers_default(tiny_pipe, tmp_path):
    from vidcore.distill import distill

    cfg = dataclasses.replace(loop_config(tmp_path / "run", 1, "trajectory"), teacher_guidance=None)
    messages: list[str] = []
    distill(tiny_pipe, cfg, log=messages.append)
    default = tiny_pipe.default_options().guidance
    assert f"teacher guidance: {default:g} (the teacher's default)" in messages
    summary = json.loads((tmp_path / "run" / "distill.json").read_text())
    assert summary["teacher_guidance"] == default == summary["config"]["teacher_guidance"]
    for bad in (0.5, float("nan"), True):
        with pytest.raises(ValueError, match="teacher_guidance=.* must be >= 1 .* or None"):
            dataclasses.replace(cfg, teacher_guidance=bad)
    # A teacher whose default CFG steps down at low noise: one scale cannot stand for it, so None is refused
    # (naming both scales and the boundary) before anything is written.
    stepped = copy.copy(tiny_pipe)
    stepped.config = dataclasses.replace(tiny_pipe.config, guidance_2=2.0, guidance_boundary=0.9)
    other = dataclasses.replace(cfg, out_dir=str(tmp_path / "stepped"))
    g = f"{tiny_pipe.config.guidance:g}"
    with pytest.raises(
        ValueError, match=rf"steps from {g} to 2 below noise level 0.9; .* set teacher_guidance"
    ):
        distill(stepped, other, log=messages.append)
    assert not (tmp_path / "stepped").exists()


def test_a_run_folder_refuses_to_resume_with_another_teacher(tiny_pipe, tmp_path):
    import copy

    from vidcore.distill import distill

    distill(tiny_pipe, loop_config(tmp_path / "run", 2, "trajectory"), log=lambda m: None)
    other = copy.deepcopy(tiny_pipe)
    with torch.no_grad():
        next(other.dit.parameters()).add_(0.01)
    config_before = (tmp_path / "run" / "config.json").read_text()
    with pytest.raises(ValueError, match="holds a distillation of another teacher .* fresh out_dir"):
        distill(other, loop_config(tmp_path / "run", 4, "trajectory"), log=lambda m: None)
    assert (tmp_path / "run" / "config.json").read_text() == config_before  # the refused run wrote nothing
    # the same teacher resumes (and a finished run re-exports) as before
    distill(tiny_pipe, loop_config(tmp_path / "run", 2, "trajectory"), log=lambda m: None)


@pytest.mark.parametrize("method", ["trajectory", "scm", "dmd"])
def test_distill_resume_equals_one_run(tiny_pipe, tmp_path, method):
    from vidcore.distill import distill

    one = distill(tiny_pipe, loop_config(tmp_path / "one", 6, method), log=lambda m: None)
    distill(tiny_pipe, loop_config(tmp_path / "two", 3, method), log=lambda m: None)
    two = distill(tiny_pipe, loop_config(tmp_path / "two", 6, method), log=lambda m: None)
    a, b = _tensors(one), _tensors(two)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    summary = json.loads((tmp_path / "one" / "distill.json").read_text())
    assert summary["method"] == method and summary["train_steps"] == 6
    assert summary["student_timesteps"] == list(default_student_timesteps(method, 2))
    assert len(summary["losses"]) == 6
    with safe_open(str(one), framework="pt") as f:
        meta = json.loads(f.metadata()["distill"])
    assert meta["student_steps"] == 2
    assert meta["teacher_digest"] == summary["teacher_digest"] == weights_digest(tiny_pipe.dit)


# ---- config ------------------------------------------------------------------------------------------------


def test_config_round_trip_and_file(tmp_path):
    cfg = DistillConfig(out_dir="run", method="scm", student_steps=2, student_timesteps=(0.98, 0.5))
    assert DistillConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"out_dir": "run", "method": "scm"}))
    assert load_distill_config(path, {"student_steps": 1}).timesteps == default_student_timesteps("scm", 1)


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"method": "gan"}, "method='gan'"),
        ({"fake_updates": -1}, "fake_updates=-1"),
        ({"fake_lr": 0}, "fake_lr=0"),
        ({"jvp": "autograd"}, "jvp='autograd'"),
        ({"student_steps": 0}, "student_steps=0"),
        ({"teacher_guidance": 0.5}, "teacher_guidance=0.5"),
        ({"fd_step": 0.0}, "fd_step=0.0"),
        ({"ema_decay": 1.0}, "ema_decay=1.0"),
        ({"time_min": 0.5, "time_max": 0.4}, "time_min=0.5"),
        ({"student_steps": 2, "student_timesteps": (0.5, 0.9)}, "must decrease"),
        ({"student_steps": 2, "student_timesteps": (1.0,)}, "has 1 entries"),
        ({"student_steps": 1, "student_timesteps": (1.2,)}, "within (0, 1]"),
        ({"tangent_warmup": -1}, "tangent_warmup=-1"),
        ({"out_dir": ""}, "out_dir"),
        ({"extra_step_sigmas": [[1.0, 0.6, 0.0]]}, "[1.0, 0.6, 0.0] must use the student's own times"),
        ({"extra_step_sigmas": [[1.0, 0.75, 0.5, 0.25, 0.0]]}, "for another step count than student_steps=4"),
        ({"extra_step_sigmas": [[1.0, 0.75]]}, "extra_step_sigmas entry=[1.0, 0.75] must end in 0"),
    ],
)
def test_bad_config_values_are_clear_errors(changes, words):
    with pytest.raises(ValueError) as err:
        DistillConfig(**{"out_dir": "run", **changes})
    assert words in str(err.value)


def test_unknown_config_keys_are_refused(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"out_dir": "run", "guidance": 7}))
    with pytest.raises(ValueError, match="unknown DistillConfig keys \\['guidance'\\]"):
        load_distill_config(path)


def test_cli_arguments_parse():
    import argparse

    from vidcore.distill.cli import add_distill_arguments

    args = add_distill_arguments(argparse.ArgumentParser()).parse_args(
        ["--config", "c.json", "--steps", "4", "--method", "scm"]
    )
    assert (args.teacher, args.steps, args.method) == ("tiny", 4, "scm")


def test_vidcore_distill_command_writes_a_student(tmp_path, capsys):
    """`vidcore distill` end to end on the tiny test model: a student checkpoint and its summary."""
    from vidcore.cli import main

    from ._node_fixtures import make_models_root

    teacher = make_models_root(tmp_path / "models") / "vidcore" / "tiny"
    config = tmp_path / "distill.json"
    config.write_text(json.dumps(loop_config(tmp_path / "run", 2, "trajectory").to_dict()))
    assert main(["distill", "--teacher", str(teacher), "--config", str(config), "--train-steps", "2"]) == 0
    student = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert student == tmp_path / "run" / "student.safetensors" and student.is_file()
    assert json.loads((tmp_path / "run" / "distill.json").read_text())["train_steps"] == 2


def test_vidcore_distill_export_writes_a_model_folder_that_runs(tmp_path, capsys, caplog):
    """`--export DIR`: a model folder with the student's steps / noise levels, CFG 1, half-precision weights
    loaded as float32, the teacher's VAE byte for byte, and a model card; generate() runs on it."""
    from vidcore.cli import main
    from vidcore.pipelines import load_pipeline

    from ._node_fixtures import make_models_root

    teacher = make_models_root(tmp_path / "models") / "vidcore" / "tiny"
    config = tmp_path / "distill.json"
    config.write_text(json.dumps(loop_config(tmp_path / "run", 2, "trajectory").to_dict()))
    dest = tmp_path / "exported" / "tiny-student"
    argv = ["distill", "--teacher", str(teacher), "--config", str(config), "--export", str(dest)]
    assert main(argv) == 0
    assert Path(capsys.readouterr().out.strip().splitlines()[-1]) == dest
    assert sorted(p.name for p in dest.iterdir()) == [
        "MODEL_CARD.md",
        "dit.safetensors",
        "pipeline.json",
        "vae.safetensors",
    ]
    assert (dest / "vae.safetensors").read_bytes() == (teacher / "vae.safetensors").read_bytes()
    assert {v.dtype for v in _tensors(dest / "dit.safetensors").values()} == {torch.float16}
    student = _tensors(tmp_path / "run" / "student.safetensors")
    stored = _tensors(dest / "dit.safetensors")
    for k, v in student.items():
        torch.testing.assert_close(stored[k].float(), v, rtol=1e-3, atol=1e-4)
    card = (dest / "MODEL_CARD.md").read_text()
    assert f"vidcore distill --teacher {teacher} --config {config} --export {dest}" in card
    assert '"teacher_guidance": 3.0' in card

    pipe = load_pipeline(str(dest))
    assert next(pipe.dit.parameters()).dtype == torch.float32
    opts = pipe.default_options()
    times = list(default_student_timesteps("trajectory", 2))
    assert (opts.steps, opts.guidance, opts.sampler) == (2, 1.0, "renoise")
    assert list(opts.sigmas) == [*times, 0.0]
    frames = pipe.generate("a red circle moving right", seed=0, num_frames=5, height=16, width=16)
    assert frames.shape[0] == 5 and torch.isfinite(frames).all()
    caplog.clear()
    pipe.generate("a red circle", seed=0, num_frames=5, height=16, width=16, guidance=3.0)
    assert "guidance-distilled" in caplog.text

    # An existing export folder is refused before any training, naming the flag and the folder.
    assert main([*argv[:-2], "--train-steps", "4", "--export", str(dest)]) != 0
    assert f"--export {str(dest)!r} already exists" in capsys.readouterr().err
    assert json.loads((tmp_path / "run" / "distill.json").read_text())["train_steps"] == 2


def test_shipped_distill_config_is_found_by_name():
    cfg = load_distill_config("tiny_turbo")
    # teacher_guidance None: the teacher's own default CFG (tiny v1: 7, v2: 3)
    assert (cfg.method, cfg.student_steps, cfg.teacher_guidance) == ("trajectory", 4, None)
    # The DMD stage of the shipped recipe starts from the trajectory stage's student.
    dmd = load_distill_config("tiny_turbo_dmd")
    assert (dmd.method, dmd.timesteps, dmd.teacher_guidance) == ("dmd", cfg.timesteps, None)
    assert dmd.init_from == f"{cfg.out_dir}/student.safetensors"
    with pytest.raises(FileNotFoundError, match="shipped configs: \\[.*'tiny_turbo'"):
        load_distill_config("no_such_recipe")


def test_a_teacher_that_is_not_a_vidcore_flow_model_is_refused(tmp_path):
    from vidcore.distill import distill

    class NotAVideoPipeline:
        vae = text_encoder = None

    with pytest.raises(TypeError, match="must be a flow-matching vidcore model.*got NotAVideoPipeline"):
        distill(NotAVideoPipeline(), loop_config(tmp_path / "run", 1, "trajectory"), log=lambda m: None)
    assert not (tmp_path / "run").exists()


def test_student_config_drops_the_teachers_stepped_guidance():
    """CFG is distilled in: a teacher default that steps its scale down at low noise leaves no CFG behind."""
    from vidcore.distill.export import student_pipeline_config
    from vidcore.pipelines.builtin import PipelineConfig

    teacher = PipelineConfig(guidance=4.0, guidance_2=2.0, guidance_boundary=0.9)
    summary = {"student_timesteps": [1.0, 0.5], "config": {}}
    got = student_pipeline_config(teacher, summary, "student")
    assert (got.guidance, got.guidance_2, got.guidance_boundary) == (1.0, None, None)
    assert (got.steps, got.step_sigmas, got.sampler) == (2, ((1.0, 0.5, 0.0),), "renoise")
    # Lists for other step counts (extra_step_sigmas) are declared after the student's own.
    summary["config"] = {"extra_step_sigmas": [[1.0, 0.0]]}
    got = student_pipeline_config(teacher, summary, "student")
    assert (got.steps, got.step_sigmas) == (2, ((1.0, 0.5, 0.0), (1.0, 0.0)))


def test_the_card_of_a_dmd_student_says_what_its_loss_means():
    from vidcore.distill.export import _card

    cfg = DistillConfig(out_dir="run", method="dmd", init_from="stage1/student.safetensors").to_dict()
    summary = {
        "config": cfg,
        "student_steps": 4,
        "student_timesteps": [1, 0.75, 0.5, 0.25],
        "teacher": "tiny",
    }
    card = _card(
        "s", {**summary, "method": "dmd", "teacher_guidance": 3.0, "train_steps": 5}, "cmd", "float16"
    )
    assert "- method: dmd (distribution matching: real score = the teacher at CFG 3, fake score" in card
    assert "started from stage1/student.safetensors; the loss value is not a progress measure" in card
