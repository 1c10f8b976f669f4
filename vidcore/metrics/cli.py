"""`vidcore score VIDEO [--prompt P] [--clip DIR] [--reference VIDEO_OR_DIR]`: argument set and runner.

The lead's ``vidcore/cli.py`` registers the sub-command with :func:`add_score_arguments` and calls
:func:`run_score`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vidcore.flow.estimate import DEFAULT_METHOD, METHODS
from vidcore.io.atomic import check_target, write_text

VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv", ".mov", ".avi", ".gif", ".webp", ".m4v")


def add_score_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the `score` arguments to ``parser`` (a sub-parser) and return it."""
    parser.description = (
        "Score a generated video: flicker, warp error and dynamic degree always; CLIP-TC with --clip; "
        "CLIP-SIM with --clip and --prompt; PSNR/SSIM against a --reference video; FVD when VIDEO and "
        "--reference are both folders of videos. Prints JSON."
    )
    parser.add_argument("video", help="video file, or a folder of videos (each is scored; FVD needs folders)")
    parser.add_argument("--prompt", help="text prompt for CLIP-SIM (needs --clip)")
    parser.add_argument(
        "--clip", metavar="DIR", help="local transformers CLIP folder (e.g. clip-vit-base-patch32)"
    )
    parser.add_argument(
        "--reference", metavar="VIDEO_OR_DIR", help="reference video (PSNR/SSIM) or folder of videos (FVD)"
    )
    parser.add_argument(
        "--flow-method", default=DEFAULT_METHOD, choices=METHODS, help="optical flow estimator"
    )
    parser.add_argument(
        "--max-frames", type=int, default=None, help="score at most this many frames per video"
    )
    parser.add_argument("--stride", type=int, default=1, help="keep every N-th frame")
    parser.add_argument("--fvd-frames", type=int, default=16, help="frames per video fed to I3D for FVD")
    parser.add_argument("--plot", metavar="PNG", help="save the per-frame curves of a single video as PNG")
    parser.add_argument("--output", metavar="JSON", help="also write the JSON to this file")
    parser.add_argument("--overwrite", action="store_true", help="replace existing --plot / --output files")
    return parser


def _list_videos(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
    if not files:
        raise ValueError(f"folder {str(folder)!r} holds no video files ({', '.join(VIDEO_SUFFIXES)})")
    return files


def run_score(args: argparse.Namespace) -> int:
    """Run `vidcore score` for parsed ``args``; prints the JSON result and returns the exit code 0."""
    from vidcore.io.video import read_video
    from vidcore.metrics.plot import save_curves_png
    from vidcore.metrics.score import json_safe, score_sets, score_video

    video, reference = Path(args.video), Path(args.reference) if args.reference else None
    if not video.exists():
        raise FileNotFoundError(f"video {str(video)!r} does not exist")
    if reference is not None and not reference.exists():
        raise FileNotFoundError(f"reference {str(reference)!r} does not exist")
    for target in (args.output, args.plot):
        if target:
            check_target(target, args.overwrite, flag="--overwrite")  # before any scoring work
    clip = None
    if args.clip:
        from vidcore.metrics.clip import load_clip

        clip = load_clip(args.clip, require_text=args.prompt is not None)
    read = {"max_frames": args.max_frames, "stride": args.stride}
    if video.is_file():
        if reference is not None and reference.is_dir():
            raise ValueError("a single VIDEO needs a reference video file (PSNR/SSIM); FVD needs two folders")
        frames, fps = read_video(video, **read)
        ref = read_video(reference, **read)[0] if reference is not None else None
        result = score_video(frames, fps, args.prompt, clip, ref, args.flow_method)
        result["video"] = str(video)
        if args.plot:
            result["plot"] = str(save_curves_png(args.plot, result["per_frame"], overwrite=args.overwrite))
    else:
        if args.plot:
            raise ValueError("--plot draws the curves of a single video; VIDEO is a folder")
        if reference is not None and reference.is_file():
            raise ValueError("VIDEO is a folder: --reference must be a folder of videos too (for FVD)")
        scores = {}
        for path in _list_videos(video):
            frames, fps = read_video(path, **read)
            scores[path.name] = score_video(frames, fps, args.prompt, clip, None, args.flow_method)
        keys = [k for k, v in next(iter(scores.values())).items() if isinstance(v, float)]
        result = {
            "videos": scores,
            "mean": {k: sum(s[k] for s in scores.values()) / len(scores) for k in keys if k != "fps"},
        }
        if reference is not None:
            n = args.fvd_frames
            gen = [read_video(p, max_frames=n, stride=args.stride)[0] for p in _list_videos(video)]
            ref = [read_video(p, max_frames=n, stride=args.stride)[0] for p in _list_videos(reference)]
            result.update(score_sets(gen, ref, num_frames=n))
    text = json.dumps(json_safe(result), indent=2, allow_nan=False)
    print(text, file=sys.stdout)
    if args.output:
        write_text(args.output, text + "\n", overwrite=args.overwrite, flag="--overwrite")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point: ``python -m vidcore.metrics.cli VIDEO ...``."""
    return run_score(add_score_arguments(argparse.ArgumentParser(prog="vidcore score")).parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
