"""Analysis nodes: optical flow, the flow warp loss and per-video metrics (with a plot and a JSON report)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from . import _host
from ._convert import check_image, image_to_frames_first

METRICS_UI_KEY = "vidcore_metrics"
NO_CLIP = "none"  # clip_name choice for "no CLIP metrics" (always listed, so the widget is never empty)
CLIP_MODEL_TYPES = ("clip", "clip_vision_model")  # full CLIP (both towers) or a vision tower (CLIP-TC only)


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

        if not isinstance(flow, dict) or not {"forward", "backward"} <= flow.keys():
            raise TypeError("flow must be a VIDCORE_FLOW from VidCore Optical Flow")
        video = image_to_frames_first(images)
        back = flow["backward"][None] if occlusion_mask else None
        with torch.no_grad():
            value = flow_loss(video, flow["forward"][None].float(), None if back is None else back.float())
        return {"ui": {METRICS_UI_KEY: [{"warp_loss": float(value)}]}, "result": (float(value),)}


def clip_choices() -> dict[str, Path]:
    """CLIP transformers folders (config.json with model_type "clip" or "clip_vision_model") one level
    inside models/clip_vision and models/text_encoders (models/clip)."""
    found = _host.list_model_dirs(_host.CLIP_FOLDERS, "config.json", CLIP_MODEL_TYPES)
    return {name: path for name, path in found.items() if name != NO_CLIP}


def _cached_clip(clip_name: str, need_text: bool):
    """The CLIP folder ``clip_name`` loaded once (fp32, on ComfyUI's device) and cached across runs."""
    from vidcore.metrics.clip import load_clip

    where = ", ".join(f"models/{k}" for k in _host.CLIP_FOLDERS)
    path, device = _host.pick(clip_choices(), clip_name, "clip_name", where), _host.torch_device()
    kind = "clip+text" if need_text else "clip"  # a load without the text check must not serve CLIP-SIM
    return _host.MODELS.get(
        kind,
        path,
        device,
        torch.float32,
        lambda: load_clip(path, require_text=need_text, device=_host.weights_device("text")),
    )


def _nan_if_missing(report: dict, key: str) -> float:
    return float(report[key]) if key in report else float("nan")


class VidCoreVideoMetrics:
    DESCRIPTION = (
        "Score a video: flicker (VBench), warp error, dynamic degree (flow magnitude); CLIP-TC with a CLIP "
        "folder and CLIP-SIM with a CLIP folder and a prompt; PSNR/SSIM when a reference video of the same "
        "shape is given. Outputs the numbers, a JSON report and a plot of the per-frame curves. FVD compares "
        "sets of videos, so it is a CLI/library feature: `vidcore score DIR --reference DIR`."
    )
    CATEGORY = "VidCore/analysis"
    FUNCTION = "score"
    OUTPUT_NODE = True
    RETURN_TYPES = ("FLOAT", "FLOAT", "FLOAT", "STRING", "IMAGE", "FLOAT", "FLOAT", "FLOAT", "FLOAT")
    RETURN_NAMES = (
        "flicker",
        "warp_error",
        "dynamic_degree",
        "report_json",
        "plot",
        "clip_sim",
        "clip_tc",
        "psnr",
        "ssim",
    )
    OUTPUT_TOOLTIPS = (
        "VBench flicker score (255 - mean abs frame difference) / 255; 1 = static.",
        "Mean flow-warp error between consecutive frames (lower = more consistent).",
        "Mean of the top 5 % flow magnitudes in pixels.",
        "The full report as JSON (per-frame curves included; inf/nan written as strings).",
        "Plot of the per-frame curves.",
        "CLIP-SIM: mean frame-prompt cosine (NaN without a CLIP folder and a prompt).",
        "CLIP-TC: mean cosine of consecutive frames' CLIP embeddings (NaN without a CLIP folder).",
        "PSNR in dB against the reference (NaN without one; inf for identical frames).",
        "SSIM against the reference (NaN without one).",
    )

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
                "prompt": (
                    "STRING",
                    {
                        "default": "",
                        "multiline": True,
                        "tooltip": "Prompt for CLIP-SIM (needs clip_name); leave empty for no CLIP-SIM.",
                    },
                ),
                "clip_name": (
                    [NO_CLIP, *sorted(clip_choices())],
                    {
                        "default": NO_CLIP,
                        "tooltip": "CLIP transformers folder in models/clip_vision or models/text_encoders "
                        "(e.g. clip-vit-base-patch32: config.json, model.safetensors, tokenizer files). "
                        "CLIP-TC needs the vision tower; CLIP-SIM needs both towers.",
                    },
                ),
            },
        }

    def score(
        self,
        images,
        fps: float,
        flow_method: str,
        reference=None,
        prompt: str | None = None,
        clip_name: str | None = None,
    ):
        from vidcore.metrics.plot import render_curves
        from vidcore.metrics.score import json_safe, score_video

        frames = check_image(images, min_frames=2).float().cpu()
        ref = None if reference is None else check_image(reference, "reference").float().cpu()
        if prompt is not None and not isinstance(prompt, str):
            raise TypeError(f"prompt must be a string, got {type(prompt).__name__}")
        text_prompt = prompt if prompt and prompt.strip() else None  # the empty widget means "no CLIP-SIM"
        if clip_name in (None, NO_CLIP) and text_prompt is not None:
            raise ValueError(
                f"prompt={text_prompt[:60]!r} was given with clip_name={NO_CLIP!r}: CLIP-SIM needs a CLIP "
                "folder; choose clip_name or clear the prompt"
            )
        clip = None if clip_name in (None, NO_CLIP) else _cached_clip(clip_name, text_prompt is not None)
        _host.check_interrupted()
        _host.use(clip)
        report = score_video(
            frames, fps=float(fps), prompt=text_prompt, clip=clip, reference=ref, flow_method=flow_method
        )
        plot = torch.from_numpy(render_curves(report["per_frame"])).float().div(255)[None]
        text = json.dumps(json_safe(report), indent=1, allow_nan=False)
        summary = json_safe({k: v for k, v in report.items() if k != "per_frame"})
        extra = tuple(_nan_if_missing(report, k) for k in ("clip_sim", "clip_tc", "psnr", "ssim"))
        return {
            "ui": {METRICS_UI_KEY: [summary]},
            "result": (report["flicker"], report["warp_error"], report["dynamic_degree"], text, plot, *extra),
        }
