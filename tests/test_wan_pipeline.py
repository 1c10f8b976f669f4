"""Wan pipelines: a 3-step UniPC + CFG run equals diffusers' WanPipeline / WanImageToVideoPipeline from the
same seed (tiny random diffusers folders with a tiny umT5, fp32): 2.1 T2V, 2.2 A14B (two experts, one CFG
scale each), 2.1 I2V (CLIP tokens + k_img branch) and TI2V (first frame held, per-token timesteps); then
the folder through `vidcore generate` and the ComfyUI nodes."""

from __future__ import annotations

import pytest
import torch

from vidcore.pipelines import families, load_pipeline

from ._wan_pipeline_fixtures import make_wan_folders  # skips the module without diffusers
from ._wan_pipeline_fixtures import tiny_image as _image

torch.set_num_threads(1)
PROMPT, NEGATIVE = "a fox runs in the snow", "blurry"


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return make_wan_folders(tmp_path_factory.mktemp("wan"))


def _close(got: torch.Tensor, want: torch.Tensor) -> None:
    want = want.permute(0, 2, 3, 1)  # diffusers "pt" frames [T, 3, H, W] -> [T, H, W, 3]
    assert got.shape == want.shape and float(want.std()) > 0.01
    assert float((got - want).abs().max() / want.abs().max()) < 1e-5


@pytest.mark.parametrize("variant", ["t2v", "t2v_a14b"])
def test_wan_text_to_video_matches_diffusers(folders, variant):
    ref, path = folders[variant]
    pipe = load_pipeline(path)
    assert pipe.config.variant == variant and pipe.capabilities.family == f"Wan {variant}"
    extra = {"guidance_scale_2": 2.0} if variant == "t2v_a14b" else {}
    with torch.no_grad():
        want = ref(
            prompt=PROMPT, negative_prompt=NEGATIVE, height=16, width=16, num_frames=9, num_inference_steps=3,
            guidance_scale=5.0, generator=torch.Generator().manual_seed(0), output_type="pt", **extra,
        ).frames[0]  # fmt: skip
    ours = {"guidance_2": 2.0} if variant == "t2v_a14b" else {}
    got = pipe.generate(PROMPT, NEGATIVE, num_frames=9, height=16, width=16, steps=3, guidance=5.0, **ours)
    _close(got, want)
    if variant == "t2v":
        with pytest.raises(
            ValueError, match=r"image \(image-to-video\) is not supported by Wan t2v models; "
        ):
            pipe.generate(PROMPT, image=torch.zeros(1, 16, 16, 3), num_frames=9, steps=1)
        with pytest.raises(ValueError, match="guidance_2=2.0 needs guidance_boundary"):
            pipe.generate(PROMPT, num_frames=9, height=16, width=16, steps=1, guidance_2=2.0)
        # One expert: a stepped scale is the base pipeline's (guidance_2 below guidance_boundary; the
        # shifted 3-step grid is 1, 0.91, 0.71, so the last step runs at 1).
        kw = dict(num_frames=9, height=16, width=16, steps=3, guidance=5.0)
        stepped = pipe.generate(PROMPT, NEGATIVE, guidance_2=1.0, guidance_boundary=0.8, **kw)
        same = pipe.generate(PROMPT, NEGATIVE, guidance_2=5.0, guidance_boundary=0.8, **kw)
        assert torch.equal(same, got) and not torch.equal(stepped, got)


@pytest.mark.parametrize("variant", ["i2v", "flf2v", "ti2v", "i2v_a14b"])
def test_wan_image_to_video_matches_diffusers(folders, variant, monkeypatch):
    import types

    import diffusers.pipelines.wan.pipeline_wan_i2v as i2v_module

    # diffusers' I2V module calls ftfy (not installed here) unguarded; ftfy.fix_text leaves ASCII prompts as
    # they are, which is all this test sends.
    monkeypatch.setattr(i2v_module, "ftfy", types.SimpleNamespace(fix_text=lambda t: t), raising=False)
    ref, path = folders[variant]
    pipe = load_pipeline(path)
    size = 32 if variant == "ti2v" else 16
    pil, frames = _image(size)
    last_pil, last = _image(size, seed=5) if variant == "flf2v" else (None, None)
    with torch.no_grad():
        want = ref(
            image=pil, last_image=last_pil, prompt=PROMPT, negative_prompt=NEGATIVE, height=size,
            width=size, num_frames=9, num_inference_steps=3, guidance_scale=5.0, output_type="pt",
            generator=torch.Generator().manual_seed(0),
        ).frames[0]  # fmt: skip
    got = pipe.generate(PROMPT, NEGATIVE, image=frames, last_image=last, num_frames=9, steps=3, guidance=5.0)
    _close(got, want)
    if variant == "flf2v":
        assert pipe.config.negative_prompt.startswith("镜头切换，")
        with pytest.raises(ValueError, match="Wan flf2v models are first-last-frame-to-video: pass last_"):
            pipe.generate(PROMPT, NEGATIVE, image=frames, num_frames=9, steps=1)
        other = pipe.generate(PROMPT, NEGATIVE, image=frames, last_image=frames, num_frames=9, steps=3)
        assert (other - got).abs().max() > 1e-4  # the last frame reached the model
    if variant == "i2v":
        with pytest.raises(ValueError, match=r"Wan i2v models are image-to-video: pass image="):
            pipe.generate(PROMPT, num_frames=9, height=16, width=16, steps=1)


def test_wan_one_expert_only_and_pickles_are_refused(folders, tmp_path):
    import shutil

    _, path = folders["t2v_a14b"]
    broken = tmp_path / "one-expert"
    shutil.copytree(path, broken, ignore=shutil.ignore_patterns("transformer_2"))
    with pytest.raises(ValueError, match="2.2 A14B model needs both experts"):
        load_pipeline(broken)
    pth = tmp_path / "Wan2.1_VAE.pth"
    pth.write_bytes(b"not read")
    with pytest.raises(ValueError, match=r"vidcore convert Wan2.1_VAE.pth Wan2.1_VAE.safetensors"):
        load_pipeline(pth)
    assert "wan" in [f.name for f in families()]


def test_wan_through_the_cli_and_the_nodes(folders, tmp_path):
    from nodes import NODE_CLASS_MAPPINGS as N
    from nodes import _host
    from vidcore.cli import main
    from vidcore.io import read_video, write_video

    _, path = folders["i2v"]
    pil, frames = _image(16)
    png = tmp_path / "first.png"
    pil.save(png)
    out = tmp_path / "wan.webp"
    argv = ["generate", PROMPT, "-o", str(out), "--model", str(path), "--image", str(png), "--frames", "9"]
    assert main([*argv, "--steps", "2", "--negative", NEGATIVE]) == 0
    pipe = load_pipeline(path)
    want = pipe.generate(PROMPT, NEGATIVE, image=frames, num_frames=9, steps=2)
    ref = write_video(tmp_path / "ref.webp", want, 16.0)
    assert torch.equal(read_video(out)[0], read_video(ref)[0])

    _host.set_folders(models={"diffusers": [path.parent]})
    try:
        assert path.name in N["VidCoreLoadModel"].INPUT_TYPES()["required"]["model_name"][0]
        model, vae, te = N["VidCoreLoadModel"]().load(path.name, "fp32")
        pos = N["VidCoreTextEncode"]().encode(te, PROMPT)[0]
        neg = N["VidCoreTextEncode"]().encode(te, NEGATIVE)[0]
        (latent,) = N["VidCoreEmptyVideoLatent"]().generate(model, vae, 16, 16, 9, 1)
        sampler = N["VidCoreSampler"]()
        (lat,) = sampler.sample(model, pos, neg, latent, 0, 2, 5.0, "flow", 3.0, "unipc", 1.0, 0.0, frames)
        (images,) = N["VidCoreVAEDecode"]().decode(vae, lat, 0, 0, -1)
        # the node encodes each prompt alone (umT5 runs on its own rows): equal up to float rounding
        assert (images - want).abs().max() < 1e-4
    finally:
        _host.set_folders(models={})
        _host.MODELS.clear()


def test_wan_single_file_with_separate_parts_equals_the_folder(folders, tmp_path):
    """ComfyUI users keep Wan as separate files: a single-file transformer plus its VAE, umT5 and (I2V)
    CLIP vision, given to load_pipeline / `vidcore generate --vae --text-encoder --image-encoder`."""
    from vidcore.models.wan import save_wan_transformer

    _, path = folders["i2v"]
    umt5 = path.parent / "umt5"  # the tiny umT5 folder (with its tokenizer) the folders were built from
    folder_pipe = load_pipeline(path)
    single = save_wan_transformer(tmp_path / "wan2.1_i2v_tiny.safetensors", folder_pipe.dit)
    parts = dict(vae=path / "vae", text_encoder=umt5, image_encoder=path / "image_encoder")
    pipe = load_pipeline(single, **parts)
    assert pipe.config.variant == "i2v" and pipe.config.steps == 40 and pipe.config.shift == 3.0
    _, frames = _image(16)
    kw = dict(image=frames, num_frames=9, steps=2, guidance=5.0, shift=3.0)
    assert torch.equal(pipe.generate(PROMPT, NEGATIVE, **kw), folder_pipe.generate(PROMPT, NEGATIVE, **kw))
    with pytest.raises(
        ValueError, match=r"needs its VAE: pass vae=<Wan VAE .safetensors .*\(CLI: --vae PATH\)"
    ):
        load_pipeline(single, text_encoder=umt5, image_encoder=path / "image_encoder")
    with pytest.raises(ValueError, match=r"takes CLIP image tokens .*pass image_encoder="):
        load_pipeline(single, vae=path / "vae", text_encoder=umt5)
    with pytest.raises(ValueError, match="carries no text encoder: pass text_encoder=<umT5-XXL"):
        load_pipeline(single, vae=path / "vae", image_encoder=path / "image_encoder")
    with pytest.raises(ValueError, match=r"vae=.* is only for Wan checkpoints; 'tiny' is a vidcore model"):
        load_pipeline("tiny", vae=path / "vae")


def test_load_model_node_takes_single_file_wan_with_its_parts(folders, tmp_path):
    import shutil

    from nodes import NODE_CLASS_MAPPINGS as N
    from nodes import _host
    from vidcore.models.wan import save_wan_transformer

    _, path = folders["i2v"]
    models = tmp_path / "models"
    kinds = ("diffusion_models", "vae", "clip_vision", "text_encoders")
    for kind in kinds:
        (models / kind).mkdir(parents=True)
    folder_pipe = load_pipeline(path)
    save_wan_transformer(models / "diffusion_models" / "wan_i2v_tiny.safetensors", folder_pipe.dit)
    shutil.copytree(path / "vae", models / "vae" / "wan_vae")
    shutil.copytree(path / "image_encoder", models / "clip_vision" / "clip_h")
    shutil.copy(path / "image_processor" / "preprocessor_config.json", models / "clip_vision" / "clip_h")
    shutil.copytree(path.parent / "umt5", models / "text_encoders" / "umt5_tiny")
    (models / "vae" / "not_a_vae.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    _host.set_folders(
        models={k: [models / k] for k in ("diffusion_models", "vae", "clip_vision", "text_encoders")}
    )
    try:
        spec = N["VidCoreLoadModel"].INPUT_TYPES()
        assert "wan_i2v_tiny.safetensors" in spec["required"]["model_name"][0]
        assert spec["optional"]["vae_name"][0] == ["auto", "wan_vae"]  # only what the Wan family reads
        assert spec["optional"]["clip_vision_name"][0] == ["auto", "clip_h"]
        assert "umt5_tiny" in spec["optional"]["text_encoder_name"][0]
        model, vae, te = N["VidCoreLoadModel"]().load(
            "wan_i2v_tiny.safetensors", "fp32", "umt5_tiny", "wan_vae", "clip_h"
        )
        _, frames = _image(16)
        kw = dict(image=frames, num_frames=9, steps=2, guidance=5.0, shift=3.0)
        assert torch.equal(
            model.generate(PROMPT, NEGATIVE, **kw), folder_pipe.generate(PROMPT, NEGATIVE, **kw)
        )
        with pytest.raises(ValueError, match="needs its VAE"):
            N["VidCoreLoadModel"]().load("wan_i2v_tiny.safetensors", "fp32", "umt5_tiny", "auto", "clip_h")
    finally:
        _host.set_folders(models={})
        _host.MODELS.clear()


def test_wan_vae_reports_every_latent_frame(folders):
    """The node-facing VAE decodes latent frame by latent frame and says so (ComfyUI progress + cancel)."""
    _, path = folders["t2v"]
    vae = load_pipeline(path).vae
    ticks = []
    video = vae.decode(torch.zeros(1, 16, 3, 2, 2), callback=lambda done, total: ticks.append((done, total)))
    assert video.shape == (1, 3, 9, 16, 16) and ticks == [(1, 3), (2, 3), (3, 3)]

    def cancel(done, total):
        raise InterruptedError("cancelled")

    with pytest.raises(InterruptedError):
        vae.decode(torch.zeros(1, 16, 3, 2, 2), callback=cancel)


def test_wan_runs_an_explicit_few_step_list(folders):
    """Few-step students (e.g. TurboWan's rCM times) run on their own noise levels, fed as sigma*1000."""
    _, path = folders["t2v"]
    pipe = load_pipeline(path)
    seen = []
    frames = pipe.generate(
        PROMPT, num_frames=9, height=16, width=16, guidance=1.0, sigmas=[0.9877, 0.9338, 0.0],
        sampler="renoise", callback=lambda info: seen.append(info["sigma"]),
    )  # fmt: skip
    assert frames.shape == (9, 16, 16, 3) and torch.isfinite(frames).all()
    assert seen == [pytest.approx(0.9877), pytest.approx(0.9338)]
