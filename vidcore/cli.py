"""The ``vidcore`` command: generate, score, caption, train and eval."""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from pathlib import Path

FORMATS = ("mp4", "webm", "gif", "webp")

EPILOG = """examples:
  vidcore generate "a red circle moving right" -o out.mp4
  vidcore generate "a blue square sliding up" -o up.gif --steps 20 --guidance 4 --seed 3
  vidcore generate "green triangle drifting left" -o left.mp4 --schedule pyramidal
  vidcore generate "the fox turns its head" -o fox.mp4 --model ltx-video-2b-v0.9.5.safetensors \
      --text-encoder /models/t5-v1_1-xxl --image fox.png --frames 97
  vidcore generate "a fox in the snow" -o fox.mp4 --model ltx-video-2b-v0.9.5.safetensors \
      --text-encoder /models/t5-v1_1-xxl --frames 97 --height 480 --width 704 --steps 30 --device cuda
  vidcore score out.mp4 --prompt "a red circle moving right" --clip /models/clip-vit-base-patch32
  vidcore caption clip.mp4 --model /models/SmolVLM2-256M-Video-Instruct --as-prompt
  vidcore convert Wan2.1_VAE.pth wan21_vae.safetensors
  vidcore train vae --config tiny_vae
  vidcore eval shapes --model tiny
"""


def _families_taking(flag: str) -> str:
    """Display names of the registered families whose capabilities set ``flag`` ("no" when none do)."""
    from .pipelines import families

    return " / ".join(f.capabilities.family for f in families() if getattr(f.capabilities, flag)) or "no"


def _add_generate(sub: argparse._SubParsersAction) -> None:
    from .pipelines import builtin_models, families
    from .sampling import SAMPLERS, SCHEDULES

    p = sub.add_parser(
        "generate",
        help="text -> video with a vidcore model (the built-in `tiny` by default)",
        description="Generate a video from a text prompt, offline. Unset options take the model's defaults.",
    )
    p.add_argument("prompt", help="what the video should show; an empty string generates unconditionally")
    p.add_argument("-o", "--output", required=True, help="output file (.mp4, .webm, .gif or .webp)")
    p.add_argument(
        "--model",
        default="tiny",
        help=f"built-in model ({', '.join(sorted(builtin_models()))}) or a path: "
        + "; ".join(f"{f.capabilities.family}: {f.describe}" for f in families())
        + " (default: tiny)",
    )
    p.add_argument(
        "--text-encoder",
        default=None,
        metavar="DIR",
        help=f"only for {_families_taking('external_text_encoder')} models: a text encoder "
        "folder (transformers config.json, safetensors, tokenizer) for checkpoints that carry none",
    )
    p.add_argument(
        "--vae",
        default=None,
        metavar="PATH",
        help=f"only for {_families_taking('external_vae')} models: the VAE of a single-file checkpoint "
        "(.safetensors or a diffusers vae/ folder)",
    )
    p.add_argument(
        "--image-encoder",
        default=None,
        metavar="PATH",
        help=f"only for {_families_taking('external_image_encoder')} models: the CLIP vision encoder of a "
        "single-file image-to-"
        "video checkpoint (transformers folder or ComfyUI clip_vision file)",
    )
    p.add_argument(
        "--negative",
        default=None,
        help="negative prompt (the CFG unconditional branch; default: the model's own if any, else empty)",
    )
    p.add_argument(
        "--image",
        default=None,
        metavar="FIRST.png",
        help=f"first frame for image-to-video ({_families_taking('image_conditioning')} models); its size is "
        "the video's "
        "unless --height/--width are given (then they must match)",
    )
    p.add_argument(
        "--last-image",
        default=None,
        metavar="LAST.png",
        help=f"last frame as well ({_families_taking('last_image_conditioning')} models)",
    )
    p.add_argument(
        "--frames", type=int, default=None, help="number of frames (1 + 4k for tiny, 8k + 1 for LTX)"
    )
    p.add_argument("--height", type=int, default=None, help="frame height in pixels")
    p.add_argument("--width", type=int, default=None, help="frame width in pixels")
    p.add_argument("--steps", type=int, default=None, help="sampling steps")
    p.add_argument(
        "--guidance",
        type=float,
        default=None,
        help="CFG scale g (1 = off); given alone it holds at every step (a model's own scale may step "
        "down at low noise)",
    )
    p.add_argument(
        "--guidance-2",
        type=float,
        default=None,
        help="CFG scale of the steps below --guidance-boundary (two-expert Wan 2.2: of the low-noise expert)",
    )
    p.add_argument(
        "--guidance-boundary",
        type=float,
        default=None,
        help="noise level in (0, 1) below which --guidance-2 replaces --guidance",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same machine -> same video)")
    p.add_argument(
        "--schedule",
        choices=tuple(SCHEDULES),
        default=None,
        help="; ".join(f"{name}: {what}" for name, what in SCHEDULES.items())
        + " (default: the model's own; flow for video-to-video and what its own cannot take)",
    )
    p.add_argument("--shift", type=float, default=None, help="timestep shift of the flow schedule")
    p.add_argument(
        "--sigmas",
        default=None,
        metavar="LIST",
        help="explicit noise levels, comma separated, decreasing from <= 1 to 0 (e.g. 1,0.93,0.85,0.61,0 for "
        "a 4-step distilled student); sets the step count. Distilled models use their own list by default",
    )
    p.add_argument("--sampler", choices=tuple(SAMPLERS), default=None)
    p.add_argument(
        "--fps",
        type=float,
        default=None,
        help="frames per second of the written file; "
        + _families_taking("fps_conditioning")
        + " models are also conditioned on it (default: the model's own)",
    )
    p.add_argument("--format", choices=FORMATS, default=None, help="container (default: from the suffix)")
    p.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda (default: cpu)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument(
        "--lossless",
        action="store_true",
        help="frame-exact file: mp4 as RGB H.264 at qp 0 (many players cannot play it), lossless "
        "webm / webp; not for gif",
    )
    p.add_argument(
        "--parallel",
        default=None,
        metavar="SPEC",
        help="run on several processes launched by torchrun, e.g. `torchrun --nproc-per-node 4 -m "
        "vidcore.cli generate ... --parallel ulysses=2,ring=2`: keys ulysses (all-to-all, must divide the "
        "heads), ring, cfg (CFG branches on separate ranks), fsdp (shard the weights), timeout=SECONDS; "
        "ulysses x ring x cfg must equal the number of processes; rank 0 writes the video",
    )
    p.add_argument(
        "--preview-every",
        type=int,
        default=None,
        metavar="N",
        help="every N sampling steps (and after the last) write a contact sheet PNG of the current x0 "
        "prediction, a cheap latent -> RGB projection (default: no previews)",
    )
    p.add_argument(
        "--preview-file",
        default=None,
        metavar="F.png",
        help="where --preview-every writes, replaced atomically each time (default: OUTPUT.preview.png)",
    )
    p.set_defaults(func=_run_generate)


def _sigma_list(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SystemExit(f"vidcore generate: --sigmas {text!r} must be comma-separated numbers") from None


def _preview_file(args: argparse.Namespace, out: Path) -> Path | None:
    """The checked --preview-file target when --preview-every is given (refused like -o: exists without
    --overwrite, not a regular file, missing folder)."""
    from .io.atomic import check_target

    if args.preview_every is None:
        if args.preview_file is not None:
            raise SystemExit("vidcore generate: --preview-file needs --preview-every N")
        return None
    if args.preview_every < 1:
        raise SystemExit(f"vidcore generate: --preview-every {args.preview_every} must be >= 1 (steps)")
    path = Path(args.preview_file) if args.preview_file is not None else Path(f"{out}.preview.png")
    if path.suffix.lower() != ".png":
        raise SystemExit(f"vidcore generate: --preview-file {str(path)!r} must be a .png file")
    if path.resolve() == out.resolve():
        raise SystemExit(f"vidcore generate: --preview-file {str(path)!r} must differ from the output file")
    try:
        return check_target(path, args.overwrite, flag="--overwrite")
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        raise SystemExit(f"vidcore generate: --preview-file: {e}") from None


def _check_before_loading(args: argparse.Namespace) -> None:
    """generate's model-independent checks (sizes, counts, floats, device), run by the library's own
    checkers before anything loads; their messages name API parameters, which main() turns into flags.
    The model's size rule and the memory check run in ``Pipeline.generate`` before sampling."""
    from .devices import resolve_device
    from .pipelines.options import check_options, check_request

    check_request(args.frames, args.height, args.width)
    sigmas = _sigma_list(args.sigmas)
    check_options(
        steps=args.steps,
        guidance=args.guidance,
        guidance_2=args.guidance_2,
        guidance_boundary=args.guidance_boundary,
        seed=args.seed,
        shift=args.shift,
        sigmas=sigmas,
    )
    if args.device is not None:
        resolve_device(args.device)


def _run_generate(args: argparse.Namespace) -> int:
    from .io.atomic import check_target
    from .io.image import read_image
    from .io.video import check_fps, write_video
    from .pipelines import load_pipeline
    from .preview import PreviewEvery

    out = Path(args.output)
    fmt = args.format or out.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise SystemExit(f"vidcore generate: cannot tell the format of {str(out)!r}; use --format {FORMATS}")
    suffix = out.suffix.lstrip(".").lower()
    if args.format and suffix in FORMATS and suffix != args.format:
        raise SystemExit(
            f"vidcore generate: --format {args.format} contradicts the suffix of {str(out)!r}; "
            f"use a .{args.format} file name or --format {suffix}"
        )
    if args.lossless and fmt == "gif":
        raise SystemExit(
            "vidcore generate: --lossless is not possible for gif (256-colour palette); use mp4, webm or webp"
        )
    if args.fps is not None:
        try:
            check_fps(args.fps, fmt, "--fps")
        except ValueError as e:
            raise SystemExit(f"vidcore generate: {e}") from None
    try:
        check_target(out, args.overwrite, flag="--overwrite")
    except (FileNotFoundError, FileExistsError, ValueError, PermissionError) as e:
        raise SystemExit(f"vidcore generate: {e}") from None
    preview_file = _preview_file(args, out)
    _check_before_loading(args)
    image = None if args.image is None else read_image(args.image)
    last = None if args.last_image is None else read_image(args.last_image)
    pipe = load_pipeline(
        args.model,
        device=args.device,
        text_encoder=args.text_encoder,
        vae=args.vae,
        image_encoder=args.image_encoder,
        parallel=args.parallel,
    )
    run = getattr(pipe, "parallel", None)
    writer = run is None or run.is_writer
    if writer:  # free space for the video, now that its size is known, before any sampling
        cfg = pipe.config
        n, h, w = (
            v or d
            for v, d in ((args.frames, cfg.num_frames), (args.height, cfg.height), (args.width, cfg.width))
        )
        raw = n * h * w * 3
        check_target(
            out, args.overwrite, "--overwrite", need_bytes=(raw if args.lossless else raw // 10) + 2**16
        )
    frames = pipe.generate(
        args.prompt,
        negative_prompt=args.negative,
        num_frames=args.frames,
        height=args.height,
        width=args.width,
        steps=args.steps,
        guidance=args.guidance,
        guidance_2=args.guidance_2,
        guidance_boundary=args.guidance_boundary,
        seed=args.seed,
        schedule=args.schedule,
        shift=args.shift,
        sampler=args.sampler,
        sigmas=_sigma_list(args.sigmas),
        fps=args.fps,
        image=image,
        last_image=last,
        progress=writer,
        callback=None
        if preview_file is None or not writer
        else PreviewEvery(args.preview_every, preview_file, pipe.latent_preview),
    )
    if not writer:
        return 0  # every rank holds the same frames; rank 0 writes them
    fps = args.fps if args.fps is not None else pipe.config.fps
    path = write_video(out, frames, fps, format=fmt, overwrite=args.overwrite, lossless=args.lossless)
    print(path)
    return 0


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train the VAE, the DiT or the 3D U-Net on procedural shape videos (resumable)",
        description="Train a model from a JSON config (a path, or a shipped name: tiny_vae, tiny_dit, "
        "tiny_unet); the config's `kind` must be the model named here. "
        "Re-running the same command resumes from <out_dir>/state.safetensors.",
    )
    p.add_argument("what", choices=("vae", "dit", "unet"), help="vae, dit (SpacetimeDiT) or unet (UNet3D)")
    p.add_argument("--config", required=True, help="config file or shipped config name")
    p.add_argument("--steps", type=int, default=None, help="override the total number of steps")
    p.add_argument("--out-dir", default=None, help="override the run folder")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads per process")
    p.add_argument(
        "--processes", type=int, default=None, help="data-parallel worker processes (dit / unet only)"
    )
    p.add_argument(
        "--init-from", default=None, help="start from these weights when the run folder has no training state"
    )
    p.set_defaults(func=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from .train.trainer import load_train_config, train_dit, train_unet, train_vae

    pairs = {
        "steps": args.steps,
        "out_dir": args.out_dir,
        "threads": args.threads,
        "processes": args.processes,
        "init_from": args.init_from,
    }
    overrides = {k: v for k, v in pairs.items() if v is not None}
    cfg = load_train_config(args.config, overrides)
    if cfg.kind != args.what:
        raise ValueError(
            f"--config {args.config!r} is a kind={cfg.kind!r} config; `vidcore train {args.what}` expects "
            f"kind={args.what!r} (or run `vidcore train {cfg.kind}`)"
        )
    trainer = {"vae": train_vae, "dit": train_dit, "unet": train_unet}[cfg.kind]
    path = trainer(cfg, log=lambda m: print(m, file=sys.stderr))
    print(path)
    return 0


def _add_eval(sub: argparse._SubParsersAction) -> None:
    from .sampling import SAMPLERS, SCHEDULES

    p = sub.add_parser(
        "eval",
        help="measure colour / shape / direction accuracy of a model on held-out prompts",
        description="Generate one video per held-out evaluation prompt and judge it with the deterministic "
        "frame analyser. Prints a JSON report on stdout; progress and a table by held-out kind go to stderr.",
    )
    p.add_argument(
        "what",
        choices=("shapes", "text-probe"),
        help="shapes: generate and judge videos; text-probe: how far the text encoder alone carries the "
        "held-out words to their labels (no video model)",
    )
    p.add_argument("--text-encoder", default="minilm", help="text-probe: encoder name or folder")
    p.add_argument("--model", default="tiny")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--guidance", type=float, default=None)
    p.add_argument("--schedule", choices=tuple(SCHEDULES), default=None)
    p.add_argument("--sampler", choices=tuple(SAMPLERS), default=None, help="default: the model's own")
    p.add_argument(
        "--limit", type=int, default=None, help="evaluate only the first N prompts (every kind appears early)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--frames", type=int, default=None, help="frames per video (33: length scaling)")
    p.set_defaults(func=_run_eval)


def _run_eval(args: argparse.Namespace) -> int:
    if args.what == "text-probe":
        from .eval.text_probe import probe_text_encoder
        from .text import load_text_encoder

        print(json.dumps(probe_text_encoder(load_text_encoder(args.text_encoder)), indent=2))
        return 0
    from .eval.run import evaluate_model, format_kind_table

    if args.limit is not None and args.limit < 1:
        raise SystemExit(f"vidcore eval: --limit {args.limit} must be >= 1")
    report = evaluate_model(
        args.model,
        steps=args.steps,
        guidance=args.guidance,
        schedule=args.schedule,
        sampler=args.sampler,
        limit=args.limit,
        seed=args.seed,
        threads=args.threads,
        progress=True,
        num_frames=args.frames,
    )
    print(format_kind_table(report), file=sys.stderr)
    print(json.dumps(report, indent=2))
    return 0


# What an unset (None) option means, per command, in --help: "(default: the model's own)", not "None".
NONE_MEANS = {
    "generate": (
        {
            "frames",
            "height",
            "width",
            "steps",
            "guidance",
            "guidance_2",
            "guidance_boundary",
            "schedule",
            "shift",
            "sampler",
            "fps",
        },
        "the model's own",
    ),
    "eval": ({"steps", "guidance", "schedule", "frames"}, "the model's own"),
    "train": ({"steps", "out_dir", "threads", "processes", "init_from"}, "from the config"),
    "distill": ({"steps", "method", "out_dir", "train_steps"}, "from the config"),
}


class _DefaultsFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default (unless the help already names one); None reads as what
    it means for the command ("the model's own", "from the config", "none"), never "None"."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if not action.option_strings or action.default is argparse.SUPPRESS or "default" in text.lower():
            return text
        if action.default is None:
            names, meaning = NONE_MEANS.get(self._prog.split()[-1], (set(), ""))
            return f"{text} (default: {meaning if action.dest in names else 'none'})".lstrip()
        if action.default is False and action.nargs == 0:
            return f"{text} (default: off)".lstrip()
        return f"{text} (default: %(default)s)".lstrip()


class _CommandParser(argparse.ArgumentParser):
    """Subcommand parsers: --help shows the defaults."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("formatter_class", _DefaultsFormatter)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vidcore",
        description="VidCore: text-to-video generation, scoring, captioning and training, offline.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_CommandParser)
    _add_generate(sub)
    from .metrics.cli import add_score_arguments, run_score

    p = sub.add_parser("score", help="score a video: temporal consistency, flow, CLIP, FVD ...")
    add_score_arguments(p)
    p.set_defaults(func=run_score)
    from .caption.cli import add_caption_arguments, run_caption

    p = sub.add_parser(
        "caption", help="caption a video with a local SmolVLM2 folder (optionally as a prompt)"
    )
    add_caption_arguments(p)
    p.set_defaults(func=run_caption)
    from .io.convert import add_convert_arguments, run_convert

    p = sub.add_parser(
        "convert", help="convert a .pth/.pt/.ckpt/.bin state dict to .safetensors (tensors only)"
    )
    add_convert_arguments(p)
    p.set_defaults(func=run_convert)
    _add_train(sub)
    from .distill.cli import add_distill_arguments, run_distill

    p = sub.add_parser(
        "distill", help="step + guidance distillation: a few-step student that runs without CFG (resumable)"
    )
    add_distill_arguments(p)
    p.set_defaults(func=run_distill)
    _add_eval(sub)
    return parser


# The library names API parameters (``num_frames=100001 must be ...``); the CLI says its flags instead.
# One mapping per command; a name not listed stays as it is (config-file keys, other APIs' parameters).
FLAGS = {
    "generate": {
        "num_frames": "--frames",
        "height": "--height",
        "width": "--width",
        "steps": "--steps",
        "guidance": "--guidance",
        "guidance_2": "--guidance-2",
        "guidance_boundary": "--guidance-boundary",
        "seed": "--seed",
        "shift": "--shift",
        "sigmas": "--sigmas",
        "schedule": "--schedule",
        "sampler": "--sampler",
        "negative_prompt": "--negative",
        "image": "--image",
        "last_image": "--last-image",
        "device": "--device",
        "fps": "--fps",
        "text_encoder": "--text-encoder",
        "vae": "--vae",
        "image_encoder": "--image-encoder",
        "lossless": "--lossless",
        "overwrite": "--overwrite",
        "parallel": "--parallel",
    },
    "eval": {
        "steps": "--steps",
        "guidance": "--guidance",
        "schedule": "--schedule",
        "sampler": "--sampler",
        "seed": "--seed",
        "num_frames": "--frames",
    },
    "score": {"max_frames": "--max-frames", "stride": "--stride", "overwrite": "--overwrite"},
    "caption": {"device": "--device", "overwrite": "--overwrite"},
    "convert": {"overwrite": "--overwrite"},
}


def to_flags(message: str, command: str) -> str:
    """Rewrite ``name=value`` of the library's messages as ``--flag value`` for ``command`` (``name=True``
    of a switch as ``--flag``; a quoted value without spaces unquoted)."""
    flags = FLAGS.get(command, {})
    if not flags:
        return message
    names = "|".join(sorted(map(re.escape, flags), key=len, reverse=True))
    pattern = re.compile(rf"(?<![\w.\-/'\"])({names})=(True\b|'[^'\s]*'|\"[^\"\s]*\")?")

    def sub(m: re.Match[str]) -> str:
        flag, value = flags[m.group(1)], m.group(2)
        if value == "True":
            return flag
        return f"{flag} {value[1:-1]}" if value else f"{flag} "

    return pattern.sub(sub, message)


class UsageExit(SystemExit):
    """A usage error already reported on stderr: exit status 2; ``str()`` is the message (for callers in
    the same process that catch SystemExit)."""

    def __init__(self, message: str) -> None:
        super().__init__(2)
        self.message = message

    def __str__(self) -> str:
        return self.message


def main(argv: list[str] | None = None) -> int:
    """Run the ``vidcore`` command. One message format, ``vidcore COMMAND: error: ...`` on one line, and
    three exit statuses: 2 for usage errors (bad values, missing or unreadable input files, refused
    outputs; argparse's own errors too), 1 for failures while working (out of memory or disk, a device
    error; ``-v`` shows the traceback), 130 for Ctrl-C. Outputs are written atomically, so an interrupted
    or failed run leaves no partial file."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    prefix = f"vidcore {args.command}: "
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, FileNotFoundError, FileExistsError, NotADirectoryError) as e:
        print(f"{prefix}error: {to_flags(str(e), args.command)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prefix}interrupted (Ctrl-C); nothing was written", file=sys.stderr)
        return 130
    except SystemExit as e:
        if not isinstance(e.code, str) or isinstance(e, UsageExit):
            raise
        # An early check that raised SystemExit("vidcore CMD: message"): same format and status as the rest.
        message = e.code.removeprefix(prefix).removeprefix("error: ")
        print(f"{prefix}error: {message}", file=sys.stderr)
        raise UsageExit(e.code) from None
    except (OSError, RuntimeError, MemoryError) as e:
        if args.verbose:
            raise
        print(f"{prefix}error: {type(e).__name__}: {e} (run with -v for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
