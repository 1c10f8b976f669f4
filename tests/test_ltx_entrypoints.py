"""LTX-Video entry points: load_pipeline / `vidcore generate` on LTX checkpoints in both layouts, and the
ComfyUI Load Model -> Text Encode -> Empty Latent -> Sampler -> VAE Decode path on an LTX model."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(1)

SIZE = dict(num_frames=9, height=64, width=64)  # tiny VAE: 8x temporal, 32x spatial -> latents 2 x 2 x 2


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    from ._ltx_entry_fixtures import make_ltx_models_root

    return make_ltx_models_root(tmp_path_factory.mktemp("ltx_models"))


@pytest.fixture(scope="module")
def paths(root):
    from ._ltx_entry_fixtures import CHECKPOINT, DIFFUSERS, T5

    return {
        "single": root / "checkpoints" / CHECKPOINT,
        "folder": root / "diffusion_models" / DIFFUSERS,
        "t5": root / "text_encoders" / T5,
    }


@pytest.fixture(scope="module")
def single_pipe(paths):
    from vidcore.pipelines import load_pipeline

    return load_pipeline(paths["single"], text_encoder=paths["t5"])


def test_load_pipeline_single_file_equals_from_checkpoint(paths, single_pipe):
    from vidcore.pipelines.ltx import LTXPipeline
    from vidcore.text import load_text_encoder

    assert isinstance(single_pipe, LTXPipeline)
    assert single_pipe.config.fps == 25.0 and single_pipe.config.name == "ltx-video-2b-v0.9.5"
    ref = LTXPipeline.from_checkpoint(paths["single"], load_text_encoder(paths["t5"]))
    kw = dict(SIZE, steps=2, guidance=3.0, seed=5)
    got = single_pipe.generate("a red fox running", "blurry", **kw)
    want = ref.generate("a red fox running", "blurry", **kw)
    assert got.shape == (9, 64, 64, 3) and float(got.std()) > 0.01
    assert torch.equal(got, want)
    # the seed and the prompt matter
    assert (single_pipe.generate("a red fox running", "blurry", **{**kw, "seed": 6}) - got).abs().max() > 1e-3
    assert (single_pipe.generate("a cat", "blurry", **kw) - got).abs().max() > 1e-4


def test_diffusers_folder_uses_its_own_text_encoder_and_equals_the_single_file(paths, single_pipe):
    from vidcore.pipelines import load_pipeline
    from vidcore.pipelines.ltx import LTXPipeline
    from vidcore.text import load_text_encoder

    pipe = load_pipeline(paths["folder"])  # text_encoder/ inside the folder, no argument needed
    assert isinstance(pipe, LTXPipeline)
    ref = LTXPipeline.from_checkpoint(paths["folder"], load_text_encoder(paths["folder"] / "text_encoder"))
    kw = dict(SIZE, steps=2, guidance=2.5, seed=1, guidance_rescale=0.3)
    got = pipe.generate("waves on a beach", **kw)
    assert torch.equal(got, ref.generate("waves on a beach", **kw))
    # same weights in both layouts (and the same T5) -> the same video
    other = single_pipe.generate("waves on a beach", **kw)
    assert (got - other).abs().max() < 1e-5 and float(got.std()) > 0.01


def test_diffusers_repo_layout_sharded_text_encoder_with_sibling_tokenizer(paths, tmp_path):
    """The layout of the diffusers LTX-Video repository: text_encoder/ holds sharded safetensors and no
    tokenizer; the tokenizer files live in tokenizer/ beside it."""
    import shutil

    from transformers import T5EncoderModel

    from vidcore.pipelines import load_pipeline

    repo = tmp_path / "ltx-repo"
    shutil.copytree(paths["folder"], repo, ignore=shutil.ignore_patterns("text_encoder"))
    T5EncoderModel.from_pretrained(paths["folder"] / "text_encoder", local_files_only=True).save_pretrained(
        repo / "text_encoder", max_shard_size="40KB"
    )
    assert len(list((repo / "text_encoder").glob("model-*-of-*.safetensors"))) >= 2
    assert not (repo / "text_encoder" / "model.safetensors").exists()
    (repo / "tokenizer").mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(paths["folder"] / "text_encoder" / name, repo / "tokenizer" / name)

    pipe, ref = load_pipeline(repo), load_pipeline(paths["folder"])
    assert pipe.text_encoder.source == str(repo / "text_encoder")
    kw = dict(SIZE, steps=2, guidance=3.0, seed=2)
    got = pipe.generate("a lighthouse at night", "blurry", **kw)
    assert torch.equal(got, ref.generate("a lighthouse at night", "blurry", **kw)) and float(got.std()) > 0.01

    # no tokenizer anywhere: the error names both places it looked
    shutil.rmtree(repo / "tokenizer")
    with pytest.raises(ValueError, match=r"text_encoder' has no tokenizer files .*tokenizer' does not exist"):
        load_pipeline(repo)
    (repo / "tokenizer").mkdir()
    with pytest.raises(ValueError, match="has no spiece.model or tokenizer.json either"):
        load_pipeline(repo)


def test_missing_text_encoder_and_bad_options_are_clear(paths, single_pipe, tmp_path):
    from vidcore.pipelines import load_pipeline

    with pytest.raises(ValueError, match=r"carries no text encoder: pass text_encoder=<T5-v1\.1-XXL"):
        load_pipeline(paths["single"])
    (tmp_path / "vc").mkdir()
    (tmp_path / "vc" / "pipeline.json").write_text("{}")  # a vidcore model folder (not loaded: refused first)
    with pytest.raises(ValueError, match="only for LTX-Video / Wan checkpoints"):
        load_pipeline(tmp_path / "vc", text_encoder=paths["t5"])
    with pytest.raises(ValueError, match="does not match the LTX transformer's caption_channels=32"):
        load_pipeline(paths["single"], text_encoder="minilm")
    (tmp_path / "junk.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    with pytest.raises(ValueError, match="not an LTX-Video checkpoint"):
        load_pipeline(tmp_path / "junk.safetensors")
    cases = [
        ({"schedule": "pyramidal"}, "schedule='pyramidal' is not supported by LTX-Video"),
        ({"shift": 3.0}, "shift=3.0 is not supported by LTX-Video"),
        ({"init_frames": torch.zeros(9, 64, 64, 3)}, "init_frames"),
        ({"denoise": 0.5}, "denoise=0.5"),
        ({"sampler": "dpm"}, "sampler='dpm' must be one of"),
        ({"num_frames": 10}, r"num_frames=10 must be 8k \+ 1"),
    ]
    for extra, message in cases:
        with pytest.raises(ValueError, match=message):
            single_pipe.generate("x", **{**SIZE, "steps": 1, **extra})


def test_cli_generate_writes_an_ltx_video(paths, tmp_path, capsys):
    from vidcore.cli import main
    from vidcore.io.video import read_video

    out = tmp_path / "fox.mp4"
    argv = ["generate", "a fox in the snow", "-o", str(out), "--model", str(paths["single"])]
    size = ["--frames", "9", "--height", "64", "--width", "64", "--steps", "2", "--fps", "24"]
    assert main([*argv, "--text-encoder", str(paths["t5"]), *size]) == 0
    frames, fps = read_video(out)
    assert frames.shape == (9, 64, 64, 3) and fps == 24.0 and float(frames.float().std()) > 0.01
    # without a text encoder: a clear error, exit code 2, nothing written
    missing = tmp_path / "none.mp4"
    assert main(["generate", "x", "-o", str(missing), "--model", str(paths["single"]), *size]) == 2
    assert "pass --text-encoder <T5-v1.1-XXL" in capsys.readouterr().err and not missing.exists()
    te = ["--text-encoder", str(paths["t5"])]
    assert main([*argv[:3], str(tmp_path / "p.mp4"), *argv[4:], *te, *size, "--schedule", "pyramidal"]) == 2
    assert "--schedule pyramidal is not supported by LTX-Video" in capsys.readouterr().err


@pytest.fixture()
def comfy_folders(root):
    from nodes import _host

    _host.set_folders(models={k: [root / k] for k in ("checkpoints", "diffusion_models", "text_encoders")})
    yield root
    _host.set_folders(models={})


def test_nodes_load_and_sample_an_ltx_model(comfy_folders, paths):
    from nodes import NODE_CLASS_MAPPINGS as N
    from nodes._convert import from_conditioning
    from vidcore.pipelines import SamplingOptions
    from vidcore.pipelines.ltx import LTXLatentVAE, LTXPipeline

    from ._ltx_entry_fixtures import CHECKPOINT, DIFFUSERS, T5

    spec = N["VidCoreLoadModel"].INPUT_TYPES()
    assert {CHECKPOINT, DIFFUSERS} <= set(spec["required"]["model_name"][0])
    assert spec["optional"]["text_encoder_name"][0] == ["auto", T5]
    model, vae, te = N["VidCoreLoadModel"]().load(CHECKPOINT, "fp32", T5)
    assert isinstance(model, LTXPipeline) and isinstance(vae, LTXLatentVAE) and te is model.text_encoder
    assert N["VidCoreLoadModel"]().load(CHECKPOINT, "fp32", T5)[0] is model  # cached
    with pytest.raises(ValueError, match="carries no text encoder"):
        N["VidCoreLoadModel"]().load(CHECKPOINT, "fp32", "auto")
    assert isinstance(N["VidCoreLoadModel"]().load(DIFFUSERS, "fp32")[0], LTXPipeline)

    pos = N["VidCoreTextEncode"]().encode(te, "a red fox running")[0]
    neg = N["VidCoreTextEncode"]().encode(te, "blurry")[0]
    (latent,) = N["VidCoreEmptyVideoLatent"]().generate(model, vae, 64, 64, 9, 1)
    assert latent["samples"].shape == (1, 8, 2, 2, 2)
    with pytest.raises(ValueError, match=r"num_frames=10 must be 8k \+ 1"):
        N["VidCoreEmptyVideoLatent"]().generate(model, vae, 64, 64, 10, 1)
    sampler = N["VidCoreSampler"]()
    args = (model, pos, neg, latent, 7, 2, 3.0)
    (out,) = sampler.sample(*args, "flow", 1.0, "euler", 1.0, 0.0)

    # the node is one Pipeline.sample call on the same seeded noise
    kw = dict(text_dim=32, needs_pooled=False, batch=1, device=torch.device("cpu"), dtype=torch.float32)
    noise = torch.randn((1, 8, 2, 2, 2), generator=torch.Generator().manual_seed(7))
    cond, uncond = from_conditioning(pos, "p", **kw), from_conditioning(neg, "n", **kw)
    want = model.sample(noise, cond, uncond, SamplingOptions(steps=2, guidance=3.0, seed=7))
    assert torch.equal(out["samples"], want) and float(want.std()) > 0.1
    (images,) = N["VidCoreVAEDecode"]().decode(vae, out, 0, 0, -1)
    assert images.shape == (9, 64, 64, 3)
    # the 0.9.5 VAE injects no noise and decode noise scale is 0: the node path equals generate()
    frames = model.generate("a red fox running", "blurry", **SIZE, steps=2, guidance=3.0, seed=7)
    assert (images - frames).abs().max() < 1e-4 and float(frames.std()) > 0.01

    for bad, message in (
        (("pyramidal", 1.0, "euler", 1.0, 0.0), "schedule='pyramidal'"),
        (("flow", 2.0, "euler", 1.0, 0.0), "shift=2.0"),
        (("flow", 1.0, "euler", 0.5, 0.0), "denoise=0.5"),
    ):
        with pytest.raises(ValueError, match=message):
            sampler.sample(*args, *bad)
    with pytest.raises(ValueError, match="schedule='pyramidal'"):
        N["VidCorePyramidalSampler"]().sample(*args[:5], 2, 1, 3.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="no spatial tiling"):
        N["VidCoreVAEDecode"]().decode(vae, out, 0, 32, -1)


def test_ltx_image_to_video_through_the_cli_and_the_sampler_node(comfy_folders, paths, single_pipe, tmp_path):
    from PIL import Image

    from nodes import NODE_CLASS_MAPPINGS as N
    from vidcore.cli import main
    from vidcore.io import read_image, read_video, write_video

    from ._ltx_entry_fixtures import CHECKPOINT, T5

    pixels = (torch.rand(64, 64, 3, generator=torch.Generator().manual_seed(2)) * 255).to(torch.uint8)
    png = tmp_path / "first.png"
    Image.fromarray(pixels.numpy()).save(png)
    image = read_image(png)
    assert image.shape == (1, 64, 64, 3) and torch.equal(image[0], pixels.float() / 255)
    # CLI: --image, size taken from the image; the file holds what the library generates
    out = tmp_path / "i2v.webp"
    argv = [
        "generate",
        "a fox",
        "-o",
        str(out),
        "--model",
        str(paths["single"]),
        "--text-encoder",
        str(paths["t5"]),
    ]
    assert main([*argv, "--image", str(png), "--frames", "9", "--steps", "2", "--fps", "24"]) == 0
    want = single_pipe.generate("a fox", image=image, num_frames=9, steps=2, fps=24)
    ref = write_video(tmp_path / "ref.webp", want, 24.0)
    assert torch.equal(read_video(out)[0], read_video(ref)[0])
    # the Sampler node's optional image input: the same latents as generate() (0.9.5 VAE: no decode noise)
    model, vae, te = N["VidCoreLoadModel"]().load(CHECKPOINT, "fp32", T5)
    pos = N["VidCoreTextEncode"]().encode(te, "a red fox running")[0]
    neg = N["VidCoreTextEncode"]().encode(te, "blurry")[0]
    (latent,) = N["VidCoreEmptyVideoLatent"]().generate(model, vae, 64, 64, 9, 1)
    sampler = N["VidCoreSampler"]()
    (lat,) = sampler.sample(model, pos, neg, latent, 7, 2, 3.0, "flow", 1.0, "euler", 1.0, 0.0, image)
    (images,) = N["VidCoreVAEDecode"]().decode(vae, lat, 0, 0, -1)
    frames = model.generate("a red fox running", "blurry", **SIZE, steps=2, guidance=3.0, seed=7, image=image)
    assert (images - frames).abs().max() < 1e-4 and float(frames.std()) > 0.01
    (plain,) = sampler.sample(model, pos, neg, latent, 7, 2, 3.0, "flow", 1.0, "euler", 1.0, 0.0)
    assert (plain["samples"] - lat["samples"]).abs().max() > 1e-3  # the image reached the model
    with pytest.raises(ValueError, match="last_image needs image"):
        sampler.sample(model, pos, neg, latent, 7, 2, 3.0, "flow", 1.0, "euler", 1.0, 0.0, None, image)
    with pytest.raises(ValueError, match=r"image is 64x64 \(WxH\) but the video is 96x64"):
        (wide,) = N["VidCoreEmptyVideoLatent"]().generate(model, vae, 96, 64, 9, 1)
        sampler.sample(model, pos, neg, wide, 7, 2, 3.0, "flow", 1.0, "euler", 1.0, 0.0, image)
