"""Optical flow: warp exactness, estimator accuracy on synthetic truth, occlusion masks, losses."""

import numpy as np
import pytest
import torch

from vidcore.flow import (
    end_point_error,
    estimate_flow,
    flow_loss,
    flow_to_color,
    multiscale_flow_loss,
    occlusion_mask,
    warp,
    warp_with_mask,
)
from vidcore.flow.synthetic import synthetic_pair

torch.set_num_threads(1)


def _numpy_bilinear(img: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Reference bilinear sampling of img [C, H, W] at pixel coords, border-clamped, float64."""
    _, h, w = img.shape
    x0 = np.floor(x).astype(int)
    y0 = np.floor(y).astype(int)
    fx, fy = x - x0, y - y0
    xa, xb = np.clip(x0, 0, w - 1), np.clip(x0 + 1, 0, w - 1)
    ya, yb = np.clip(y0, 0, h - 1), np.clip(y0 + 1, 0, h - 1)
    top = img[:, ya, xa] * (1 - fx) + img[:, ya, xb] * fx
    bot = img[:, yb, xa] * (1 - fx) + img[:, yb, xb] * fx
    return top * (1 - fy) + bot * fy


def test_warp_integer_shift_is_exact_and_mask_marks_outside():
    g = torch.Generator().manual_seed(0)
    b = torch.rand(2, 3, 12, 16, generator=g)
    flow = torch.zeros(2, 2, 12, 16)
    flow[:, 0] = 2.0  # sample 2 px to the right
    flow[:, 1] = -1.0  # and 1 px up
    out, valid = warp_with_mask(b, flow)
    assert torch.equal(out[:, :, 1:, :-2], b[:, :, :-1, 2:])
    assert valid[:, :, 1:, :-2].all()
    assert not valid[:, :, 0, :].any() and not valid[:, :, :, -2:].any()
    assert int(valid.sum()) == 2 * 11 * 14


def test_warp_matches_numpy_bilinear_float64():
    g = torch.Generator().manual_seed(1)
    b = torch.rand(1, 2, 9, 11, generator=g, dtype=torch.float64)
    flow = 3 * torch.randn(1, 2, 9, 11, generator=g, dtype=torch.float64)
    ys, xs = np.meshgrid(np.arange(9.0), np.arange(11.0), indexing="ij")
    ref = _numpy_bilinear(b[0].numpy(), xs + flow[0, 0].numpy(), ys + flow[0, 1].numpy())
    np.testing.assert_allclose(warp(b, flow)[0].numpy(), ref, rtol=0, atol=1e-12)


def test_synthetic_ground_truth_warps_frame1_onto_frame0():
    a, b, gt = synthetic_pair(64, 64, "mixed", seed=3)
    res, valid = warp_with_mask(b, gt)
    err_gt = float((res - a).abs()[valid].mean()) * 255
    err_zero = float((b - a).abs().mean()) * 255
    assert err_gt < 1.0  # quantisation-level residual (grey levels)
    assert err_zero > 5 * err_gt


@pytest.mark.parametrize("method", ["lucas_kanade", "horn_schunck"])
def test_estimators_recover_subpixel_translation(method):
    a, b, gt = synthetic_pair(96, 96, "translation", max_disp=1.7, seed=11)
    flow = estimate_flow(a, b, method=method)
    assert flow.shape == (1, 2, 96, 96)
    inner = (slice(None), slice(None), slice(8, -8), slice(8, -8))
    mean_err = (flow[inner].mean((2, 3)) - gt[inner].mean((2, 3))).abs().max()
    assert float(mean_err) < 0.05
    assert float(end_point_error(flow[inner], gt[inner])) < 0.05


@pytest.mark.parametrize("method,max_epe", [("lucas_kanade", 0.05), ("horn_schunck", 0.04)])
def test_estimators_on_rotation_and_smooth_fields(method, max_epe):
    for motion, seed in (("rotation", 21), ("mixed", 22)):
        a, b, gt = synthetic_pair(96, 96, motion, seed=seed)
        flow = estimate_flow(a, b, method=method)
        _, valid = warp_with_mask(b, gt)
        epe = float(end_point_error(flow, gt, valid))
        zero = float(end_point_error(torch.zeros_like(gt), gt, valid))
        assert epe < max_epe, (motion, epe)
        assert zero > 1.0


def test_batched_and_unbatched_agree():
    a1, b1, _ = synthetic_pair(48, 48, "mixed", seed=5)
    a2, b2, _ = synthetic_pair(48, 48, "mixed", seed=6)
    batched = estimate_flow(
        torch.cat([a1, a2]).expand(-1, 3, -1, -1), torch.cat([b1, b2]).expand(-1, 3, -1, -1)
    )
    single = estimate_flow(a2[0], b2[0])
    assert single.shape == (1, 2, 48, 48)
    torch.testing.assert_close(batched[1:], single, atol=1e-5, rtol=0)


def _square_scene():
    """A 6x6 square moving 3 px right over a static background, with exact forward and backward flows."""
    fw = torch.zeros(1, 2, 20, 20)
    bw = torch.zeros(1, 2, 20, 20)
    fw[:, 0, 7:13, 5:11] = 3.0  # square at x=5..10 in frame a
    bw[:, 0, 7:13, 8:14] = -3.0  # square at x=8..13 in frame b
    return fw, bw


def test_occlusion_mask_flags_covered_and_disoccluded_regions():
    fw, bw = _square_scene()
    occ_a = occlusion_mask(fw, bw)[0, 0]
    # Background of a at x=11..13 gets covered by the square in b.
    expected = torch.zeros(20, 20, dtype=torch.bool)
    expected[7:13, 11:14] = True
    assert torch.equal(occ_a, expected)
    # Seen from b, background at x=5..7 was hidden under the square in a (disoccluded).
    occ_b = occlusion_mask(bw, fw)[0, 0]
    expected_b = torch.zeros(20, 20, dtype=torch.bool)
    expected_b[7:13, 5:8] = True
    assert torch.equal(occ_b, expected_b)


def test_flow_loss_zero_for_exact_motion_and_matches_hand_value():
    g = torch.Generator().manual_seed(2)
    base = torch.rand(1, 3, 16, 24, generator=g)
    # x_{t+1} is x_t shifted right by 2 px, so x_t(p) = x_{t+1}(p + (2, 0)).
    video = torch.stack([base, torch.roll(base, 2, dims=3)], dim=2)
    flows = torch.zeros(1, 1, 2, 16, 24)
    flows[:, :, 0] = 2.0
    assert float(flow_loss(video, flows)) == 0.0
    # Zero flow: the plain mean squared frame difference summed over channels.
    zero = torch.zeros_like(flows)
    expected = (video[:, :, 0] - video[:, :, 1]).square().sum(1).mean()
    torch.testing.assert_close(flow_loss(video, zero), expected)
    video.requires_grad_(True)
    flow_loss(video, zero).backward()
    assert video.grad is not None and float(video.grad.abs().sum()) > 0


def test_flow_loss_excludes_occluded_pixels():
    fw, bw = _square_scene()
    g = torch.Generator().manual_seed(4)
    a = torch.rand(1, 1, 20, 20, generator=g)
    b = a.clone()
    b[:, :, 7:13, 8:14] = a[:, :, 7:13, 5:11]
    b[:, :, 7:13, 5:8] = 0.5  # disoccluded background: unknown in a
    video = torch.stack([a, b], dim=2)
    unmasked = float(flow_loss(video, fw.unsqueeze(1)))
    masked = float(flow_loss(video, fw.unsqueeze(1), bw.unsqueeze(1)))
    assert unmasked > 1e-3
    assert masked == pytest.approx(0.0, abs=1e-12)


def test_multiscale_flow_loss_values():
    g = torch.Generator().manual_seed(7)
    gt = torch.randn(2, 2, 16, 16, generator=g)
    half = torch.nn.functional.avg_pool2d(gt, 2) * 0.5
    quarter = torch.nn.functional.avg_pool2d(gt, 4) * 0.25
    assert float(multiscale_flow_loss([gt, half, quarter], gt)) == pytest.approx(0.0, abs=1e-10)
    off = torch.tensor([1.0, 0.0]).view(1, 2, 1, 1)
    loss = multiscale_flow_loss([gt + off, half + 2 * off, quarter], gt, weights=[0.5, 0.25, 4.0])
    assert float(loss) == pytest.approx(0.5 * 1 + 0.25 * 4, rel=1e-5)


def test_flow_to_color_wheel():
    flow = torch.zeros(1, 2, 2, 2)
    flow[0, 0, 0, 0] = 2.0  # rightward, maximal magnitude
    flow[0, 0, 0, 1] = 1.0  # rightward, half magnitude
    img = flow_to_color(flow)
    assert img.shape == (1, 2, 2, 3)
    torch.testing.assert_close(img[0, 1, 1], torch.ones(3))  # zero flow is white
    # Rightward flow is the wheel's first hue, pure red; half magnitude is half saturated.
    torch.testing.assert_close(img[0, 0, 0], torch.tensor([1.0, 0.0, 0.0]))
    torch.testing.assert_close(img[0, 0, 1], torch.tensor([1.0, 0.5, 0.5]))
    # Downward flow (+y) sits a quarter turn on (13.5 of 55 hues): red -> yellow, 90% of the way.
    down = flow_to_color(torch.tensor([0.0, 1.0]).view(1, 2, 1, 1))[0, 0, 0]
    torch.testing.assert_close(down, torch.tensor([1.0, 0.9, 0.0]))
    dark = flow_to_color(flow, max_flow=1.0)[0, 0, 0]
    torch.testing.assert_close(dark, torch.tensor([0.75, 0.0, 0.0]))


def test_bad_inputs_are_named():
    a = torch.rand(1, 3, 16, 16)
    with pytest.raises(ValueError, match="method='raft'"):
        estimate_flow(a, a, method="raft")
    with pytest.raises(ValueError, match="same shape"):
        estimate_flow(a, torch.rand(1, 3, 16, 20))
    with pytest.raises(ValueError, match="0..1"):
        estimate_flow(a * 255, a)
    with pytest.raises(ValueError, match="C in"):
        estimate_flow(torch.rand(1, 2, 16, 16), torch.rand(1, 2, 16, 16))
    with pytest.raises(ValueError, match=r"\[B, 2, H, W\]"):
        warp(a, torch.zeros(1, 3, 16, 16))
    with pytest.raises(ValueError, match="T=1"):
        flow_loss(torch.rand(1, 3, 1, 8, 8), torch.zeros(1, 0, 2, 8, 8))
    with pytest.raises(ValueError, match="weights has 1"):
        multiscale_flow_loss([torch.zeros(1, 2, 4, 4)] * 2, torch.zeros(1, 2, 8, 8), weights=[1.0])
