"""Pyramidal flow matching: closed-form stage constants, block noise, renoising, and a hand-computed run."""

import math

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

from vidcore.sampling import (
    latent_pyramid,
    noise_pyramid,
    pyramid_stages,
    renoise,
    renoise_coefficients,
    sample_block_noise,
    sample_euler_ancestral,
    sample_pyramidal,
    stage_sigmas,
    upsample_nearest,
)

torch.set_num_threads(1)


def test_stage_constants_match_reference_table():
    stages = pyramid_stages(3, gamma=1 / 3, shift=1.0)
    assert [s.start for s in stages] == pytest.approx([1.0, 0.80024, 0.50075], abs=1e-5)
    assert [s.ori_start for s in stages] == pytest.approx([1.0, 0.667, 0.334], abs=1e-9)
    assert [s.end for s in stages] == pytest.approx([0.667, 0.334, 0.0], abs=1e-9)
    assert [s.alpha for s in stages] == pytest.approx([1.0, 0.59988, 0.74963], abs=1e-5)
    assert [s.beta for s in stages] == pytest.approx([0.0, 0.69303, 0.43366], abs=1e-5)
    # model-timestep ranges (timestep / 1000): 1000 -> 744.256, 744 -> 386.358, 386 -> 1.385
    assert [(s.t_first * 1000, s.t_last * 1000) for s in stages] == [
        pytest.approx((1000, 744.256)),
        pytest.approx((744, 386.358)),
        pytest.approx((386, 1.385)),
    ]
    # The renoised noise level equals the stage start: alpha and the noise std satisfy 1 - alpha s.
    for s in stages[1:]:
        signal = 1 - s.ori_start
        noise_std = s.alpha * (1 - signal) * math.sqrt(1 + 3)  # sqrt(1 + 1/gamma) = 2
        assert noise_std == pytest.approx(s.start, abs=1e-12)
        assert renoise_coefficients(signal, 1 / 3) == pytest.approx((s.alpha, s.beta))


def test_stage_sigmas_local_and_global():
    stage0 = pyramid_stages()[0]
    local, model_sigma = stage_sigmas(stage0, 20)
    assert local.shape == (21,) and local[0] == 1 and local[-2] == pytest.approx(0.001) and local[-1] == 0
    assert local[1].item() == pytest.approx(0.9474, abs=1e-4) and local[2].item() == pytest.approx(
        0.8948, abs=1e-4
    )
    assert (model_sigma[:3] * 1000).tolist() == pytest.approx([1000, 986.54, 973.08], abs=0.01)
    assert model_sigma[-1].item() * 1000 == pytest.approx(744.256, abs=1e-6)
    shifted = pyramid_stages(3, shift=3.0)
    assert shifted[1].ori_start == pytest.approx(3 * 0.667 / (1 + 2 * 0.667))  # grid is time-shifted
    with pytest.raises(ValueError, match="stage_range"):
        pyramid_stages(3, stage_range=[0, 0.5, 1])
    with pytest.raises(ValueError, match="gamma=0.5"):
        pyramid_stages(3, gamma=0.5)


def _blocks(x: torch.Tensor) -> torch.Tensor:
    return rearrange(x, "... (h p) (w q) -> (... h w) (p q)", p=2, q=2)


@pytest.mark.parametrize("gamma", [1 / 3, 0.2])
def test_block_noise_covariance(gamma):
    g = torch.Generator().manual_seed(0)
    n = _blocks(sample_block_noise((2000, 2, 100), gamma, generator=g).double())
    cov = n.T @ n / n.shape[0]
    expected = (1 + gamma) * torch.eye(4, dtype=torch.float64) - gamma * torch.ones(4, 4, dtype=torch.float64)
    torch.testing.assert_close(cov, expected, atol=0.02, rtol=0)
    assert n.mean().abs().item() < 0.01


def test_upsample_and_renoise_restore_iid_noise():
    stage = pyramid_stages()[1]
    signal = 1 - stage.ori_start
    g = torch.Generator().manual_seed(1)
    low = (1 - signal) * torch.randn(4000, 1, 1, 8, 8, generator=g)  # end of stage 0 with x0 = 0
    up = upsample_nearest(low)
    assert torch.equal(up[..., 0::2, 1::2], low) and torch.equal(up[..., 1::2, 1::2], low)
    out = renoise(up, sample_block_noise(up.shape, 1 / 3, generator=g), stage.alpha, stage.beta).double()
    cov = _blocks(out).T @ _blocks(out) / _blocks(out).shape[0]
    torch.testing.assert_close(cov, stage.start**2 * torch.eye(4, dtype=torch.float64), atol=0.02, rtol=0)
    # Neighbouring pixels of different blocks are independent too.
    across = (out[..., :, 1:-1:2] * out[..., :, 2::2]).mean().item()
    assert abs(across) < 0.01
    # The signal coefficient becomes alpha * s = 1 - start: signal + noise coefficients sum to 1.
    const = renoise(
        upsample_nearest(torch.full((1, 1, 1, 2, 2), signal)), torch.zeros(1, 1, 1, 4, 4), stage.alpha, 0.0
    )
    torch.testing.assert_close(const, torch.full_like(const, 1 - stage.start))


def test_noise_and_latent_pyramids():
    g = torch.Generator().manual_seed(2)
    noise = torch.randn(8, 2, 3, 32, 32, generator=g)
    levels = noise_pyramid(noise, 3)
    assert [tuple(lv.shape[-2:]) for lv in levels] == [(8, 8), (16, 16), (32, 32)]
    torch.testing.assert_close(levels[1], 2 * F.avg_pool3d(noise, (1, 2, 2)))  # bilinear /2 = 2x2 mean
    for lv in levels:
        assert lv.var().item() == pytest.approx(1.0, abs=0.03)
    clean = latent_pyramid(noise, 3)
    torch.testing.assert_close(clean[0], F.avg_pool3d(noise, (1, 4, 4)), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match=r"height=30 must be divisible by 4 .* 28, 32"):
        noise_pyramid(torch.zeros(1, 1, 1, 30, 32), 3)
    with pytest.raises(ValueError, match=r"\[B, C, T, H, W\]"):
        noise_pyramid(torch.zeros(1, 1, 32, 32), 3)


def stub_model(x, sigma):
    # Resolution- and timestep-dependent so a wrong stage size or timestep shows in the result.
    return (
        0.3 * x + sigma.reshape(-1, 1, 1, 1, 1) * (1 + x.shape[-1] / 16) - 0.1 * x.mean(dim=1, keepdim=True)
    )


def reference_run(noise, steps, block_noises):
    """Hand-computed Pyramid Flow run from the table values (gamma 1/3, shift 1), plain loops."""
    t_ranges = [(1000.0, 744.256), (744.0, 386.358), (386.0, 1.385)]
    signals = [None, 1 - 0.667, 1 - 0.334]
    x = 2 * F.avg_pool3d(2 * F.avg_pool3d(noise.double(), (1, 2, 2)), (1, 2, 2))
    for k, n in enumerate(steps):
        if k > 0:
            s = signals[k]
            alpha = 1 / (2 * (1 - s) + s)
            beta = alpha * (1 - s) * math.sqrt(3)
            x = x.repeat_interleave(2, dim=-1).repeat_interleave(2, dim=-2)
            x = alpha * x + beta * block_noises[k - 1].double()
        t0, t1 = t_ranges[k]
        for j in range(n):
            frac = j / (n - 1) if n > 1 else 0.0
            sigma, t = 1 - 0.999 * frac, (t0 + (t1 - t0) * frac) / 1000
            sigma_next = 1 - 0.999 * (j + 1) / (n - 1) if j + 1 < n else 0.0
            v = stub_model(x, torch.full((x.shape[0],), t, dtype=torch.float64))
            x = x + (sigma_next - sigma) * v
    return x


def test_pyramidal_sampler_reproduces_hand_computed_run():
    g = torch.Generator().manual_seed(3)
    noise = torch.randn(2, 3, 2, 16, 24, generator=g)
    steps = (3, 1, 4)
    block_noises = [
        sample_block_noise((2, 3, 2, 8, 12), generator=g),
        sample_block_noise((2, 3, 2, 16, 24), generator=g),
    ]
    seen = []
    out = sample_pyramidal(
        stub_model, noise, stage_steps=steps, block_noises=block_noises, callback=seen.append
    )
    assert out.shape == noise.shape and out.dtype == torch.float32
    torch.testing.assert_close(out.double(), reference_run(noise, steps, block_noises), atol=2e-5, rtol=0)
    assert [d["i"] for d in seen] == list(range(8)) and all(d["total"] == 8 for d in seen)
    assert [d["stage"] for d in seen] == [0, 0, 0, 1, 2, 2, 2, 2]
    assert [tuple(d["x"].shape[-2:]) for d in seen[2:4]] == [(4, 6), (8, 12)]
    assert seen[3]["timestep"] == pytest.approx(0.744)  # global model sigma of stage 1's only step
    assert seen[3]["sigma"] == 1.0 and seen[3]["sigma_next"] == 0.0  # local sigma restarts per stage


def test_pyramidal_sampler_drawn_noise_is_seeded_and_errors_are_precise():
    noise = torch.randn(1, 2, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    a = sample_pyramidal(stub_model, noise, (2, 2), generator=torch.Generator().manual_seed(5))
    b = sample_pyramidal(stub_model, noise, (2, 2), generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and torch.isfinite(a).all()

    def nan_model(x, sigma):
        return torch.full_like(x, float("nan")) if x.shape[-1] == 8 else torch.zeros_like(x)

    with pytest.raises(FloatingPointError, match=r"stage 1.*step 2"):
        sample_pyramidal(nan_model, noise, (2, 2))

    def stop(info):
        if info["stage"] == 1:
            raise InterruptedError("stop")

    with pytest.raises(InterruptedError):
        sample_pyramidal(stub_model, noise, (2, 2), callback=stop)
    with pytest.raises(ValueError, match="block_noises needs 1"):
        sample_pyramidal(stub_model, noise, (2, 2), block_noises=[])
    with pytest.raises(ValueError, match=r"width=6 must be divisible by 4"):
        sample_pyramidal(stub_model, torch.zeros(1, 1, 1, 8, 6), (1, 1, 1))


def test_global_velocity_mode_with_exact_gaussian_denoiser_reproduces_data_moments():
    # x0 ~ N(MU, STD^2) per element at every resolution; the element-wise exact flow velocity drives
    # all stages. The renoise makes each stage start at exactly the marginal of its noise level.
    mu, std = 0.7, 0.5

    def exact_velocity(x, sigma):
        s, xd = sigma.reshape(-1, 1, 1, 1, 1).double(), x.double()
        var = (1 - s) ** 2 * std**2 + s**2
        r = xd - (1 - s) * mu
        return (s / var * r - (mu + (1 - s) * std**2 / var * r)).float()

    g = torch.Generator().manual_seed(6)
    noise = torch.randn(16, 2, 2, 32, 32, generator=g)
    seen = []
    out = sample_pyramidal(
        exact_velocity, noise, (40, 40, 40), velocity="global", generator=g, callback=seen.append
    )
    assert out.mean().item() == pytest.approx(mu, abs=0.015)
    assert out.var().item() / std**2 == pytest.approx(1.0, abs=0.06)
    # The model sees the true noise level: stage starts 1, 0.80024, 0.50075; stage ends at 0.667, 0.334, 0.
    assert [seen[k * 40]["timestep"] for k in range(3)] == pytest.approx([1.0, 0.80024, 0.50075], abs=1e-5)
    assert [seen[k * 40 + 39]["sigma_next"] for k in range(3)] == pytest.approx([0.667, 0.334, 0.0])
    with pytest.raises(ValueError, match="velocity='x0'"):
        sample_pyramidal(exact_velocity, noise, (1, 1), velocity="x0")


def _gaussian_velocity(mu: float, std: float):
    def exact_velocity(x, sigma):
        s, xd = sigma.reshape(-1, 1, 1, 1, 1).double(), x.double()
        var = (1 - s) ** 2 * std**2 + s**2
        r = xd - (1 - s) * mu
        return (s / var * r - (mu + (1 - s) * std**2 / var * r)).float()

    return exact_velocity


def test_ancestral_stages_reproduce_data_moments_and_one_stage_is_the_ancestral_sampler():
    mu, std = 0.7, 0.5
    exact_velocity = _gaussian_velocity(mu, std)
    noise = torch.randn(16, 2, 2, 32, 32, generator=torch.Generator().manual_seed(6))

    def run(seed, sampler="euler_ancestral", steps=(120, 120, 120)):
        g = torch.Generator().manual_seed(seed)
        return sample_pyramidal(exact_velocity, noise, steps, velocity="global", generator=g, sampler=sampler)

    out = run(7)
    # Fresh noise at every step, the posterior share of it: the data moments survive the stages (the step
    # plugs in E[x0 | x], so variance is lost per step: 0.93 of it at 40 steps a stage, 0.98 at 120).
    assert out.mean().item() == pytest.approx(mu, abs=0.015)
    assert out.var().item() / std**2 == pytest.approx(1.0, abs=0.06)
    assert torch.equal(out, run(7))  # every draw comes from the generator
    euler = run(7, "euler")
    assert (out - euler).abs().mean() > 0.1  # the ancestral path is a different sample
    # One stage on the true noise level is exactly the ancestral sampler on linspace(1, 0).
    one = run(3, steps=(8,))
    ref = sample_euler_ancestral(
        exact_velocity, noise, torch.linspace(1, 0, 9), generator=torch.Generator().manual_seed(3)
    )
    assert torch.allclose(one, ref, atol=1e-6)


def test_pyramidal_sampler_choice_errors_name_the_value():
    noise = torch.randn(1, 1, 1, 8, 8)
    with pytest.raises(ValueError, match=r"sampler='heun': a pyramid stage integrates with \['euler'"):
        sample_pyramidal(stub_model, noise, (1, 1), sampler="heun")
    with pytest.raises(ValueError, match="sampler='euler_ancestral' needs velocity='global'.*not 'local'"):
        sample_pyramidal(stub_model, noise, (1, 1), sampler="euler_ancestral")
