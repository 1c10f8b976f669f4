"""Pieces of ``vidcore caption VIDEO --model DIR [--as-prompt]`` (the lead wires them into vidcore.cli)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TextIO

from vidcore.caption.smolvlm import DEFAULT_QUESTION


def add_caption_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the caption sub-command's arguments to ``parser``."""
    parser.add_argument(
        "videos", nargs="+", metavar="VIDEO", help="video file(s) to caption (several = one batch)"
    )
    parser.add_argument(
        "--model",
        required=True,
        metavar="DIR",
        help="local SmolVLM2 folder (e.g. models/LLM/SmolVLM2-256M-Video-Instruct); nothing is downloaded",
    )
    parser.add_argument("--question", default=DEFAULT_QUESTION, help="what to ask about the video")
    parser.add_argument(
        "--frames",
        type=int,
        default=None,
        metavar="N",
        help="show N frames spread uniformly (default: --fps rule)",
    )
    parser.add_argument(
        "--fps", type=float, default=None, help="sample this many frames per second (default: the model's, 1)"
    )
    parser.add_argument("--max-new-tokens", type=int, default=128, help="caption length limit in tokens")
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (deterministic)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None, help="cpu (default), cuda, cuda:1, ...")
    parser.add_argument("--dtype", default=None, choices=["fp32", "fp16", "bf16"], help="default fp32")
    parser.add_argument(
        "--as-prompt", action="store_true", help="print a generation prompt made from the caption"
    )
    parser.add_argument(
        "--rewrite",
        default="template",
        choices=["template", "vlm"],
        help="how --as-prompt rewrites the caption",
    )
    parser.add_argument("--style", default=None, help="style words added to the prompt (with --as-prompt)")
    parser.add_argument(
        "--extra",
        action="append",
        default=[],
        metavar="TERM",
        help="extra prompt term (repeatable; --as-prompt)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object per video")
    return parser


def run_caption(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run the caption sub-command; returns the process exit code."""
    from vidcore.caption.refine import caption_to_prompt, rewrite_with_vlm
    from vidcore.caption.smolvlm import load_captioner

    out = out or sys.stdout
    if (args.style or args.extra) and not args.as_prompt:
        raise ValueError("--style and --extra shape the prompt: add --as-prompt")
    captioner = load_captioner(args.model, device=args.device, dtype=args.dtype)
    try:
        captions = captioner.caption_batch(
            args.videos,
            question=args.question,
            num_frames=args.frames,
            fps=args.fps,
            max_new_tokens=args.max_new_tokens,
            temperature=args.temperature,
            seed=args.seed,
        )
        for video, caption in zip(args.videos, captions, strict=True):
            record = {"video": str(video), "caption": caption}
            if args.as_prompt:
                if args.rewrite == "vlm":
                    record["prompt"] = rewrite_with_vlm(
                        captioner, caption, args.style, args.extra, seed=args.seed
                    )
                else:
                    record["prompt"] = caption_to_prompt(caption, args.style, args.extra)
            if args.json:
                out.write(json.dumps(record) + "\n")
            else:
                text = record["prompt"] if args.as_prompt else caption
                out.write((f"{video}: {text}" if len(args.videos) > 1 else text) + "\n")
    finally:
        captioner.release()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (``python -m vidcore.caption.cli``) until the lead wires ``vidcore caption``."""
    parser = add_caption_arguments(argparse.ArgumentParser(prog="vidcore caption", description=__doc__))
    return run_caption(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
