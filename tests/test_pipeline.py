import pytest
import torch

from vidcore.pipelines import load_pipeline
from vidcore.sampling import split_steps

from ._cli import generate_cmd, read_written, run
from ._node_fixtures import make_models_root

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    # The same tiny random model folder the node and workflow tests use.
    return make_models_root(tmp_path_factory.mktemp("tinymodel")) / "vidcore" / "tiny"


@pytest.fixture(scope="module")
def pipe(model_dir):
    return load_pipeline(model_dir)


def test_generate_shape_range_and_determinism(pipe):
    a = pipe.generate("a red circle moving right", seed=3)
    assert a.shape == (5, 16, 16, 3) and a.dtype == torch.float32
    assert 0.0 <= float(a.min()) and float(a.max()) <= 1.0
    b = pipe.generate("a red circle moving right", seed=3)
    assert torch.equal(a, b)
    c = pipe.generate("a red circle moving right", seed=4)
    assert not torch.equal(a, c)
    d = pipe.generate("a blue square moving left", seed=3)
    assert not torch.equal(a, d)  # the prompt reaches the model


def test_guidance_one_is_the_conditional_branch_only(pipe):
    calls = []
    orig = pipe.dit.forward

    def counting(x, *a, **k):
        calls.append(x.shape[0])
        return orig(x, *a, **k)

    pipe.dit.forward = counting
    try:
        pipe.generate("a", guidance=1.0, steps=3)
        assert calls == [1, 1, 1]
        calls.clear()
        pipe.generate("a", guidance=4.0, steps=3)
        assert calls == [2, 2, 2]  # cond and uncond batched in one forward
    finally:
        del pipe.dit.forward


def test_empty_prompt_is_unconditional_and_allowed(pipe):
    frames = pipe.generate("", seed=0)
    assert frames.shape == (5, 16, 16, 3)


def test_pyramidal_and_other_samplers_run(pipe):
    steps = []
    frames = pipe.generate("x", schedule="pyramidal", steps=6, height=16, width=16, callback=steps.append)
    assert frames.shape == (5, 16, 16, 3)
    assert [s["stage"] for s in steps] == [0, 0, 1, 1, 2, 2]
    assert split_steps(20, 3) == [7, 7, 6]
    for sampler in ("heun", "euler_ancestral"):
        assert pipe.generate("x", sampler=sampler, steps=2).shape == (5, 16, 16, 3)
    with pytest.raises(ValueError, match="sampler='heun': schedule='pyramidal' integrates each stage"):
        pipe.generate("x", schedule="pyramidal", sampler="heun", steps=6)


def test_stochastic_sampler_is_reproducible_by_seed(pipe):
    # euler_ancestral draws fresh noise every step: it must come from the seeded generator, not the
    # global RNG (which is reseeded in between to prove it).
    torch.manual_seed(123)
    a = pipe.generate("a red circle", sampler="euler_ancestral", steps=4, seed=5)
    torch.manual_seed(456)
    b = pipe.generate("a red circle", sampler="euler_ancestral", steps=4, seed=5)
    c = pipe.generate("a red circle", sampler="euler_ancestral", steps=4, seed=6)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    # The same within pyramid stages (the block noise and the ancestral noise share the generator).
    kw = dict(schedule="pyramidal", sampler="euler_ancestral", steps=6, height=16, width=16)
    torch.manual_seed(123)
    a = pipe.generate("a red circle", seed=5, **kw)
    torch.manual_seed(456)
    assert torch.equal(a, pipe.generate("a red circle", seed=5, **kw))
    assert not torch.equal(a, pipe.generate("a red circle", seed=5, **{**kw, "sampler": "euler"}))


def test_video_to_video_keeps_more_of_the_input_at_low_denoise(pipe):
    init = pipe.generate("source", seed=1)
    near = pipe.generate("other", seed=2, init_frames=init, denoise=0.2, steps=4)
    far = pipe.generate("other", seed=2, init_frames=init, denoise=1.0, steps=4)
    assert (near - init).abs().mean() < (far - init).abs().mean()


def test_bad_sizes_and_names_are_clear_errors(pipe):
    with pytest.raises(ValueError, match="num_frames=6 must be 1 \\+ 4k for this VAE"):
        pipe.generate("x", num_frames=6)
    with pytest.raises(ValueError, match=r"height=18 must be a multiple of 4 for this model \(e.g. 16, 20\)"):
        pipe.generate("x", height=18)
    with pytest.raises(
        ValueError, match="height=20 must be a multiple of 16 for this model \\(3 pyramid stages\\)"
    ):
        pipe.generate("x", height=20, schedule="pyramidal")
    with pytest.raises(ValueError, match="unknown model 'nope'; available built-in models"):
        load_pipeline("nope")
    with pytest.raises(ValueError, match="schedule='zigzag' must be one of"):
        pipe.generate("x", schedule="zigzag")
    with pytest.raises(ValueError, match="guidance=0.5 must be >= 1"):
        pipe.generate("x", guidance=0.5)
    with pytest.raises(TypeError, match="prompt and negative_prompt must be strings"):
        pipe.generate(None)
    with pytest.raises(ValueError, match="seed=3.9 must be an integer"):
        pipe.generate("x", seed=3.9)
    with pytest.raises(
        ValueError, match="image .image-to-video. is not supported by vidcore models; image-to-vi"
    ):
        pipe.generate("x", image=torch.zeros(1, 16, 16, 3))
    with pytest.raises(ValueError, match="frames contain NaN"):
        pipe.generate("x", init_frames=torch.full((5, 16, 16, 3), float("nan")), denoise=0.5)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("guidance", 0.5, "guidance=0.5 must be >= 1"),
        ("guidance_rescale", 1.5, "guidance_rescale=1.5 must be in"),
        ("shift", 0.0, "shift=0.0 must be a finite number > 0"),
        ("fps", float("nan"), "fps=nan must be a finite number > 0"),
    ],
)
def test_pipeline_config_refuses_bad_defaults(field, value, message):
    from vidcore.pipelines.builtin import PipelineConfig

    with pytest.raises(ValueError, match=f"PipelineConfig.{message}"):
        PipelineConfig(**{field: value})


def test_pyramid_stage_range_moves_the_stage_boundaries(pipe):
    from vidcore.pipelines import SamplingOptions
    from vidcore.pipelines.builtin import PipelineConfig

    kw = dict(schedule="pyramidal", sampler="euler", steps=6, seed=2)
    seen = {}
    for rng in (None, (0.0, 0.05, 0.2, 1.0)):
        steps = []
        opts = pipe.default_options().replace(pyramid_stage_range=rng, **kw)
        frames = pipe.generate("a red circle", options=opts, callback=steps.append)
        first = [s["timestep"] for s in steps if s["stage"] == 1][0]
        seen[rng] = (frames, first)
    even, skewed = seen[None], seen[(0.0, 0.05, 0.2, 1.0)]
    # Stage 1 (half resolution) begins near the noise level where stage 0 ends: 2/3 of the schedule left
    # by default, 95 % of it with the skewed split (the corrective renoise lifts both a little).
    assert 0.67 < even[1] < 0.85 and 0.95 < skewed[1] < 0.99
    assert not torch.equal(even[0], skewed[0])
    with pytest.raises(ValueError, match=r"pyramid_stage_range=\[0.0, 0.5, 1.0\] has 3 values; 3 pyramid"):
        SamplingOptions(pyramid_stage_range=(0, 0.5, 1))
    with pytest.raises(ValueError, match=r"must be increasing numbers from 0 to 1, one more than the stages"):
        SamplingOptions(pyramid_stage_range=(0, 0.5, 0.4, 1))
    with pytest.raises(ValueError, match="pyramid_stage_range='abc' must be a list of numbers"):
        SamplingOptions(pyramid_stage_range="abc")
    cfg = PipelineConfig.from_dict({"pyramid_stage_range": [0, 0.1, 0.3, 1]})
    assert cfg.pyramid_stage_range == (0.0, 0.1, 0.3, 1.0)
    with pytest.raises(ValueError, match=r"PipelineConfig.pyramid_stage_range=\[0.0, 0.5, 1.0\] needs"):
        PipelineConfig(pyramid_stage_range=(0, 0.5, 1))


def test_stepped_guidance_switches_scale_at_the_boundary(pipe):
    import copy
    import dataclasses

    from vidcore.pipelines.builtin import PipelineConfig

    seen: list[tuple[float, float]] = []
    orig = pipe.guidance_schedule

    def recording(options):
        fn = orig(options)
        if fn is None:
            seen.append((-1.0, options.guidance))
            return None

        def scale(sigma):
            g = fn(sigma)
            seen.append((float(sigma.reshape(-1)[0]), g))
            return g

        return scale

    pipe.guidance_schedule = recording
    try:
        kw = dict(sampler="euler", steps=10, seed=1)
        frames = pipe.generate("a red circle", guidance=4.0, guidance_2=2.0, guidance_boundary=0.55, **kw)
        assert len(seen) == 10 and [g for _, g in seen] == [4.0 if s >= 0.55 else 2.0 for s, _ in seen]
        assert {g for _, g in seen} == {4.0, 2.0}
        # Equal scales are the constant scale bit for bit; different ones change the video.
        same = pipe.generate("a red circle", guidance=4.0, guidance_2=4.0, guidance_boundary=0.55, **kw)
        const = pipe.generate("a red circle", guidance=4.0, **kw)
        assert torch.equal(same, const) and not torch.equal(frames, const)
        # Pyramidal: the boundary is on the global noise level, across the stages.
        seen.clear()
        pipe.generate("x", schedule="pyramidal", steps=6, guidance=4.0, guidance_2=2.0, guidance_boundary=0.5)
        assert [g for _, g in seen] == [4.0 if s >= 0.5 else 2.0 for s, _ in seen]
        assert {g for _, g in seen} == {4.0, 2.0}
        # A model whose default steps down: its defaults apply, and a scale given alone holds throughout.
        stepped = copy.copy(pipe)
        stepped.config = dataclasses.replace(pipe.config, guidance=4.0, guidance_2=2.0, guidance_boundary=0.5)
        opts = stepped.default_options()
        assert (opts.guidance, opts.guidance_2, opts.guidance_boundary) == (4.0, 2.0, 0.5)
        seen.clear()
        stepped.generate("x", steps=4)
        assert [g for _, g in seen] == [4.0 if s >= 0.5 else 2.0 for s, _ in seen] and len(seen) == 4
        seen.clear()
        stepped.generate("x", steps=4, guidance=5.0)
        assert seen == [(-1.0, 5.0)]
        seen.clear()
        stepped.generate("x", steps=4, guidance=5.0, guidance_2=1.0, guidance_boundary=0.7)
        assert [g for _, g in seen] == [5.0 if s >= 0.7 else 1.0 for s, _ in seen]
    finally:
        del pipe.guidance_schedule
    with pytest.raises(ValueError, match="needs guidance_boundary"):
        pipe.generate("x", steps=2, guidance_2=2.0)
    with pytest.raises(
        ValueError, match=r"PipelineConfig.guidance_2=2.0 and guidance_boundary=None go together"
    ):
        PipelineConfig(guidance_2=2.0)
    with pytest.raises(ValueError, match=r"guidance_boundary=1.5 must be a noise level in \(0, 1\)"):
        PipelineConfig(guidance_2=2.0, guidance_boundary=1.5)
    cfg = PipelineConfig.from_dict({"guidance_2": 2, "guidance_boundary": 0.9})
    assert (cfg.guidance_2, cfg.guidance_boundary) == (2.0, 0.9)


def test_nan_from_the_denoiser_stops_sampling(pipe):
    orig = pipe.dit.forward
    pipe.dit.forward = lambda x, *a, **k: torch.full_like(x, float("nan"))
    try:
        with pytest.raises(FloatingPointError, match="NaN at step 0"):
            pipe.generate("x")
    finally:
        pipe.dit.forward = orig
        del pipe.dit.forward


def test_cli_generate_writes_file_and_refuses_overwrite(model_dir, tmp_path):
    out = tmp_path / "clip.mp4"
    cmd = generate_cmd("a red circle", out, "--model", str(model_dir), "--steps", "2", "--seed", "1")
    frames, fps = read_written(run(cmd), out)
    assert frames.shape == (5, 16, 16, 3) and fps == 4.0
    res = run(cmd)
    assert res.returncode != 0 and "exists; pass --overwrite" in res.stderr
    missing = [*cmd[:6], str(tmp_path / "nope" / "x.mp4"), *cmd[7:]]
    res = run(missing)
    assert res.returncode != 0 and "does not exist" in res.stderr
    assert not (tmp_path / "nope").exists()
    # Inputs that write_video would refuse are refused before any generation (no model is loaded).
    for extra, message in (
        (["--format", "gif"], "--format gif contradicts the suffix"),
        (["--fps", "0"], "--fps 0.0 must be a finite number in (0, 1000] for mp4"),
    ):
        early = [*cmd[:6], str(tmp_path / "early.mp4"), "--model", "nope", *extra]
        res = run(early)
        assert res.returncode != 0 and message in res.stderr, res.stderr
        assert not (tmp_path / "early.mp4").exists()


def test_half_precision_model_keeps_a_float32_sampler_state(model_dir):
    half = load_pipeline(model_dir, dtype=torch.bfloat16)
    assert next(half.dit.parameters()).dtype == torch.bfloat16
    states = []
    frames = half.generate(
        "a red circle", steps=3, seed=1, callback=lambda info: states.append(info["x"].dtype)
    )
    assert states == [torch.float32] * 3
    assert frames.dtype == torch.float32 and frames.shape == (5, 16, 16, 3)
    assert 0.0 <= float(frames.min()) and float(frames.max()) <= 1.0
