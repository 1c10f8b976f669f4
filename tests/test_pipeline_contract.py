"""The pipeline contract: SamplingOptions, capabilities-derived refusals, the family registry, and a toy
family defined here (tiny random modules) running through `vidcore generate` and the ComfyUI nodes with no
change to the CLI or the node pack."""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import vidcore
from vidcore.io.video import read_video, write_video
from vidcore.pipelines import (
    Capabilities,
    Family,
    Pipeline,
    SamplingOptions,
    families,
    load_pipeline,
    register_family,
    unregister_family,
)
from vidcore.sampling import SAMPLERS, linear_sigmas

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------ SamplingOptions


def test_sampling_options_are_frozen_keyword_only_and_validated_once():
    opts = SamplingOptions(steps=4, guidance=3, seed=2)
    assert opts.guidance == 3.0 and isinstance(opts.guidance, float)
    with pytest.raises(TypeError):
        SamplingOptions(4, 3.0)  # positional: guidance and shift can never be swapped silently
    with pytest.raises(AttributeError):
        opts.steps = 5
    assert opts.replace(steps=9).steps == 9 and opts.with_overrides(steps=None, shift=2.0).shift == 2.0
    cases = [
        (dict(steps=0), "steps=0 must be a positive integer"),
        (dict(steps=2.0), "steps=2.0 must be a positive integer"),
        (dict(guidance=0.5), r"guidance=0.5 must be >= 1"),
        (dict(guidance=float("inf")), r"guidance=inf must be a finite number >= 1"),
        (dict(guidance="4"), r"guidance='4' must be a number, got str"),
        (dict(guidance_rescale=1.5), r"guidance_rescale=1.5 must be in \[0, 1\]"),
        (dict(shift=0.0), "shift=0.0 must be a finite number > 0"),
        (dict(denoise=0.0), r"denoise=0.0 must be in \(0, 1\]"),
        (dict(schedule="zigzag"), "schedule='zigzag' must be one of"),
        (dict(sampler="dpm"), "sampler='dpm' must be one of"),
        (dict(seed=-1), r"seed=-1 must be an integer in \[0, 2\*\*64\)"),
        (dict(seed=True), "seed=True must be an integer"),
        (dict(schedule="pyramidal", sampler="heun"), "sampler='heun': schedule='pyramidal' integrates"),
        (dict(guidance_2=0.5), r"guidance_2=0.5 must be a finite number >= 1 \(None = guidance\)"),
        (dict(guidance_boundary=0.5), r"guidance_boundary=0.5 needs guidance_2 \(the CFG scale of the steps"),
        (
            dict(guidance_2=2.0, guidance_boundary=1.0),
            r"guidance_boundary=1.0 must be a noise level in \(0, 1\)",
        ),
        (dict(guidance_2=2.0, guidance_boundary=0), r"guidance_boundary=0 must be a noise level in \(0, 1\)"),
        (dict(guidance_2=2.0, guidance_boundary="0.5"), "guidance_boundary='0.5' must be a number, got str"),
        (dict(schedule="pyramidal", denoise=0.5), "needs schedule='flow'"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            SamplingOptions(**kwargs)


def test_unknown_option_names_are_errors():
    with pytest.raises(ValueError, match=r"unknown SamplingOptions option\(s\) \['stepz'\]; known options"):
        SamplingOptions().replace(stepz=3)
    with pytest.raises(ValueError, match=r"unknown SamplingOptions keys \['cfg'\]"):
        SamplingOptions.from_dict({"steps": 3, "cfg": 4.0})
    with pytest.raises(TypeError):
        SamplingOptions(cfg=4.0)
    assert SamplingOptions.from_dict(SamplingOptions(steps=3).to_dict()) == SamplingOptions(steps=3)
    assert vidcore.SamplingOptions is SamplingOptions


def test_every_sampler_takes_the_generator_keyword():
    x = torch.randn(1, 2, 1, 2, 2)
    for name, sampler in SAMPLERS.items():
        out = sampler(lambda x, s: x * 0.5, x, linear_sigmas(2), generator=torch.Generator().manual_seed(0))
        assert out.shape == x.shape, name


def test_refusals_are_derived_from_capabilities():
    caps = Capabilities(family="Toy", schedules=("flow",), samplers=("euler",), fixed_shift=False)
    cases = [
        (
            SamplingOptions(schedule="pyramidal"),
            r"schedule='pyramidal' is not supported by Toy models; "
            r"supported: \['flow'\]",
        ),
        (
            SamplingOptions(sampler="heun"),
            r"sampler='heun' is not supported by Toy models; supported: \['euler'\]",
        ),
        (SamplingOptions(shift=2.0), "shift=2.0 is not supported by Toy models"),
        (
            SamplingOptions(denoise=0.5),
            r"denoise=0.5: video-to-video \(denoise < 1\) is not supported by Toy",
        ),
    ]
    for opts, message in cases:
        with pytest.raises(ValueError, match=message):
            caps.check(opts)
    with pytest.raises(ValueError, match=r"init_frames \(video-to-video\) is not supported by Toy models"):
        caps.check(SamplingOptions(), init_frames=True)
    with pytest.raises(ValueError, match=r"image \(image-to-video\) is not supported by Toy models$"):
        caps.check(SamplingOptions(), image=True)
    hinted = Capabilities(family="T2V", image_hint="image-to-video needs an I2V checkpoint")
    with pytest.raises(
        ValueError, match="not supported by T2V models; image-to-video needs an I2V checkpoint"
    ):
        hinted.check(SamplingOptions(), image=True)
    i2v = Capabilities(family="I2V", image_conditioning=True, requires_image=True)
    with pytest.raises(ValueError, match=r"I2V models are image-to-video: pass image= \(CLI: --image"):
        i2v.check(SamplingOptions())
    with pytest.raises(ValueError, match=r"last_image \(first-last-frame-to-video\) is not supported by I2V"):
        i2v.check(SamplingOptions(), image=True, last_image=True)
    with pytest.raises(ValueError, match="last_image needs image"):
        i2v.check(SamplingOptions(), last_image=True)
    with pytest.raises(ValueError, match=r"guidance_2=3.0 needs guidance_boundary \(the noise level below"):
        caps.check(SamplingOptions(guidance_2=3.0))
    caps.check(SamplingOptions(guidance_2=3.0, guidance_boundary=0.5))  # a stepped scale: any family
    experts = Capabilities(family="Duo", expert_guidance=True)
    experts.check(SamplingOptions(guidance_2=3.0))  # switches at the model's own expert boundary
    with pytest.raises(ValueError, match="guidance_boundary=0.5: Duo models switch from guidance to"):
        experts.check(SamplingOptions(guidance_2=3.0, guidance_boundary=0.5))
    with pytest.raises(ValueError, match="tile_size=32: the Toy VAE has no spatial tiling"):
        caps.check_tiling(32, None)
    with pytest.raises(ValueError, match="Toy capabilities sampler='dpm' must be one of"):
        Capabilities(family="Toy", samplers=("dpm",))


# ----------------------------------------------------------------------------------------------- toy family

TOY_MARKER = "toy.json"
TOY_FOLDER_KIND = "toy_models"


@dataclass(frozen=True)
class ToyConfig:
    steps: int = 3
    guidance: float = 2.0
    num_frames: int = 3
    height: int = 8
    width: int = 8
    fps: float = 6.0


class ToyNet(nn.Module):
    """Velocity from a 3D convolution of x plus a text-dependent bias scaled by sigma."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(4, 4, 3, padding=1)
        self.proj = nn.Linear(8, 4)

    def forward(self, x, sigma, context, context_mask):
        m = context_mask[..., None].to(context.dtype)
        ctx = (context * m).sum(1) / m.sum(1).clamp(min=1)
        return self.conv(x) + self.proj(ctx)[:, :, None, None, None] * sigma[:, None, None, None, None]


class ToyVAE(nn.Module):
    """3 -> 4 channels, 2x spatial compression, no temporal compression."""

    def __init__(self) -> None:
        super().__init__()
        self.enc, self.dec = nn.Conv3d(3, 4, 1), nn.Conv3d(4, 3, 1)

    @property
    def dtype(self):
        return self.enc.weight.dtype

    def latent_shape(self, num_frames, height, width):
        if height % 2 or width % 2:
            raise ValueError(f"height={height}, width={width} must be even for the toy VAE")
        return (4, num_frames, height // 2, width // 2)

    def encode(self, video, **_):
        return self.enc(F.avg_pool3d(video, (1, 2, 2)))

    def decode(self, latents, temporal_chunk=None, tile_size=None, tile_overlap=None, callback=None):
        out = torch.tanh(self.dec(F.interpolate(latents, scale_factor=(1, 2, 2))))
        if callback is not None:
            callback(1, 1)
        return out


class ToyText(nn.Module):
    dim = 8

    def __init__(self) -> None:
        super().__init__()
        self.table = nn.Embedding(128, 8)

    def encode(self, prompts):
        ids = torch.zeros(len(prompts), 6, dtype=torch.long)
        mask = torch.zeros(len(prompts), 6, dtype=torch.bool)
        for i, p in enumerate(prompts):
            codes = [ord(c) % 128 for c in p[:6]]
            ids[i, : len(codes)] = torch.tensor(codes, dtype=torch.long)
            mask[i, : len(codes)] = True
        return self.table(ids).detach(), mask

    def encode_pooled(self, prompts):
        return self.encode(prompts)[0].mean(1)

    def components(self):
        return {"text_encoder": self}


class ToyPipeline(Pipeline):
    capabilities = Capabilities(family="Toy", schedules=("flow",), samplers=("euler", "heun"))

    def __init__(self, folder: Path, device: torch.device, dtype: torch.dtype | None) -> None:
        torch.manual_seed(json.loads((folder / TOY_MARKER).read_text())["seed"])
        self.dit = ToyNet().to(device, dtype or torch.float32).eval()
        self.vae = ToyVAE().to(device, dtype or torch.float32).eval()
        self.text_encoder = ToyText()
        self.config = ToyConfig()

    text_dim = 8
    latent_channels = 4

    def denoiser(self, options, latent_shape, fps=None, image=None):
        return lambda x, sigma, **kw: self.dit(x.to(self.dtype), sigma, **kw).float()


@pytest.fixture()
def toy(tmp_path):
    root = tmp_path / "models" / TOY_FOLDER_KIND
    (root / "mytoy").mkdir(parents=True)
    (root / "mytoy" / TOY_MARKER).write_text(json.dumps({"seed": 3}))
    family = Family(
        name="toy",
        capabilities=ToyPipeline.capabilities,
        describe=f"a folder with {TOY_MARKER}",
        detect=lambda p: (p / TOY_MARKER).is_file(),
        load=lambda path, device, dtype, parts: ToyPipeline(path, device, dtype),
        folders=(TOY_FOLDER_KIND,),
    )
    register_family(family)
    try:
        yield root / "mytoy"
    finally:
        unregister_family("toy")


def test_toy_family_loads_and_generates_through_the_contract(toy):
    assert [f.name for f in families()][-1] == "toy"
    with pytest.raises(ValueError, match="already registered"):
        register_family(families()[-1])
    pipe = load_pipeline(toy)
    assert isinstance(pipe, ToyPipeline) and isinstance(pipe, Pipeline)
    a = pipe.generate("a toy", seed=1)
    assert a.shape == (3, 8, 8, 3) and torch.equal(a, pipe.generate("a toy", seed=1))
    assert not torch.equal(a, pipe.generate("a toy", seed=2))
    with pytest.raises(ValueError, match="schedule='pyramidal' is not supported by Toy models"):
        pipe.generate("a toy", schedule="pyramidal")
    with pytest.raises(ValueError, match="only for LTX-Video / Wan checkpoints; .* is a Toy model"):
        load_pipeline(toy, text_encoder="minilm")
    assert set(pipe.components()) == {"dit", "vae", "text_encoder"}


def test_toy_family_runs_through_vidcore_generate(toy, tmp_path, capsys):
    from vidcore.cli import main

    out = tmp_path / "toy.webp"
    assert main(["generate", "a toy", "-o", str(out), "--model", str(toy), "--seed", "1"]) == 0
    frames, fps = read_video(out)
    assert frames.shape == (3, 8, 8, 3) and fps == 6.0
    # exactly what the library generates, written by the same writer (WebP output is deterministic)
    ref = write_video(tmp_path / "ref.webp", load_pipeline(toy).generate("a toy", seed=1), 6.0)
    assert torch.equal(frames, read_video(ref)[0])
    bad = tmp_path / "bad.webp"
    assert main(["generate", "x", "-o", str(bad), "--model", str(toy), "--sampler", "euler_ancestral"]) == 2
    assert "--sampler euler_ancestral is not supported by Toy models" in capsys.readouterr().err
    assert not bad.exists()


def test_toy_family_runs_through_the_nodes(toy):
    from nodes import NODE_CLASS_MAPPINGS as N
    from nodes import _host

    _host.set_folders(models={TOY_FOLDER_KIND: [toy.parent]})
    try:
        assert "mytoy" in N["VidCoreLoadModel"].INPUT_TYPES()["required"]["model_name"][0]
        model, vae, te = N["VidCoreLoadModel"]().load("mytoy", "fp32")
        pos = N["VidCoreTextEncode"]().encode(te, "a toy")[0]
        neg = N["VidCoreTextEncode"]().encode(te, "")[0]
        (lat,) = N["VidCoreEmptyVideoLatent"]().generate(model, vae, 8, 8, 3, 1)
        assert lat["samples"].shape == (1, 4, 3, 4, 4)
        (out,) = N["VidCoreSampler"]().sample(model, pos, neg, lat, 5, 3, 2.0, "flow", 1.0, "heun", 1.0, 0.0)
        prep = model.prepare_latents((1, 4, 3, 4, 4), 5)
        noise, generator = prep.noise, prep.generator
        cond, uncond = model.encode_prompts("a toy", "")
        opts = SamplingOptions(steps=3, guidance=2.0, sampler="heun", seed=5)
        want = model.sample(noise, cond, uncond, opts, generator=generator)
        assert torch.allclose(out["samples"], want, atol=1e-6) and float(want.std()) > 0
        (images,) = N["VidCoreVAEDecode"]().decode(vae, out, 0, 0, -1)
        assert images.shape == (3, 8, 8, 3)
        with pytest.raises(ValueError, match="schedule='pyramidal' is not supported by Toy models"):
            N["VidCorePyramidalSampler"]().sample(model, pos, neg, lat, 0, 1, 3, 2.0, 1.0, 0.0)
    finally:
        _host.set_folders(models={})
        _host.MODELS.clear()


def test_cli_and_nodes_never_name_a_family():
    """What keeps a new family a new folder: the CLI and the node pack import no family module and test
    no pipeline class."""
    sources = [ROOT / "vidcore" / "cli.py", *sorted((ROOT / "nodes").glob("*.py"))]
    families_modules = ("vidcore.pipelines.builtin", "vidcore.pipelines.ltx", "vidcore.models.ltx")
    for path in sources:
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith(families_modules), f"{path.name} imports {node.module}"
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "isinstance":
                named = ast.unparse(node.args[1])
                assert "Pipeline" not in named and "LTX" not in named, (
                    f"{path.name}: isinstance(..., {named})"
                )
        assert "getattr(model.config" not in path.read_text(), path.name


def test_cfg_scale_can_follow_the_step_sigma():
    """Two-expert models guide each expert with its own scale: CFGDenoiser's scale_fn picks it per step."""
    from vidcore.sampling import CFGDenoiser, cfg_combine

    def model(x, sigma, context):
        return x * context + sigma[:, None]

    x, sig = torch.randn(1, 3), torch.tensor([0.9])
    c, u = torch.full((1, 1), 2.0), torch.full((1, 1), 0.5)
    guided = CFGDenoiser(
        model, {"context": c}, {"context": u}, 5.0, scale_fn=lambda s: 4.0 if s[0] > 0.5 else 3.0
    )
    want = cfg_combine(model(x, sig, c), model(x, sig, u), 4.0)
    assert torch.allclose(guided(x, sig), want)
    low = torch.tensor([0.2])
    assert torch.allclose(guided(x, low), cfg_combine(model(x, low, c), model(x, low, u), 3.0))
