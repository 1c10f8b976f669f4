"""Load Video (from ComfyUI's input folder) and Save Video (mp4 / webm / gif into the output folder)."""

from __future__ import annotations

import os
from pathlib import Path

from . import _host
from ._convert import check_image

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".mov", ".avi", ".m4v", ".gif", ".webp")
SAVE_FORMATS = ("mp4", "webm", "gif")
# The key our web extension reads on Save Video: {"filename", "subfolder", "type", "format", "fps"}.
UI_KEY = "vidcore_videos"


def input_videos() -> list[str]:
    """Video files in the input folder (and its subfolders), as paths relative to it."""
    root = _host.input_dir()
    if not root.is_dir():
        return []
    names = []
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            if f.lower().endswith(VIDEO_EXTENSIONS) and not f.startswith("."):
                name = Path(dirpath, f).relative_to(root).as_posix()
                try:
                    _host.inside(root, name, "video")  # list only what Load Video will accept
                except ValueError:
                    continue  # a link that leads outside the input folder
                names.append(name)
    return sorted(names)


def _input_path(video: str) -> Path:
    path = _host.inside(_host.input_dir(), video, "video")
    if not path.is_file():
        raise FileNotFoundError(
            f"video={video!r} does not exist in the input folder {str(_host.input_dir())!r}; upload one with "
            "the node's upload button or copy it into that folder"
        )
    return path


class VidCoreLoadVideo:
    DESCRIPTION = (
        "Load a video from ComfyUI's input folder (or upload one) as frames (IMAGE, 0..1) with its frame "
        "rate. Only files inside the input folder are accepted. Optional frame cap, stride and start frame. "
        "The pack puts a small example clip, vidcore_example.mp4, into the input folder on start-up."
    )
    CATEGORY = "VidCore/video"
    FUNCTION = "load"
    RETURN_TYPES = ("IMAGE", "FLOAT", "INT")
    RETURN_NAMES = ("images", "fps", "frame_count")
    OUTPUT_TOOLTIPS = (
        "Frames [T, H, W, 3].",
        "Frame rate of the kept frames (source fps / stride).",
        "Number of frames kept.",
    )

    @classmethod
    def INPUT_TYPES(cls):
        from vidcore.data import EXAMPLE_VIDEO

        names = input_videos()
        # video_upload: the frontend adds an upload button and its own player (like core Load Video,
        # Comfy-Org/ComfyUI comfy_extras/nodes_video.py); the shipped example clip is the default.
        options = {"video_upload": True, "tooltip": "Video file in the input folder (or upload one)."}
        if EXAMPLE_VIDEO.name in names:
            options["default"] = EXAMPLE_VIDEO.name
        return {
            "required": {
                "video": (names, options),
                "max_frames": (
                    "INT",
                    {
                        "default": 0,
                        "min": 0,
                        "max": 100000,
                        "tooltip": "Keep at most this many frames; 0 = all.",
                    },
                ),
                "stride": ("INT", {"default": 1, "min": 1, "max": 1000, "tooltip": "Keep every n-th frame."}),
                "start_frame": (
                    "INT",
                    {"default": 0, "min": 0, "max": 1000000, "tooltip": "First frame kept."},
                ),
            }
        }

    @classmethod
    def VALIDATE_INPUTS(cls, video):
        # Replaces the combo check, so subfolder paths work; refuses anything outside the input folder.
        try:
            _input_path(video)
        except (ValueError, FileNotFoundError) as e:
            return str(e)
        return True

    @classmethod
    def IS_CHANGED(cls, video, **_):
        try:
            st = _input_path(video).stat()
        except (ValueError, FileNotFoundError):
            return float("nan")  # never equal: re-run and report the error
        return f"{st.st_size}:{st.st_mtime_ns}"

    def load(self, video: str, max_frames: int, stride: int, start_frame: int):
        from vidcore.io.video import read_video

        _host.check_interrupted()
        frames, fps = read_video(
            _input_path(video), None if max_frames == 0 else max_frames, stride, start_frame
        )
        return (frames.to(_host.intermediate_device()), float(fps) / stride, int(frames.shape[0]))


def _output_target(filename_prefix: str) -> tuple[Path, str, str]:
    """(folder, prefix, subfolder) for a prefix like "vidcore/clip"; refuses escapes."""
    root = _host.output_dir()
    if not isinstance(filename_prefix, str) or not filename_prefix.strip():
        raise ValueError(f"filename_prefix={filename_prefix!r} must be a non-empty name")
    target = _host.inside(root, filename_prefix, "filename_prefix")
    if filename_prefix.endswith(("/", "\\")) or target == root.resolve():
        raise ValueError(f"filename_prefix={filename_prefix!r} must end with a file name prefix")
    subfolder = target.parent.relative_to(root.resolve()).as_posix()
    return target.parent, target.name, "" if subfolder == "." else subfolder


class VidCoreSaveVideo:
    DESCRIPTION = (
        "Save frames (IMAGE) as mp4 (H.264), webm (VP9) or gif in ComfyUI's output folder under a new unique "
        "name (prefix_00001.mp4, ...); never overwrites, no partial file. Shows the video on the node."
    )
    CATEGORY = "VidCore/video"
    FUNCTION = "save"
    OUTPUT_NODE = True
    RETURN_TYPES = ()

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "Frames [T, H, W, 3] in 0..1."}),
                "fps": (
                    "FLOAT",
                    {
                        "default": 8.0,
                        "min": 0.01,
                        "max": 240.0,
                        "step": 0.01,
                        "tooltip": "Frame rate of the file.",
                    },
                ),
                "filename_prefix": (
                    "STRING",
                    {
                        "default": "vidcore/video",
                        "tooltip": "Name prefix inside the "
                        "output folder; may start with subfolders (vidcore/clip).",
                    },
                ),
                "format": (list(SAVE_FORMATS), {"default": "mp4", "tooltip": "Container and codec."}),
                "crf": (
                    "INT",
                    {
                        "default": -1,
                        "min": -1,
                        "max": 63,
                        "tooltip": "mp4/webm quality (lower = "
                        "better: mp4 0-51, webm 0-63); -1 = the format's default; ignored for gif.",
                    },
                ),
            }
        }

    def save(self, images, fps: float, filename_prefix: str, format: str, crf: int):
        from vidcore.io.video import unique_path, write_video

        check_image(images)
        if format not in SAVE_FORMATS:
            raise ValueError(f"format={format!r} must be one of {list(SAVE_FORMATS)}")
        folder, prefix, subfolder = _output_target(filename_prefix)
        folder.mkdir(parents=True, exist_ok=True)
        _host.check_interrupted()
        for _attempt in range(5):
            path = unique_path(folder, prefix, "." + format)
            try:
                write_video(path, images, fps, format=format, crf=None if crf < 0 or format == "gif" else crf)
                break
            except FileExistsError:  # another writer took the name between lookup and publish: pick anew
                continue
        else:
            raise FileExistsError(f"could not find a free file name for {prefix!r} in {str(folder)!r}")
        entry = {
            "filename": path.name,
            "subfolder": subfolder,
            "type": "output",
            "format": format,
            "fps": float(fps),
            "frame_count": int(images.shape[0]),
        }
        return {"ui": {UI_KEY: [entry]}, "result": ()}
