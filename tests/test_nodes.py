"""The ComfyUI node pack without ComfyUI: node contracts, and every node run on tiny random models."""

import inspect
import json
import logging
import math
import os
import shutil
import sys

import pytest
import torch

import nodes
from nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS, _host
from nodes._convert import to_conditioning
from vidcore.io.video import read_video
from vidcore.pipelines import SamplingOptions, TextConditioning, load_pipeline

from ._node_fixtures import (
    CAPTIONER_NAME,
    INPUT_VIDEO,
    make_captioner,
    make_models_root,
    moving_square,
    write_input_video,
)

torch.set_num_threads(1)

WIDGET_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN")
KINDS = ("vidcore", "text_encoders", "LLM", "vae", "diffusion_models")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = make_models_root(tmp_path_factory.mktemp("models"))
    inp, out = tmp_path_factory.mktemp("input"), tmp_path_factory.mktemp("output")
    write_input_video(inp)
    _host.set_folders(
        models={k: [root / k] for k in (*KINDS, "clip_vision")},
        input_dir=inp,
        output_dir=out,
    )
    yield {"root": root, "input": inp, "output": out}
    _host.set_folders(models={})


@pytest.fixture(scope="module")
def loaded(folders):
    model, vae, te = NODE_CLASS_MAPPINGS["VidCoreLoadModel"]().load("tiny", "auto")
    return model, vae, te


def node(name):
    return NODE_CLASS_MAPPINGS[name]()


def encode(te, text):
    return node("VidCoreTextEncode").encode(te, text)[0]


def test_every_node_is_well_formed(folders):
    assert len(NODE_CLASS_MAPPINGS) >= 17 and set(NODE_DISPLAY_NAME_MAPPINGS) == set(NODE_CLASS_MAPPINGS)
    for name, cls in NODE_CLASS_MAPPINGS.items():
        assert name.startswith("VidCore") and name == cls.__name__
        assert cls.CATEGORY.startswith("VidCore/"), name
        assert isinstance(cls.DESCRIPTION, str) and len(cls.DESCRIPTION) > 40, name
        spec = cls.INPUT_TYPES()
        assert set(spec) <= {"required", "optional", "hidden"} and spec["required"], name
        params = inspect.signature(getattr(cls, cls.FUNCTION)).parameters
        inputs = {**spec["required"], **spec.get("optional", {})}
        assert list(params)[1:] == list(inputs), f"{name}: function args must match inputs in order"
        for key in spec.get("optional", {}):
            assert params[key].default is None, f"{name}.{key}: optional inputs default to None"
        for key, (kind, *opts) in inputs.items():
            assert opts and opts[0].get("tooltip"), f"{name}.{key} has no tooltip"
            if kind in WIDGET_TYPES and not opts[0].get("forceInput"):
                assert "default" in opts[0], f"{name}.{key} widget has no default"
            assert isinstance(kind, (str, list)), f"{name}.{key}"
            if kind == "INT" and key in ("seed", "noise_seed"):
                # ComfyUI's frontend adds a control widget after these; our UI workflows must expect it
                assert opts[0].get("control_after_generate") is True, f"{name}.{key}"
            if isinstance(kind, list) and "default" in opts[0]:
                assert opts[0]["default"] in kind
        assert isinstance(cls.RETURN_TYPES, tuple) and all(isinstance(t, str) for t in cls.RETURN_TYPES)
        names = getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES)
        assert len(names) == len(cls.RETURN_TYPES), name
        assert cls.RETURN_TYPES or getattr(cls, "OUTPUT_NODE", False), (
            f"{name}: no outputs and not an output node"
        )


def test_root_entry_point_exports_the_mappings():
    import importlib.util
    from pathlib import Path

    here = Path(nodes.__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location(
        "vidcore_pack_under_test", here / "__init__.py", submodule_search_locations=[str(here)]
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # as ComfyUI does, so the package's relative imports resolve
    try:
        spec.loader.exec_module(mod)
    finally:
        for key in [k for k in sys.modules if k.split(".")[0] == spec.name]:
            del sys.modules[key]
    assert set(mod.NODE_CLASS_MAPPINGS) == set(NODE_CLASS_MAPPINGS) and mod.WEB_DIRECTORY == "./web"
    assert (here / "web" / "vidcore.js").is_file()


def test_load_model_lists_folders_and_caches(folders, loaded):
    spec = NODE_CLASS_MAPPINGS["VidCoreLoadModel"].INPUT_TYPES()["required"]
    assert "tiny" in spec["model_name"][0]
    again = node("VidCoreLoadModel").load("tiny", "auto")
    assert again[0] is loaded[0]  # cached across runs
    assert again[1] is loaded[0].vae and again[2] is loaded[0].text_encoder
    with pytest.raises(ValueError, match="model_name='nope' was not found"):
        node("VidCoreLoadModel").load("nope", "auto")
    assert "tiny/vae.safetensors" in node("VidCoreLoadVAE").INPUT_TYPES()["required"]["vae_name"][0]
    (vae,) = node("VidCoreLoadVAE").load("tiny/vae.safetensors", "fp32")
    for a, b in zip(vae.parameters(), loaded[1].parameters(), strict=True):
        assert torch.equal(a, b)
    (te,) = node("VidCoreLoadTextEncoder").load("tinybert", "fp32")
    assert te.dim == loaded[2].dim


def test_cache_reloads_when_the_files_change(tmp_path):
    cache = _host.ModelCache(size=2)
    f = tmp_path / "w.bin"
    f.write_bytes(b"1")
    calls = []
    a = cache.get("k", f, torch.device("cpu"), torch.float32, lambda: calls.append(1) or object())
    assert cache.get("k", f, torch.device("cpu"), torch.float32, lambda: 1 / 0) is a
    f.write_bytes(b"22")
    b = cache.get("k", f, torch.device("cpu"), torch.float32, lambda: calls.append(1) or object())
    assert b is not a and len(calls) == 2
    cache.get("k", f, torch.device("cpu"), torch.float16, object)
    cache.get("k", f, torch.device("cpu"), torch.bfloat16, object)
    assert len(cache) == 1  # a dtype change replaces the entry (never two copies of one model)


def test_text_encode_matches_the_pipeline(loaded):
    model, _, te = loaded
    cond = encode(te, "a red circle moving right")
    emb, extras = cond[0]
    ref = model.encode_text(["a red circle moving right"])
    assert torch.equal(emb, ref.embeddings) and torch.equal(extras["attention_mask"], ref.mask)
    assert torch.equal(extras["pooled_output"], ref.pooled)
    assert emb.shape[0] == 1 and extras["attention_mask"].dtype == torch.bool


def test_empty_latent_shape_and_bad_sizes(loaded):
    model, vae, _ = loaded
    (lat,) = node("VidCoreEmptyVideoLatent").generate(model, vae, 24, 16, 9, 2)
    assert lat["samples"].shape == (2, 4, 3, 4, 6) and float(lat["samples"].abs().sum()) == 0.0
    with pytest.raises(ValueError, match="num_frames=8 must be 1 \\+ 4k"):
        node("VidCoreEmptyVideoLatent").generate(model, vae, 16, 16, 8, 1)
    with pytest.raises(ValueError, match="width=18"):
        node("VidCoreEmptyVideoLatent").generate(model, vae, 18, 16, 5, 1)


def test_vae_encode_decode_match_the_library_and_tick_per_chunk(loaded):
    _, vae, _ = loaded
    frames = moving_square(9, 16)
    (lat,) = node("VidCoreVAEEncode").encode(vae, frames, 0, 0, -1)
    with torch.no_grad():
        ref = vae.encode(frames.permute(3, 0, 1, 2)[None] * 2 - 1)
    assert torch.allclose(lat["samples"], ref, atol=1e-6) and lat["samples"].shape == (1, 4, 3, 4, 4)
    ticks = []
    _host.set_interrupt_hook(lambda: ticks.append(1))
    try:
        (img,) = node("VidCoreVAEDecode").decode(vae, lat, 1, 0, -1)
    finally:
        _host.set_interrupt_hook(None)
    assert len(ticks) >= 2  # one per chunk: cancellable between chunks
    with torch.no_grad():
        ref_img = ((vae.decode(ref) + 1) / 2).clamp(0, 1)[0].permute(1, 2, 3, 0)
    assert img.shape == (9, 16, 16, 3) and torch.allclose(img, ref_img, atol=1e-4)
    (tiled,) = node("VidCoreVAEDecode").decode(vae, lat, 0, 8, 4)
    assert tiled.shape == img.shape and float((tiled - img).abs().mean()) < 0.2
    with pytest.raises(ValueError, match="num_frames=8"):
        node("VidCoreVAEEncode").encode(vae, frames[:8], 0, 0, -1)
    with pytest.raises(ValueError, match="tile_overlap=4 needs tiling: set tile_size > 0"):
        node("VidCoreVAEDecode").decode(vae, lat, 0, 0, 4)


def _sample(model, pos, neg, lat, **kw):
    args = dict(seed=3, steps=3, guidance=3.0, schedule="flow", shift=1.0, sampler="euler", denoise=1.0)
    args.update(kw)
    return node("VidCoreSampler").sample(model, pos, neg, lat, guidance_rescale=0.0, **args)[0]["samples"]


def test_sampler_equals_the_library_with_the_same_seed(loaded):
    model, vae, te = loaded
    pos, neg = encode(te, "a red circle"), encode(te, "")
    (lat,) = node("VidCoreEmptyVideoLatent").generate(model, vae, 16, 16, 5, 1)
    out = _sample(model, pos, neg, lat)
    gen = torch.Generator().manual_seed(3)
    noise = torch.randn(lat["samples"].shape, generator=gen)
    c = TextConditioning(pos[0][0], pos[0][1]["attention_mask"], pos[0][1]["pooled_output"])
    u = TextConditioning(neg[0][0], neg[0][1]["attention_mask"], neg[0][1]["pooled_output"])
    with torch.no_grad():
        ref = model.sample(noise, c, u, SamplingOptions(steps=3, guidance=3.0), generator=gen)
    # equal up to float rounding: the node pads the pair to one length so CFG runs as one batch
    assert torch.allclose(out, ref, atol=1e-5)
    assert torch.equal(_sample(model, pos, neg, lat), out)  # deterministic
    assert not torch.equal(_sample(model, pos, neg, lat, seed=4), out)
    assert not torch.equal(_sample(model, encode(te, "a blue square"), neg, lat), out)
    # the pipeline's own batched encoding (padded pair) gives the same latents
    c2, u2 = model.encode_prompts("a red circle", "")
    with torch.no_grad():
        ref2 = model.sample(noise, c2, u2, SamplingOptions(steps=3, guidance=3.0))
    assert torch.allclose(out, ref2, atol=1e-5)
    # video-to-video: low denoise stays near the input latents
    near = _sample(model, pos, neg, {"samples": ref}, denoise=0.2, seed=9)
    far = _sample(model, pos, neg, {"samples": ref}, denoise=1.0, seed=9)
    assert (near - ref).abs().mean() < (far - ref).abs().mean()


def test_bf16_sampler_node_keeps_a_float32_state_and_equals_the_library(folders, monkeypatch):
    import vidcore.sampling.samplers as samplers
    from nodes._convert import from_conditioning, pad_pair

    model, vae, te = node("VidCoreLoadModel").load("tiny", "bf16")
    assert model.dtype == torch.bfloat16
    pos, neg = encode(te, "a red circle"), encode(te, "")
    (lat,) = node("VidCoreEmptyVideoLatent").generate(model, vae, 16, 16, 5, 1)
    states = []
    euler_step = samplers.euler_step
    monkeypatch.setattr(samplers, "euler_step", lambda x, *a: states.append(x.dtype) or euler_step(x, *a))
    out = _sample(model, pos, neg, lat)
    assert states == [torch.float32] * 3 and out.dtype == torch.float32
    # the library on the same bf16 model, seed and conditioning
    kw = dict(text_dim=32, needs_pooled=True, batch=1, device=model.device, dtype=model.dtype)
    c, u = pad_pair(from_conditioning(pos, "p", **kw), from_conditioning(neg, "n", **kw))
    prep = model.prepare_latents(tuple(lat["samples"].shape), 3)
    noise, generator = prep.noise, prep.generator
    with torch.no_grad():
        ref = model.sample(noise, c, u, SamplingOptions(steps=3, guidance=3.0, seed=3), generator=generator)
    assert torch.equal(out, ref)
    # and close to the fp32 model: only the network runs in bf16
    full = node("VidCoreLoadModel").load("tiny", "fp32")[0]
    out32 = _sample(full, encode(te, "a red circle"), encode(te, ""), lat)
    assert float((out - out32).abs().max()) < 0.1 * float(out32.abs().max())


def _pyramidal_default_model(root):
    """A copy of the test model whose defaults are of the built-in tiny's kind: the pyramidal schedule (2
    stages here) with the ancestral sampler."""
    src, dst = root / "vidcore" / "tiny", root / "vidcore" / "tiny_pyramidal"
    if not dst.exists():
        shutil.copytree(src, dst)
        cfg = json.loads((dst / "pipeline.json").read_text())
        cfg.update(name=dst.name, schedule="pyramidal", sampler="euler_ancestral", pyramid_stages=2)
        cfg.update(pyramid_stage_range=None)
        (dst / "pipeline.json").write_text(json.dumps(cfg))
    return node("VidCoreLoadModel").load(dst.name, "auto")


def test_sampler_default_entries_take_the_models_own_settings(folders, loaded, caplog):
    for name in ("VidCoreSampler", "VidCorePyramidalSampler"):
        spec = NODE_CLASS_MAPPINGS[name].INPUT_TYPES()
        inputs = {**spec["required"], **spec.get("optional", {})}
        for widget in ("schedule", "sampler") if name == "VidCoreSampler" else ("sampler",):
            choices, opts = inputs[widget]
            assert choices[0] == "default" and opts["default"] == "default", (name, widget)
    # A flow model: "default" is its own sampler.
    model, vae, te = loaded
    pos, neg = encode(te, "a red circle"), encode(te, "")
    (lat,) = node("VidCoreEmptyVideoLatent").generate(model, vae, 16, 16, 5, 1)
    own = model.default_options().sampler
    assert torch.equal(
        _sample(model, pos, neg, lat, schedule="default", sampler="default"),
        _sample(model, pos, neg, lat, schedule="flow", sampler=own),
    )
    # A pyramidal-default model: its schedule and sampler where the pyramid can run the request ...
    model, vae, te = _pyramidal_default_model(folders["root"])
    pos, neg = encode(te, "a red circle"), encode(te, "")
    out = _sample(model, pos, neg, lat, schedule="default", sampler="default")
    assert torch.equal(out, _sample(model, pos, neg, lat, schedule="pyramidal", sampler="euler_ancestral"))
    assert not torch.equal(out, _sample(model, pos, neg, lat, schedule="flow", sampler="euler_ancestral"))
    # ... flow for video-to-video, a flow-only solver and a size the pyramid cannot halve (with a warning).
    v2v = dict(denoise=0.5, sampler="default", seed=4)
    assert torch.equal(
        _sample(model, pos, neg, {"samples": out}, schedule="default", **v2v),
        _sample(model, pos, neg, {"samples": out}, schedule="flow", **v2v),
    )
    heun = dict(sampler="heun", steps=2)
    assert torch.equal(
        _sample(model, pos, neg, lat, schedule="default", **heun),
        _sample(model, pos, neg, lat, schedule="flow", **heun),
    )
    (odd,) = node("VidCoreEmptyVideoLatent").generate(model, vae, 12, 16, 5, 1)  # 3 latent columns
    with caplog.at_level(logging.WARNING, logger="vidcore"):
        got = _sample(model, pos, neg, odd, schedule="default", sampler="default")
    assert "width=12" in caplog.text and "sampling with schedule 'flow'" in caplog.text
    assert torch.equal(got, _sample(model, pos, neg, odd, schedule="flow", sampler="euler_ancestral"))
    # The Pyramidal Sampler's "default" stage solver is the model's own.
    pyr = node("VidCorePyramidalSampler")
    args = (model, pos, neg, lat, 5, 2, 2, 3.0, 1.0, 0.0)
    assert torch.equal(
        pyr.sample(*args, sampler="default")[0]["samples"],
        pyr.sample(*args, sampler="euler_ancestral")[0]["samples"],
    )


def test_pyramidal_sampler_equals_the_library(loaded):
    model, vae, te = loaded
    pos, neg = encode(te, "x"), encode(te, "")
    (lat,) = node("VidCoreEmptyVideoLatent").generate(model, vae, 16, 16, 5, 1)
    out = node("VidCorePyramidalSampler").sample(model, pos, neg, lat, 5, 2, 2, 3.0, 1.0, 0.0)[0]["samples"]
    gen = torch.Generator().manual_seed(5)
    noise = torch.randn(lat["samples"].shape, generator=gen)
    c = TextConditioning(pos[0][0], pos[0][1]["attention_mask"], pos[0][1]["pooled_output"])
    u = TextConditioning(neg[0][0], neg[0][1]["attention_mask"], neg[0][1]["pooled_output"])
    with torch.no_grad():
        opts = SamplingOptions(steps=4, guidance=3.0, schedule="pyramidal", pyramid_stages=2)
        ref = model.sample(noise, c, u, opts, generator=gen)
    assert torch.allclose(out, ref, atol=1e-5) and out.shape == lat["samples"].shape
    # The optional stage solver: euler_ancestral draws its fresh noise from the seed as well.
    pyr = node("VidCorePyramidalSampler")
    anc = pyr.sample(model, pos, neg, lat, 5, 2, 2, 3.0, 1.0, 0.0, sampler="euler_ancestral")
    gen = torch.Generator().manual_seed(5)
    noise = torch.randn(lat["samples"].shape, generator=gen)
    with torch.no_grad():
        ref = model.sample(noise, c, u, opts.replace(sampler="euler_ancestral"), generator=gen)
    assert torch.allclose(anc[0]["samples"], ref, atol=1e-5) and not torch.allclose(anc[0]["samples"], out)
    # An explicit stage split (stages + 1 fractions of the schedule) reaches the library as given.
    split = pyr.sample(model, pos, neg, lat, 5, 2, 2, 3.0, 1.0, 0.0, stage_range="0, 0.1, 1")
    gen = torch.Generator().manual_seed(5)
    noise = torch.randn(lat["samples"].shape, generator=gen)
    with torch.no_grad():
        ref = model.sample(noise, c, u, opts.replace(pyramid_stage_range=(0, 0.1, 1)), generator=gen)
    (split,) = split
    assert torch.allclose(split["samples"], ref, atol=1e-5) and not torch.allclose(split["samples"], out)
    with pytest.raises(ValueError, match="stage_range='0,x,1' must be comma-separated numbers"):
        pyr.sample(model, pos, neg, lat, 5, 2, 2, 3.0, 1.0, 0.0, stage_range="0,x,1")
    with pytest.raises(ValueError, match=r"pyramid_stage_range=\[0.0, 1.0\] has 2 values; 2 pyramid stages"):
        pyr.sample(model, pos, neg, lat, 5, 2, 2, 3.0, 1.0, 0.0, stage_range="0,1")
    # Stepped guidance (optional inputs): guidance_2 below guidance_boundary on the global noise level;
    # boundary 0 (the default) is one scale throughout.
    stepped = pyr.sample(model, pos, neg, lat, 5, 2, 2, 3.0, 1.0, 0.0, guidance_2=1.5, guidance_boundary=0.5)
    gen = torch.Generator().manual_seed(5)
    noise = torch.randn(lat["samples"].shape, generator=gen)
    with torch.no_grad():
        ref = model.sample(noise, c, u, opts.replace(guidance_2=1.5, guidance_boundary=0.5), generator=gen)
    (stepped,) = stepped
    assert torch.allclose(stepped["samples"], ref, atol=1e-5) and not torch.allclose(stepped["samples"], out)
    off = pyr.sample(model, pos, neg, lat, 5, 2, 2, 3.0, 1.0, 0.0, guidance_2=1.5, guidance_boundary=0.0)
    assert torch.equal(off[0]["samples"], out)
    (odd,) = node("VidCoreEmptyVideoLatent").generate(model, vae, 12, 12, 5, 1)
    with pytest.raises(ValueError, match="divisible by 4 for 3 pyramid stages"):
        node("VidCorePyramidalSampler").sample(model, pos, neg, odd, 0, 3, 1, 3.0, 1.0, 0.0)


def test_sampler_bad_inputs_are_clear(loaded):
    model, _, te = loaded
    pos = encode(te, "x")
    lat = {"samples": torch.zeros(1, 3, 2, 4, 4)}
    with pytest.raises(ValueError, match="3 channels but the model takes in_channels=4"):
        _sample(model, pos, pos, lat)
    wide = [[torch.zeros(1, 5, 7), {"pooled_output": torch.zeros(1, 7)}]]
    with pytest.raises(ValueError, match="width D=7 but the model expects text_dim=32"):
        _sample(model, wide, pos, {"samples": torch.zeros(1, 4, 2, 4, 4)})
    with pytest.raises(ValueError, match="VidCore samplers take exactly one"):
        _sample(model, pos + pos, pos, {"samples": torch.zeros(1, 4, 2, 4, 4)})
    # ComfyUI-style conditioning without a mask (all tokens real) feeds the sampler when dimensions match
    plain = [[pos[0][0], {"pooled_output": pos[0][1]["pooled_output"]}]]
    out = _sample(model, plain, plain, {"samples": torch.zeros(2, 4, 2, 4, 4)}, steps=1)
    assert out.shape == (2, 4, 2, 4, 4) and torch.isfinite(out).all()


def test_save_video_unique_names_never_overwrite(folders):
    frames = moving_square(5, 16)
    saver = node("VidCoreSaveVideo")
    first = saver.save(frames, 4.0, "clips/run", "mp4", -1)["ui"]["vidcore_videos"][0]
    second = saver.save(frames, 4.0, "clips/run", "mp4", -1)["ui"]["vidcore_videos"][0]
    assert (first["filename"], second["filename"]) == ("run_00001.mp4", "run_00002.mp4")
    assert first["subfolder"] == "clips" and first["type"] == "output"
    path = folders["output"] / "clips" / "run_00001.mp4"
    before = path.stat().st_mtime_ns
    saver.save(frames * 0.5, 4.0, "clips/run", "mp4", -1)
    assert path.stat().st_mtime_ns == before and (folders["output"] / "clips" / "run_00003.mp4").is_file()
    back, fps = read_video(path)
    assert back.shape == (5, 16, 16, 3) and fps == 4.0 and float((back - frames).abs().mean()) < 0.05
    for fmt in ("webm", "gif"):
        entry = saver.save(frames, 4.0, "clips/run", fmt, -1)["ui"]["vidcore_videos"][0]
        assert read_video(folders["output"] / "clips" / entry["filename"])[0].shape[0] == 5
    for bad in ("../escape", "/tmp/abs", "clips/../../x"):
        with pytest.raises(ValueError, match="filename_prefix"):
            saver.save(frames, 4.0, bad, "mp4", -1)
    assert not any(p.name.startswith(".") for p in (folders["output"] / "clips").iterdir())


def test_load_video_input_folder_only(folders):
    loader = NODE_CLASS_MAPPINGS["VidCoreLoadVideo"]
    assert INPUT_VIDEO in loader.INPUT_TYPES()["required"]["video"][0]
    frames, fps, n = loader().load(INPUT_VIDEO, 0, 1, 0)
    assert frames.shape == (9, 32, 32, 3) and fps == 8.0 and n == 9
    ref = moving_square(9, 32)
    assert float((frames - ref).abs().mean()) < 0.03
    frames2, fps2, n2 = loader().load(INPUT_VIDEO, 3, 2, 1)
    assert n2 == 3 and fps2 == 4.0 and torch.equal(frames2, frames[1:7:2])
    outside = folders["input"].parent / "secret.mp4"
    outside.write_bytes(b"x")
    for bad in ("../secret.mp4", str(outside), "sub/../../secret.mp4"):
        with pytest.raises(ValueError, match="outside the folder|absolute path"):
            loader().load(bad, 0, 1, 0)
        assert "outside" in loader.VALIDATE_INPUTS(bad) or "absolute" in loader.VALIDATE_INPUTS(bad)
    # a link in the input folder that leads outside is not offered (it would only be refused)
    (folders["input"] / "link.mp4").symlink_to(outside)
    try:
        assert "link.mp4" not in loader.INPUT_TYPES()["required"]["video"][0]
        assert "outside" in loader.VALIDATE_INPUTS("link.mp4")
    finally:
        (folders["input"] / "link.mp4").unlink()
    assert loader.VALIDATE_INPUTS(INPUT_VIDEO) is True
    (folders["input"] / "broken.mp4").write_bytes(b"not a video at all")
    with pytest.raises(ValueError, match="broken.mp4"):
        loader().load("broken.mp4", 0, 1, 0)


def test_cancellation_stops_within_one_step_and_writes_nothing(loaded, folders, tmp_path):
    model, vae, te = loaded
    pos, neg = encode(te, "x"), encode(te, "")
    (lat,) = node("VidCoreEmptyVideoLatent").generate(model, vae, 16, 16, 5, 1)
    calls, ticks = [], []
    orig = model.dit.forward

    def counting(*a, **k):
        calls.append(1)
        return orig(*a, **k)

    def hook():
        ticks.append(1)
        if len(ticks) == 4:  # one tick per finished step: cancel right after step 4
            raise InterruptedError("cancelled by the test")

    _host.set_folders(output_dir=tmp_path)
    model.dit.forward = counting
    _host.set_interrupt_hook(hook)
    try:
        with pytest.raises(InterruptedError):
            samples = _sample(model, pos, neg, lat, steps=10)
            images = node("VidCoreVAEDecode").decode(vae, {"samples": samples}, 0, 0, -1)[0]
            node("VidCoreSaveVideo").save(images, 4.0, "cancel", "mp4", -1)
    finally:
        _host.set_interrupt_hook(None)
        del model.dit.forward
        _host.set_folders(output_dir=folders["output"])
    assert len(calls) == 4  # 4 steps ran (one batched CFG forward each); the 4th tick raised: no 5th step
    assert list(tmp_path.iterdir()) == []


def test_caption_to_prompt_template_and_errors():
    n = node("VidCoreCaptionToPrompt")
    out = n.rewrite(
        "The video shows a red circle moving right.", "template", "cinematic", "4k, smooth", 77, 0.0, 0
    )
    assert out["result"] == ("a red circle moving right, cinematic, 4k, smooth",)
    assert out["ui"]["text"] == ["a red circle moving right, cinematic, 4k, smooth"]
    with pytest.raises(ValueError, match="needs the captioner"):
        n.rewrite("a caption", "vlm", "", "", 77, 0.0, 0)


@pytest.mark.skipif(os.environ.get("VIDCORE_FAST_TESTS") == "1", reason="VIDCORE_FAST_TESTS=1 skips the VLM")
def test_caption_nodes_on_a_tiny_vlm(folders):
    make_captioner(folders["root"])
    (cap,) = node("VidCoreLoadCaptioner").load(CAPTIONER_NAME, "fp32")
    frames = moving_square(9, 32)
    out = node("VidCoreCaptionVideo").caption(cap, frames, 8.0, "Describe this video.", 2, 5, 0.0, 0)
    ref = cap.caption(frames, question="Describe this video.", num_frames=2, video_fps=8.0, max_new_tokens=5)
    assert out["result"] == (ref,) and isinstance(ref, str)
    rewrite = node("VidCoreCaptionToPrompt").rewrite
    vlm = rewrite("a red circle", "vlm", "", "4k", 4, 0.0, 0, cap)["result"][0]
    assert vlm.endswith("4k")
    # temperature reaches the VLM: sampled rewrites follow the seed and differ from the greedy one
    sampled = [rewrite("a red circle", "vlm", "", "4k", 4, 2.0, s, cap)["result"][0] for s in range(4)]
    assert sampled[1] == rewrite("a red circle", "vlm", "", "4k", 4, 2.0, 1, cap)["result"][0]
    assert any(s != vlm for s in sampled)


def test_flow_and_metrics_nodes_match_the_library(folders):
    from vidcore.flow import flow_loss
    from vidcore.metrics.score import score_video
    from vidcore.metrics.temporal import video_flows

    frames = moving_square(5, 32)
    flow, color = node("VidCoreOpticalFlow").estimate(frames, "lucas_kanade")
    assert torch.equal(flow["forward"], video_flows(frames))
    assert color.shape == (4, 32, 32, 3) and 0 <= float(color.min()) and float(color.max()) <= 1
    # the square moves 1 px right per frame: the flow inside it points right
    assert float(flow["forward"][:, 0, 10:14, 8:12].mean()) > 0.5
    out = node("VidCoreFlowWarpLoss").loss(frames, flow, True)
    value = out["result"][0]
    ref = flow_loss(frames.permute(3, 0, 1, 2)[None], flow["forward"][None], flow["backward"][None])
    assert value == pytest.approx(float(ref), rel=1e-6) and value >= 0
    with pytest.raises(TypeError, match="flow must be a VIDCORE_FLOW"):
        node("VidCoreFlowWarpLoss").loss(frames, {"forward": flow["forward"]}, True)
    shifted = (frames + 0.05).clamp(0, 1)
    res = node("VidCoreVideoMetrics").score(frames, 8.0, "lucas_kanade", shifted)
    flicker, warp, dyn, text, plot, clip_sim, clip_tc, psnr, ssim = res["result"]
    ref = score_video(frames, fps=8.0, reference=shifted)
    assert (flicker, warp, dyn) == (ref["flicker"], ref["warp_error"], ref["dynamic_degree"])
    assert (psnr, ssim) == (ref["psnr"], ref["ssim"]) and 20 < psnr < 40 and 0 < ssim < 1
    assert math.isnan(clip_sim) and math.isnan(clip_tc)  # no CLIP folder given
    assert json.loads(text)["psnr"] == psnr and plot.ndim == 4 and plot.shape[-1] == 3
    assert res["ui"]["vidcore_metrics"][0]["flicker"] == flicker
    with pytest.raises(ValueError, match="at least 2"):
        node("VidCoreOpticalFlow").estimate(frames[:1], "lucas_kanade")


def _strict_json(text):
    """json.loads that refuses the non-standard Infinity / NaN constants (browsers' JSON.parse does)."""
    return json.loads(text, parse_constant=lambda c: pytest.fail(f"invalid JSON constant {c}"))


def test_video_metrics_clip_prompt_and_reference_inputs(folders):
    from nodes.analysis import NO_CLIP, _cached_clip
    from vidcore.metrics.clip import clip_sim, clip_tc, load_clip
    from vidcore.metrics.score import score_video

    from ._tiny_hf import make_clip_full_folder

    clip_dir = folders["root"] / "clip_vision" / "tinyclip"
    if not (clip_dir / "config.json").is_file():
        make_clip_full_folder(clip_dir, seed=3)
    vision_only = folders["root"] / "clip_vision" / "vision-only"
    vision_only.mkdir(exist_ok=True)
    (vision_only / "config.json").write_text(json.dumps({"model_type": "clip_vision_model"}))
    cls = NODE_CLASS_MAPPINGS["VidCoreVideoMetrics"]
    optional = cls.INPUT_TYPES()["optional"]
    # appended only, so saved workflows keep working
    assert list(optional) == ["reference", "prompt", "clip_name"]
    # full and vision-only CLIP folders are offered; the BERT folder in text_encoders is not
    assert optional["clip_name"][0] == [NO_CLIP, "tinyclip", "vision-only"]
    assert cls.RETURN_NAMES[:5] == ("flicker", "warp_error", "dynamic_degree", "report_json", "plot")

    frames, prompt = moving_square(5, 32), "a yellow square sliding right"
    bundle = load_clip(clip_dir)
    want_sim, want_tc = clip_sim(frames, prompt, bundle), clip_tc(frames, bundle)
    res = node("VidCoreVideoMetrics").score(frames, 8.0, "lucas_kanade", None, prompt, "tinyclip")
    flicker, _warp, _dyn, text, _plot, sim, tc, psnr, ssim = res["result"]
    assert sim == pytest.approx(want_sim, abs=1e-6) and tc == pytest.approx(want_tc, abs=1e-6)
    assert -1 <= sim <= 1 and 0 < tc <= 1 and abs(sim) > 1e-4 and math.isnan(psnr) and math.isnan(ssim)
    report = _strict_json(text)
    assert report["prompt"] == prompt and report["clip_sim"] == sim
    assert len(report["per_frame"]["clip_sim"]) == 5
    assert flicker == score_video(frames, fps=8.0)["flicker"]
    # CLIP-TC alone (empty prompt widget = no CLIP-SIM), and the model is cached across runs
    only_tc = node("VidCoreVideoMetrics").score(frames, 8.0, "lucas_kanade", None, "  ", "tinyclip")["result"]
    assert math.isnan(only_tc[5]) and only_tc[6] == pytest.approx(want_tc, abs=1e-6)
    assert _cached_clip("tinyclip", True) is _cached_clip("tinyclip", True)

    # identical reference: PSNR = inf stays a float output, and the report / UI payload are valid JSON
    res = node("VidCoreVideoMetrics").score(frames, 8.0, "lucas_kanade", frames, prompt, "tinyclip")
    text, psnr, ssim = res["result"][3], res["result"][7], res["result"][8]
    assert psnr == math.inf and ssim == pytest.approx(1.0, abs=1e-6)
    assert "Infinity" not in text and _strict_json(text)["psnr"] == "inf"
    assert res["ui"]["vidcore_metrics"][0]["psnr"] == "inf"
    _strict_json(json.dumps(res["ui"], allow_nan=False))

    metrics = node("VidCoreVideoMetrics")
    with pytest.raises(ValueError, match="CLIP-SIM needs a CLIP folder; choose clip_name"):
        metrics.score(frames, 8.0, "lucas_kanade", None, prompt, NO_CLIP)
    unknown = r"clip_name='missing' was not found .*\['tinyclip', 'vision-only'\]"
    with pytest.raises(ValueError, match=unknown):
        metrics.score(frames, 8.0, "lucas_kanade", None, "", "missing")
    with pytest.raises(ValueError, match="holds only a vision tower"):
        metrics.score(frames, 8.0, "lucas_kanade", None, prompt, "vision-only")
    with pytest.raises(TypeError, match="prompt must be a string"):
        metrics.score(frames, 8.0, "lucas_kanade", None, 3, "tinyclip")


def test_load_pipeline_default_matches_node_folder(folders):
    pipe = load_pipeline(folders["root"] / "vidcore" / "tiny")
    cond = to_conditioning(pipe.encode_text(["x"]))
    assert cond[0][0].shape[-1] == pipe.dit.config.text_dim


def test_model_folders_register_in_a_fresh_comfyui(monkeypatch, tmp_path):
    # ComfyUI's folder_paths.get_folder_paths raises KeyError for a kind nobody registered: the pack
    # must register models/vidcore and models/LLM itself (and stay idempotent on a second import).
    import types

    registry: dict[str, tuple[list[str], set]] = {}

    def get_folder_paths(name):
        return registry[name][0][:]

    def add_model_folder_path(name, path, is_default=False):
        paths = registry.setdefault(name, ([], set()))[0]
        if path not in paths:
            paths.append(path)

    fake = types.SimpleNamespace(
        models_dir=str(tmp_path),
        get_folder_paths=get_folder_paths,
        add_model_folder_path=add_model_folder_path,
    )
    monkeypatch.setitem(sys.modules, "folder_paths", fake)
    _host.register_model_folders()
    _host.register_model_folders()
    # ours, and the folders every registered family searches (checkpoints, diffusion_models, diffusers are
    # built into a real ComfyUI, where registering them again is a no-op)
    kinds = ("vidcore", "LLM", "diffusion_models", "checkpoints", "diffusers")
    assert registry == {k: ([str(tmp_path / k)], set()) for k in kinds}


def test_unknown_model_names_list_what_is_available(folders):
    with pytest.raises(ValueError, match=r"vae_name='nope.safetensors' was not found in .*; available: \["):
        node("VidCoreLoadVAE").load("nope.safetensors", "auto")
    with pytest.raises(ValueError, match=r"clip_name='nope' was not found in models/clip_vision"):
        node("VidCoreVideoMetrics").score(moving_square(3, 16), 8.0, "lucas_kanade", None, "", "nope")


def test_vae_list_offers_only_vidcore_vaes(folders):
    from safetensors.torch import save_file

    from vidcore.models.vae import CausalVAE3D, VAEConfig

    vae_dir = folders["root"] / "vae"
    vae_dir.mkdir(exist_ok=True)
    save_file({"decoder.conv_in.weight": torch.zeros(4, 4)}, str(vae_dir / "sd_vae.safetensors"))
    tiny = VAEConfig(spatial_compression=4, base_channels=8, channel_multipliers=(1, 1, 1), latent_channels=4)
    CausalVAE3D(tiny).save(vae_dir / "ours.safetensors")
    names = node("VidCoreLoadVAE").INPUT_TYPES()["required"]["vae_name"][0]
    assert "ours.safetensors" in names and "sd_vae.safetensors" not in names
    with pytest.raises(ValueError, match="vae_name='sd_vae.safetensors' was not found"):
        node("VidCoreLoadVAE").load("sd_vae.safetensors", "fp32")


def test_shared_model_folders_offer_only_loadable_model_types(folders):
    # models/LLM and models/text_encoders are shared with other packs: list only what our loaders read.
    other = folders["root"] / "LLM" / "florence"
    other.mkdir(parents=True, exist_ok=True)
    (other / "config.json").write_text(json.dumps({"model_type": "florence2"}))
    for name, key in (("VidCoreLoadCaptioner", "model_name"), ("VidCoreLoadTextEncoder", "encoder_name")):
        assert "florence" not in node(name).INPUT_TYPES()["required"][key][0]


def test_auto_precision_is_bf16_only_on_gpus_with_native_bf16(monkeypatch):
    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    assert _host.resolve_precision("auto", cuda) == torch.float32  # emulated only (pre-Ampere)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert _host.resolve_precision("auto", cuda) == torch.bfloat16
    assert _host.resolve_precision("auto", torch.device("cpu")) == torch.float32
    assert _host.resolve_precision("fp16", torch.device("cpu")) == torch.float16
    with pytest.raises(ValueError, match="precision='fp8' must be one of"):
        _host.resolve_precision("fp8", cuda)
