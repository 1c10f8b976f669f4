import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from vidcore.models.dit import DiTConfig, SpacetimeDiT
from vidcore.models.vae import CausalVAE3D
from vidcore.train.data import ShapeVideoDataset, ShapeVideoSpec, render
from vidcore.train.trainer import (
    LatentCache,
    TrainConfig,
    draw_batch,
    foreground_weight,
    latent_foreground,
    load_train_config,
    lr_at,
    train_dit,
    train_vae,
    vae_loss,
    weighted_mse,
)

from ._tiny_hf import make_bert_folder

torch.set_num_threads(1)

TINY_VAE = {
    "spatial_compression": 4,
    "temporal_compression": 4,
    "patch_size": 4,
    "base_channels": 8,
    "channel_multipliers": [1, 1, 1],
    "latent_channels": 4,
}


def _vae_cfg(out, steps, **kw):
    return TrainConfig.from_dict(
        {
            "kind": "vae",
            "out_dir": str(out),
            "steps": steps,
            "batch_size": 2,
            "num_frames": 5,
            "height": 32,
            "width": 32,
            "threads": 1,
            "ckpt_every": 2,
            "warmup_steps": 2,
            "model": TINY_VAE,
            **kw,
        }
    )


def test_vae_training_resume_is_identical_to_straight_run(tmp_path):
    straight = train_vae(_vae_cfg(tmp_path / "a", 4), log=lambda m: None)
    train_vae(_vae_cfg(tmp_path / "b", 2), log=lambda m: None)
    messages = []
    resumed = train_vae(_vae_cfg(tmp_path / "b", 4), log=messages.append)
    assert any("resumed" in m and "at step 2" in m for m in messages)
    a, b = CausalVAE3D.from_checkpoint(straight), CausalVAE3D.from_checkpoint(resumed)
    for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), k
    # the exported VAE carries per-channel latent statistics (normalised latents ~ zero mean, unit std)
    assert len(a.config.latent_scale) == 4 and a.config.latent_scale != (1.0,) * 4
    history = json.loads((tmp_path / "a" / "config.json").read_text())
    assert history["steps"] == 4


def test_vae_training_reduces_loss(tmp_path):
    cfg = _vae_cfg(tmp_path / "c", 30, lr=3e-3, ckpt_every=30)
    train_vae(cfg, log=lambda m: None)
    from safetensors import safe_open

    with safe_open(str(tmp_path / "c" / "state.safetensors"), framework="pt") as f:
        meta = f.metadata()
    step, info = int(meta["step"]), json.loads(meta["info"])
    losses = [h["loss"] for h in info["history"]]
    assert step == 30 and sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5


def _dit_run(tmp_path, **kw) -> dict:
    """A tiny DiT run's config dict (tiny VAE trained for one step, tiny BERT text encoder) + ``kw``."""
    text = make_bert_folder(tmp_path / "text")
    vae_path = train_vae(_vae_cfg(tmp_path / "vae", 1), log=lambda m: None)
    model = {"in_channels": 4, "out_channels": 4, "width": 16, "depth": 1, "heads": 2, "text_dim": 32}
    base = {
        "kind": "dit",
        "out_dir": str(tmp_path / "dit"),
        "batch_size": 2,
        "num_frames": 5,
        "height": 32,
        "width": 32,
        "threads": 1,
        "ckpt_every": 2,
        "warmup_steps": 1,
        "vae": str(vae_path),
        "text_encoder": str(text),
        "latent_cache": 8,
        "model": model,
    }
    return {**base, **kw}


def test_dit_training_runs_and_resumes(tmp_path):
    base = _dit_run(tmp_path, lowres_prob=0.5)
    base["model"] = {**base["model"], "patch_s": 2}
    train_dit(TrainConfig.from_dict({**base, "steps": 2}), log=lambda m: None)
    path = train_dit(TrainConfig.from_dict({**base, "steps": 4}), log=lambda m: None)
    model = SpacetimeDiT.from_checkpoint(path)
    assert model.config.patch_s == 2
    assert any(p.abs().sum() > 0 for p in model.proj_out.parameters())  # the zero-init output layer learned


@pytest.mark.parametrize(("twins", "shape_loss"), [(0.0, 0.0), (0.5, 0.5)])
def test_data_parallel_dit_training_matches_single_process(tmp_path, twins, shape_loss):
    text = make_bert_folder(tmp_path / "text")
    vae_path = train_vae(_vae_cfg(tmp_path / "vae", 1), log=lambda m: None)
    base = {
        "kind": "dit",
        "batch_size": 4,
        "num_frames": 5,
        "height": 32,
        "width": 32,
        "threads": 1,
        "ckpt_every": 3,
        "warmup_steps": 1,
        "vae": str(vae_path),
        "text_encoder": str(text),
        "latent_cache": 8,
        "steps": 3,
        "lr": 1e-2,
        "latent_fg_weight": 4.0,  # the object masks are all-gathered with the latents
        "shape_twins": twins,  # so are the twins' latents, masks and text rows
        "shape_loss_weight": shape_loss,  # and the shape labels; the shape loss is normalised per batch
        "shape_classifier_steps": 5,
        "lowres_prob": 0.0,
        "model": {"in_channels": 4, "out_channels": 4, "width": 16, "depth": 1, "heads": 2, "text_dim": 32},
    }
    one = train_dit(TrainConfig.from_dict({**base, "out_dir": str(tmp_path / "one")}), log=lambda m: None)
    two = train_dit(TrainConfig.from_dict({**base, "out_dir": str(tmp_path / "two"), "processes": 2}))
    a, b = SpacetimeDiT.from_checkpoint(one), SpacetimeDiT.from_checkpoint(two)
    for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.allclose(x, y, atol=1e-5, rtol=1e-4), k
    assert a.proj_out.weight.abs().sum() > 0  # the zero-initialised output layer was trained
    with pytest.raises(ValueError, match="batch_size=3 must divide evenly over processes=2"):
        TrainConfig.from_dict({**base, "out_dir": "x", "batch_size": 3, "processes": 2})


def test_latent_foreground_marks_the_object_on_the_latent_grid():
    # A still square of radius 6 centred at (20, 40) in a 17x64x64 video, latent grid 5x16x16 (4x / 4x).
    video = render([ShapeVideoSpec("square", "red", "still", 6.0, 0.0, 20.0, 40.0)])
    fg = latent_foreground(video, (5, 16, 16))
    assert fg.shape == (1, 1, 5, 16, 16) and set(fg.unique().tolist()) <= {0.0, 1.0}
    ys, xs = torch.nonzero(fg[0, 0, 0], as_tuple=True)
    # Pixels 14..26 x 34..46 are latent cells 3..6 x 8..11; one cell of dilation on each side.
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (2, 7, 7, 12)
    assert torch.equal(fg[0, 0, 0], fg[0, 0, 4])  # still: the same cells in every latent frame
    # A moving object covers its whole path within each group of 4 frames.
    moving = latent_foreground(
        render([ShapeVideoSpec("circle", "blue", "right", 6.0, 2.0, 16.0, 32.0)]), (5, 16, 16)
    )
    assert moving[0, 0, 4].sum() > moving[0, 0, 0].sum()
    with pytest.raises(ValueError, match="does not map onto a latent grid of 4x16x16"):
        latent_foreground(video, (4, 16, 16))


def test_foreground_weighted_mse():
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(2, 3, 5, 8, 8, generator=g), torch.randn(2, 3, 5, 8, 8, generator=g)
    fg = (torch.rand(2, 1, 5, 8, 8, generator=g) > 0.7).float()
    assert torch.equal(weighted_mse(pred, target, None), torch.nn.functional.mse_loss(pred, target))
    weight = foreground_weight(fg, (5, 8, 8), 4.0)
    assert set(weight.unique().tolist()) == {1.0, 4.0}
    w = weight.expand_as(pred)
    assert torch.allclose(weighted_mse(pred, target, weight), (w * (pred - target) ** 2).sum() / w.sum())
    # Halves of the batch with the whole batch's mean weight average to the whole-batch loss.
    halves = [weighted_mse(pred[i::2], target[i::2], weight[i::2], weight.mean()) for i in (0, 1)]
    assert torch.allclose((halves[0] + halves[1]) / 2, weighted_mse(pred, target, weight))
    # A low-resolution (pyramid) batch: the mask is max-pooled to the latent grid of that level.
    small = foreground_weight(fg, (5, 4, 4), 4.0)
    assert torch.equal(small, 1 + 3 * torch.nn.functional.max_pool3d(fg, (1, 2, 2)))
    with pytest.raises(ValueError, match="latent_fg_weight=0.5 must be >= 1"):
        TrainConfig.from_dict(
            {"kind": "vae", "out_dir": "x", "steps": 1, "batch_size": 1, "latent_fg_weight": 0.5}
        )


def test_shipped_configs_load_and_bad_configs_fail():
    vae = load_train_config("tiny_vae")
    dit = load_train_config("tiny_dit")
    assert vae.kind == "vae" and dit.kind == "dit" and dit.threads == 1
    # v2's recipe: a fine-tune of the shipped weights, runnable from a clean clone (paths in the repository)
    v2 = load_train_config("tiny_dit_v2")
    assert v2.init_from == "vidcore/weights/tiny/dit.safetensors" and v2.shape_loss_weight > 0
    root = Path(__file__).resolve().parents[1]
    assert (root / v2.init_from).is_file() and (root / v2.vae).is_file()
    assert v2.model == dit.model  # the same architecture as the from-scratch recipe
    shipped = "\\['tiny_dit', 'tiny_dit_v2', 'tiny_unet', 'tiny_vae'\\]"
    with pytest.raises(FileNotFoundError, match=f"shipped configs: {shipped}"):
        load_train_config("nope")
    with pytest.raises(ValueError, match="a DiT run needs `vae`"):
        TrainConfig.from_dict({"kind": "dit", "out_dir": "x", "steps": 1, "batch_size": 1})
    with pytest.raises(ValueError, match="unknown TrainConfig keys \\['stepz'\\]"):
        TrainConfig.from_dict({"kind": "vae", "out_dir": "x", "steps": 1, "batch_size": 1, "stepz": 3})


def test_log_every_logs_the_mean_losses_of_each_window(tmp_path):
    messages = []
    train_vae(_vae_cfg(tmp_path / "v", 5, log_every=2, ckpt_every=5), log=messages.append)
    lines = [m for m in messages if m.startswith("step ")]
    assert [m.split(":")[0] for m in lines] == ["step 2/5", "step 4/5"]
    from safetensors import safe_open

    with safe_open(str(tmp_path / "v" / "state.safetensors"), framework="pt") as f:
        history = json.loads(f.metadata()["info"])["history"]
    mean = (history[2]["loss"] + history[3]["loss"]) / 2  # steps 3 and 4
    assert f"loss {mean:.4g}," in lines[1] and "(mean of 2 steps)" in lines[1]
    assert "rec " in lines[1] and "grad_norm " in lines[1]
    with pytest.raises(ValueError, match="log_every=0 must be a positive number"):
        _vae_cfg(tmp_path / "w", 1, log_every=0)


def test_retired_sample_every_is_dropped_from_old_run_configs(tmp_path, caplog):
    # Run folders written while TrainConfig had `sample_every` (which never did anything) keep loading.
    old = {**load_train_config("tiny_vae").to_dict(), "sample_every": 1000}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(old))
    with caplog.at_level("WARNING", logger="vidcore"):
        cfg = load_train_config(path)
    assert cfg == load_train_config("tiny_vae")
    assert any("retired TrainConfig key 'sample_every'" in r.message for r in caplog.records)
    # Every other unknown key still refuses the file, and the dataclass itself knows no retired keys.
    path.write_text(json.dumps({**old, "sample_evry": 10}))
    with pytest.raises(ValueError, match="unknown TrainConfig keys \\['sample_evry'\\]"):
        load_train_config(path)
    with pytest.raises(ValueError, match="unknown TrainConfig keys \\['sample_every'\\]"):
        TrainConfig.from_dict(old)


def test_lr_schedule_and_vae_loss_values():
    cfg = TrainConfig(kind="vae", out_dir="x", steps=100, batch_size=1, lr=1.0, warmup_steps=10)
    assert lr_at(0, cfg) == pytest.approx(0.1)
    assert lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(100, cfg) == pytest.approx(0.1)
    video = torch.full((1, 3, 1, 8, 8), -0.9)
    video[..., 2:6, 2:6] = 0.8  # a bright square on a dark background
    loss, parts = vae_loss(video.clone(), video, torch.zeros(1), cfg)
    assert loss.item() == 0 and parts["edge"] == 0
    shifted = video + 0.1
    _, parts = vae_loss(shifted, video, torch.zeros(1), cfg)
    # L1 + L2 of 0.1 everywhere, weighted 10x on the 16 object pixels of 64: mean weight (48 + 160) / 64
    assert parts["rec"] == pytest.approx((0.1 + 0.01) * (48 + 160) / 64, rel=1e-5)


def test_export_assembles_a_loadable_model_folder(tmp_path):
    from vidcore.pipelines import load_pipeline
    from vidcore.pipelines.builtin import PipelineConfig
    from vidcore.train.export import export_model

    text = make_bert_folder(tmp_path / "text")
    vae_path = train_vae(_vae_cfg(tmp_path / "vae", 1), log=lambda m: None)
    dit = SpacetimeDiT(DiTConfig(in_channels=4, out_channels=4, width=16, depth=1, heads=2, text_dim=32))
    dit_path = dit.save(tmp_path / "dit.safetensors")
    cfg = PipelineConfig(name="t", text_encoder=str(text), num_frames=5, height=32, width=32, steps=2)
    out = export_model(vae_path, dit_path, tmp_path / "model", cfg)
    assert sorted(p.name for p in out.iterdir()) == ["dit.safetensors", "pipeline.json", "vae.safetensors"]
    assert load_pipeline(out).generate("a red circle").shape == (5, 32, 32, 3)
    assert out.stat().st_mode & 0o777 == 0o755
    with pytest.raises(FileExistsError):
        export_model(vae_path, dit_path, out, cfg)
    # Overwriting swaps the whole folder and keeps files it does not write (the model card).
    (out / "MODEL_CARD.md").write_text("card")
    export_model(vae_path, dit_path, out, PipelineConfig.from_dict({**cfg.to_dict(), "steps": 3}), True)
    assert (out / "MODEL_CARD.md").read_text() == "card"
    assert json.loads((out / "pipeline.json").read_text())["steps"] == 3
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    from vidcore.train.export import main as export_main

    fields = tmp_path / "fields.json"
    fields.write_text(json.dumps({**cfg.to_dict(), "name": "from-file"}))
    args = ["--vae", str(vae_path), "--dit", str(dit_path), "--config", str(fields)]
    export_main([*args, "--out", str(tmp_path / "named"), "--name", "explicit"])
    assert json.loads((tmp_path / "named" / "pipeline.json").read_text())["name"] == "explicit"
    bad = SpacetimeDiT(DiTConfig(in_channels=6, out_channels=6, width=16, depth=1, heads=2, text_dim=32))
    with pytest.raises(ValueError, match="latent_channels=4 does not fit DiT in_channels=6"):
        export_model(vae_path, bad.save(tmp_path / "bad.safetensors"), tmp_path / "other", cfg)
    assert not (tmp_path / "other").exists()
    # --dtype float16 stores the denoiser's weights in half precision and keeps its metadata
    dit_path = dit.save(tmp_path / "stepped.safetensors", extra_metadata={"train_step": "7"})
    half_args = ["--vae", str(vae_path), "--dit", str(dit_path), "--config", str(fields)]
    export_main([*half_args, "--dtype", "float16", "--out", str(tmp_path / "half")])
    from safetensors import safe_open

    from vidcore.io.checkpoint import read_metadata

    with safe_open(str(tmp_path / "half" / "dit.safetensors"), framework="pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    assert read_metadata(tmp_path / "half" / "dit.safetensors")["train_step"] == "7"
    half = SpacetimeDiT.from_checkpoint(tmp_path / "half" / "dit.safetensors", dtype=torch.float32)
    assert torch.allclose(half.patch_embed.weight, dit.patch_embed.weight.half().float())
    assert load_pipeline(tmp_path / "half").generate("a red circle").shape == (5, 32, 32, 3)
    with pytest.raises(ValueError, match="store_dtype='int8' must be one of"):
        export_model(vae_path, dit_path, tmp_path / "int8", cfg, store_dtype="int8")


def test_init_from_warm_starts_weights(tmp_path):
    first = train_vae(_vae_cfg(tmp_path / "a", 2), log=lambda m: None)
    messages = []
    cfg = _vae_cfg(tmp_path / "b", 1, init_from=str(first), lr=1e-9, warmup_steps=1000)
    second = train_vae(cfg, log=messages.append)
    assert any("initialised from" in m for m in messages)
    a, b = CausalVAE3D.from_checkpoint(first), CausalVAE3D.from_checkpoint(second)
    # one step at a negligible LR: the EMA export of run b stays within float noise of run a's weights
    for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.allclose(x, y, atol=1e-5), k


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for its new parent to reap it counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads process states from /proc (Linux)")
def test_workers_exit_when_the_launching_process_dies():
    # Data-parallel workers watch their parent: killing the launcher must not leave them training.
    # The launcher passes its own pid (as train_dit does); the worker reports once it is watching.
    child = (
        "import os, sys, time; from vidcore.train.trainer import exit_with_parent; "
        "exit_with_parent(int(sys.argv[1]), poll_s=0.05); print(os.getpid(), flush=True); time.sleep(60)"
    )
    launcher = (
        "import os, subprocess, sys, time; "
        f"subprocess.Popen([sys.executable, '-c', {child!r}, str(os.getpid())]); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", launcher], stdout=subprocess.PIPE, text=True)
    pid = int(proc.stdout.readline())
    assert _alive(pid)
    proc.kill()
    proc.wait()
    deadline = time.time() + 20
    while _alive(pid) and time.time() < deadline:
        time.sleep(0.05)
    assert not _alive(pid), "the worker outlived its launcher"


def test_shape_twin_batches_pair_each_item_with_its_twin(tmp_path):
    from vidcore.text import load_text_encoder

    text = load_text_encoder(str(make_bert_folder(tmp_path / "text")))
    vae = CausalVAE3D.from_checkpoint(train_vae(_vae_cfg(tmp_path / "vae", 1), log=lambda m: None))
    data = ShapeVideoDataset(0, 5, 32, 32)
    cache = LatentCache(vae, text, data, 8, foreground=True, log=lambda m: None, twins=True)
    with torch.no_grad():
        twin_z = vae.encode(data.twin_items(0, 8)["video"])
    assert torch.allclose(cache.twin_latents, twin_z)
    emb, mask = text.encode([data.twin(3)[1], ""])
    row, k = cache.twin_row(3), int(mask[0].sum())
    assert torch.allclose(cache.emb[row, :k], emb[0, :k], atol=1e-6)
    assert int(cache.mask[row].sum()) == k and int(cache.mask[cache.empty].sum()) == int(mask[1].sum())
    base = {"kind": "dit", "out_dir": "x", "vae": "v", "steps": 1, "batch_size": 8, "latent_cache": 8}
    base["caption_dropout"] = 0.5
    cfg = TrainConfig.from_dict({**base, "shape_twins": 0.5})
    b = draw_batch(cfg, cache, step=5, levels=[])
    assert b.pairs == 2
    assert torch.equal(b.noise[-2:], b.noise[:2]) and torch.equal(b.sigma[-2:], b.sigma[:2])
    plain = draw_batch(TrainConfig.from_dict(base), cache, step=5, levels=[])
    assert torch.equal(plain.x0[:6], b.x0[:6]) and torch.equal(plain.noise[:6], b.noise[:6])
    idx = [i for i in range(8) if torch.equal(cache.latents[i], b.x0[0])][:1]
    assert idx and torch.equal(b.x0[6], cache.twin_latents[idx[0]])  # item 0's twin sits at position 6
    assert b.mask[:2].any(dim=1).all() and b.mask[-2:].any(dim=1).all()  # pairs keep their captions
    assert torch.equal(b.emb[6], cache.emb[cache.twin_row(idx[0])])
    # shape labels travel with the items (the shape loss reads them); twins carry the next shape
    from vidcore.train.captions import SHAPES

    assert cache.shapes.tolist() == [SHAPES.index(data.spec_and_caption(i)[0].shape) for i in range(8)]
    assert torch.equal(cache.twin_shapes, (cache.shapes + 1) % len(SHAPES))
    assert b.shapes[6] == cache.twin_shapes[idx[0]] and b.shapes[0] == cache.shapes[idx[0]]
    assert b.captioned[:2].all() and b.captioned[-2:].all()
    empty = [torch.equal(e, cache.emb[cache.empty]) for e in b.emb]  # dropped captions = the empty prompt
    assert b.captioned.tolist() == [not e for e in empty] and any(empty)
    with pytest.raises(ValueError, match="built with twins=True"):
        plain_cache = LatentCache(vae, text, data, 8, log=lambda m: None)
        draw_batch(cfg, plain_cache, step=0, levels=[])
    with pytest.raises(ValueError, match=r"shape_twins=1.5 must be in \[0, 1\]"):
        TrainConfig.from_dict({**base, "shape_twins": 1.5})


def test_training_noise_levels_are_logit_normal_with_a_configurable_location():
    from vidcore.train.trainer import sample_sigmas

    z = torch.randn(20000, generator=torch.Generator().manual_seed(3))
    same = sample_sigmas(20000, torch.Generator().manual_seed(3))
    assert torch.equal(same, torch.sigmoid(z))  # the default is the SD3 N(0, 1) draw, unchanged
    high = sample_sigmas(20000, torch.Generator().manual_seed(3), mean=1.0, std=0.5)
    assert torch.allclose(torch.logit(high), 1.0 + 0.5 * z, atol=1e-4)
    assert float((high > 0.7).float().mean()) > 2 * float((same > 0.7).float().mean())
    base = {"kind": "dit", "out_dir": "x", "vae": "v", "steps": 1, "batch_size": 2}
    for bad in (
        {"sigma_logit_std": 0.0},
        {"sigma_logit_std": float("nan")},
        {"sigma_logit_mean": float("inf")},
    ):
        with pytest.raises(ValueError, match="sigma_logit_mean=.* must be finite and sigma_logit_std="):
            TrainConfig.from_dict({**base, **bad})


def test_shape_loss_classifier_is_trained_once_and_reused_on_resume(tmp_path):
    loss = {"shape_loss_weight": 1.0, "shape_classifier_steps": 10}
    base = _dit_run(tmp_path, batch_size=4, latent_cache=16, lowres_prob=0.0, log_every=1, **loss)
    first: list[str] = []
    train_dit(TrainConfig.from_dict({**base, "steps": 2}), log=first.append)
    path = tmp_path / "dit" / "shape_classifier.safetensors"
    assert any("latent shape classifier: 10 steps on 14 videos" in m for m in first)
    assert any("shape_ce" in m for m in first if m.startswith("step "))  # logged beside the loss
    from vidcore.io.checkpoint import read_metadata

    assert 0 <= float(read_metadata(path)["held_out_accuracy_clean"]) <= 1
    before = path.read_bytes()
    again: list[str] = []
    train_dit(TrainConfig.from_dict({**base, "steps": 4}), log=again.append)
    assert any("shape loss: classifier from" in m for m in again)
    assert not any("latent shape classifier:" in m for m in again) and path.read_bytes() == before
    eps = {**base, "out_dir": str(tmp_path / "eps"), "steps": 1}
    eps["model"] = {**base["model"], "prediction": "epsilon"}
    with pytest.raises(ValueError, match="shape_loss_weight=1.0 needs a velocity or x0 denoiser"):
        train_dit(TrainConfig.from_dict(eps), log=lambda m: None)
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="shape_loss_weight=.* must be finite and >= 0"):
            TrainConfig.from_dict({**base, "steps": 1, "shape_loss_weight": bad})
