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
INPUT_VIDEO = "vidcore_example.mp4"  # the e2e test puts a small clip of this name in ComfyUI's input folder
CAPTIONER = "SmolVLM2-256M-Video-Instruct"
# LTX-Video needs the user's weights (see README.md): the Lightricks single file in models/checkpoints and a
# T5-v1.1-XXL transformers folder in models/text_encoders.
LTX_CHECKPOINT = "ltx-video-2b-v0.9.5.safetensors"
LTX_TEXT_ENCODER = "t5-v1_1-xxl"
LTX_NEGATIVE = "worst quality, inconsistent motion, blurry, jittery, distorted"
# Workflows that cannot run without downloaded weights (tests run them on tiny stand-ins of those names).
NEEDS_USER_WEIGHTS = ("ltx_video_text_to_video",)

NEG = {"class_type": "VidCoreTextEncode", "inputs": {"text_encoder": ["1", 2], "text": ""}}
DECODE = {"temporal_chunk": 0, "tile_size": 0, "tile_overlap": -1}
FLOW_SAMPLER = {"shift": 1.0, "sampler": "euler", "guidance_rescale": 0.0}


def _t2v(sampler: dict, prefix: str, prompt: str) -> dict:
    return {
        "1": {"class_type": "VidCoreLoadModel", "inputs": {"model_name": "tiny", "precision": "auto"}},
        "2": {"class_type": "VidCoreTextEncode", "inputs": {"text_encoder": ["1", 2], "text": prompt}},
        "3": NEG,
        "4": {
            "class_type": "VidCoreEmptyVideoLatent",
            "inputs": {
                "model": ["1", 0],
                "vae": ["1", 1],
                "width": 64,
                "height": 64,
                "num_frames": 17,
                "batch_size": 1,
            },
        },
        "5": sampler,
        "6": {"class_type": "VidCoreVAEDecode", "inputs": {"vae": ["1", 1], "samples": ["5", 0], **DECODE}},
        "7": {
            "class_type": "VidCoreSaveVideo",
            "inputs": {"images": ["6", 0], "fps": 8.0, "filename_prefix": prefix, "format": "mp4", "crf": -1},
        },
    }


SAMPLE_IN = {"model": ["1", 0], "positive": ["2", 0], "negative": ["3", 0], "latent_image": ["4", 0]}
EULER_20 = {
    "class_type": "VidCoreSampler",
    "inputs": {
        **SAMPLE_IN,
        "seed": 42,
        "steps": 20,
        "guidance": 4.0,
        "schedule": "flow",
        "shift": 1.0,
        "sampler": "euler",
        "denoise": 1.0,
        "guidance_rescale": 0.0,
    },
}


def _t2v_score() -> dict:
    """text -> video (tiny) with the decoded frames also scored by Video Metrics. CLIP metrics stay off
    (clip_name "none", empty prompt) so it runs with the built-in model alone; README says how to turn
    them on (pick a CLIP folder, paste the prompt)."""
    graph = _t2v(EULER_20, "vidcore/text_to_video_scored", "a red circle moving right on a black background")
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


API: dict[str, dict] = {
    "text_to_video_tiny": _t2v(
        EULER_20,
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
                "guidance": 4.0,
                "shift": 1.0,
                "guidance_rescale": 0.0,
            },
        },
        "vidcore/pyramidal",
        "a blue square moving left on a black background",
    ),
    "video_to_video": {
        "1": {"class_type": "VidCoreLoadModel", "inputs": {"model_name": "tiny", "precision": "auto"}},
        "2": {
            "class_type": "VidCoreTextEncode",
            "inputs": {"text_encoder": ["1", 2], "text": "a green triangle bouncing up and down"},
        },
        "3": NEG,
        "8": {
            "class_type": "VidCoreLoadVideo",
            "inputs": {"video": INPUT_VIDEO, "max_frames": 17, "stride": 1, "start_frame": 0},
        },
        "4": {"class_type": "VidCoreVAEEncode", "inputs": {"vae": ["1", 1], "images": ["8", 0], **DECODE}},
        "5": {
            "class_type": "VidCoreSampler",
            "inputs": {
                **SAMPLE_IN,
                "seed": 7,
                "steps": 20,
                "guidance": 4.0,
                "schedule": "flow",
                "shift": 1.0,
                "sampler": "euler",
                "denoise": 0.6,
                "guidance_rescale": 0.0,
            },
        },
        "6": {"class_type": "VidCoreVAEDecode", "inputs": {"vae": ["1", 1], "samples": ["5", 0], **DECODE}},
        "7": {
            "class_type": "VidCoreSaveVideo",
            "inputs": {
                "images": ["6", 0],
                "fps": ["8", 1],
                "filename_prefix": "vidcore/video_to_video",
                "format": "mp4",
                "crf": -1,
            },
        },
    },
    "caption_refine_regenerate": {
        "1": {"class_type": "VidCoreLoadModel", "inputs": {"model_name": "tiny", "precision": "auto"}},
        "8": {
            "class_type": "VidCoreLoadVideo",
            "inputs": {"video": INPUT_VIDEO, "max_frames": 64, "stride": 1, "start_frame": 0},
        },
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
        "2": {"class_type": "VidCoreTextEncode", "inputs": {"text_encoder": ["1", 2], "text": ["11", 0]}},
        "3": NEG,
        "4": {
            "class_type": "VidCoreEmptyVideoLatent",
            "inputs": {
                "model": ["1", 0],
                "vae": ["1", 1],
                "width": 64,
                "height": 64,
                "num_frames": 17,
                "batch_size": 1,
            },
        },
        "5": EULER_20,
        "6": {"class_type": "VidCoreVAEDecode", "inputs": {"vae": ["1", 1], "samples": ["5", 0], **DECODE}},
        "7": {
            "class_type": "VidCoreSaveVideo",
            "inputs": {
                "images": ["6", 0],
                "fps": 8.0,
                "filename_prefix": "vidcore/regenerated",
                "format": "mp4",
                "crf": -1,
            },
        },
    },
    "ltx_video_text_to_video": {
        "1": {
            "class_type": "VidCoreLoadModel",
            "inputs": {
                "model_name": LTX_CHECKPOINT,
                "precision": "auto",
                "text_encoder_name": LTX_TEXT_ENCODER,
            },
        },
        "2": {
            "class_type": "VidCoreTextEncode",
            "inputs": {
                "text_encoder": ["1", 2],
                "text": "A red fox trots through fresh snow in a pine forest at dawn, soft golden light, "
                "the camera tracks it from the side, shallow depth of field.",
            },
        },
        "3": {"class_type": "VidCoreTextEncode", "inputs": {"text_encoder": ["1", 2], "text": LTX_NEGATIVE}},
        "4": {
            "class_type": "VidCoreEmptyVideoLatent",
            "inputs": {
                "model": ["1", 0],
                "vae": ["1", 1],
                "width": 768,
                "height": 512,
                "num_frames": 97,
                "batch_size": 1,
            },
        },
        "5": {
            "class_type": "VidCoreSampler",
            "inputs": {
                **SAMPLE_IN,
                "seed": 42,
                "steps": 30,
                "guidance": 3.0,
                "schedule": "flow",
                "shift": 1.0,
                "sampler": "euler",
                "denoise": 1.0,
                "guidance_rescale": 0.0,
            },
        },
        "6": {"class_type": "VidCoreVAEDecode", "inputs": {"vae": ["1", 1], "samples": ["5", 0], **DECODE}},
        "7": {
            "class_type": "VidCoreSaveVideo",
            "inputs": {
                "images": ["6", 0],
                "fps": 25.0,
                "filename_prefix": "vidcore/ltx_video",
                "format": "mp4",
                "crf": -1,
            },
        },
    },
    "score_video": {
        "1": {
            "class_type": "VidCoreLoadVideo",
            "inputs": {"video": INPUT_VIDEO, "max_frames": 64, "stride": 1, "start_frame": 0},
        },
        "2": {"class_type": "VidCoreOpticalFlow", "inputs": {"images": ["1", 0], "method": "lucas_kanade"}},
        "3": {
            "class_type": "VidCoreFlowWarpLoss",
            "inputs": {"images": ["1", 0], "flow": ["2", 0], "occlusion_mask": True},
        },
        "4": {
            "class_type": "VidCoreVideoMetrics",
            "inputs": {"images": ["1", 0], "fps": ["1", 1], "flow_method": "lucas_kanade"},
        },
        "5": {
            "class_type": "VidCoreSaveVideo",
            "inputs": {
                "images": ["2", 1],
                "fps": ["1", 1],
                "filename_prefix": "vidcore/flow",
                "format": "gif",
                "crf": -1,
            },
        },
    },
}

TITLES = {
    "text_to_video_tiny": "VidCore: text -> video (tiny)",
    "text_to_video_score": "VidCore: text -> video (tiny), scored by Video Metrics",
    "text_to_video_pyramidal": "VidCore: text -> video, pyramidal sampler",
    "video_to_video": "VidCore: video -> video (encode, partial denoise, decode)",
    "caption_refine_regenerate": "VidCore: caption -> refined prompt -> regenerate",
    "score_video": "VidCore: score a video (optical flow, warp loss, metrics)",
    "ltx_video_text_to_video": "VidCore: LTX-Video text -> video (needs your LTX-Video and T5 weights)",
}

WIDGET_KINDS = ("INT", "FLOAT", "STRING", "BOOLEAN")


def widget_names(spec: dict) -> list[tuple[str, bool]]:
    """Widget inputs of a node in order, each with whether a control_after_generate value follows it."""
    out = []
    for section in ("required", "optional"):
        for name, (kind, *opts) in spec.get(section, {}).items():
            opt = opts[0] if opts else {}
            if (isinstance(kind, list) or kind in WIDGET_KINDS) and not opt.get("forceInput"):
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
        all_inputs = {**spec["required"], **spec.get("optional", {})}
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
    sys.path.insert(0, str(ROOT))
    from nodes import NODE_CLASS_MAPPINGS

    (HERE / "api").mkdir(exist_ok=True)
    for name, api in API.items():
        (HERE / "api" / f"{name}.json").write_text(json.dumps(api, indent=2) + "\n")
        ui = to_ui(api, NODE_CLASS_MAPPINGS)
        ui["extra"]["title"] = TITLES[name]
        (HERE / f"{name}.json").write_text(json.dumps(ui, indent=1) + "\n")
        print(f"wrote workflows/{name}.json and workflows/api/{name}.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
