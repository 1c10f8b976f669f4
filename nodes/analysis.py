"""Analysis nodes: optical flow, the flow warp loss and per-video metrics (with a plot and a JSON report)."""

from __future__ import annotations

import json

import torch

from . import _host
from ._convert import check_image, image_to_frames_first

METRICS_UI_KEY = "vidcore_metrics"


def _methods() -> list[str]:
    from vidcore.flow import METHODS

    return list(METHODS)


class VidCoreOpticalFlow:
    DESCRIPTION = (
        "Dense optical flow between consecutive frames (pyramidal Lucas-Kanade or Horn-Schunck), forward and "
        "backward, plus a Middlebury colour-wheel picture of the forward flow (hue = direction)."
    )
    CATEGORY = "VidCore/analysis"
    FUNCTION = "estimate"
    RETURN_TYPES = ("VIDCORE_FLOW", "IMAGE")
    RETURN_NAMES = ("flow", "flow_image")
    OUTPUT_TOOLTIPS = (
        "{'forward': [T-1, 2, H, W], 'backward': [T-1, 2, H, W]} in pixels (x right, y down).",
        "Colour-wheel frames [T-1, H, W, 3].",
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "Video frames [T, H, W, 3], T >= 2."}),
                "method": (_methods(), {"default": "lucas_kanade", "tooltip": "Flow estimator."}),
            }
        }

    def estimate(self, images, method: str):
        from vidcore.flow import flow_to_color
        from vidcore.metrics.temporal import video_flows

        frames = check_image(images, min_frames=2).float()
        with _host.Progress(2, "optical flow") as bar:
            bar.set(0)
            forward = video_flows(frames, method)
            bar.set(1)
            backward = video_flows(frames, method, backward=True)
            bar.set(2)
        return ({"forward": forward, "backward": backward}, flow_to_color(forward))


class VidCoreFlowWarpLoss:
    DESCRIPTION = (
        "Temporal warp loss of a video under a flow field: mean ||x_t - warp(x_{t+1}, F_t)||^2 over valid, "
        "non-occluded pixels (frames in 0..1). Lower = more temporally consistent."
    )
    CATEGORY = "VidCore/analysis"
    FUNCTION = "loss"
    OUTPUT_NODE = True  # shows its value on the node, so it runs even when nothing consumes the FLOAT
    RETURN_TYPES = ("FLOAT",)
    RETURN_NAMES = ("warp_loss",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "Video frames [T, H, W, 3]."}),
                "flow": ("VIDCORE_FLOW", {"tooltip": "Flow of the same frames (VidCore Optical Flow)."}),
                "occlusion_mask": (
                    "BOOLEAN",
                    {"default": True, "tooltip": "Exclude occluded pixels (forward-backward check)."},
                ),
            }
        }

    def loss(self, images, flow, occlusion_mask: bool):
        from vidcore.flow import flow_loss

        if not isinstance(flow, dict) or "forward" not in flow:
            raise TypeError("flow must be a VIDCORE_FLOW from VidCore Optical Flow")
        video = image_to_frames_first(images)
        back = flow["backward"][None] if occlusion_mask else None
        with torch.no_grad():
            value = flow_loss(video, flow["forward"][None].float(), None if back is None else back.float())
        return {"ui": {METRICS_UI_KEY: [{"warp_loss": float(value)}]}, "result": (float(value),)}


class VidCoreVideoMetrics:
    DESCRIPTION = (
        "Score a video: flicker (VBench), warp error, dynamic degree (flow magnitude), plus PSNR/SSIM when a "
        "reference is given. Outputs the numbers, a JSON report and a plot of the per-frame curves."
    )
    CATEGORY = "VidCore/analysis"
    FUNCTION = "score"
    OUTPUT_NODE = True
    RETURN_TYPES = ("FLOAT", "FLOAT", "FLOAT", "STRING", "IMAGE")
    RETURN_NAMES = ("flicker", "warp_error", "dynamic_degree", "report_json", "plot")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "Video frames [T, H, W, 3], T >= 2."}),
                "fps": (
                    "FLOAT",
                    {
                        "default": 8.0,
                        "min": 0.01,
                        "max": 240.0,
                        "step": 0.01,
                        "tooltip": "Frame rate (used by the is_dynamic decision).",
                    },
                ),
                "flow_method": (_methods(), {"default": "lucas_kanade", "tooltip": "Flow estimator."}),
            },
            "optional": {
                "reference": ("IMAGE", {"tooltip": "Reference frames of the same shape, for PSNR and SSIM."}),
            },
        }

    def score(self, images, fps: float, flow_method: str, reference=None):
        from vidcore.metrics.plot import render_curves
        from vidcore.metrics.score import score_video

        frames = check_image(images, min_frames=2).float().cpu()
        ref = None if reference is None else check_image(reference, "reference").float().cpu()
        _host.check_interrupted()
        report = score_video(frames, fps=float(fps), reference=ref, flow_method=flow_method)
        plot = torch.from_numpy(render_curves(report["per_frame"])).float().div(255)[None]
        text = json.dumps(report, indent=1)
        summary = {k: v for k, v in report.items() if k != "per_frame"}
        return {
            "ui": {METRICS_UI_KEY: [summary]},
            "result": (report["flicker"], report["warp_error"], report["dynamic_degree"], text, plot),
        }
