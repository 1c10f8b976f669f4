"""Write the example workflows: API format (workflows/api/*.json, the source of truth) and UI format
(workflows/*.json, drag-and-drop files and ComfyUI templates) generated from it and the node definitions.

Run from the repository root: ``python workflows/make_workflows.py``. tests/test_workflows.py checks the
files on disk (both formats describe the same graph, widgets line up with the node inputs).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:  # run as a script: vidcore and nodes come from this checkout
    sys.path.insert(0, str(ROOT))

from vidcore.pipelines.wan import default_negative_prompt  # noqa: E402

INPUT_VIDEO = "vidcore_example.mp4"  # the e2e test puts a small clip of this name in ComfyUI's input folder
CAPTIONER = "SmolVLM2-256M-Video-Instruct"
# LTX-Video needs the user's weights (see README.md): the Lightricks single file in models/checkpoints and a
# T5-v1.1-XXL transformers folder in models/text_encoders.
LTX_CHECKPOINT = "ltx-video-2b-v0.9.5.safetensors"
LTX_TEXT_ENCODER = "t5-v1_1-xxl"
LTX_NEGATIVE = "worst quality, inconsistent motion, blurry, jittery, distorted"
# Image-to-video examples: a picture in ComfyUI's input/ folder of exactly the video's size (never resized).
LTX_FIRST_FRAME = "vidcore_example_first_frame_768x512.png"
# Wan 2.1 diffusers folders (model_index.json, transformer/, vae/, text_encoder/, tokenizer/, scheduler/; I2V
# also image_encoder/ + image_processor/) in models/diffusers or models/diffusion_models, named as downloaded.
WAN_T2V = "Wan2.1-T2V-1.3B-Diffusers"
WAN_I2V = "Wan2.1-I2V-14B-480P-Diffusers"
WAN_FIRST_FRAME = "vidcore_example_first_frame_832x480.png"
# Workflows that cannot run without downloaded weights (tests run them on tiny stand-ins of those names).
NEEDS_USER_WEIGHTS = (
    "ltx_video_text_to_video",
    "ltx_video_image_to_video",
    "wan_text_to_video",
    "wan_image_to_video",
)

DECODE = {"temporal_chunk": 0, "tile_size": 0, "tile_overlap": -1}
FLOW_SAMPLER = {"shift": 1.0, "sampler": "euler", "guidance_rescale": 0.0}
SAMPLE_IN = {"model": ["1", 0], "positive": ["2", 0], "negative": ["3", 0], "latent_image": ["4", 0]}

# ---- nodes (each builder returns a fresh dict) ---------------------------------------------------------


def _model(name: str, text_encoder: str | None = None) -> dict:
    inputs = {"model_name": name, "precision": "auto"}
    if text_encoder is not None:
        inputs["text_encoder_name"] = text_encoder
    return {"class_type": "VidCoreLoadModel", "inputs": inputs}


def _encode(text: str | list) -> dict:
    return {"class_type": "VidCoreTextEncode", "inputs": {"text_encoder": ["1", 2], "text": text}}


def _empty_latent(width: int, height: int, num_frames: int) -> dict:
    return {
        "class_type": "VidCoreEmptyVideoLatent",
        "inputs": {
            "model": ["1", 0],
            "vae": ["1", 1],
            "width": width,
            "height": height,
            "num_frames": num_frames,
            "batch_size": 1,
        },
    }


# The built-in tiny v2 runs text-to-video at CFG 3 with the ancestral sampler and the pyramidal schedule (its
# own 3 stages; all chosen on training-style captions: vidcore/weights/tiny/MODEL_CARD.md); video-to-video
# needs flow.
TINY_GUIDANCE = 3.0
TINY_SAMPLER = "euler_ancestral"
TINY_SCHEDULE = "pyramidal"


def _sampler(
    steps: int = 20,
    guidance: float = TINY_GUIDANCE,
    seed: int = 42,
    shift: float = 1.0,
    sampler: str = TINY_SAMPLER,
    denoise: float = 1.0,
    schedule: str = "flow",
) -> dict:
    return {
        "class_type": "VidCoreSampler",
        "inputs": {
            **SAMPLE_IN,
            "seed": seed,
            "steps": steps,
            "guidance": guidance,
            "schedule": schedule,
            "shift": shift,
            "sampler": sampler,
            "denoise": denoise,
            "guidance_rescale": 0.0,
        },
    }


def _decode() -> dict:
    return {"class_type": "VidCoreVAEDecode", "inputs": {"vae": ["1", 1], "samples": ["5", 0], **DECODE}}


def _save(prefix: str, fps: float | list, images: tuple = ("6", 0), fmt: str = "mp4") -> dict:
    return {
        "class_type": "VidCoreSaveVideo",
        "inputs": {
            "images": list(images),
            "fps": fps,
            "filename_prefix": prefix,
            "format": fmt,
            "crf": -1,
        },
    }


def _load_video(max_frames: int) -> dict:
    return {
        "class_type": "VidCoreLoadVideo",
        "inputs": {"video": INPUT_VIDEO, "max_frames": max_frames, "stride": 1, "start_frame": 0},
    }


NEG = _encode("")
TINY_20 = _sampler(schedule=TINY_SCHEDULE)

# ---- graphs ---------------------------------------------------------------------------------------------


def _generate(
    model: dict,
    prompt: str | list,
    negative: str,
    sampler: dict,
    prefix: str,
    size: tuple[int, int, int] = (64, 64, 17),
    fps: float | list = 8.0,
) -> dict:
    """Nodes 1-7 of every generation graph: load model, encode prompt and negative, empty latent of
    ``size`` (width, height, frames), ``sampler`` (node 5), decode, save at ``fps``."""
    return {
        "1": model,
        "2": _encode(prompt),
        "3": _encode(negative),
        "4": _empty_latent(*size),
        "5": sampler,
        "6": _decode(),
        "7": _save(prefix, fps),
    }


def _insert(graph: dict, before: str, nodes: dict) -> dict:
    """``graph`` with ``nodes`` placed before node ``before`` (the API files list nodes in dict order)."""
    out: dict = {}
    for nid, node in graph.items():
        if nid == before:
            out.update(nodes)
        out[nid] = node
    return out


def _t2v(sampler: dict, prefix: str, prompt: str) -> dict:
    return _generate(_model("tiny"), prompt, "", sampler, prefix)


def _t2v_score() -> dict:
    """text -> video (tiny) with the decoded frames also scored by Video Metrics. CLIP metrics stay off
    (clip_name "none", empty prompt) so it runs with the built-in model alone; README says how to turn
    them on (pick a CLIP folder, paste the prompt)."""
    graph = _t2v(TINY_20, "vidcore/text_to_video_scored", "a red circle moving right on a black background")
    graph["8"] = {
        "class_type": "VidCoreVideoMetrics",
        "inputs": {
            "images": ["6", 0],
            "fps": 8.0,
            "flow_method": "lucas_kanade",
            "prompt": "",
            "clip_name": "none",
        },
    }
    return graph


def _v2v() -> dict:
    """video -> video (tiny): the loaded clip encoded (node 4) and partially denoised, saved at its fps."""
    graph = _generate(
        _model("tiny"),
        "a green triangle bouncing up and down",
        "",
        _sampler(seed=7, denoise=0.6),
        "vidcore/video_to_video",
        fps=["8", 1],
    )
    graph["4"] = {"class_type": "VidCoreVAEEncode", "inputs": {"vae": ["1", 1], "images": ["8", 0], **DECODE}}
    return _insert(graph, "4", {"8": _load_video(17)})


def _caption_regenerate() -> dict:
    """caption a clip (SmolVLM2), refine the caption into a prompt, regenerate with the tiny model."""
    captioning = {
        "8": _load_video(64),
        "9": {"class_type": "VidCoreLoadCaptioner", "inputs": {"model_name": CAPTIONER, "precision": "auto"}},
        "10": {
            "class_type": "VidCoreCaptionVideo",
            "inputs": {
                "captioner": ["9", 0],
                "images": ["8", 0],
                "fps": ["8", 1],
                "question": "Describe this video in one sentence.",
                "num_frames": 8,
                "max_new_tokens": 48,
                "temperature": 0.0,
                "seed": 0,
            },
        },
        "11": {
            "class_type": "VidCoreCaptionToPrompt",
            "inputs": {
                "caption": ["10", 0],
                "mode": "template",
                "style": "cinematic",
                "extra_terms": "smooth motion",
                "max_new_tokens": 77,
                "temperature": 0.0,
                "seed": 0,
            },
        },
    }
    graph = _generate(_model("tiny"), ["11", 0], "", TINY_20, "vidcore/regenerated")
    return _insert(graph, "2", captioning)


def _first_frame(graph: dict, image: str | None) -> dict:
    """Image-to-video: ComfyUI's core Load Image (node 8) into the Sampler's appended ``image`` input."""
    if image is not None:
        graph["8"] = {"class_type": "LoadImage", "inputs": {"image": image}}
        graph["5"]["inputs"]["image"] = ["8", 0]
    return graph


def _ltx(prompt: str, prefix: str, image: str | None = None) -> dict:
    """LTX-Video 0.9.5 at its defaults (768x512, 97 frames, 30 steps, CFG 3, saved at the 25 fps it is
    conditioned on); with ``image`` the first frame is that picture (768x512)."""
    model = _model(LTX_CHECKPOINT, LTX_TEXT_ENCODER)
    sampler = _sampler(steps=30, guidance=3.0, sampler="euler")
    graph = _generate(model, prompt, LTX_NEGATIVE, sampler, prefix, size=(768, 512, 97), fps=25.0)
    return _first_frame(graph, image)


def _wan(model: str, prompt: str, prefix: str, steps: int, image: str | None = None) -> dict:
    """Wan 2.1 at Wan-Video/Wan2.1 generate.py's 480p defaults: 832x480, 81 frames, CFG 5, UniPC, shift 3
    (the diffusers repositories' scheduler_config flow_shift), the variant's default negative prompt (I2V
    prefixes Wan's shared one), 16 fps; the umT5 text encoder is the folder's own (text_encoder_name
    auto). With ``image`` (I2V) the first frame is that picture (832x480)."""
    negative = default_negative_prompt("i2v" if image else "t2v")
    sampler = _sampler(steps=steps, guidance=5.0, shift=3.0, sampler="unipc")
    graph = _generate(_model(model, "auto"), prompt, negative, sampler, prefix, size=(832, 480, 81), fps=16.0)
    return _first_frame(graph, image)


API: dict[str, dict] = {
    "text_to_video_tiny": _t2v(
        TINY_20,
        "vidcore/text_to_video",
        "a red circle moving right on a black background",
    ),
    "text_to_video_score": _t2v_score(),
    "text_to_video_pyramidal": _t2v(
        {
            "class_type": "VidCorePyramidalSampler",
            "inputs": {
                **SAMPLE_IN,
                "seed": 42,
                "stages": 3,
                "steps_per_stage": 7,
                "guidance": TINY_GUIDANCE,
                "shift": 1.0,
                "guidance_rescale": 0.0,
                "sampler": TINY_SAMPLER,
            },
        },
        "vidcore/pyramidal",
        "a blue square moving left on a black background",
    ),
    # The 4-step student: its own noise levels (sigmas empty = the model's list for 4 steps), no CFG
    # (guidance 1: the teacher's CFG was distilled in), the re-noising sampler it was trained for.
    "text_to_video_turbo": _generate(
        _model("tiny-turbo"),
        "a green triangle moving up on a black background",
        "",
        _sampler(steps=4, guidance=1.0, sampler="renoise"),
        "vidcore/text_to_video_turbo",
    ),
    "video_to_video": _v2v(),
    "caption_refine_regenerate": _caption_regenerate(),
    "ltx_video_text_to_video": _ltx(
        "A red fox trots through fresh snow in a pine forest at dawn, soft golden light, "
        "the camera tracks it from the side, shallow depth of field.",
        "vidcore/ltx_video",
    ),
    "ltx_video_image_to_video": _ltx(
        "The scene in the picture comes to life: the subject moves naturally, hair and clothes stir in a "
        "light breeze, the camera slowly pushes in, soft natural light, smooth motion.",
        "vidcore/ltx_video_i2v",
        image=LTX_FIRST_FRAME,
    ),
    "wan_text_to_video": _wan(
        WAN_T2V,
        "Two anthropomorphic cats in comfy boxing gear and bright gloves fight intensely on a spotlighted "
        "stage.",
        "vidcore/wan_t2v",
        steps=50,
    ),
    "wan_image_to_video": _wan(
        WAN_I2V,
        "The scene in the picture comes to life: the subject moves naturally while the camera slowly "
        "pushes in, soft natural light, realistic detail, smooth motion.",
        "vidcore/wan_i2v",
        steps=40,
        image=WAN_FIRST_FRAME,
    ),
    "score_video": {
        "1": _load_video(64),
        "2": {"class_type": "VidCoreOpticalFlow", "inputs": {"images": ["1", 0], "method": "lucas_kanade"}},
        "3": {
            "class_type": "VidCoreFlowWarpLoss",
            "inputs": {"images": ["1", 0], "flow": ["2", 0], "occlusion_mask": True},
        },
        "4": {
            "class_type": "VidCoreVideoMetrics",
            "inputs": {"images": ["1", 0], "fps": ["1", 1], "flow_method": "lucas_kanade"},
        },
        "5": _save("vidcore/flow", ["1", 1], images=("2", 1), fmt="gif"),
    },
}

TITLES = {
    "text_to_video_tiny": "VidCore: text -> video (tiny)",
    "text_to_video_score": "VidCore: text -> video (tiny), scored by Video Metrics",
    "text_to_video_pyramidal": "VidCore: text -> video, pyramidal sampler",
    "text_to_video_turbo": "VidCore: text -> video in 4 steps (tiny-turbo, no CFG)",
    "video_to_video": "VidCore: video -> video (encode, partial denoise, decode)",
    "caption_refine_regenerate": "VidCore: caption -> refined prompt -> regenerate",
    "score_video": "VidCore: score a video (optical flow, warp loss, metrics)",
    "ltx_video_text_to_video": "VidCore: LTX-Video text -> video (needs your LTX-Video and T5 weights)",
    "ltx_video_image_to_video": "VidCore: LTX-Video image -> video (needs your LTX-Video and T5 weights)",
    "wan_text_to_video": f"VidCore: Wan 2.1 text -> video (needs your {WAN_T2V} folder)",
    "wan_image_to_video": f"VidCore: Wan 2.1 image -> video (needs your {WAN_I2V} folder)",
}

WIDGET_KINDS = ("INT", "FLOAT", "STRING", "BOOLEAN")
UPLOAD = "IMAGEUPLOAD"  # the frontend's upload button input (see frontend_inputs)
UPLOAD_FLAGS = ("image_upload", "video_upload", "animated_image_upload")


class LoadImage:
    """Stand-in for ComfyUI's core Load Image node (Comfy-Org/ComfyUI nodes.py LoadImage), enough to write
    UI files: its combo lists the image files of ComfyUI's input folder (none here), and ``image_upload``
    makes the frontend add an upload button after it."""

    CATEGORY = "image"
    FUNCTION = "load_image"
    RETURN_TYPES = ("IMAGE", "MASK")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ([], {"image_upload": True})}}


CORE_NODES = {"LoadImage": LoadImage}


def mappings(ours: dict) -> dict:
    """Node classes by type for ``to_ui``: ours plus the stand-ins of the core nodes the examples use."""
    return {**CORE_NODES, **ours}


def frontend_inputs(spec: dict) -> dict:
    """A node's inputs as the ComfyUI frontend lays out its widgets: required, then optional; a required
    combo with an upload flag gets an ``upload`` button appended to the required inputs (Comfy-Org/
    ComfyUI_frontend src/extensions/core/uploadImage.ts), whose value "image" (useImageUploadWidget.ts:
    addWidget('button', 'upload', 'image', ...)) is saved in widgets_values but not sent to /prompt."""
    required = dict(spec.get("required", {}))
    for kind, *opts in list(required.values()):
        if isinstance(kind, list) and any((opts[0] if opts else {}).get(f) is True for f in UPLOAD_FLAGS):
            required["upload"] = (UPLOAD, {"default": "image"})
            break
    return {**required, **spec.get("optional", {})}


def widget_names(spec: dict) -> list[tuple[str, bool]]:
    """Widget inputs of a node in order (frontend_inputs), each with whether a control_after_generate value
    follows it."""
    out = []
    for name, (kind, *opts) in frontend_inputs(spec).items():
        opt = opts[0] if opts else {}
        if (isinstance(kind, list) or kind in (*WIDGET_KINDS, UPLOAD)) and not opt.get("forceInput"):
            out.append((name, bool(opt.get("control_after_generate"))))
    return out


def _depths(api: dict) -> dict[str, int]:
    depth: dict[str, int] = {}

    def visit(nid: str) -> int:
        if nid not in depth:
            ups = [v[0] for v in api[nid]["inputs"].values() if isinstance(v, list)]
            depth[nid] = 1 + max((visit(u) for u in ups), default=-1)
        return depth[nid]

    for nid in api:
        visit(nid)
    return depth


def to_ui(api: dict, mappings: dict) -> dict:
    """Litegraph (UI) workflow for an API graph: positions by depth, links, widgets_values in input order."""
    depth = _depths(api)
    rows: dict[int, int] = {}
    links, nodes = [], []
    out_links: dict[tuple[str, int], list[int]] = {}
    order = sorted(api, key=lambda n: (depth[n], int(n)))
    for index, nid in enumerate(order):
        node = api[nid]
        cls = mappings[node["class_type"]]
        spec = cls.INPUT_TYPES()
        all_inputs = frontend_inputs(spec)
        widgets = dict(widget_names(spec))
        inputs, values = [], []
        for name, (kind, *_opts) in all_inputs.items():
            value = node["inputs"].get(name)
            linked = isinstance(value, list)
            kind_name = "COMBO" if isinstance(kind, list) else kind
            if name in widgets:
                if linked:
                    inputs.append({"name": name, "type": kind_name, "widget": {"name": name}, "link": None})
                    value = _default(kind, _opts)
                elif name not in node["inputs"]:  # an optional input the graph leaves unset
                    value = _default(kind, _opts)
                values.append(value)
                if widgets[name]:
                    values.append("fixed")
            else:
                inputs.append({"name": name, "type": kind_name, "link": None})
            if linked:
                link_id = len(links) + 1
                src, slot = node["inputs"][name]
                inputs[-1]["link"] = link_id
                links.append([link_id, int(src), slot, int(nid), len(inputs) - 1, kind_name])
                out_links.setdefault((src, slot), []).append(link_id)
        col = depth[nid]
        row = rows.get(col, 0)
        height = 60 + 26 * (len(values) + max(len(inputs), len(cls.RETURN_TYPES)))
        rows[col] = row + height + 40
        nodes.append(
            {
                "id": int(nid),
                "type": node["class_type"],
                "pos": [40 + 380 * col, 40 + row],
                "size": [340, height],
                "flags": {},
                "order": index,
                "mode": 0,
                "inputs": inputs,
                "outputs": [],
                "properties": {"Node name for S&R": node["class_type"]},
                "widgets_values": values,
            }
        )
    for n in nodes:
        cls = mappings[n["type"]]
        names = getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES)
        n["outputs"] = [
            {"name": nm, "type": t, "links": out_links.get((str(n["id"]), i), []), "slot_index": i}
            for i, (nm, t) in enumerate(zip(names, cls.RETURN_TYPES, strict=True))
        ]
    return {
        "last_node_id": max(int(n) for n in api),
        "last_link_id": len(links),
        "nodes": nodes,
        "links": links,
        "groups": [],
        "config": {},
        "extra": {"ds": {"scale": 0.8, "offset": [0, 0]}},
        "version": 0.4,
    }


def _default(kind, opts):
    opt = opts[0] if opts else {}
    if "default" in opt:
        return opt["default"]
    return kind[0] if isinstance(kind, list) and kind else ""


def main() -> int:
    from nodes import NODE_CLASS_MAPPINGS

    (HERE / "api").mkdir(exist_ok=True)
    for name, api in API.items():
        (HERE / "api" / f"{name}.json").write_text(json.dumps(api, indent=2) + "\n")
        ui = to_ui(api, mappings(NODE_CLASS_MAPPINGS))
        ui["extra"]["title"] = TITLES[name]
        (HERE / f"{name}.json").write_text(json.dumps(ui, indent=1) + "\n")
        print(f"wrote workflows/{name}.json and workflows/api/{name}.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
