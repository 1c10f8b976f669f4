"""UniPC (Zhao et al. 2023) for flow matching and Wan's sigma grid: diffusers as the oracle, closed forms."""

import math

import pytest
import torch

from vidcore.sampling import (
    SAMPLERS,
    sample_euler,
    sample_unipc,
    shifted_sigmas,
    timesteps_on_grid,
    velocity_from_x0,
    wan_flow_sigmas,
    wan_flow_timesteps,
)

torch.set_num_threads(1)

# Gaussian data x0 ~ N(MU, C^2): the exact velocity and the exact flow map are known in closed form.
MU, C = 0.5, 1.0


def gaussian_velocity(x, sigma):
    s = sigma.reshape(-1, *[1] * (x.ndim - 1)).to(x.dtype)
    var = (1 - s) ** 2 * C**2 + s**2  # Var x_s
    centred = x - (1 - s) * MU
    x0 = MU + (1 - s) * C**2 / var * centred  # E[x0 | x_s]
    eps = s / var * centred  # E[eps | x_s]
    return eps - x0


def toy_velocity(x, sigma):
    """Nonlinear in x, so every coefficient of the multistep update shows in the output."""
    s = sigma.reshape(-1, *[1] * (x.ndim - 1)).to(x.dtype)
    return gaussian_velocity(x, sigma) + 0.3 * torch.tanh(3 * x) * s * (1 - s)


def exact_flow(x, sigma):
    """The probability-flow ODE from (x, sigma) to sigma = 0: it keeps the standardised value of x."""
    z = (x - (1 - sigma) * MU) / math.sqrt((1 - sigma) ** 2 * C**2 + sigma**2)
    return MU + C * z


def _diffusers_unipc(model, x, steps, shift, order=2, variant="bh2"):
    """The state after every step of diffusers' UniPCMultistepScheduler, configured as for Wan."""
    diffusers = pytest.importorskip("diffusers")
    scheduler = diffusers.UniPCMultistepScheduler(
        prediction_type="flow_prediction",
        use_flow_sigmas=True,
        flow_shift=shift,
        solver_order=order,
        solver_type=variant,
    )
    scheduler.set_timesteps(steps)
    states = []
    for i, t in enumerate(scheduler.timesteps):
        v = model(x, scheduler.sigmas[i].expand(x.shape[0]))
        x = scheduler.step(v, t, x).prev_sample
        states.append(x)
    return states, scheduler


def _unipc_states(model, x, sigmas, **kwargs):
    seen = []
    out = sample_unipc(model, x, sigmas, callback=seen.append, **kwargs)
    assert seen[-1]["x"] is out
    return [info["x"] for info in seen]


def _rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize("shift", [1.0, 3.0, 5.0])
@pytest.mark.parametrize("steps", [1, 2, 3, 5, 10])
def test_unipc_matches_diffusers_wan_scheduler(steps, shift):
    x = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(steps))
    expected, scheduler = _diffusers_unipc(toy_velocity, x, steps, shift)
    sigmas = wan_flow_sigmas(steps, shift)
    assert torch.equal(sigmas, scheduler.sigmas)
    assert torch.equal(wan_flow_timesteps(steps, shift), scheduler.timesteps)
    # Every intermediate state (diffusers' prev_sample = our callback's x) and the result; measured < 4e-7.
    for ours, theirs in zip(_unipc_states(toy_velocity, x, sigmas), expected, strict=True):
        assert _rel(ours, theirs) < 1e-5


@pytest.mark.parametrize(("order", "variant"), [(1, "bh2"), (3, "bh2"), (1, "bh1"), (2, "bh1"), (3, "bh1")])
def test_unipc_orders_and_bh1_match_diffusers(order, variant):
    x = torch.randn(2, 5, generator=torch.Generator().manual_seed(order))
    for steps in (4, 12):
        expected, _ = _diffusers_unipc(toy_velocity, x, steps, 3.0, order, variant)
        ours = _unipc_states(toy_velocity, x, wan_flow_sigmas(steps, 3.0), order=order, variant=variant)
        if variant == "bh1":
            # diffusers' last step to sigma 0 computes alpha_t * B(h) * 0 with B(h) = -h = -inf: NaN. Ours
            # takes the limit (the x0 prediction), as for bh2.
            assert torch.isnan(expected[-1]).all() and torch.isfinite(ours[-1]).all()
            expected, ours = expected[:-1], ours[:-1]
        for a, b in zip(ours, expected, strict=True):
            assert _rel(a, b) < 1e-5


def test_wan_grid_and_timesteps_facts():
    # sigma_0 = 1 - 1e-6 (float32), shifted, final 0; the timesteps truncate, so 1 - 1e-6 gives 999.
    sigmas, timesteps = wan_flow_sigmas(50, 5.0), wan_flow_timesteps(50, 5.0)
    assert sigmas.dtype == torch.float32 and sigmas.shape == (51,) and sigmas[-1] == 0
    assert sigmas[0].item() == pytest.approx(1 - 1e-6, abs=1e-7)
    assert timesteps.dtype == torch.int64 and timesteps[:3].tolist() == [999, 995, 991]
    assert timesteps[-3:].tolist() == [244, 175, 96]
    assert wan_flow_timesteps(50, 3.0)[-3:].tolist() == [162, 113, 60]
    # The float32 sigma can truncate one lower than the timestep: look it up on the grid instead.
    sigmas, timesteps = wan_flow_sigmas(3, 1.0), wan_flow_timesteps(3, 1.0)
    assert timesteps.tolist() == [999, 667, 333]
    assert int(sigmas[1].double() * 1000) == 666
    batch = sigmas[[1, 0, 2]].clone()
    assert timesteps_on_grid(batch, sigmas, timesteps).tolist() == [667, 999, 333]
    with pytest.raises(ValueError, match="is not on the schedule"):
        timesteps_on_grid(torch.tensor([0.5]), sigmas, timesteps)
    with pytest.raises(ValueError, match="one timestep per sigma"):
        timesteps_on_grid(torch.tensor([0.5]), sigmas, timesteps[:1])
    with pytest.raises(ValueError, match="shift=0"):
        wan_flow_sigmas(4, 0.0)
    with pytest.raises(ValueError, match="n=0"):
        wan_flow_timesteps(0, 3.0)


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_unipc_10_steps_is_closer_to_the_exact_flow_than_euler(shift):
    x = torch.randn(200, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for sigmas in (wan_flow_sigmas(10, shift), shifted_sigmas(10, shift)):  # from 1 - 1e-6 and from 1
        exact = exact_flow(x, sigmas[0].item())
        err = (sample_unipc(gaussian_velocity, x, sigmas) - exact).abs().max().item()
        err_euler = (sample_euler(gaussian_velocity, x, sigmas) - exact).abs().max().item()
        err_ddim = (sample_unipc(gaussian_velocity, x, sigmas, order=1) - exact).abs().max().item()
        assert err < err_euler / 4 and err < err_ddim / 2, (err, err_euler, err_ddim)
    # The closed form is the ODE's solution: many Euler steps converge to it.
    many = sample_euler(gaussian_velocity, x, shifted_sigmas(4000, shift).double())
    assert (many - exact_flow(x, 1.0)).abs().max().item() < 2e-3


def test_unipc_is_exact_for_a_constant_x0_prediction():
    # The data-prediction update is exact when x0 does not change; every correction term then vanishes.
    x0 = torch.tensor([[0.3, -1.2, 2.0]], dtype=torch.float64)
    model = lambda x, s: velocity_from_x0(x, s.double(), x0)  # noqa: E731
    x = torch.tensor([[1.0, 0.5, -0.4]], dtype=torch.float64)
    for order in (1, 2, 3):
        torch.testing.assert_close(sample_unipc(model, x, shifted_sigmas(7, 3.0), order=order), x0)


def test_unipc_callback_generator_and_extra_args():
    seen, calls = [], []

    def model(x, sigma, scale):
        calls.append((x.clone(), sigma.clone()))
        return scale * toy_velocity(x, sigma)

    x = torch.randn(2, 3, generator=torch.Generator().manual_seed(1))
    sigmas = wan_flow_sigmas(5, 3.0)
    out = sample_unipc(model, x, sigmas, extra_args={"scale": 0.5}, callback=seen.append)
    assert set(seen[0]) == {"i", "x", "sigma", "sigma_next", "denoised", "total"}
    assert [d["i"] for d in seen] == list(range(5)) and all(d["total"] == 5 for d in seen)
    assert [d["sigma"] for d in seen] == pytest.approx(sigmas[:-1].tolist())
    assert [d["sigma_next"] for d in seen] == pytest.approx(sigmas[1:].tolist())
    assert seen[-1]["x"] is out and seen[-1]["sigma_next"] == 0.0
    assert calls[0][1].shape == (2,) and calls[0][1].dtype == torch.float32
    for info, (x_in, s) in zip(seen, calls, strict=True):
        torch.testing.assert_close(info["denoised"], x_in - s[0] * 0.5 * toy_velocity(x_in, s))
    torch.testing.assert_close(out, seen[-1]["denoised"])  # the step to sigma 0 lands on x0
    # Deterministic: the generator keyword is accepted and changes nothing.
    gen = torch.Generator().manual_seed(9)
    again = sample_unipc(model, x, sigmas, extra_args={"scale": 0.5}, generator=gen)
    assert torch.equal(again, out)
    assert SAMPLERS["unipc"] is sample_unipc

    def stop(info):
        if info["i"] == 1:
            raise InterruptedError("cancelled")

    calls.clear()
    with pytest.raises(InterruptedError, match="cancelled"):
        sample_unipc(model, x, sigmas, extra_args={"scale": 0.5}, callback=stop)
    assert len(calls) == 2


def test_unipc_first_step_from_sigma_one_is_euler():
    seen = []
    x = torch.randn(2, 3, generator=torch.Generator().manual_seed(4))
    sigmas = shifted_sigmas(6, 3.0)
    out = sample_unipc(toy_velocity, x, sigmas, callback=seen.append)
    assert torch.isfinite(out).all()
    s_next = sigmas[1].item()
    torch.testing.assert_close(seen[0]["x"], x + (s_next - 1) * toy_velocity(x, torch.ones(2)))


def test_unipc_bad_inputs_are_clear():
    x, sigmas = torch.zeros(1, 2), wan_flow_sigmas(3, 3.0)
    model = lambda x, s: x  # noqa: E731
    for order in (0, 4, True, 2.0):
        with pytest.raises(ValueError, match=rf"order={order!r} must be one of \[1, 2, 3\]"):
            sample_unipc(model, x, sigmas, order=order)
    with pytest.raises(ValueError, match=r"variant='bh3' must be one of \['bh1', 'bh2'\]"):
        sample_unipc(model, x, sigmas, variant="bh3")
    with pytest.raises(ValueError, match="strictly decreasing"):
        sample_unipc(model, x, torch.tensor([0.9, 0.5, 0.5, 0.0]))
    with pytest.raises(ValueError, match="variant='bh1' has B\\(h\\) = -h, infinite"):
        sample_unipc(model, x, shifted_sigmas(3, 3.0), variant="bh1")
    with pytest.raises(ValueError, match="non-increasing"):
        sample_unipc(model, x, torch.tensor([0.5, 0.9, 0.0]))
