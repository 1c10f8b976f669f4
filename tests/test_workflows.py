"""Example workflows: every API file runs on tiny random models through a small in-test executor, and every
UI file describes the same graph with widgets_values that line up with the node inputs (so it loads).
Workflows that need the user's weights (LTX-Video, Wan) run on tiny stand-ins of the names they expect."""

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

from nodes import NODE_CLASS_MAPPINGS, _host
from vidcore.io import read_image
from vidcore.io.video import read_video

from ._node_fixtures import make_captioner, make_models_root, write_input_video

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / "workflows"
API_FILES = sorted((WORKFLOWS / "api").glob("*.json"))
WIDGET_KINDS = ("INT", "FLOAT", "STRING", "BOOLEAN")


def _make_workflows():
    spec = importlib.util.spec_from_file_location("_vidcore_make_workflows", WORKFLOWS / "make_workflows.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MW = _make_workflows()
# Needs the user's weights: own tests below, on tiny stand-ins of the names they expect.
TINY_API_FILES = [p for p in API_FILES if p.stem not in MW.NEEDS_USER_WEIGHTS]


class LoadImage(MW.LoadImage):
    """ComfyUI's core Load Image for the executor (Comfy-Org/ComfyUI nodes.py LoadImage): the file from the
    input folder as IMAGE [1, H, W, 3] in 0..1 and, for a picture without alpha, its [1, 64, 64] zero MASK."""

    def load_image(self, image):
        return read_image(_host.input_dir() / image), torch.zeros(1, 64, 64)


# Our nodes plus the core nodes the examples use (make_workflows writes the UI files with the same specs).
NODES = {**MW.mappings(NODE_CLASS_MAPPINGS), "LoadImage": LoadImage}
FILE_INPUTS = ("model_name", "video", "image")  # combos listing folders: checked when the node runs


def load(path):
    return json.loads(Path(path).read_text())


def _inputs(cls):
    spec = cls.INPUT_TYPES()
    return spec["required"], spec.get("optional", {})


def validate(api: dict) -> list[str]:
    """Order to run the nodes in; raises like ComfyUI's validation would (unknown class, bad link, range)."""
    for nid, node in api.items():
        cls = NODES.get(node["class_type"])
        assert cls is not None, f"node {nid}: unknown class {node['class_type']}"
        required, optional = _inputs(cls)
        allowed = {**required, **optional}
        assert set(required) <= set(node["inputs"]), (
            f"node {nid}: missing {set(required) - set(node['inputs'])}"
        )
        assert set(node["inputs"]) <= set(allowed), f"node {nid}: unknown inputs"
        for name, value in node["inputs"].items():
            kind, *opts = allowed[name]
            opt = opts[0] if opts else {}
            if isinstance(value, list):
                src, slot = value
                assert src in api, f"node {nid}.{name}: link to missing node {src}"
                src_cls = NODES[api[src]["class_type"]]
                assert slot < len(src_cls.RETURN_TYPES), f"node {nid}.{name}: bad output index {slot}"
                out_kind = src_cls.RETURN_TYPES[slot]
                assert out_kind == ("COMBO" if isinstance(kind, list) else kind), f"{nid}.{name}: {out_kind}"
            elif isinstance(kind, list):
                if name in FILE_INPUTS:
                    continue  # lists depend on the folders; checked when the node runs
                assert value in kind, f"node {nid}.{name}={value!r} not in {kind}"
            else:
                assert kind in WIDGET_KINDS, f"node {nid}.{name}: {kind} needs a link"
                if "min" in opt:
                    assert opt["min"] <= value <= opt["max"], f"node {nid}.{name}={value} out of range"
    order, seen = [], set()

    def visit(nid, stack=()):
        assert nid not in stack, f"cycle through {nid}"
        if nid in seen:
            return
        for value in api[nid]["inputs"].values():
            if isinstance(value, list):
                visit(value[0], (*stack, nid))
        seen.add(nid)
        order.append(nid)

    for nid in api:
        visit(nid)
    return order


def execute(api: dict) -> dict:
    """Run the graph in topological order; returns {node_id: output dict or tuple}."""
    results: dict = {}
    for nid in validate(api):
        node = api[nid]
        cls = NODES[node["class_type"]]
        kwargs = {
            k: (results[v[0]]["result"][v[1]] if isinstance(v, list) else v)
            for k, v in node["inputs"].items()
        }
        out = getattr(cls(), cls.FUNCTION)(**kwargs)
        results[nid] = out if isinstance(out, dict) else {"result": out}
    return results


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = make_models_root(tmp_path_factory.mktemp("models"))
    make_captioner(root)
    inp, out = tmp_path_factory.mktemp("input"), tmp_path_factory.mktemp("output")
    write_input_video(inp)
    _host.set_folders(
        models={k: [root / k] for k in ("vidcore", "text_encoders", "LLM", "clip_vision")},
        input_dir=inp,
        output_dir=out,
    )
    yield {"root": root, "input": inp, "output": out}
    _host.set_folders(models={})


def test_every_pair_exists_and_templates_are_ui_files():
    names = {p.stem for p in API_FILES}
    assert names == set(MW.API) == set(MW.TITLES)
    assert {
        "text_to_video_tiny",
        "text_to_video_score",
        "text_to_video_pyramidal",
        "text_to_video_turbo",
        "video_to_video",
        "score_video",
        "caption_refine_regenerate",
        "ltx_video_text_to_video",
        "ltx_video_image_to_video",
        "wan_text_to_video",
        "wan_image_to_video",
    } <= names
    assert set(MW.NEEDS_USER_WEIGHTS) <= names
    for name in names:
        ui = load(WORKFLOWS / f"{name}.json")
        assert {"nodes", "links", "version", "last_node_id", "last_link_id"} <= set(ui), name
        # every node is ours or a core node with a stand-in (LoadImage)
        assert {n["type"] for n in ui["nodes"]} <= set(NODE_CLASS_MAPPINGS) | set(MW.CORE_NODES), name
    # ComfyUI lists workflows/*.json (non-recursive) as templates: only UI files live there.
    assert all("nodes" in load(p) for p in WORKFLOWS.glob("*.json"))


def _frontend_inputs(cls) -> dict:
    """The inputs whose widgets the frontend saves, in order: required, then an ``upload`` button when a
    required combo has image_upload / video_upload / animated_image_upload (Comfy-Org/ComfyUI_frontend
    src/extensions/core/uploadImage.ts appends it to the required inputs), then optional."""
    required, optional = _inputs(cls)
    flags = ("image_upload", "video_upload", "animated_image_upload")
    if any(
        isinstance(k, list) and any((o[0] if o else {}).get(f) is True for f in flags)
        for k, *o in required.values()
    ):
        required = {**required, "upload": ("IMAGEUPLOAD", {})}
    return {**required, **optional}


@pytest.mark.parametrize("path", API_FILES, ids=[p.stem for p in API_FILES])
def test_ui_file_matches_the_api_graph(path):
    api, ui = load(path), load(WORKFLOWS / path.name)
    by_id = {str(n["id"]): n for n in ui["nodes"]}
    assert set(by_id) == set(api)
    links = {link[0]: link for link in ui["links"]}
    assert len(links) == len(ui["links"]) == ui["last_link_id"]
    for nid, node in api.items():
        un = by_id[nid]
        assert un["type"] == node["class_type"]
        cls = NODES[node["class_type"]]
        expected_values = []
        for name, (kind, *opts) in _frontend_inputs(cls).items():
            opt = opts[0] if opts else {}
            if (
                kind == "IMAGEUPLOAD"
            ):  # the upload button's value (useImageUploadWidget.ts), not sent to /prompt
                expected_values.append("image")
                continue
            is_widget = (isinstance(kind, list) or kind in WIDGET_KINDS) and not opt.get("forceInput")
            value = node["inputs"].get(name)
            if isinstance(value, list):  # a link: find the UI input of that name and follow its link
                slot = [i for i, inp in enumerate(un["inputs"]) if inp["name"] == name]
                assert slot, f"{path.stem} node {nid}: input {name} missing in the UI file"
                link = links[un["inputs"][slot[0]]["link"]]
                assert [str(link[1]), link[2], int(link[3]), link[4]] == [
                    value[0],
                    value[1],
                    int(nid),
                    slot[0],
                ]
                assert by_id[value[0]]["outputs"][value[1]]["links"].count(link[0]) == 1
            if is_widget:
                expected_values.append(None if isinstance(value, list) else value)
                if opt.get("control_after_generate"):
                    expected_values.append("fixed")
        got = [None if e is None else v for v, e in zip(un["widgets_values"], expected_values, strict=True)]
        assert got == expected_values, f"{path.stem} node {nid} widgets_values"


@pytest.mark.parametrize("name", ["ltx_video_image_to_video", "wan_image_to_video"])
def test_load_image_nodes_are_saved_like_comfyuis_templates(name):
    """Core Load Image as ComfyUI's own templates save it (comfyui_workflow_templates: widgets_values
    [file name, "image"], no input slots, outputs IMAGE and MASK) and wired to the Sampler's image input."""
    api, ui = load(WORKFLOWS / "api" / f"{name}.json"), load(WORKFLOWS / f"{name}.json")
    ((nid, node),) = [(k, v) for k, v in api.items() if v["class_type"] == "LoadImage"]
    assert node["inputs"] == {"image": node["inputs"]["image"]} and node["inputs"]["image"].endswith(".png")
    (un,) = [n for n in ui["nodes"] if n["type"] == "LoadImage"]
    assert un["widgets_values"] == [node["inputs"]["image"], "image"] and un["inputs"] == []
    assert [(o["name"], o["type"]) for o in un["outputs"]] == [("IMAGE", "IMAGE"), ("MASK", "MASK")]
    (sampler,) = [v for v in api.values() if v["class_type"] == "VidCoreSampler"]
    assert sampler["inputs"]["image"] == [nid, 0] and "last_image" not in sampler["inputs"]


def _saved(results, api, output):
    files = []
    for nid, node in api.items():
        if node["class_type"] == "VidCoreSaveVideo":
            for entry in results[nid]["ui"]["vidcore_videos"]:
                files.append((output / entry["subfolder"] / entry["filename"], node))
    return files


@pytest.mark.parametrize("path", TINY_API_FILES, ids=[p.stem for p in TINY_API_FILES])
def test_api_workflow_runs_on_tiny_models(path, folders):
    api = load(path)
    results = execute(api)
    saved = _saved(results, api, folders["output"])
    for file, _node in saved:
        frames, fps = read_video(file)
        assert frames.shape[-1] == 3 and frames.shape[0] >= 4 and fps > 0
    if path.stem.startswith("text_to_video") or path.stem == "caption_refine_regenerate":
        ((file, _),) = saved
        frames, fps = read_video(file)
        assert frames.shape == (17, 64, 64, 3) and fps == 8.0 and float(frames.std()) > 0.01
    if path.stem == "video_to_video":
        ((file, _),) = saved
        assert read_video(file)[0].shape == (9, 32, 32, 3)
    if path.stem == "score_video":
        metrics = results["4"]["result"]
        assert 0 < metrics[0] <= 1 and metrics[1] >= 0 and metrics[2] > 0  # the test clip moves
        assert results["3"]["result"][0] >= 0 and json.loads(metrics[3])["num_frames"] == 9
    if path.stem == "text_to_video_score":
        from vidcore.metrics.score import score_video

        # the metrics node scored exactly the decoded frames it was wired to (CLIP off as shipped)
        decoded = results["6"]["result"][0]
        flicker, warp, dyn, text, plot, clip_sim, clip_tc, psnr, ssim = results["8"]["result"]
        ref = score_video(decoded.float(), fps=8.0, flow_method="lucas_kanade")
        assert (flicker, warp, dyn) == (ref["flicker"], ref["warp_error"], ref["dynamic_degree"])
        assert 0 < flicker <= 1 and warp >= 0 and dyn >= 0 and plot.shape[-1] == 3
        assert all(math.isnan(v) for v in (clip_sim, clip_tc, psnr, ssim))
        assert json.loads(text)["num_frames"] == 17
        assert results["8"]["ui"]["vidcore_metrics"][0]["flicker"] == flicker
    if path.stem == "caption_refine_regenerate":
        prompt = results["11"]["result"][0]
        assert prompt.endswith("cinematic, smooth motion") and len(prompt) > len("cinematic, smooth motion")


def test_generate_and_score_workflow_with_a_clip_folder(folders):
    """The generate-and-score graph with CLIP switched on (a tiny random CLIP in models/clip_vision and the
    generation prompt pasted into the metrics node): CLIP-SIM / CLIP-TC equal the library's on the frames."""
    from vidcore.metrics.clip import clip_sim, clip_tc, load_clip

    from ._tiny_hf import make_clip_full_folder

    clip_dir = folders["root"] / "clip_vision" / "tinyclip"
    if not (clip_dir / "config.json").is_file():
        make_clip_full_folder(clip_dir, seed=5)
    api = load(WORKFLOWS / "api" / "text_to_video_score.json")
    prompt = api["2"]["inputs"]["text"]
    api["8"]["inputs"].update(prompt=prompt, clip_name="tinyclip")
    api["5"]["inputs"]["steps"] = 4  # the numbers are what is checked here, not the picture
    results = execute(api)
    decoded = results["6"]["result"][0]
    sim, tc = results["8"]["result"][5:7]
    bundle = load_clip(clip_dir)
    assert sim == pytest.approx(clip_sim(decoded.float(), prompt, bundle), abs=1e-6) and -1 <= sim <= 1
    assert tc == pytest.approx(clip_tc(decoded.float(), bundle), abs=1e-6) and 0 < tc <= 1
    report = json.loads(results["8"]["result"][3])
    assert report["prompt"] == prompt and report["clip_sim"] == sim and report["clip_tc"] == tc


def test_make_workflows_reproduces_the_files():
    for name, api in MW.API.items():
        assert load(WORKFLOWS / "api" / f"{name}.json") == json.loads(json.dumps(api)), name
        ui = MW.to_ui(api, MW.mappings(NODE_CLASS_MAPPINGS))
        ui["extra"]["title"] = MW.TITLES[name]
        assert load(WORKFLOWS / f"{name}.json") == json.loads(json.dumps(ui)), name


def _write_png(path: Path, size: int, seed: int) -> torch.Tensor:
    """A seeded random RGB picture saved as PNG; returns its frames [1, H, W, 3] in 0..1."""
    from PIL import Image

    pixels = (torch.rand(size, size, 3, generator=torch.Generator().manual_seed(seed)) * 255).to(torch.uint8)
    Image.fromarray(pixels.numpy()).save(path)
    return pixels.float()[None] / 255


def _run_tiny(api: dict, models: dict, tmp: Path, size: int, num_frames: int, image_seed: int = 4) -> tuple:
    """Run a shipped graph at a tiny size (size x size, ``num_frames`` frames, 2 steps) with ``models`` as
    ComfyUI's model folders; a Load Image's file is written to a fresh input folder as a size x size
    picture. Returns (results, the saved video's frames, its fps)."""
    inp, out = tmp / f"input{image_seed}", tmp / f"output{image_seed}"
    inp.mkdir()
    out.mkdir()
    for node in api.values():
        if node["class_type"] == "LoadImage":
            _write_png(inp / node["inputs"]["image"], size, image_seed)
    api["4"]["inputs"].update(width=size, height=size, num_frames=num_frames)
    api["5"]["inputs"]["steps"] = 2
    _host.set_folders(models=models, input_dir=inp, output_dir=out)
    try:
        results = execute(api)
    finally:
        _host.set_folders(models={})
    ((file, _),) = _saved(results, api, out)
    frames, fps = read_video(file)
    return results, frames, fps


@pytest.fixture(scope="module")
def ltx_root(tmp_path_factory):
    from ._ltx_entry_fixtures import make_ltx_models_root

    return make_ltx_models_root(tmp_path_factory.mktemp("ltx_models"))


@pytest.mark.parametrize("name", ["ltx_video_text_to_video", "ltx_video_image_to_video"])
def test_ltx_api_workflow_runs_on_tiny_ltx_stand_ins(ltx_root, name, tmp_path):
    """The LTX workflows as shipped validate; run at tiny sizes on tiny random checkpoints of the names they
    expect (models/checkpoints/ltx-video-2b-v0.9.5.safetensors, models/text_encoders/t5-v1_1-xxl) and, for
    image-to-video, a picture of the example's name in the input folder."""
    from vidcore.pipelines.ltx import LTXPipeline

    from ._ltx_entry_fixtures import CHECKPOINT, T5

    models = {k: [ltx_root / k] for k in ("checkpoints", "text_encoders")}
    api = load(WORKFLOWS / "api" / f"{name}.json")
    assert api["1"]["inputs"] == {"model_name": CHECKPOINT, "precision": "auto", "text_encoder_name": T5}
    assert api["4"]["inputs"]["num_frames"] == 97 and api["7"]["inputs"]["fps"] == 25.0
    assert (api["4"]["inputs"]["width"], api["4"]["inputs"]["height"], api["5"]["inputs"]["steps"]) == (
        768,
        512,
        30,
    )
    i2v = name == "ltx_video_image_to_video"
    if i2v:
        assert api["8"] == {"class_type": "LoadImage", "inputs": {"image": MW.LTX_FIRST_FRAME}}
        assert api["5"]["inputs"]["image"] == ["8", 0]
    _host.set_folders(models=models)
    try:
        validate(api)  # as shipped: 97 frames 768x512, 30 steps
    finally:
        _host.set_folders(models={})
    results, frames, fps = _run_tiny(api, models, tmp_path, size=64, num_frames=9)
    assert isinstance(results["1"]["result"][0], LTXPipeline)
    assert frames.shape == (9, 64, 64, 3) and fps == 25.0 and float(frames.float().std()) > 0.01
    if i2v:  # the picture reaches the model: another one gives another video
        other = _run_tiny(api, models, tmp_path, size=64, num_frames=9, image_seed=5)[0]
        assert (other["6"]["result"][0] - results["6"]["result"][0]).abs().max() > 1e-3


@pytest.fixture(scope="module")
def wan_root(tmp_path_factory):
    """models/diffusers/<the Wan 2.1 folder names the workflows expect>: tiny random T2V and I2V folders."""
    from ._wan_pipeline_fixtures import make_wan_folders

    root = tmp_path_factory.mktemp("wan_models")
    names = {"t2v": MW.WAN_T2V, "i2v": MW.WAN_I2V}
    make_wan_folders(root / "diffusers", ("t2v", "i2v"), names=names, scratch=root)
    return root


@pytest.mark.parametrize("name", ["wan_text_to_video", "wan_image_to_video"])
def test_wan_api_workflow_runs_on_tiny_wan_stand_ins(wan_root, name, tmp_path):
    """The Wan workflows as shipped validate (Wan 2.1 defaults: 832x480, 81 frames, UniPC, shift 3, CFG 5,
    the variant's negative prompt, 16 fps); run at tiny sizes on tiny random diffusers folders of the names
    they expect in models/diffusers (own umT5; I2V with a CLIP image encoder and the example picture)."""
    from vidcore.pipelines.wan import WanPipeline, default_negative_prompt

    variant = "i2v" if name == "wan_image_to_video" else "t2v"
    models = {"diffusers": [wan_root / "diffusers"]}
    api = load(WORKFLOWS / "api" / f"{name}.json")
    folder = MW.WAN_I2V if variant == "i2v" else MW.WAN_T2V
    assert api["1"]["inputs"] == {"model_name": folder, "precision": "auto", "text_encoder_name": "auto"}
    assert api["3"]["inputs"]["text"] == default_negative_prompt(variant)
    latent, sampler = api["4"]["inputs"], api["5"]["inputs"]
    assert (latent["width"], latent["height"], latent["num_frames"]) == (832, 480, 81)
    steps = 40 if variant == "i2v" else 50
    assert (sampler["steps"], sampler["guidance"], sampler["shift"], sampler["sampler"]) == (
        steps,
        5.0,
        3.0,
        "unipc",
    )
    assert api["7"]["inputs"]["fps"] == 16.0
    if variant == "i2v":
        assert api["8"] == {"class_type": "LoadImage", "inputs": {"image": MW.WAN_FIRST_FRAME}}
        assert sampler["image"] == ["8", 0]
    _host.set_folders(models=models)
    try:
        validate(api)  # as shipped
    finally:
        _host.set_folders(models={})
    try:
        results, frames, fps = _run_tiny(api, models, tmp_path, size=16, num_frames=9)
        pipe = results["1"]["result"][0]
        assert isinstance(pipe, WanPipeline) and pipe.config.variant == variant and pipe.config.shift == 3.0
        assert frames.shape == (9, 16, 16, 3) and fps == 16.0 and float(frames.float().std()) > 0.01
        if variant == "i2v":  # the picture reaches the model: another one gives another video
            other = _run_tiny(api, models, tmp_path, size=16, num_frames=9, image_seed=5)[0]
            assert (other["6"]["result"][0] - results["6"]["result"][0]).abs().max() > 1e-3
    finally:
        _host.MODELS.clear()
