"""Few-step sampling with explicit noise-level lists: the re-noising sampler of distilled students, the lists
in SamplingOptions / model configs / CLI / Sampler node, and the warnings for distilled models."""

from __future__ import annotations

import dataclasses
import logging

import pytest
import torch

from vidcore.pipelines import SamplingOptions, load_pipeline
from vidcore.sampling import SAMPLERS, check_sigma_list, sample_euler, sample_renoise

from ._node_fixtures import make_models_root

torch.set_num_threads(1)
SIGMAS = torch.tensor([1.0, 0.75, 0.4, 0.0])


def _model(x, sigma):
    return 0.3 * x + sigma[:, None] * torch.ones_like(x)


def test_deterministic_renoise_is_euler_and_stochastic_lands_on_the_x0_prediction():
    x = torch.randn(2, 5, generator=torch.Generator().manual_seed(0))
    det = sample_renoise(_model, x, SIGMAS, stochastic=False)
    assert torch.allclose(det, sample_euler(_model, x, SIGMAS), atol=1e-6)
    # a student that always predicts x0 = c ends on c whatever noise it re-draws in between
    c = torch.full((2, 5), 0.25)

    def const_x0(x, sigma):
        return (x - c) / sigma[:, None]

    out = sample_renoise(const_x0, x, SIGMAS, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(out, c, atol=1e-6)
    a = sample_renoise(_model, x, SIGMAS, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, sample_renoise(_model, x, SIGMAS, generator=torch.Generator().manual_seed(3)))
    assert not torch.equal(a, sample_renoise(_model, x, SIGMAS, generator=torch.Generator().manual_seed(4)))
    assert SAMPLERS["renoise"] is sample_renoise


@pytest.mark.parametrize(
    "values, message",
    [
        ([1.0, 0.5, 0.5, 0.0], "strictly decreasing"),
        ([1.2, 0.5, 0.0], r"must lie in \[0, 1\]"),
        ([1.0, 0.5], "must end in 0"),
        ([0.0], "at least 2 values"),
        ("1,0", "must be a list of noise levels"),
    ],
)
def test_bad_sigma_lists_are_named(values, message):
    with pytest.raises(ValueError, match=message):
        check_sigma_list(values)


def test_sampling_options_sigmas_agree_with_steps():
    opts = SamplingOptions(steps=3, sigmas=[1, 0.6, 0.3, 0])
    assert opts.sigmas == (1.0, 0.6, 0.3, 0.0)
    with pytest.raises(ValueError, match=r"steps=20 does not match sigmas=\[1.0, 0.5, 0.0\] \(2 steps\)"):
        SamplingOptions(sigmas=[1, 0.5, 0])
    with pytest.raises(ValueError, match="needs schedule='flow' and denoise=1"):
        SamplingOptions(steps=2, sigmas=[1, 0.5, 0], schedule="pyramidal")


@pytest.fixture(scope="module")
def distilled(tmp_path_factory):
    """The tiny test model declared as a 2-step, guidance-distilled student (its own noise levels)."""
    folder = make_models_root(tmp_path_factory.mktemp("fewstep")) / "vidcore" / "tiny"
    pipe = load_pipeline(folder)
    pipe.config = dataclasses.replace(
        pipe.config, steps=2, guidance=1.0, step_sigmas=((1.0, 0.6, 0.0),), guidance_distilled=True
    )
    return folder, pipe


def test_a_distilled_model_samples_on_its_own_list_and_warns_otherwise(distilled, caplog):
    _, pipe = distilled
    assert pipe.default_options().sigmas == (1.0, 0.6, 0.0)
    seen = []
    pipe.generate("a red circle", callback=lambda info: seen.append((info["sigma"], info["sigma_next"])))
    assert seen == [(1.0, pytest.approx(0.6)), (pytest.approx(0.6), 0.0)]
    with caplog.at_level(logging.WARNING, logger="vidcore"):
        seen.clear()
        pipe.generate("a red circle", steps=4, callback=lambda info: seen.append(info["sigma"]))
        assert (
            len(seen) == 4
            and "declares its own noise levels for [2] step(s); 4 steps use the flow schedule" in caplog.text
        )
        pipe.generate("a red circle", guidance=4.0)
        assert "guidance=4.0 on a guidance-distilled model" in caplog.text
    explicit = pipe.generate("a red circle", sigmas=[1.0, 0.3, 0.0], sampler="renoise", seed=2)
    assert explicit.shape == (5, 16, 16, 3) and torch.isfinite(explicit).all()


def test_cli_and_sampler_node_take_explicit_lists(distilled, tmp_path):
    from nodes import NODE_CLASS_MAPPINGS as N
    from nodes._convert import from_conditioning, pad_pair
    from vidcore.cli import main

    folder, pipe = distilled
    out = tmp_path / "few.gif"
    argv = ["generate", "x", "-o", str(out), "--model", str(folder), "--sigmas", "1,0.5,0"]
    assert main([*argv, "--sampler", "renoise"]) == 0 and out.is_file()
    with pytest.raises(SystemExit, match="--sigmas '1,a,0' must be comma-separated numbers"):
        main([*argv[:3], str(tmp_path / "bad.gif"), *argv[4:6], "--sigmas", "1,a,0"])
    te = pipe.text_encoder
    pos = N["VidCoreTextEncode"]().encode(te, "x")[0]
    neg = N["VidCoreTextEncode"]().encode(te, "")[0]
    (lat,) = N["VidCoreEmptyVideoLatent"]().generate(pipe, pipe.vae, 16, 16, 5, 1)
    args = (pipe, pos, neg, lat, 3, 2, 1.0, "flow", 1.0, "renoise", 1.0, 0.0, None, None)
    (got,) = N["VidCoreSampler"]().sample(*args, "1, 0.5, 0")
    kw = dict(text_dim=pipe.text_dim, needs_pooled=True, batch=1, device=pipe.device, dtype=pipe.dtype)
    cond, _ = pad_pair(from_conditioning(pos, "p", **kw), None)
    prep = pipe.prepare_latents((1, 4, 2, 4, 4), 3)
    opts = SamplingOptions(steps=2, guidance=1.0, sampler="renoise", seed=3, sigmas=(1.0, 0.5, 0.0))
    want = pipe.sample(prep.noise, cond, None, opts, generator=prep.generator)
    assert torch.allclose(got["samples"], want, atol=1e-6)
    # empty widget: the model's own list when the steps match it
    (own,) = N["VidCoreSampler"]().sample(*args, "")
    opts_own = dataclasses.replace(opts, sigmas=(1.0, 0.6, 0.0))
    prep = pipe.prepare_latents((1, 4, 2, 4, 4), 3)
    assert torch.allclose(
        own["samples"], pipe.sample(prep.noise, cond, None, opts_own, generator=prep.generator)
    )
    with pytest.raises(ValueError, match="sigmas='1,x' must be comma-separated numbers"):
        N["VidCoreSampler"]().sample(*args, "1,x")


def test_shipped_tiny_turbo_runs_in_four_steps_without_cfg(caplog):
    """The shipped student: its own 4 noise levels, no CFG, the re-noising sampler, the teacher's VAE byte for
    byte, half-precision weights run in float32; 4 network evaluations per video."""
    import vidcore
    from vidcore.pipelines.builtin import builtin_models

    folder = builtin_models()["tiny-turbo"]
    assert (folder / "vae.safetensors").read_bytes() == (
        builtin_models()["tiny"] / "vae.safetensors"
    ).read_bytes()
    pipe = vidcore.load_pipeline("tiny-turbo")
    opts = pipe.default_options()
    assert (opts.steps, opts.guidance, opts.sampler) == (4, 1.0, "renoise")
    assert list(opts.sigmas) == [1.0, 0.75, 0.5, 0.25, 0.0]
    assert next(pipe.dit.parameters()).dtype == torch.float32
    calls = []
    inner = pipe.dit.forward

    def counted(x, *args, **kwargs):
        calls.append(x.shape[0])
        return inner(x, *args, **kwargs)

    pipe.dit.forward = counted
    frames = pipe.generate("a red circle moving right", seed=0)
    assert calls == [1, 1, 1, 1]  # one forward per step, batch 1: no unconditional branch
    assert frames.shape == (17, 64, 64, 3) and 0.0 <= float(frames.min()) and float(frames.max()) <= 1.0
    teacher = vidcore.load_pipeline("tiny").dit.state_dict()
    assert any(not torch.equal(v, teacher[k]) for k, v in pipe.dit.state_dict().items())


def test_shipped_tiny_turbo_is_a_student_of_the_shipped_tiny():
    """The student records its teacher's weights digest: when `tiny` is retrained, this fails until
    tiny-turbo is re-distilled (`vidcore distill --teacher tiny --config tiny_turbo`, then `--config
    tiny_turbo_dmd --export DIR`: the commands in its model card)."""
    import json

    from safetensors import safe_open

    import vidcore
    from vidcore.distill.loop import weights_digest
    from vidcore.pipelines.builtin import builtin_models

    with safe_open(str(builtin_models()["tiny-turbo"] / "dit.safetensors"), framework="pt") as f:
        meta = json.loads(f.metadata()["distill"])
    assert (meta["teacher"], meta["teacher_guidance"], meta["train_steps"]) == ("tiny", 3.0, 1000)
    assert meta["method"] == "dmd" and meta["config"]["extra_step_sigmas"] == [[1.0, 0.75, 0.0]]
    assert meta["teacher_digest"] == weights_digest(vidcore.load_pipeline("tiny").dit)


def test_distilled_model_warnings_come_once_per_setting(caplog):
    import vidcore

    pipe = vidcore.load_pipeline("tiny-turbo")
    for _ in range(2):
        pipe.generate("a red circle", seed=0, num_frames=5, guidance=2.0)
        pipe.generate("a red circle", seed=0, num_frames=5, steps=3)
    assert caplog.text.count("guidance=2.0 on a guidance-distilled model") == 1
    assert (
        caplog.text.count("declares its own noise levels for [2, 4] step(s); 3 steps use the flow schedule")
        == 1
    )
