"""Flow-matching conventions, schedules, samplers, CFG and DDPM/DDIM: checked against closed forms."""

import math

import pytest
import torch

from vidcore.sampling import (
    CFGDenoiser,
    add_noise,
    alphas_cumprod,
    ancestral_noise_std,
    as_prediction_denoiser,
    as_velocity_denoiser,
    cfg_combine,
    ddim_timesteps,
    dynamic_shift_mu,
    dynamic_sigmas,
    eps_from_velocity,
    linear_betas,
    linear_sigmas,
    q_sample,
    rescale_guidance,
    sample_ddim,
    sample_euler,
    sample_euler_ancestral,
    sample_heun,
    shifted_sigmas,
    stretch_to_terminal,
    time_shift,
    velocity_from_eps,
    velocity_from_x0,
    velocity_target,
    x0_from_velocity,
)

torch.set_num_threads(1)

MU, STD = 0.7, 0.5  # Gaussian "data set" x0 ~ N(MU, STD^2) element-wise


def _col(sigma: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return sigma.reshape(-1, *([1] * (x.ndim - 1))).double()


def gaussian_velocity(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Exact E[eps - x0 | x_s] for x0 ~ N(MU, STD^2), x_s = (1 - s) x0 + s eps."""
    s, xd = _col(sigma, x), x.double()
    var = (1 - s) ** 2 * STD**2 + s**2
    r = xd - (1 - s) * MU
    mean_x0 = MU + (1 - s) * STD**2 / var * r
    mean_eps = s / var * r
    return (mean_eps - mean_x0).float()


# ---------------------------------------------------------------- flow-matching conventions


def test_flow_path_and_conversions_round_trip():
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(3, 4, 5, generator=g), torch.randn(3, 4, 5, generator=g)
    sigma = torch.tensor([0.2, 0.5, 0.9])
    x = add_noise(x0, eps, sigma)
    torch.testing.assert_close(x[1], 0.5 * x0[1] + 0.5 * eps[1])
    v = velocity_target(x0, eps)
    torch.testing.assert_close(v, eps - x0)
    torch.testing.assert_close(x0_from_velocity(x, sigma, v), x0, atol=1e-6, rtol=0)
    torch.testing.assert_close(eps_from_velocity(x, sigma, v), eps, atol=1e-6, rtol=0)
    torch.testing.assert_close(velocity_from_x0(x, sigma, x0), v, atol=1e-5, rtol=0)
    torch.testing.assert_close(velocity_from_eps(x, sigma, eps), v, atol=1e-5, rtol=0)


def test_prediction_wrappers_agree_with_velocity_model():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 4, generator=g)
    sigma = torch.tensor([0.3, 0.8])
    for kind in ("x0", "epsilon"):
        pred_model = as_prediction_denoiser(gaussian_velocity, kind)
        back = as_velocity_denoiser(pred_model, kind)
        torch.testing.assert_close(back(x, sigma), gaussian_velocity(x, sigma), atol=1e-5, rtol=0)
    x0_pred = as_prediction_denoiser(gaussian_velocity, "x0")(x, sigma)
    torch.testing.assert_close(x0_pred, x - _col(sigma, x).float() * gaussian_velocity(x, sigma))
    with pytest.raises(ValueError, match="prediction='v'"):
        as_velocity_denoiser(gaussian_velocity, "v")


# ---------------------------------------------------------------- schedules


def test_linear_and_shifted_sigmas():
    torch.testing.assert_close(linear_sigmas(4), torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0]))
    # s*sigma/(1+(s-1)*sigma) with s = 3: 0.5 -> 0.75, 0.25 -> 0.5, 0.75 -> 0.9
    torch.testing.assert_close(shifted_sigmas(4, 3.0), torch.tensor([1.0, 0.9, 0.75, 0.5, 0.0]))
    torch.testing.assert_close(shifted_sigmas(7, 1.0), linear_sigmas(7))
    # The exponential shift e^mu / (e^mu + 1/sigma - 1) is time_shift with shift = e^mu.
    sig = torch.tensor([0.1, 0.4, 0.9], dtype=torch.float64)
    mu = 1.3
    torch.testing.assert_close(time_shift(sig, math.exp(mu)), math.exp(mu) / (math.exp(mu) + (1 / sig - 1)))
    with pytest.raises(ValueError, match="n=0"):
        linear_sigmas(0)
    with pytest.raises(ValueError, match="shift=-1"):
        shifted_sigmas(4, -1.0)


@pytest.mark.parametrize(
    ("seq", "mu", "table"),
    [
        (7392, 3.2302, [1.0, 0.985, 0.9664, 0.9429, 0.9119, 0.8696, 0.808, 0.7103, 0.5317, 0.1, 0.0]),
        (5280, 2.474, [1.0, 0.9806, 0.957, 0.9273, 0.889, 0.8378, 0.7659, 0.6571, 0.474, 0.1, 0.0]),
    ],
)
def test_ltx_dynamic_schedule_tables(seq, mu, table):
    assert dynamic_shift_mu(seq) == pytest.approx(mu, abs=1e-4)
    sigmas = dynamic_sigmas(10, seq)
    assert sigmas.dtype == torch.float32 and sigmas.shape == (11,)
    torch.testing.assert_close(sigmas, torch.tensor(table), atol=1e-4, rtol=0)


def test_mu_is_linear_through_the_anchor_points_and_terminal_stretch():
    assert dynamic_shift_mu(1024) == pytest.approx(0.95)
    assert dynamic_shift_mu(4096) == pytest.approx(2.05)
    assert dynamic_shift_mu(8192) == pytest.approx(0.95 + 1.1 / 3072 * 7168)  # not clamped
    sig = torch.tensor([1.0, 0.8, 0.6, 0.4])
    out = stretch_to_terminal(sig, 0.1)
    # 1 - sigma is scaled by (1 - 0.1) / (1 - 0.4) = 1.5
    torch.testing.assert_close(out, torch.tensor([1.0, 0.7, 0.4, 0.1]))
    no_terminal = dynamic_sigmas(10, 7392, shift_terminal=None)
    assert no_terminal[-2].item() == pytest.approx(
        time_shift(torch.tensor(0.1), math.exp(3.2302)).item(), 1e-3
    )


# ---------------------------------------------------------------- samplers


def test_euler_matches_exact_discrete_solution_of_linear_ode():
    a = -0.7
    x = torch.tensor([[1.0, -2.0, 0.5]], dtype=torch.float64)
    sigmas = shifted_sigmas(6, 2.0)
    out = sample_euler(lambda x, s: a * x, x, sigmas)
    expected = x.clone()
    for s, s_next in zip(sigmas[:-1].double(), sigmas[1:].double(), strict=True):
        expected = expected * (1 + a * (s_next - s))
    torch.testing.assert_close(out, expected, atol=1e-12, rtol=0)


def test_heun_matches_exact_discrete_solution_of_linear_ode():
    a = 0.9
    x = torch.tensor([[1.0, -3.0]], dtype=torch.float64)
    sigmas = linear_sigmas(5)
    out = sample_heun(lambda x, s: a * x, x, sigmas)
    expected = x.clone()
    for s, s_next in zip(sigmas[:-1].double(), sigmas[1:].double(), strict=True):
        h = s_next - s
        # Heun on dx/ds = a x: 1 + ha + (ha)^2/2 per step; the step to sigma = 0 is plain Euler.
        expected = expected * ((1 + h * a) if s_next == 0 else (1 + h * a + (h * a) ** 2 / 2))
    torch.testing.assert_close(out, expected, atol=1e-12, rtol=0)


def _affine_map(sampler, steps):
    # With the exact Gaussian velocity every sampler step is affine in x: out = A x + b element-wise,
    # so N(0, 1) noise maps to N(b, A^2) exactly; two probes give A and b without sampling error.
    out = sampler(gaussian_velocity, torch.tensor([[0.0], [1.0]], dtype=torch.float64), linear_sigmas(steps))
    return (out[1] - out[0]).abs().item(), out[0].item()


def test_exact_denoiser_transport_converges_at_the_method_order():
    for sampler, order in ((sample_euler, 1), (sample_heun, 2)):
        errs = []
        for steps in (20, 40):
            scale, shift = _affine_map(sampler, steps)
            assert shift == pytest.approx(MU, abs=1e-6)  # the mean is transported exactly
            errs.append(abs(scale - STD))
        assert errs[0] / errs[1] == pytest.approx(2**order, rel=0.15), (sampler.__name__, errs)


@pytest.mark.parametrize(("sampler", "steps", "var_tol"), [(sample_euler, 50, 0.08), (sample_heun, 25, 0.03)])
def test_sampler_with_exact_gaussian_denoiser_reproduces_data_moments(sampler, steps, var_tol):
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(20000, 1, 2, generator=g)
    out = sampler(gaussian_velocity, noise, linear_sigmas(steps))
    assert out.mean().item() == pytest.approx(MU, abs=0.015)
    assert out.var().item() / STD**2 == pytest.approx(1.0, abs=var_tol)


def test_ancestral_sampler_eta0_is_euler_and_eta1_reproduces_moments():
    g = torch.Generator().manual_seed(2)
    noise = torch.randn(20000, 2, generator=g)
    torch.testing.assert_close(
        sample_euler_ancestral(gaussian_velocity, noise, linear_sigmas(8), eta=0.0),
        sample_euler(gaussian_velocity, noise, linear_sigmas(8)),
        atol=2e-6,
        rtol=0,
    )
    assert ancestral_noise_std(1.0, 0.5, 1.0) == pytest.approx(0.5)  # from pure noise: all fresh
    out = sample_euler_ancestral(gaussian_velocity, noise, linear_sigmas(200), generator=g)
    assert out.mean().item() == pytest.approx(MU, abs=0.015)
    assert out.var().item() / STD**2 == pytest.approx(1.0, abs=0.07)


def test_callback_once_per_step_and_exception_stops_sampling():
    seen, calls = [], []

    def model(x, sigma):
        calls.append(sigma.clone())
        return torch.zeros_like(x) + 1.0

    x = torch.zeros(2, 3)
    sigmas = linear_sigmas(4)
    out = sample_euler(model, x, sigmas, callback=seen.append)
    assert [d["i"] for d in seen] == [0, 1, 2, 3] and all(d["total"] == 4 for d in seen)
    assert [d["sigma"] for d in seen] == pytest.approx([1.0, 0.75, 0.5, 0.25])
    assert seen[-1]["sigma_next"] == 0.0 and seen[-1]["x"] is out
    torch.testing.assert_close(seen[1]["denoised"], seen[0]["x"] - 0.75)  # x0 = x - sigma v
    assert calls[0].shape == (2,) and calls[0].dtype == torch.float32

    def stop(info):
        if info["i"] == 1:
            raise InterruptedError("cancelled")

    calls.clear()
    for sampler in (sample_euler, sample_heun):
        with pytest.raises(InterruptedError, match="cancelled"):
            sampler(model, x, sigmas, callback=stop)
    assert len(calls) == 2 + 4  # Euler: steps 0, 1; Heun: 2 calls per step


def test_nan_from_denoiser_raises_naming_step_and_sigma():
    def model(x, sigma):
        return torch.full_like(x, float("nan")) if sigma[0] < 0.6 else torch.zeros_like(x)

    with pytest.raises(FloatingPointError, match=r"NaN at step 2 \(sigma=0\.5\)"):
        sample_euler(model, torch.zeros(1, 2), linear_sigmas(4))
    with pytest.raises(FloatingPointError, match="Inf at step"):
        sample_heun(lambda x, s: torch.full_like(x, float("inf")), torch.zeros(1, 2), linear_sigmas(4))


def test_bad_sigmas_and_progress_bar(capsys):
    with pytest.raises(ValueError, match="non-increasing"):
        sample_euler(gaussian_velocity, torch.zeros(1, 1), torch.tensor([0.5, 1.0, 0.0]))
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        sample_euler(gaussian_velocity, torch.zeros(1, 1), torch.tensor([2.0, 0.0]))
    sample_euler(gaussian_velocity, torch.zeros(1, 1), linear_sigmas(3), disable=False)
    assert "3/3" in capsys.readouterr().err


# ---------------------------------------------------------------- classifier-free guidance


class RecordingModel:
    """Velocity = x * scale_from_context + per-sample offset, recording every call."""

    def __init__(self):
        self.calls = []

    def __call__(self, x, sigma, context, context_mask=None):
        self.calls.append((x.shape[0], context.clone()))
        return x * context.mean(dim=(1, 2)).reshape(-1, 1, 1) + sigma.reshape(-1, 1, 1)


def test_cfg_combine_forms_and_scale_one_is_exact():
    g = torch.Generator().manual_seed(3)
    c, u = torch.randn(2, 8, generator=g), torch.randn(2, 8, generator=g)
    w = 3.5
    torch.testing.assert_close(cfg_combine(c, u, 1 + w), (1 + w) * c - w * u)  # Ho & Salimans (2022) eq. 6
    torch.testing.assert_close(cfg_combine(c, u, 4.5), u + 4.5 * (c - u))  # usual scale g
    assert torch.equal(cfg_combine(c, u, 1.0), c)
    assert cfg_combine(c.half(), u.half(), 2.0).dtype == torch.float32


def test_cfg_denoiser_batches_uncond_first_and_matches_separate_calls():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 3, 4, generator=g)
    sigma = torch.tensor([0.4, 0.6])
    cond = {"context": torch.full((2, 5, 6), 2.0), "context_mask": torch.ones(2, 5, dtype=torch.bool)}
    uncond = {"context": torch.full((2, 5, 6), -1.0), "context_mask": torch.ones(2, 5, dtype=torch.bool)}
    model = RecordingModel()
    guided = CFGDenoiser(model, cond, uncond, scale=3.0)(x, sigma)
    assert len(model.calls) == 1 and model.calls[0][0] == 4  # one forward on [uncond; cond]
    assert model.calls[0][1][:2].eq(-1.0).all() and model.calls[0][1][2:].eq(2.0).all()
    v_c, v_u = 2.0 * x + sigma.reshape(-1, 1, 1), -1.0 * x + sigma.reshape(-1, 1, 1)
    torch.testing.assert_close(guided, v_u + 3.0 * (v_c - v_u))
    # Different text lengths cannot be concatenated: two calls, same result.
    model2 = RecordingModel()
    uncond_short = {
        "context": torch.full((2, 3, 6), -1.0),
        "context_mask": torch.ones(2, 3, dtype=torch.bool),
    }
    guided2 = CFGDenoiser(model2, cond, uncond_short, scale=3.0)(x, sigma)
    assert [c[0] for c in model2.calls] == [2, 2]
    torch.testing.assert_close(guided2, guided)
    # scale 1 (w = 0): only the conditional branch runs and the result equals it exactly.
    model3 = RecordingModel()
    out = CFGDenoiser(model3, cond, uncond, scale=1.0)(x, sigma)
    assert len(model3.calls) == 1 and torch.equal(out, model3(x, sigma, **cond))


def test_cfg_denoiser_inside_a_sampler_and_bad_args():
    model = RecordingModel()
    cond, uncond = {"context": torch.full((1, 2, 2), 0.5)}, {"context": torch.zeros(1, 2, 2)}
    out = sample_euler(CFGDenoiser(model, cond, uncond, scale=2.0), torch.ones(1, 2, 2), linear_sigmas(3))
    assert len(model.calls) == 3 and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="rescale=1.5"):
        CFGDenoiser(model, cond, uncond, scale=2.0, rescale=1.5)
    with pytest.raises(TypeError, match="uncond must be a dict"):
        CFGDenoiser(model, cond, None, scale=2.0)
    with pytest.raises(ValueError, match=r"extra_args \['context'\]"):
        CFGDenoiser(model, cond, uncond, scale=2.0)(torch.ones(1, 2, 2), torch.ones(1), context=None)


def test_guidance_rescale():
    g = torch.Generator().manual_seed(5)
    cond, guided = torch.randn(3, 4, 5, generator=g), 4.0 * torch.randn(3, 4, 5, generator=g) + 1.0
    assert torch.equal(rescale_guidance(guided, cond, 0.0), guided)  # phi = 0 is the identity
    full = rescale_guidance(guided, cond, 1.0)
    torch.testing.assert_close(full.std(dim=(1, 2)), cond.std(dim=(1, 2)))  # per-sample std matched
    half = rescale_guidance(guided, cond, 0.7)
    torch.testing.assert_close(half, 0.7 * full + 0.3 * guided)


# ---------------------------------------------------------------- DDPM / DDIM (eps prediction)

ABAR = alphas_cumprod(linear_betas())


def gaussian_eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Exact E[eps | x_t] for x0 ~ N(MU, STD^2), x_t = sqrt(ab) x0 + sqrt(1 - ab) eps."""
    a = _col(ABAR[t], x)
    return ((1 - a).sqrt() / (a * STD**2 + 1 - a) * (x.double() - a.sqrt() * MU)).float()


def test_linear_betas_and_forward_process_moments():
    betas = linear_betas()
    assert betas.shape == (1000,) and betas[0].item() == pytest.approx(1e-4) and betas[-1].item() == 0.02
    assert ABAR[0].item() == pytest.approx(1 - 1e-4)
    assert ABAR[-1].item() == pytest.approx(math.prod(1 - b for b in betas.tolist()), rel=1e-9)
    g = torch.Generator().manual_seed(6)
    x0 = torch.tensor([1.5, -0.5]).repeat(50000, 1)
    for t in (10, 300, 999):
        xt = q_sample(x0, t, torch.randn(x0.shape, generator=g), ABAR)
        ab = ABAR[t].item()
        torch.testing.assert_close(xt.mean(0), math.sqrt(ab) * x0[0], atol=0.015, rtol=0)
        torch.testing.assert_close(xt.var(0), torch.full((2,), 1 - ab), atol=0.02 * (1 - ab) + 1e-5, rtol=0)
    per_sample = q_sample(x0[:2], torch.tensor([0, 999]), torch.zeros(2, 2), ABAR)
    torch.testing.assert_close(per_sample[1], math.sqrt(ABAR[999].item()) * x0[1])


def test_ddim_deterministic_with_exact_eps_recovers_gaussian_data():
    ts = ddim_timesteps(100)
    assert ts[0].item() == 999 and ts[-1].item() == 0 and ts.shape == (100,)
    g = torch.Generator().manual_seed(7)
    noise = torch.randn(20000, 2, generator=g)
    out = sample_ddim(gaussian_eps, noise, ts, ABAR, eta=0.0)
    assert out.mean().item() == pytest.approx(MU, abs=0.015)
    assert out.var().item() / STD**2 == pytest.approx(1.0, abs=0.08)
    again = sample_ddim(gaussian_eps, noise, ts, ABAR, eta=0.0)
    assert torch.equal(out, again)  # eta = 0 is deterministic


def test_ddim_stochastic_and_errors():
    g = torch.Generator().manual_seed(8)
    noise = torch.randn(20000, 2, generator=g)
    seen = []
    out = sample_ddim(
        gaussian_eps, noise, ddim_timesteps(250), ABAR, eta=1.0, generator=g, callback=seen.append
    )
    assert len(seen) == 250 and seen[-1]["t_next"] == -1 and seen[-1]["sigma_next"] == 0.0
    assert out.mean().item() == pytest.approx(MU, abs=0.015)
    assert out.var().item() / STD**2 == pytest.approx(1.0, abs=0.08)
    with pytest.raises(FloatingPointError, match="step 0"):
        sample_ddim(lambda x, t: x * float("nan"), noise[:2], ddim_timesteps(5), ABAR)
    with pytest.raises(ValueError, match="strictly decreasing"):
        sample_ddim(gaussian_eps, noise[:2], torch.tensor([0, 10]), ABAR)


def test_stochastic_noise_comes_from_the_generators_device_in_float32():
    from vidcore.sampling.flow import randn_like_on

    x = torch.zeros(2, 3, 4, dtype=torch.float64)
    got = randn_like_on(x, torch.Generator().manual_seed(7))
    want = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(7)).double()
    assert got.dtype == torch.float64 and torch.equal(got, want)
