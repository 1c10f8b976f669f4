"""SmolVLM2 video captioning from a local folder (256M / 500M Video-Instruct, 2.2B Instruct layouts).

The processor's video path needs torchvision, so this module samples frames, writes the video prompt
(:mod:`vidcore.caption.prompt`) and preprocesses frames itself, then calls ``model.generate``.
Preprocessing follows the torchvision video path: resize the longest edge to ``video_size``, then to a
``max_image_size`` square (aspect not kept), bicubic with antialias (the processor asks for LANCZOS,
which torchvision tensors do not have), normalise with the folder's mean/std.
"""

from __future__ import annotations

import gc
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from vidcore.caption.prompt import SmolVLMTokens, chat_prompt, sample_frame_indices, video_prompt
from vidcore.devices import resolve_device, resolve_dtype
from vidcore.io.frames import check_frames

MODEL_TYPES = ("smolvlm", "idefics3")
DEFAULT_QUESTION = "Describe this video in detail."
VideoInput = str | os.PathLike | Tensor


@dataclass(frozen=True)
class VisionPreprocess:
    """Frame preprocessing read from preprocessor_config.json (hub values for 256M in brackets)."""

    video_size: int  # longest edge after the first resize [512]
    image_size: int  # square side fed to the vision tower (max_image_size) [512]
    mean: tuple[float, float, float]  # [0.5, 0.5, 0.5]
    std: tuple[float, float, float]  # [0.5, 0.5, 0.5]
    fps: float  # default sampling rate [1]
    max_frames: int  # default cap [64]


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def preprocess_frames(frames: Tensor, prep: VisionPreprocess) -> Tensor:
    """Frames [T, H, W, 3] in 0..1 -> pixel_values [T, 3, S, S] normalised (two resizes, as the processor)."""
    x = frames.permute(0, 3, 1, 2).float()  # [T, H, W, 3] -> [T, 3, H, W]
    h, w = x.shape[-2:]
    # First resize: longest edge -> video_size, aspect kept, other side rounded up to even (processor rule).
    if w >= h:
        nw, nh = prep.video_size, int(prep.video_size / (w / h))
        nh += nh % 2
    else:
        nh, nw = prep.video_size, int(prep.video_size * (w / h))
        nw += nw % 2
    x = F.interpolate(x, size=(max(nh, 1), max(nw, 1)), mode="bicubic", antialias=True, align_corners=False)
    x = F.interpolate(x, size=(prep.image_size,) * 2, mode="bicubic", antialias=True, align_corners=False)
    x = x.clamp(0.0, 1.0)  # bicubic overshoot; the processor works on uint8-range values
    mean = torch.tensor(prep.mean).view(1, 3, 1, 1)
    std = torch.tensor(prep.std).view(1, 3, 1, 1)
    return (x - mean) / std


class Captioner:
    """SmolVLM2 captioner: videos (files or frames) -> text, with frame sampling and batching."""

    def __init__(
        self, model: Any, tokenizer: Any, image_seq_len: int, prep: VisionPreprocess, source: str = ""
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.image_seq_len = image_seq_len
        self.prep = prep
        self.source = source
        self.tokens = SmolVLMTokens(
            image=getattr(tokenizer, "image_token", None) or "<image>",
            fake_image=getattr(tokenizer, "fake_image_token", None) or "<fake_token_around_image>",
            global_image=getattr(tokenizer, "global_image_token", None) or "<global-img>",
        )
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.tokens.image)

    def __repr__(self) -> str:
        state = "released" if self.model is None else f"{self.dtype}, {self.device}"
        return f"Captioner(source={self.source!r}, image_seq_len={self.image_seq_len}, {state})"

    def components(self) -> dict[str, torch.nn.Module]:
        """The torch modules this handle runs (what a host such as ComfyUI moves between devices
        and frees)."""
        # A released captioner holds none.
        return {} if self.model is None else {"captioner": self.model}

    @property
    def device(self) -> torch.device:
        return next(self._live().parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self._live().parameters()).dtype

    def _live(self) -> Any:
        if self.model is None:
            raise RuntimeError(f"this captioner ({self.source!r}) was released; load it again")
        return self.model

    def release(self) -> None:
        """Drop the model (and its memory); the captioner cannot be used afterwards."""
        was_cuda = self.model is not None and self.device.type == "cuda"
        self.model = None
        gc.collect()
        if was_cuda:
            torch.cuda.empty_cache()

    # ---- inputs ----

    def sample(
        self,
        video: VideoInput,
        num_frames: int | None = None,
        fps: float | None = None,
        video_fps: float | None = None,
    ) -> tuple[Tensor, list[float], float]:
        """Return (sampled frames [N, H, W, 3], their times in seconds, video duration in seconds)."""
        if isinstance(video, (str, os.PathLike)):
            from vidcore.io.video import read_video

            if video_fps is not None:
                raise ValueError("video_fps is read from the file; pass it only with a frames tensor")
            frames, video_fps = read_video(video)
            name = repr(str(video))
        elif isinstance(video, Tensor):
            name = "frames"
            if video_fps is None:
                raise ValueError(
                    "video_fps is needed with a frames tensor: the prompt states each frame's time "
                    "(pass the source frame rate, e.g. 24)"
                )
            frames = video
        else:
            raise TypeError(
                f"video must be a path or a frames tensor [T, H, W, 3], got {type(video).__name__}"
            )
        check_frames(frames, name)
        idx = sample_frame_indices(
            frames.shape[0],
            float(video_fps),
            num_frames=num_frames,
            fps=self.prep.fps if fps is None else fps,
            max_frames=self.prep.max_frames,
        )
        times = [i / float(video_fps) for i in idx]
        return frames[idx], times, frames.shape[0] / float(video_fps)

    def build_inputs(
        self,
        videos: Sequence[VideoInput],
        question: str = DEFAULT_QUESTION,
        num_frames: int | None = None,
        fps: float | None = None,
        video_fps: float | Sequence[float | None] | None = None,
    ) -> dict[str, Tensor]:
        """Tokenised prompts (left padded) + pixel_values [B, N_max, 3, S, S] + pixel_attention_mask."""
        if not isinstance(question, str) or not question.strip():
            raise ValueError(f"question={question!r} must be a non-empty string")
        if not isinstance(videos, (list, tuple)) or not videos:
            raise ValueError("videos must be a non-empty list of paths or frames tensors")
        fps_list = list(video_fps) if isinstance(video_fps, (list, tuple)) else [video_fps] * len(videos)
        if len(fps_list) != len(videos):
            raise ValueError(f"video_fps has {len(fps_list)} entries for {len(videos)} videos")
        texts, pixels = [], []
        for video, vfps in zip(videos, fps_list, strict=True):
            frames, times, duration = self.sample(video, num_frames, fps, vfps)
            texts.append(video_prompt(question, times, duration, self.image_seq_len, self.tokens))
            pixels.append(preprocess_frames(frames, self.prep))
        n_max, s = max(p.shape[0] for p in pixels), self.prep.image_size
        pixel_values = torch.zeros(len(pixels), n_max, 3, s, s)
        pixel_mask = torch.zeros(len(pixels), n_max, s, s, dtype=torch.bool)
        for i, p in enumerate(pixels):
            # Missing frames stay all-zero: the model drops all-zero images (its padding convention).
            pixel_values[i, : p.shape[0]] = p
            pixel_mask[i, : p.shape[0]] = True
        batch = self._tokenize(texts)
        batch["pixel_values"] = pixel_values.to(self.device)
        batch["pixel_attention_mask"] = pixel_mask.to(self.device)
        return batch

    def _tokenize(self, texts: list[str]) -> dict[str, Tensor]:
        self.tokenizer.padding_side = "left"  # decoder-only batched generation continues from the right end
        enc = self.tokenizer(texts, padding=True, return_tensors="pt", add_special_tokens=False)
        return {
            "input_ids": enc["input_ids"].to(self.device),
            "attention_mask": enc["attention_mask"].to(self.device),
        }

    # ---- generation ----

    def _generate(
        self, batch: dict[str, Tensor], max_new_tokens: int, temperature: float, seed: int
    ) -> list[str]:
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ValueError(f"max_new_tokens={max_new_tokens!r} must be an int >= 1")
        if not isinstance(temperature, (int, float)) or temperature < 0:
            raise ValueError(f"temperature={temperature!r} must be >= 0 (0 = greedy, deterministic)")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed={seed!r} must be an int")
        model = self._live()
        sampling = (
            {"do_sample": True, "temperature": float(temperature)}
            if temperature > 0
            else {"do_sample": False}
        )
        devices = [self.device] if self.device.type == "cuda" else []
        # fork_rng: the seed drives this call only and leaves the caller's global RNG untouched.
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            torch.manual_seed(seed)
            out = model.generate(**batch, max_new_tokens=max_new_tokens, **sampling)
        new_tokens = out[:, batch["input_ids"].shape[1] :]
        return [t.strip() for t in self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]

    def caption_batch(
        self,
        videos: Sequence[VideoInput],
        question: str = DEFAULT_QUESTION,
        num_frames: int | None = None,
        fps: float | None = None,
        video_fps: float | Sequence[float | None] | None = None,
        max_new_tokens: int = 128,
        temperature: float = 0.0,
        seed: int = 0,
    ) -> list[str]:
        """Caption several videos in one generate call (prompts left padded, frames zero padded)."""
        batch = self.build_inputs(videos, question, num_frames, fps, video_fps)
        return self._generate(batch, max_new_tokens, temperature, seed)

    def caption(
        self,
        video: VideoInput,
        question: str = DEFAULT_QUESTION,
        num_frames: int | None = None,
        fps: float | None = None,
        video_fps: float | None = None,
        max_new_tokens: int = 128,
        temperature: float = 0.0,
        seed: int = 0,
    ) -> str:
        """Caption one video (a file path, or frames [T, H, W, 3] in 0..1 with ``video_fps``)."""
        return self.caption_batch(
            [video], question, num_frames, fps, video_fps, max_new_tokens, temperature, seed
        )[0]

    def ask(self, text: str, max_new_tokens: int = 128, temperature: float = 0.0, seed: int = 0) -> str:
        """Text-only turn (no frames), e.g. asking the VLM to rewrite a caption."""
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"text={text!r} must be a non-empty string")
        return self._generate(
            self._tokenize([chat_prompt(text, self.tokens)]), max_new_tokens, temperature, seed
        )[0]


def read_preprocess(folder: Path, config: Any) -> VisionPreprocess:
    """Preprocessing settings from preprocessor_config.json, defaulting to the vision tower's image size."""
    pre = _read_json(folder / "preprocessor_config.json")
    side = int(config.vision_config.image_size)
    sampling = pre.get("video_sampling") or {}
    image_size = int((pre.get("max_image_size") or {}).get("longest_edge", side))
    video_size = int((sampling.get("video_size") or {}).get("longest_edge", image_size))
    mean, std = pre.get("image_mean", [0.5] * 3), pre.get("image_std", [0.5] * 3)
    if image_size % int(config.vision_config.patch_size):
        raise ValueError(
            f"{str(folder)!r}: max_image_size {image_size} is not a multiple of the patch size "
            f"{config.vision_config.patch_size}"
        )
    return VisionPreprocess(
        video_size=video_size,
        image_size=image_size,
        mean=tuple(float(m) for m in mean),
        std=tuple(float(s) for s in std),
        fps=float(sampling.get("fps", 1)),
        max_frames=int(sampling.get("max_frames", 64)),
    )


def load_captioner(
    path: str | os.PathLike,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
) -> Captioner:
    """Load a SmolVLM2 folder (config.json, safetensors, tokenizer.json; offline, nothing unpickled)."""
    from vidcore.text.loading import inspect_folder

    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or path to a SmolVLM2 folder, got {type(path).__name__}")
    folder = Path(path)
    inspect_folder(folder, expected=MODEL_TYPES)  # names missing files / a folder of another model type
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoTokenizer

    config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
    computed = int(
        (config.vision_config.image_size // config.vision_config.patch_size) ** 2 / config.scale_factor**2
    )
    stated = _read_json(folder / "processor_config.json").get("image_seq_len")
    if stated is not None and int(stated) != computed:
        raise ValueError(
            f"{str(folder)!r}: processor_config.json image_seq_len={stated} but the model config gives "
            f"(image_size/patch)^2/scale^2 = {computed}"
        )
    prep = read_preprocess(folder, config)
    if prep.image_size != int(config.vision_config.image_size):
        raise ValueError(
            f"{str(folder)!r}: max_image_size {prep.image_size} differs from the vision tower's image_size "
            f"{config.vision_config.image_size}; each frame must fill exactly {computed} image tokens"
        )
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    model = AutoModelForImageTextToText.from_pretrained(
        str(folder), local_files_only=True, use_safetensors=True, dtype=resolve_dtype(dtype)
    )
    model = model.to(resolve_device(device)).eval().requires_grad_(False)
    captioner = Captioner(model, tokenizer, computed, prep, source=str(folder))
    if captioner.image_token_id != config.image_token_id:
        raise ValueError(
            f"{str(folder)!r}: tokenizer maps {captioner.tokens.image!r} to {captioner.image_token_id} "
            f"but the config's image_token_id is {config.image_token_id}"
        )
    return captioner
