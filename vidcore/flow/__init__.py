"""Optical flow (pyramidal Lucas-Kanade, Horn-Schunck), warping, occlusion masks and flow losses.

Flow convention: ``[..., 2, H, W]``, channel 0 = x (right), 1 = y (down), ``a(p) ≈ b(p + F(p))``.
"""

from vidcore.flow.estimate import DEFAULT_METHOD, METHODS, estimate_flow
from vidcore.flow.losses import downsample_flow, flow_loss, multiscale_flow_loss, warp_residual
from vidcore.flow.warping import end_point_error, flow_to_color, occlusion_mask, warp, warp_with_mask

__all__ = [
    "DEFAULT_METHOD",
    "METHODS",
    "downsample_flow",
    "end_point_error",
    "estimate_flow",
    "flow_loss",
    "flow_to_color",
    "multiscale_flow_loss",
    "occlusion_mask",
    "warp",
    "warp_residual",
    "warp_with_mask",
]
