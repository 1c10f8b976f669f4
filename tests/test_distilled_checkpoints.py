"""Released step-distilled checkpoints on tiny stand-ins with their key layouts and metadata: TurboWan2.1 /
TurboWan2.2 (TurboDiffusion's rCM students: a .pth with a Linear patch embedding, checkpoint-wrapper infixes
and SLA projections, through `vidcore convert`) and LTX-Video 0.9.6 / 0.9.7 / 0.9.8 distilled (timesteps from
the metadata ``config`` or the release's published list). Each loads with its own noise levels, no CFG and its
sampler by default, and warns when run otherwise."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from einops import rearrange
from safetensors.torch import save_file

from vidcore.models.ltx.config import LTXTransformerConfig, LTXVAEConfig
from vidcore.models.ltx.keymaps import transformer_key_to_original as ltx_key_to_original
from vidcore.models.ltx.keymaps import vae_key_to_original
from vidcore.models.ltx.loading import LTXDistillation, LTXLayoutError, read_ltx_distillation
from vidcore.models.ltx.transformer import LTXVideoTransformer
from vidcore.models.ltx.vae import LTXVideoVAE
from vidcore.models.wan.config import WanTransformerConfig
from vidcore.models.wan.keymaps import transformer_key_to_original
from vidcore.models.wan.loading import WanQuantizedError, load_wan_transformer, read_wan_layout
from vidcore.models.wan.transformer import WanTransformer
from vidcore.models.wan.vae import WanVAE
from vidcore.models.wan.vae_config import WanVAEConfig
from vidcore.pipelines import load_pipeline
from vidcore.pipelines.ltx import (
    LTX_DISTILLED_TIMESTEPS,
    distilled_config,
    linear_quadratic_sigmas,
    rounded_timesteps,
)
from vidcore.pipelines.wan import turbo_sigmas

from ._cli import run

torch.set_num_threads(1)
PROMPT = "a fox runs in the snow"


def _perturb_(model: torch.nn.Module, seed: int, std: float = 0.05) -> torch.nn.Module:
    """Seeded noise on every floating tensor, so zero-initialised ones (output heads) matter."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.state_dict().values():
            if p.is_floating_point():
                p.add_(std * torch.randn(p.shape, generator=g))
    return model.eval()


class TinyText:
    """Deterministic stand-in for a text encoder: (emb [B, 6, dim], mask [B, 6]) per prompt."""

    def __init__(self, dim: int) -> None:
        self.dim = dim

    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        embs, masks = [], []
        for p in prompts:
            g = torch.Generator().manual_seed(sum(map(ord, p)) + 1)
            embs.append(torch.randn(6, self.dim, generator=g))
            masks.append(torch.arange(6) < min(6, 1 + len(p.split())))
        return torch.stack(embs), torch.stack(masks)


class Calls:
    """Forward pre-hook recording, for every call of the hooked transformers: (module, batch, the second
    positional argument (a Wan transformer's timestep), the first input (the latents))."""

    def __init__(self, *modules: torch.nn.Module) -> None:
        self.seen: list[tuple[torch.nn.Module, int, torch.Tensor, torch.Tensor]] = []
        self.handles = [m.register_forward_pre_hook(self._hook) for m in modules]

    def _hook(self, module, args):
        x, t = args[0], args[1] if len(args) > 1 else None
        self.seen.append((module, x.shape[0], None if t is None else t.detach().clone(), x.detach().clone()))

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


# ---- TurboWan ------------------------------------------------------------------------------------------

# 128-wide heads as in every released Wan model, so the head count comes from the shapes (dim // 128) and the
# SLA projections have their real [128, 128] shape.
WAN = dict(dim=256, ffn_dim=32, num_heads=2, num_layers=2, text_dim=16)
HEAD_DIM = 128


def tiny_wan(seed: int, in_channels: int = 16) -> WanTransformer:
    model = WanTransformer(WanTransformerConfig(**WAN, in_channels=in_channels, out_channels=16))
    model.initialize_weights(torch.Generator().manual_seed(seed))
    return _perturb_(model, seed + 100)


def turbo_state_dict(model: WanTransformer) -> dict[str, torch.Tensor]:
    """The layout of TurboDiffusion's .pth files (thu-ml/TurboDiffusion rcm/networks/wan2pt1.py): original Wan
    names; patch_embedding a Linear over (c, kt, kh, kw) patch vectors; activation-checkpoint wrappers around
    blocks and head; one SLA proj_l per block (float32 [128, 128])."""
    out = {}
    for k, v in model.state_dict().items():
        k = transformer_key_to_original(k)
        if k == "patch_embedding.weight":
            v = v.flatten(1)  # Conv3d [dim, C, 1, 2, 2] -> Linear [dim, C*1*2*2]
        elif k.startswith("blocks."):
            i, rest = k[len("blocks.") :].split(".", 1)
            k = f"blocks.{i}._checkpoint_wrapped_module.{rest}"
        elif k.startswith("head.head."):
            k = "head._checkpoint_wrapped_module." + k[len("head.") :]
        out[k] = v.detach().clone()
    g = torch.Generator().manual_seed(9)
    for i in range(model.config.num_layers):
        base = f"blocks.{i}.self_attn.attn_op.local_attn.proj_l"
        out[base + ".weight"] = torch.randn(HEAD_DIM, HEAD_DIM, generator=g)
        out[base + ".bias"] = torch.randn(HEAD_DIM, generator=g)
    return out


def wan_inputs(in_channels: int = 16, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 16, 3, 4, 4, generator=g)
    y = torch.randn(2, in_channels - 16, 3, 4, 4, generator=g) if in_channels > 16 else None
    ctx = torch.randn(2, 6, WAN["text_dim"], generator=g)
    return dict(x=x, timestep=torch.tensor([988.0, 608.0]), context=ctx, y=y)


def tiny_wan_vae() -> WanVAE:
    torch.manual_seed(5)
    return WanVAE(WanVAEConfig(base_dim=4, z_dim=16, dim_mult=(1, 2, 2, 2), num_res_blocks=1)).eval()


@pytest.fixture(scope="module")
def turbo(tmp_path_factory):
    """TurboWan2.1 T2V as released (.pth), converted with the `vidcore convert` command."""
    root = tmp_path_factory.mktemp("turbo")
    model = tiny_wan(0)
    pth = root / "TurboWan2.1-T2V-1.3B-480P.pth"
    torch.save(turbo_state_dict(model), pth)
    out = root / "TurboWan2.1-T2V-1.3B-480P.safetensors"
    res = run(["python", "-m", "vidcore.cli", "convert", str(pth), str(out)])
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == str(out)
    return model, out


def test_rcm_noise_levels_match_turbodiffusion():
    """rCM / TurboDiffusion times computed from their TrigFlow angles, against the numbers of its sampler."""
    four = turbo_sigmas(4, 80.0)
    assert four == pytest.approx((0.98765, 0.93378, 0.85290, 0.60898, 0.0), abs=5e-6)
    assert turbo_sigmas(1, 200.0) == pytest.approx((0.99502, 0.0), abs=5e-6)
    for n in (1, 2, 3):  # fewer steps keep the first noise levels
        assert turbo_sigmas(n, 80.0)[:-1] == four[:n]
    # the network gets t·1000 in bfloat16: 988 (996 from sigma_max 200), 932, 852, 608
    net = (torch.tensor(four[:-1], dtype=torch.float32) * 1000).to(torch.bfloat16).tolist()
    assert net == [988.0, 932.0, 852.0, 608.0]
    assert (torch.tensor(turbo_sigmas(4, 200.0)[0]) * 1000).to(torch.bfloat16).item() == 996.0
    with pytest.raises(
        ValueError, match=r"steps=5: TurboDiffusion's rCM lists exist for \[1, 2, 3, 4\] steps"
    ):
        turbo_sigmas(5, 80.0)


def test_linear_patch_embedding_is_the_conv3d_kernel_flattened_c_kt_kh_kw():
    """TurboDiffusion's patch embedding: patches flattened as (c, kt, kh, kw), then a Linear. Its weight is
    the Conv3d kernel flattened in that order, so the reshape back gives the same tokens."""
    g = torch.Generator().manual_seed(0)
    conv = torch.nn.Conv3d(5, 7, kernel_size=(1, 2, 2), stride=(1, 2, 2))
    x = torch.randn(2, 5, 3, 4, 6, generator=g)
    linear_w = conv.weight.detach().flatten(1)
    patches = rearrange(x, "b c (t kt) (h kh) (w kw) -> b (t h w) (c kt kh kw)", kt=1, kh=2, kw=2)
    turbo_tokens = patches @ linear_w.T + conv.bias.detach()
    conv_tokens = rearrange(conv(x), "b d t h w -> b (t h w) d")
    assert torch.allclose(turbo_tokens, conv_tokens, atol=1e-6)
    # any other flatten order is a different embedding: the test would catch a wrong reshape
    swapped = rearrange(x, "b c (t kt) (h kh) (w kw) -> b (t h w) (c kt kw kh)", kt=1, kh=2, kw=2)
    assert not torch.allclose(swapped @ linear_w.T + conv.bias.detach(), conv_tokens, atol=1e-3)


def test_converted_turbowan_loads_equal_to_the_original_and_reports_sla_keys(turbo, caplog):
    model, path = turbo
    layout = read_wan_layout(path)
    assert layout.turbo and layout.linear_patch and layout.kind == "original" and layout.variant == "t2v"
    assert len(layout.sla_keys) == 4 and layout.config == model.config
    with caplog.at_level(logging.WARNING, logger="vidcore"):
        loaded = load_wan_transformer(path)
    assert "not loading 4 TurboDiffusion sparse-linear-attention keys" in caplog.text
    assert "proj_l" in caplog.text and "runs with dense attention" in caplog.text
    assert not any("_checkpoint_wrapped_module" in k for k in loaded.state_dict())
    inp = wan_inputs()
    with torch.no_grad():
        want, got = model(**inp), loaded(**inp)
    assert float(want.abs().mean()) > 1e-3 and torch.equal(got, want)


def test_turbo_is_detected_from_converted_metadata_too(tmp_path):
    """A TurboWan file without the Linear patch embedding or SLA keys (re-saved by other tools) is still known
    by the source name `vidcore convert` records; an ordinary Wan file is not."""
    from vidcore.io.convert import convert_checkpoint

    sd = {transformer_key_to_original(k): v for k, v in tiny_wan(1).state_dict().items()}
    for name, turbo in (("TurboWan2.1-T2V-14B-720P.pth", True), ("wan2.1_t2v_1.3B.pth", False)):
        torch.save(sd, tmp_path / name)
        out = convert_checkpoint(tmp_path / name, tmp_path / (name[:-4] + ".safetensors"))["path"]
        layout = read_wan_layout(out)
        assert (layout.turbo, layout.linear_patch, layout.sla_keys) == (turbo, False, ())


def test_turbowan_generates_with_four_rcm_steps_without_cfg_by_default(turbo, caplog):
    _, path = turbo
    pipe = load_pipeline(path, vae=tiny_wan_vae(), text_encoder=TinyText(WAN["text_dim"]))
    cfg = pipe.config
    assert (cfg.steps, cfg.guidance, cfg.sampler, cfg.guidance_distilled) == (4, 1.0, "renoise", True)
    assert cfg.step_sigmas == tuple(turbo_sigmas(n, 80.0) for n in (1, 2, 3, 4))
    assert (cfg.height, cfg.width, cfg.num_frames) == (480, 832, 81)
    kw = dict(num_frames=9, height=16, width=16, seed=3)
    calls, sigmas = Calls(pipe.dit), []
    try:
        with caplog.at_level(logging.WARNING, logger="vidcore"):
            frames = pipe.generate(PROMPT, callback=lambda info: sigmas.append(float(info["sigma"])), **kw)
        assert "declares its own noise levels" not in caplog.text and "guidance-distilled" not in caplog.text
        # 4 steps on rCM's levels, one forward each (batch 1: no CFG), t·1000 in bf16 as TurboDiffusion has it
        assert sigmas == pytest.approx(list(turbo_sigmas(4, 80.0)[:-1]), abs=1e-6)
        assert [b for _, b, _, _ in calls.seen] == [1, 1, 1, 1]
        assert [float(t[0]) for _, _, t, _ in calls.seen] == [988.0, 932.0, 852.0, 608.0]
        # the first state is t0 * noise (TurboDiffusion: x = noise * t_steps[0]), not the unscaled noise
        noise = pipe.prepare_latents((1, 16, 3, 2, 2), 3).noise
        assert torch.allclose(calls.seen[0][3], turbo_sigmas(4, 80.0)[0] * noise, atol=1e-6)
        calls.seen.clear()
        explicit = pipe.generate(
            PROMPT, sigmas=list(turbo_sigmas(4, 80.0)), sampler="renoise", guidance=1.0, **kw
        )
        assert torch.equal(frames, explicit) and frames.shape == (9, 16, 16, 3)
        calls.seen.clear()
        pipe.generate(PROMPT, steps=2, **kw)  # the model's own 2-step list
        assert [float(t[0]) for _, _, t, _ in calls.seen] == [988.0, 932.0]
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="vidcore"):
            calls.seen.clear()
            pipe.generate(PROMPT, steps=6, **kw)
            assert len(calls.seen) == 6
            assert (
                "declares its own noise levels for [1, 2, 3, 4] step(s); 6 steps use the flow schedule"
                in caplog.text
            )
            calls.seen.clear()
            pipe.generate(PROMPT, guidance=3.0, **kw)
            assert "guidance=3.0 on a guidance-distilled model" in caplog.text
            assert [b for _, b, _, _ in calls.seen] == [2, 2, 2, 2]  # CFG as asked: both branches
    finally:
        calls.remove()


def test_turbowan22_i2v_expert_pair_switches_below_t_0_9(tmp_path, caplog):
    """TurboWan2.2 I2V-A14B: the high-noise file finds its low-noise partner beside it; steps with t >= 0.9
    run the high expert (rCM's 4 steps from sigma_max 200: 2 high, 2 low), as wan2.2_i2v_infer.py does."""
    from vidcore.cli import main

    high, low = tiny_wan(2, in_channels=36), tiny_wan(3, in_channels=36)
    files = {}
    for name, model in (("high", high), ("low", low)):
        pth = tmp_path / f"TurboWan2.2-I2V-A14B-{name}-720P.pth"
        torch.save(turbo_state_dict(model), pth)
        assert main(["convert", str(pth), str(pth.with_suffix(".safetensors"))]) == 0
        files[name] = pth.with_suffix(".safetensors")
    parts = dict(vae=tiny_wan_vae(), text_encoder=TinyText(WAN["text_dim"]))
    pipe = load_pipeline(files["high"], **parts)
    cfg = pipe.config
    assert (cfg.variant, cfg.boundary_ratio, cfg.steps, cfg.guidance, cfg.sampler) == (
        "i2v_a14b", 0.9, 4, 1.0, "renoise"
    )  # fmt: skip
    assert cfg.step_sigmas[-1] == turbo_sigmas(4, 200.0) and (cfg.height, cfg.width) == (720, 1280)
    inp = wan_inputs(36)
    with torch.no_grad():
        assert torch.equal(pipe.dit(**inp), high(**inp))
        assert torch.equal(pipe.transformer_2(**inp), low(**inp))
    image = torch.rand(1, 16, 16, 3, generator=torch.Generator().manual_seed(4))
    calls = Calls(pipe.dit, pipe.transformer_2)
    try:
        pipe.generate(PROMPT, image=image, num_frames=9, seed=1)
    finally:
        calls.remove()
    assert [m is pipe.dit for m, _, _, _ in calls.seen] == [True, True, False, False]
    assert [float(t[0]) for _, _, t, _ in calls.seen] == [996.0, 932.0, 852.0, 608.0]
    # the low-noise file finds the same pair, high expert first
    other = load_pipeline(files["low"], **parts)
    with torch.no_grad():
        assert torch.equal(other.dit(**inp), high(**inp))
    # a lone expert runs alone, with a warning naming the missing partner
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(files["high"], alone / files["high"].name)
    with caplog.at_level(logging.WARNING, logger="vidcore"):
        single = load_pipeline(alone / files["high"].name, **parts)
    assert single.transformer_2 is None and single.config.variant == "i2v"
    assert "TurboWan2.2-I2V-A14B-low-720P.safetensors) is not beside it" in caplog.text


def test_quantized_turbowan_is_refused_pointing_at_the_non_quant_file(tmp_path):
    sd = turbo_state_dict(tiny_wan(4))
    for i in range(2):  # TurboDiffusion -quant: int8 weights + a float32 scale per 128x128 tile
        for lin in ("self_attn.q", "self_attn.k", "ffn.0"):
            key = f"blocks.{i}._checkpoint_wrapped_module.{lin}"
            w = sd.pop(key + ".weight")
            sd[key + ".int8_weight"] = w.to(torch.int8)
            sd[key + ".scale"] = torch.ones(-(-w.shape[0] // 128), -(-w.shape[1] // 128))
    path = tmp_path / "TurboWan2.1-T2V-1.3B-480P-quant.safetensors"
    save_file(sd, str(path))
    with pytest.raises(WanQuantizedError, match=r"quantized TurboWan \(-quant\) files are not supported"):
        load_wan_transformer(path)
    with pytest.raises(
        ValueError, match=r"is a quantized TurboWan file \(6 int8 weights.*use the non-quant file"
    ):
        load_pipeline(path, vae=tiny_wan_vae(), text_encoder=TinyText(WAN["text_dim"]))


# ---- LTX-Video distilled -------------------------------------------------------------------------------

LTX_VAE = dict(  # the tiny 0.9.5-layout VAE of tests/_ltx_fixtures.py, diffusers field names
    latent_channels=8,
    block_out_channels=(8, 16, 32, 64, 64),
    decoder_block_out_channels=(16, 32, 64),
    down_block_types=("LTXVideo095DownBlock3D",) * 4,
    layers_per_block=(1, 1, 1, 1, 1),
    decoder_layers_per_block=(1, 1, 1, 1),
    spatio_temporal_scaling=(True, True, True, True),
    decoder_spatio_temporal_scaling=(True, True, True),
    decoder_inject_noise=(False,) * 4,
    downsample_type=("spatial", "temporal", "spatiotemporal", "spatiotemporal"),
    upsample_residual=(True, True, True),
    upsample_factor=(2, 2, 2),
    timestep_conditioning=True,
    patch_size=4,
    patch_size_t=1,
    spatial_compression_ratio=32,
    temporal_compression_ratio=8,
)
LTX_T = dict(
    in_channels=8,
    out_channels=8,
    num_attention_heads=2,
    attention_head_dim=16,
    cross_attention_dim=32,
    num_layers=2,
    caption_channels=16,
)
LTX_KW = dict(num_frames=9, height=32, width=32, seed=2)


@pytest.fixture(scope="module")
def ltx_state():
    """An original Lightricks single-file state dict (model.diffusion_model.* + vae.*) of a tiny model."""
    t = LTXVideoTransformer(LTXTransformerConfig(**LTX_T))
    t.initialize_weights(torch.Generator().manual_seed(0))
    torch.manual_seed(1)
    v = LTXVideoVAE(LTXVAEConfig.from_diffusers(LTX_VAE))
    _perturb_(t, 2)
    _perturb_(v, 3)
    with torch.no_grad():
        v.latents_std.copy_(1 + 0.5 * torch.rand(8, generator=torch.Generator().manual_seed(4)))
    sd = {ltx_key_to_original(k): x.detach().clone().contiguous() for k, x in t.state_dict().items()}
    sd.update(
        {vae_key_to_original(k, "0.9.5"): x.detach().clone().contiguous() for k, x in v.state_dict().items()}
    )
    return sd


def write_ltx(state: dict, path: Path, **meta) -> Path:
    """Save the tiny single file with a metadata ``config`` JSON (heads + ``meta``), as Lightricks files."""
    config = {"transformer": {"num_attention_heads": LTX_T["num_attention_heads"]}, **meta}
    save_file(state, str(path), metadata={"config": json.dumps(config)})
    return path


def test_linear_quadratic_schedule_gives_the_published_distilled_timesteps():
    """LTX-Video's LinearQuadratic schedule at 8 steps, rounded as its pipeline rounds timesteps (float32, 4
    decimals), is the 0.9.7 / 0.9.8 distilled first pass and the end of the second pass (0.4219)."""
    assert rounded_timesteps(linear_quadratic_sigmas(8)[:-1]) == (*LTX_DISTILLED_TIMESTEPS, 0.4219)
    assert rounded_timesteps(linear_quadratic_sigmas(4)[:-1]) == (1.0, 0.9875, 0.975, 0.725)
    assert linear_quadratic_sigmas(2) == pytest.approx((1.0, 0.975, 0.0))
    assert linear_quadratic_sigmas(1) == (1.0, 0.0)


def test_ltx_096_distilled_samples_on_its_metadata_list(ltx_state, tmp_path, caplog):
    listed = [1.0, 0.96, 0.9, 0.6]
    path = write_ltx(
        ltx_state,
        tmp_path / "ltxv-2b-0.9.6-distilled-04-25.safetensors",
        allowed_inference_steps=listed,
        sampler="from_checkpoint",
    )
    with caplog.at_level(logging.INFO, logger="vidcore"):
        pipe = load_pipeline(path, text_encoder=TinyText(LTX_T["caption_channels"]))
    assert "step-distilled LTX-Video 0.9.6 checkpoint (metadata allowed_inference_steps)" in caplog.text
    cfg = pipe.config
    # its own list for 4 steps, and LinearQuadratic lists whose levels the metadata allows (here only 1 step)
    assert cfg.step_sigmas == ((*listed, 0.0), (1.0, 0.0))
    assert (cfg.steps, cfg.guidance, cfg.sampler, cfg.guidance_distilled) == (4, 1.0, "renoise", True)
    opts = pipe.default_options()
    assert (opts.steps, opts.guidance, opts.sampler, opts.sigmas) == (4, 1.0, "renoise", (*listed, 0.0))
    calls, sigmas = Calls(pipe.dit), []
    try:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="vidcore"):
            frames = pipe.generate(
                PROMPT, callback=lambda info: sigmas.append(float(info["sigma"])), **LTX_KW
            )
        assert caplog.text == ""
        assert sigmas == pytest.approx(listed, abs=1e-6) and [b for _, b, _, _ in calls.seen] == [1] * 4
        explicit = pipe.generate(PROMPT, sigmas=[*listed, 0.0], sampler="renoise", guidance=1.0, **LTX_KW)
        assert torch.equal(frames, explicit) and float(frames.std()) > 1e-3
        calls.seen.clear()
        pipe.generate(PROMPT, steps=1, **LTX_KW)
        assert len(calls.seen) == 1
        with caplog.at_level(logging.WARNING, logger="vidcore"):
            sigmas.clear()
            pipe.generate(
                PROMPT, steps=3, callback=lambda info: sigmas.append(float(info["sigma"])), **LTX_KW
            )
            assert len(sigmas) == 3 and sigmas[1] not in listed
            assert (
                "declares its own noise levels for [1, 4] step(s); 3 steps use the flow schedule instead"
                in caplog.text
            )
            calls.seen.clear()
            pipe.generate(PROMPT, guidance=3.0, **LTX_KW)
            assert "guidance=3.0 on a guidance-distilled model" in caplog.text
            assert [b for _, b, _, _ in calls.seen] == [2] * 4
    finally:
        calls.remove()
    # a metadata stochastic_sampling decides the sampler
    euler = write_ltx(
        ltx_state,
        tmp_path / "ltxv-2b-0.9.6-distilled-euler.safetensors",
        allowed_inference_steps=listed,
        stochastic_sampling=False,
    )
    assert load_pipeline(euler, text_encoder=TinyText(16)).config.sampler == "euler"


def test_ltx_098_distilled_uses_the_published_first_pass(ltx_state, tmp_path):
    path = write_ltx(ltx_state, tmp_path / "ltxv-2b-0.9.8-distilled.safetensors")
    pipe = load_pipeline(path, text_encoder=TinyText(LTX_T["caption_channels"]))
    cfg = pipe.config
    assert cfg.step_sigmas == ((*LTX_DISTILLED_TIMESTEPS, 0.0),)
    assert (cfg.steps, cfg.guidance, cfg.sampler, cfg.guidance_distilled) == (7, 1.0, "euler", True)
    sigmas = []
    frames = pipe.generate(PROMPT, callback=lambda info: sigmas.append(float(info["sigma"])), **LTX_KW)
    assert sigmas == pytest.approx(list(LTX_DISTILLED_TIMESTEPS), abs=1e-6)
    explicit = pipe.generate(PROMPT, sigmas=[*LTX_DISTILLED_TIMESTEPS, 0.0], sampler="euler", **LTX_KW)
    assert torch.equal(frames, explicit)


def test_ltx_distillation_detected_from_names_with_the_096_fallback(ltx_state, tmp_path):
    path = write_ltx(ltx_state, tmp_path / "ltxv-2b-0.9.6-distilled-04-25.safetensors")
    cfg = load_pipeline(path, text_encoder=TinyText(16)).config
    assert cfg.step_sigmas == tuple(linear_quadratic_sigmas(n) for n in (8, 4, 2, 1))
    assert (cfg.steps, cfg.sampler, cfg.guidance) == (8, "renoise", 1.0)
    folder = tmp_path / "LTX-Video-0.9.8-13B-distilled"
    folder.mkdir()
    found = read_ltx_distillation(folder)
    assert (found.version, found.timesteps, found.evidence) == ("0.9.8", None, "'distilled' in its name")
    # no version in the name: the published list, unless the metadata lists timesteps; a 48-block (13B)
    # transformer is 0.9.7+ whatever its metadata lists
    unnamed = LTXDistillation(None, None, None, "'distilled' in its name")
    assert distilled_config("x", unnamed).step_sigmas == ((*LTX_DISTILLED_TIMESTEPS, 0.0),)
    listed = LTXDistillation(None, (1.0, 0.5), None, "metadata allowed_inference_steps")
    assert distilled_config("x", listed).step_sigmas == ((1.0, 0.5, 0.0), (1.0, 0.0))
    assert distilled_config("x", listed, "0.9.7").step_sigmas == ((*LTX_DISTILLED_TIMESTEPS, 0.0),)
    plain = write_ltx(ltx_state, tmp_path / "ltx-video-2b-v0.9.5.safetensors", allowed_inference_steps=None)
    assert read_ltx_distillation(plain) is None
    cfg = load_pipeline(plain, text_encoder=TinyText(16)).config
    assert (cfg.step_sigmas, cfg.guidance, cfg.steps, cfg.guidance_distilled) == ((), 3.0, 50, False)


@pytest.mark.parametrize(
    "value, message",
    [
        ([1.0, 1.2, 0.5], r"allowed_inference_steps=\[1.0, 1.2, 0.5\] must lie in \[0, 1\]"),
        ([0.5, 0.9], r"allowed_inference_steps=\[0.5, 0.9\] must be strictly decreasing"),
        (["1", 0.5], r"allowed_inference_steps=\['1', 0.5\] must be a non-empty list of numbers"),
    ],
)
def test_bad_metadata_timesteps_are_refused_naming_file_and_value(ltx_state, tmp_path, value, message):
    path = write_ltx(
        ltx_state, tmp_path / "ltxv-2b-0.9.6-distilled.safetensors", allowed_inference_steps=value
    )
    with pytest.raises(
        LTXLayoutError, match=rf"{tmp_path}.*ltxv-2b-0.9.6-distilled.safetensors: .*{message}"
    ):
        load_pipeline(path, text_encoder=TinyText(16))
