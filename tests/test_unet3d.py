"""UNet3D (the 3D U-Net denoiser) and its family: shapes, closed-form parameter count, zero-init, text /
mask / AdaGN timestep conditioning, checkpoints, training through the shared flow-matching loop, export to
a model folder, and the "unet3d" family through load_pipeline, `vidcore generate` and the ComfyUI nodes."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from vidcore.io.checkpoint import CheckpointError
from vidcore.models import UNet3D, UNet3DConfig, unet3d_parameter_count
from vidcore.models.dit import DiTConfig, SpacetimeDiT
from vidcore.models.unet3d import ResBlock, forward_flops
from vidcore.train.trainer import TrainConfig, load_train_config, train_dit, train_unet, train_vae

from ._tiny_hf import make_bert_folder

torch.set_num_threads(1)

TINY = dict(
    in_channels=4,
    out_channels=4,
    channels=(8, 16),
    groups=4,
    heads=2,
    emb_dim=16,
    text_dim=12,
    temporal_attn_levels=(1,),
    cross_attn_levels=(1,),
)


def _tiny(**kw) -> UNet3DConfig:
    return UNet3DConfig(**{**TINY, **kw})


def _inputs(b=2, t=3, h=8, w=8, length=5, text_dim=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, 4, t, h, w, generator=g)
    ctx = torch.randn(b, length, text_dim, generator=g)
    mask = torch.ones(b, length, dtype=torch.bool)
    mask[0, 3:] = False
    return x, ctx, mask, torch.randn(b, text_dim, generator=g)


def _randomised(model: nn.Module, seed: int = 0, std: float = 0.2) -> nn.Module:
    """Every parameter redrawn (the zero-initialised layers would hide every dependence at init)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return model.eval()


# ------------------------------------------------------------------------------------------------ the model


@pytest.mark.parametrize("layout", ["full", "factorized"])
def test_shapes_and_conv_kernels(layout):
    model = UNet3D(_tiny(layout=layout, channels=(8, 16, 16), temporal_attn_levels=(2,)))
    x, ctx, mask, pooled = _inputs(h=8, w=16)
    assert model(x, torch.tensor([0.3, 0.9]), ctx, mask, pooled).shape == x.shape
    # The pyramid's lowest stage (4x4 latents) runs through both downsamplings (down to 1x1).
    assert model(x[..., :4, :4], 0.5, ctx, mask, pooled).shape == (2, 4, 3, 4, 4)
    kernels = {tuple(m.kernel_size) for m in model.modules() if isinstance(m, nn.Conv3d)}
    if layout == "full":
        assert (3, 3, 3) in kernels and (3, 1, 1) not in kernels
    else:  # (2+1)D: spatial 1x3x3 and temporal 3x1x1 only (plus 1x1x1 skips)
        assert kernels == {(1, 3, 3), (3, 1, 1), (1, 1, 1)}
    # Frames are kept at every level: only height and width are down- and up-sampled.
    strides = {tuple(m.stride) for m in model.modules() if isinstance(m, nn.Conv3d)}
    assert strides == {(1, 1, 1), (1, 2, 2)}
    assert model.grid_multiple == (1, 4)
    with pytest.raises(ValueError, match=r"latent height x width 6x8 must be multiples of 4 for this U-Net"):
        model(x[..., :6, :8], 0.5, ctx, mask, pooled)
    with pytest.raises(ValueError, match=r"needs pooled text embeddings \[B, 12\], got None"):
        model(x, 0.5, ctx, mask)
    with pytest.raises(ValueError, match=r"x must be latents \[B, 4, T, H, W\]"):
        model(x[:, :3], 0.5, ctx, mask, pooled)


def test_factorized_is_cheaper_than_full_and_the_count_is_closed_form():
    configs = [
        _tiny(),
        _tiny(layout="factorized"),
        _tiny(blocks_per_level=2, channels=(8, 16, 24), cross_attn_levels=(0, 2), temporal_attn_levels=()),
        _tiny(pooled_text=False, qk_norm=False, layout="factorized"),
    ]
    for cfg in configs:
        model = UNet3D(cfg)
        assert unet3d_parameter_count(cfg) == sum(p.numel() for p in model.parameters()), cfg
    assert unet3d_parameter_count(_tiny(layout="factorized")) < unet3d_parameter_count(_tiny())
    # The shipped training config: the DiT's parameter range.
    shipped = UNet3DConfig.from_dict(load_train_config("tiny_unet").model)
    n = sum(p.numel() for p in UNet3D(shipped).parameters())
    assert n == unet3d_parameter_count(shipped) and 1.7e6 <= n <= 2.5e6


def test_config_validation_names_the_values():
    cases = [
        (dict(channels=(8, 10)), r"channels=\[8, 10\]: every width must be divisible by groups=4"),
        (dict(channels=()), r"channels=\(\) must be a non-empty list of positive integers"),
        (dict(cross_attn_levels=(2,)), r"cross_attn_levels=\(2,\) must list level indices in 0..1"),
        (dict(heads=5), r"channels\[1\]=16 must split into heads=5 heads of an even width"),
        (dict(layout="2+1d"), r"layout='2\+1d' must be one of \['full', 'factorized'\]"),
        (dict(blocks_per_level=0), r"blocks_per_level=0 must be a positive integer"),
        (dict(prediction="noise"), r"prediction='noise' must be one of"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            _tiny(**kwargs)
    with pytest.raises(ValueError, match=r"unknown UNet3DConfig keys \['width'\]"):
        UNet3DConfig.from_dict({**_tiny().to_dict(), "width": 3})
    assert UNet3DConfig.from_dict(json.loads(_tiny().to_json())) == _tiny()


def test_fresh_model_predicts_zero_and_blocks_start_as_identity():
    model = UNet3D(_tiny()).eval()
    x, ctx, mask, pooled = _inputs()
    assert torch.equal(model(x, 0.5, ctx, mask, pooled), torch.zeros_like(x))
    block = next(m for m in model.modules() if isinstance(m, ResBlock) and m.skip is None)
    h = torch.randn(2, block.norm_in.num_channels, 3, 4, 4)
    assert torch.equal(block(h, torch.randn(2, 16)), h)  # zero-init last conv: the block is its skip
    with torch.no_grad():
        model.conv_out.last.weight.normal_()
    assert model(x, 0.5, ctx, mask, pooled).abs().sum() > 0


def test_text_conditioning_and_mask():
    model = _randomised(UNet3D(_tiny()))
    x, ctx, mask, pooled = _inputs()
    with torch.no_grad():
        base = model(x, 0.5, ctx, mask, pooled)
        # Other token embeddings (same pooled vector) change the prediction: cross-attention is live.
        other = model(
            x, 0.5, torch.randn(ctx.shape, generator=torch.Generator().manual_seed(5)), mask, pooled
        )
        assert (base - other).abs().max() > 1e-3
        # Text tokens carry no positions of their own (MiniLM's embeddings hold them): order is irrelevant.
        assert torch.allclose(model(x, 0.5, ctx.flip(1), mask.flip(1), pooled), base, atol=1e-5)
        # Padded tokens (mask False) do not matter, whatever they hold or however many there are.
        junk = ctx.clone()
        junk[0, 3:] = 100 * torch.randn(2, 12)
        assert torch.allclose(model(x, 0.5, junk, mask, pooled), base, atol=1e-5)
        longer = torch.cat([ctx, torch.randn(2, 4, 12)], dim=1)
        long_mask = torch.cat([mask, torch.zeros(2, 4, dtype=torch.bool)], dim=1)
        assert torch.allclose(model(x, 0.5, longer, long_mask, pooled), base, atol=1e-5)
        # ... but a kept token does.
        kept = ctx.clone()
        kept[0, 1] += 1.0
        assert (model(x, 0.5, kept, mask, pooled)[0] - base[0]).abs().max() > 1e-4
        # The pooled sentence vector enters the AdaGN embedding.
        assert (model(x, 0.5, ctx, mask, pooled + 1) - base).abs().max() > 1e-3


def test_timestep_enters_through_adagn_only():
    model = _randomised(UNet3D(_tiny()))
    x, ctx, mask, pooled = _inputs()
    with torch.no_grad():
        a, b = model(x, 0.2, ctx, mask, pooled), model(x, 0.8, ctx, mask, pooled)
        assert (a - b).abs().max() > 1e-3
        # Per-sample sigmas: each sample gets its own.
        mixed = model(x, torch.tensor([0.2, 0.8]), ctx, mask, pooled)
        assert torch.allclose(mixed[0], a[0], atol=1e-5) and torch.allclose(mixed[1], b[1], atol=1e-5)
        for m in model.modules():  # cut every AdaGN scale/shift: sigma has no other way in
            if isinstance(m, ResBlock):
                m.emb.weight.zero_()
                m.emb.bias.zero_()
        assert torch.equal(model(x, 0.2, ctx, mask, pooled), model(x, 0.8, ctx, mask, pooled))


def test_save_and_load_round_trip(tmp_path):
    model = _randomised(UNet3D(_tiny(layout="factorized")))
    path = model.save(tmp_path / "unet.safetensors")
    loaded = UNet3D.from_checkpoint(path)
    assert loaded.config == model.config and not loaded.training
    x, ctx, mask, pooled = _inputs()
    with torch.no_grad():
        assert torch.equal(loaded(x, 0.4, ctx, mask, pooled), model(x, 0.4, ctx, mask, pooled))
    assert UNet3D.from_checkpoint(path, dtype=torch.bfloat16).conv_in.spatial.weight.dtype == torch.bfloat16
    with pytest.raises(FileExistsError):
        model.save(path)
    dit = SpacetimeDiT(DiTConfig(in_channels=4, out_channels=4, width=16, depth=1, heads=2, text_dim=12))
    with pytest.raises(CheckpointError, match="holds a 'vidcore.dit' model, expected 'vidcore.unet3d'"):
        UNet3D.from_checkpoint(dit.save(tmp_path / "dit.safetensors"))


def test_forward_flops_counts_convs_linears_and_attention():
    conv = nn.Conv3d(4, 6, 3, padding=1)
    x = torch.randn(1, 4, 3, 5, 5)
    assert forward_flops(conv, x) == 2 * (6 * 3 * 5 * 5) * (4 * 27)
    from vidcore.ops.attention import attention

    q = torch.randn(2, 3, 7, 8)
    assert forward_flops(attention, q, q, q) == 2 * 2 * (2 * 3 * 7 * 7 * 8)  # QKᵀ and AV
    model = UNet3D(_tiny())
    x, ctx, mask, pooled = _inputs(b=1)
    one = forward_flops(model, x, 0.5, ctx[:1], mask[:1], pooled[:1])
    two = forward_flops(model, torch.cat([x, x], dim=2), 0.5, ctx[:1], mask[:1], pooled[:1])
    # Doubling the frames doubles the convolutions; temporal attention grows faster than linearly.
    assert 1.9 * one < two < 2.2 * one


# --------------------------------------------------------------------------------------------- training

TINY_VAE = {
    "spatial_compression": 4,
    "temporal_compression": 4,
    "patch_size": 4,
    "base_channels": 8,
    "channel_multipliers": [1, 1, 1],
    "latent_channels": 4,
}


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    """A 1-step VAE (4 latent channels) and a tiny BERT text encoder (width 32)."""
    root = tmp_path_factory.mktemp("unet_parts")
    text = make_bert_folder(root / "text")
    vae_cfg = TrainConfig.from_dict(
        {
            "kind": "vae",
            "out_dir": str(root / "vae"),
            "steps": 1,
            "batch_size": 2,
            "num_frames": 5,
            "height": 32,
            "width": 32,
            "threads": 1,
            "model": TINY_VAE,
        }
    )
    return {"vae": train_vae(vae_cfg, log=lambda m: None), "text": text}


def _unet_run(parts, out, **kw) -> TrainConfig:
    return TrainConfig.from_dict(
        {
            "kind": "unet",
            "out_dir": str(out),
            "batch_size": 4,
            "num_frames": 5,
            "height": 32,
            "width": 32,
            "threads": 1,
            "ckpt_every": 50,
            "warmup_steps": 1,
            "vae": str(parts["vae"]),
            "text_encoder": str(parts["text"]),
            "latent_cache": 8,
            "lowres_prob": 0.3,
            "steps": 2,
            "model": {**_tiny(text_dim=32).to_dict(), "channels": [8, 16]},
            **kw,
        }
    )


def _flow_loss(model: UNet3D | None, parts) -> float:
    """Velocity MSE on the first 8 training videos at fixed noise and sigmas 0.1 .. 0.9 (None: the untrained
    model's, which predicts 0)."""
    from vidcore.models.vae import CausalVAE3D
    from vidcore.sampling.flow import add_noise, velocity_target
    from vidcore.text import load_text_encoder
    from vidcore.train.data import ShapeVideoDataset

    items = ShapeVideoDataset(0, 5, 32, 32).items(0, 8)
    text = load_text_encoder(str(parts["text"]))
    with torch.no_grad():
        x0 = CausalVAE3D.from_checkpoint(parts["vae"]).encode(items["video"])
        emb, mask = text.encode(items["caption"])
        noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1))
        sigma = torch.linspace(0.1, 0.9, 8)
        target = velocity_target(x0, noise)
        if model is None:
            return float(target.square().mean())
        pred = model(add_noise(x0, noise, sigma), sigma, emb, mask, text.encode_pooled(items["caption"]))
        return float((pred - target).square().mean())


def test_unet_training_lowers_the_loss_and_resumes(parts, tmp_path):
    cfg = _unet_run(parts, tmp_path / "run", steps=30, lr=1e-2, ckpt_every=15)
    path = train_unet(cfg, log=lambda m: None)
    assert path.name == "unet.safetensors"
    from safetensors import safe_open

    with safe_open(str(tmp_path / "run" / "state.safetensors"), framework="pt") as f:
        history = json.loads(f.metadata()["info"])["history"]
    assert len(history) == 30 and sum(h["lowres"] for h in history) > 0  # pyramid levels were trained
    model = UNet3D.from_checkpoint(path)
    assert model.conv_out.last.weight.abs().sum() > 0  # the zero-initialised output conv learned
    before, after = _flow_loss(None, parts), _flow_loss(model, parts)
    assert after < 0.8 * before, (before, after)
    messages = []
    train_unet(_unet_run(parts, tmp_path / "run", steps=31, lr=1e-2, ckpt_every=15), log=messages.append)
    assert any("resumed" in m and "at step 30" in m for m in messages)


def test_init_from_and_wrong_kinds(parts, tmp_path):
    first = train_unet(_unet_run(parts, tmp_path / "a"), log=lambda m: None)
    messages = []
    cfg = _unet_run(parts, tmp_path / "b", steps=1, init_from=str(first), lr=1e-9, warmup_steps=1000)
    second = train_unet(cfg, log=messages.append)
    assert any("initialised from" in m for m in messages)
    a, b = UNet3D.from_checkpoint(first), UNet3D.from_checkpoint(second)
    for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.allclose(x, y, atol=1e-5), k
    # A DiT checkpoint cannot warm-start a U-Net run (and says what it holds).
    dit = SpacetimeDiT(DiTConfig(in_channels=4, out_channels=4, width=16, depth=1, heads=2, text_dim=32))
    bad = _unet_run(parts, tmp_path / "c", init_from=str(dit.save(tmp_path / "dit.safetensors")))
    with pytest.raises(
        ValueError, match="holds a 'vidcore.dit' model; this 'unet' run starts from a 'vidcore.unet3d'"
    ):
        train_unet(bad, log=lambda m: None)
    assert not (tmp_path / "c").exists()  # refused before the run folder was written
    # Trainers name the kind they take; the CLI names the expected kind and the flag.
    with pytest.raises(ValueError, match="takes kind='dit' configs; the config has kind='unet'"):
        train_dit(_unet_run(parts, tmp_path / "d"), log=lambda m: None)
    dit_cfg = {**_unet_run(parts, tmp_path / "e").to_dict(), "kind": "dit", "model": {}}
    with pytest.raises(ValueError, match="takes kind='unet' configs; the config has kind='dit'"):
        train_unet(TrainConfig.from_dict(dit_cfg), log=lambda m: None)
    with pytest.raises(ValueError, match="a U-Net run needs `vae`"):
        TrainConfig.from_dict({"kind": "unet", "out_dir": "x", "steps": 1, "batch_size": 1})
    from vidcore.cli import main

    path = tmp_path / "dit.json"
    path.write_text(json.dumps(dit_cfg))
    assert main(["train", "unet", "--config", str(path)]) == 2
    assert main(["train", "dit", "--config", "tiny_unet"]) == 2
    assert not (tmp_path / "e").exists()


def test_cli_reports_the_expected_kind(capsys):
    from vidcore.cli import main

    assert main(["train", "unet", "--config", "tiny_dit"]) == 2
    err = capsys.readouterr().err
    assert "--config 'tiny_dit' is a kind='dit' config; `vidcore train unet` expects kind='unet'" in err
    assert main(["train", "dit", "--config", "tiny_unet"]) == 2
    assert "is a kind='unet' config; `vidcore train dit` expects kind='dit'" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ family


@pytest.fixture(scope="module")
def folder(parts, tmp_path_factory):
    """A U-Net model folder exported from a checkpoint, as `python -m vidcore.train.export --unet` does."""
    from vidcore.pipelines.builtin import PipelineConfig
    from vidcore.train.export import export_model

    root = tmp_path_factory.mktemp("unet_models")
    (root / "vidcore").mkdir()  # the ComfyUI model folder kind the nodes list
    net = _randomised(UNet3D(_tiny(text_dim=32, channels=(8, 16))), std=0.05)
    ckpt = net.save(root / "unet.safetensors")
    cfg = PipelineConfig(
        name="u", text_encoder=str(parts["text"]), num_frames=5, height=32, width=32, steps=2
    )
    return export_model(parts["vae"], ckpt, root / "vidcore" / "tiny_unet", cfg)


def test_export_writes_a_unet_folder_the_family_detects(folder, parts, tmp_path):
    from vidcore.pipelines import family_of, load_pipeline
    from vidcore.pipelines.unet import UNetPipeline
    from vidcore.train.export import export_model
    from vidcore.train.export import main as export_main

    assert sorted(p.name for p in folder.iterdir()) == [
        "pipeline.json",
        "unet.safetensors",
        "vae.safetensors",
    ]
    assert json.loads((folder / "pipeline.json").read_text())["denoiser"] == "unet3d"
    assert family_of(folder).name == "unet3d"
    pipe = load_pipeline(folder)
    assert (
        isinstance(pipe, UNetPipeline)
        and pipe.unet is pipe.dit
        and pipe.capabilities.family == "vidcore 3D U-Net"
    )
    # Overwriting a DiT folder with a U-Net export leaves no stale dit.safetensors (the family would change).
    dit = SpacetimeDiT(DiTConfig(in_channels=4, out_channels=4, width=16, depth=1, heads=2, text_dim=32))
    dit_path = dit.save(tmp_path / "dit.safetensors")
    args = ["--vae", str(parts["vae"]), "--out", str(tmp_path / "m")]
    export_main([*args, "--dit", str(dit_path)])
    assert family_of(tmp_path / "m").name == "vidcore"
    (tmp_path / "m" / "MODEL_CARD.md").write_text("card")
    export_main([*args, "--unet", str(folder / "unet.safetensors"), "--overwrite"])
    names = sorted(p.name for p in (tmp_path / "m").iterdir())
    assert names == ["MODEL_CARD.md", "pipeline.json", "unet.safetensors", "vae.safetensors"]
    assert family_of(tmp_path / "m").name == "unet3d"
    with pytest.raises(SystemExit):  # --unet given a DiT checkpoint
        export_main([*args[:2], "--out", str(tmp_path / "n"), "--unet", str(dit_path)])
    with pytest.raises(ValueError, match="holds a 'vidcore.vae' model, not a denoiser"):
        export_model(parts["vae"], parts["vae"], tmp_path / "o", pipe.config)
    assert not (tmp_path / "n").exists() and not (tmp_path / "o").exists()
    # A misspelt denoiser name is refused naming the accepted one.
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "pipeline.json").write_text(json.dumps({**pipe.config.to_dict(), "denoiser": "unet"}))
    with pytest.raises(ValueError, match="denoiser='unet' must be one of \\['unet3d'\\]"):
        load_pipeline(bad)


def test_family_generates_flow_and_pyramidal(folder):
    from vidcore.pipelines import load_pipeline

    pipe = load_pipeline(folder)
    a = pipe.generate("a red circle", steps=2, seed=1)
    assert a.shape == (5, 32, 32, 3) and torch.equal(a, pipe.generate("a red circle", steps=2, seed=1))
    assert not torch.equal(a, pipe.generate("a blue square", steps=2, seed=1))
    # Pyramidal: 3 stages run the U-Net on 2x2, 4x4 and 8x8 latents (its grid multiple is 2).
    p = pipe.generate("a red circle", steps=3, seed=1, schedule="pyramidal")
    assert p.shape == (5, 32, 32, 3) and not torch.equal(p, a)
    with pytest.raises(
        ValueError, match=r"height=48 must be a multiple of 32 for this model \(3 pyramid stages\)"
    ):
        pipe.generate("x", steps=3, height=48, schedule="pyramidal")
    v2v = pipe.generate("a red circle", steps=2, seed=1, init_frames=a, denoise=0.5)
    assert v2v.shape == a.shape


def test_family_runs_through_vidcore_generate_and_the_nodes(folder, tmp_path):
    from nodes import NODE_CLASS_MAPPINGS as N
    from nodes import _host
    from vidcore.cli import main
    from vidcore.io.video import read_video, write_video
    from vidcore.pipelines import SamplingOptions, load_pipeline

    out = tmp_path / "u.webp"
    assert main(["generate", "a red circle", "-o", str(out), "--model", str(folder), "--seed", "1"]) == 0
    frames, _ = read_video(out)
    ref = write_video(tmp_path / "ref.webp", load_pipeline(folder).generate("a red circle", seed=1), 8.0)
    assert torch.equal(frames, read_video(ref)[0])

    _host.set_folders(models={"vidcore": [folder.parent]})
    try:
        assert "tiny_unet" in N["VidCoreLoadModel"].INPUT_TYPES()["required"]["model_name"][0]
        model, vae, te = N["VidCoreLoadModel"]().load("tiny_unet", "fp32")
        pos = N["VidCoreTextEncode"]().encode(te, "a red circle")[0]
        neg = N["VidCoreTextEncode"]().encode(te, "")[0]
        (lat,) = N["VidCoreEmptyVideoLatent"]().generate(model, vae, 32, 32, 5, 1)
        assert lat["samples"].shape == (1, 4, 2, 8, 8)
        (got,) = N["VidCoreSampler"]().sample(model, pos, neg, lat, 5, 2, 2.0, "flow", 1.0, "euler", 1.0, 0.0)
        prep = model.prepare_latents((1, 4, 2, 8, 8), 5)
        cond, uncond = model.encode_prompts("a red circle", "")
        want = model.sample(prep.noise, cond, uncond, SamplingOptions(steps=2, guidance=2.0, seed=5))
        assert torch.allclose(got["samples"], want, atol=1e-5) and float(want.std()) > 0
    finally:
        _host.set_folders(models={})
        _host.MODELS.clear()


def test_a_shipped_unet_folder_resolves_to_the_unet_family(folder, tmp_path, monkeypatch):
    """If the U-Net ships as a built-in name, `load_pipeline(name)` reaches this family, not the DiT's."""
    import shutil

    from vidcore.pipelines import builtin, builtin_models, load_pipeline, resolve_model
    from vidcore.pipelines.unet import UNetPipeline

    weights = tmp_path / "weights"
    shutil.copytree(folder, weights / "tinyu")
    shutil.copytree(builtin.WEIGHTS_DIR / "tiny", weights / "tiny")
    monkeypatch.setattr(builtin, "WEIGHTS_DIR", weights)
    assert set(builtin_models()) == {"tiny", "tinyu"}
    assert builtin.builtin_models().keys() == {"tiny"}
    fam, path = resolve_model("tinyu")
    assert fam.name == "unet3d" and path == weights / "tinyu"
    assert resolve_model("tiny")[0].name == "vidcore"
    assert isinstance(load_pipeline("tinyu"), UNetPipeline)
