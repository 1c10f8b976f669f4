"""Captioning nodes: SmolVLM2 video captions and caption -> prompt rewriting (understand -> improve)."""

from __future__ import annotations

from . import _host
from ._convert import check_image

REWRITE_MODES = ("template", "vlm")


def _sampling_inputs(prefix: str = "") -> dict:
    """``temperature`` and ``seed`` widgets of the captioning nodes; tooltips start with ``prefix``."""
    return {
        "temperature": (
            "FLOAT",
            {
                "default": 0.0,
                "min": 0.0,
                "max": 2.0,
                "step": 0.05,
                "tooltip": f"{prefix}0 = greedy (deterministic, seed unused); > 0 samples.",
            },
        ),
        # The frontend adds a control to every INT named seed anyway; declaring it keeps the saved
        # widgets_values predictable.
        "seed": (
            "INT",
            {
                "default": 0,
                "min": 0,
                "max": 0xFFFFFFFF,
                "control_after_generate": True,
                "tooltip": f"{prefix}sampling seed, used only when temperature > 0.",
            },
        ),
    }


class VidCoreCaptionVideo:
    DESCRIPTION = (
        "Describe a video (frames + fps) with a SmolVLM2 captioner: frames are sampled uniformly and "
        "time-stamped in the prompt as SmolVLM2's processor does. Deterministic at temperature 0."
    )
    CATEGORY = "VidCore/caption"
    FUNCTION = "caption"
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("caption",)

    @classmethod
    def INPUT_TYPES(cls):
        from vidcore.caption.smolvlm import DEFAULT_QUESTION

        return {
            "required": {
                "captioner": (
                    "VIDCORE_CAPTIONER",
                    {"tooltip": "SmolVLM2 captioner (VidCore Load Captioner)."},
                ),
                "images": ("IMAGE", {"tooltip": "Video frames [T, H, W, 3]."}),
                "fps": (
                    "FLOAT",
                    {
                        "default": 8.0,
                        "min": 0.01,
                        "max": 240.0,
                        "step": 0.01,
                        "tooltip": "Frame rate of the frames (frame times go into the prompt).",
                    },
                ),
                "question": (
                    "STRING",
                    {
                        "multiline": True,
                        "default": DEFAULT_QUESTION,
                        "tooltip": "What to ask about the video.",
                    },
                ),
                "num_frames": (
                    "INT",
                    {
                        "default": 0,
                        "min": 0,
                        "max": 64,
                        "tooltip": "Frames shown to the model; 0 = the model's own sampling (1 fps, capped).",
                    },
                ),
                "max_new_tokens": (
                    "INT",
                    {"default": 128, "min": 1, "max": 1024, "tooltip": "Caption length cap."},
                ),
                **_sampling_inputs(),
            }
        }

    def caption(self, captioner, images, fps, question, num_frames, max_new_tokens, temperature, seed):
        check_image(images)
        with _host.Progress(1, "caption") as bar:
            bar.set(0)  # cancellation point before the (uninterruptible) generate call
            _host.use(captioner)
            text = captioner.caption(
                images.float().cpu(),
                question=question,
                num_frames=num_frames or None,
                video_fps=float(fps),
                max_new_tokens=max_new_tokens,
                temperature=temperature,
                seed=seed,
            )
            bar.set(1)
        return {"ui": {"text": [text]}, "result": (text,)}


class VidCoreCaptionToPrompt:
    DESCRIPTION = (
        "Turn a caption into a generation prompt: 'template' strips the 'The video shows' opener and appends "
        "style and extra terms; 'vlm' asks the captioner's language model to rewrite it first."
    )
    CATEGORY = "VidCore/caption"
    FUNCTION = "rewrite"
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("prompt",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "caption": (
                    "STRING",
                    {"forceInput": True, "tooltip": "Caption text (VidCore Caption Video)."},
                ),
                "mode": (
                    list(REWRITE_MODES),
                    {
                        "default": "template",
                        "tooltip": "template = rule-based "
                        "rewrite; vlm = the captioner rewrites it (needs the captioner input).",
                    },
                ),
                "style": (
                    "STRING",
                    {"default": "", "tooltip": "Style phrase appended (e.g. cinematic); empty = none."},
                ),
                "extra_terms": (
                    "STRING",
                    {"default": "", "tooltip": "Comma-separated terms appended (e.g. 4k, smooth motion)."},
                ),
                "max_new_tokens": (
                    "INT",
                    {"default": 77, "min": 1, "max": 512, "tooltip": "vlm mode: rewrite length cap."},
                ),
                **_sampling_inputs("vlm mode: "),
            },
            "optional": {
                "captioner": ("VIDCORE_CAPTIONER", {"tooltip": "Needed for mode = vlm."}),
            },
        }

    def rewrite(self, caption, mode, style, extra_terms, max_new_tokens, temperature, seed, captioner=None):
        from vidcore.caption import caption_to_prompt, rewrite_with_vlm

        if mode not in REWRITE_MODES:
            raise ValueError(f"mode={mode!r} must be one of {list(REWRITE_MODES)}")
        terms = [t.strip() for t in extra_terms.split(",") if t.strip()]
        style_arg = style if style.strip() else None
        _host.check_interrupted()
        if mode == "template":
            prompt = caption_to_prompt(caption, style_arg, terms)
        elif captioner is None:
            raise ValueError("mode='vlm' needs the captioner input connected (VidCore Load Captioner)")
        else:
            _host.use(captioner)
            prompt = rewrite_with_vlm(captioner, caption, style_arg, terms, max_new_tokens, seed, temperature)
        return {"ui": {"text": [prompt]}, "result": (prompt,)}
