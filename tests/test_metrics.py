"""Video metrics: Fréchet numerics, TCS, flicker, warp error, dynamic degree, PSNR/SSIM, CLIP, score."""

import math
import warnings

import numpy as np
import pytest
import torch

from vidcore.metrics import (
    adjacent_cosine,
    feature_statistics,
    flicker,
    flow_motion_scores,
    frechet_distance,
    frechet_distance_from_stats,
    is_dynamic,
    psnr,
    ssim,
    tcs,
    tcs_vbench,
    warp_error,
    warp_error_per_pair,
)

torch.set_num_threads(1)


def _gaussians(n: int, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mix_a = torch.randn(d, d, generator=g, dtype=torch.float64) / math.sqrt(d)
    mix_b = torch.randn(d, d, generator=g, dtype=torch.float64) / math.sqrt(d)
    a = torch.randn(n, d, generator=g, dtype=torch.float64) @ mix_a
    b = torch.randn(n, d, generator=g, dtype=torch.float64) @ mix_b + 0.3
    return a, b


def _numpy_fd(a: np.ndarray, b: np.ndarray, ddof: int) -> float:
    """Independent reference: tr sqrt(S1 S2) from the (real) eigenvalues of the non-symmetric product."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False, ddof=ddof), np.cov(b, rowvar=False, ddof=ddof)
    eig = np.linalg.eigvals(s1 @ s2).real.clip(min=0)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(eig).sum())


def test_frechet_matches_scipy_sqrtm():
    linalg = pytest.importorskip("scipy.linalg", reason="scipy is the sqrtm reference (test extra)")
    a, b = _gaussians(300, 24, seed=0)
    mu1, s1 = feature_statistics(a)
    mu2, s2 = feature_statistics(b)
    root = linalg.sqrtm(s1.numpy() @ s2.numpy())
    ref = float(((mu1 - mu2) ** 2).sum() + s1.trace() + s2.trace() - 2 * np.trace(root).real)
    assert frechet_distance(a, b) == pytest.approx(ref, rel=1e-6)
    assert frechet_distance_from_stats(mu1, s1, mu2, s2) == pytest.approx(ref, rel=1e-9)


def test_frechet_matches_numpy_eigvals_and_divisor_convention():
    a, b = _gaussians(200, 16, seed=1)
    for ddof in (0, 1):
        ref = _numpy_fd(a.numpy(), b.numpy(), ddof)
        assert frechet_distance(a, b, ddof=ddof) == pytest.approx(ref, rel=1e-9)
    # 1-D: FD = (mu1 - mu2)^2 + (sd1 - sd2)^2 with the chosen divisor.
    x = torch.tensor([[0.0], [2.0]], dtype=torch.float64)  # mean 1, var 2 (N-1) or 1 (N)
    y = torch.tensor([[5.0], [5.0], [5.0]], dtype=torch.float64)
    assert frechet_distance(x, y, ddof=1) == pytest.approx(16 + 2, rel=1e-12)
    assert frechet_distance(x, y, ddof=0) == pytest.approx(16 + 1, rel=1e-12)


def test_frechet_self_zero_symmetric_and_nuclear_form_when_n_below_d():
    a, b = _gaussians(500, 32, seed=2)
    assert abs(frechet_distance(a, a)) < 1e-9
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-10)
    small_a, small_b = a[:20], b[:25]
    with pytest.warns(UserWarning, match="D=32"):
        nuclear = frechet_distance(small_a, small_b, method="nuclear")
    with pytest.warns(UserWarning):
        eigh = frechet_distance(small_a, small_b, method="eigh")
    assert nuclear == pytest.approx(eigh, rel=1e-7)
    with pytest.warns(UserWarning):
        assert frechet_distance(small_a, small_a) == pytest.approx(0.0, abs=1e-12)  # auto -> nuclear, exact
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        frechet_distance(a, b)  # N >= D: no warning


def test_frechet_bad_input():
    a = torch.randn(5, 4)
    with pytest.raises(ValueError, match="N=1"):
        frechet_distance(a[:1], a)
    with pytest.raises(ValueError, match="D=4.*D=3"):
        frechet_distance(a, torch.randn(5, 3))
    with pytest.raises(ValueError, match="ddof=2"):
        frechet_distance(a, a, ddof=2)
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(a, a * float("nan"))


def test_tcs_and_vbench_variant_values():
    same = torch.randn(1, 8).expand(5, 8)
    assert float(tcs(same)) == pytest.approx(1.0, abs=1e-12)
    alt = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    assert float(tcs(alt)) == pytest.approx(0.0, abs=1e-12)
    r = 1 / math.sqrt(2)
    f = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    # s1 = (cos45 + cos45)/2, s2 = (cos45 + cos90)/2
    assert float(tcs_vbench(f)) == pytest.approx(((r + r) / 2 + (r + 0) / 2) / 2, rel=1e-12)
    flip = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    assert float(tcs(flip)) == pytest.approx(-1.0)
    assert float(tcs_vbench(flip)) == 0.0  # VBench clamps negative similarity at 0
    batched = tcs(torch.stack([same[:3, :2], alt]))
    torch.testing.assert_close(batched, torch.tensor([1.0, 0.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="T=1"):
        tcs(torch.randn(1, 4))


def test_flicker_psnr_ssim_values():
    g = torch.Generator().manual_seed(0)
    still = torch.rand(1, 8, 8, 3, generator=g).expand(4, -1, -1, -1)
    assert flicker(still) == 1.0
    blink = torch.stack([torch.zeros(8, 8, 3), torch.ones(8, 8, 3)] * 2)
    assert flicker(blink) == 0.0
    step = torch.stack([torch.full((4, 4, 3), v / 255) for v in (10, 20, 10)])
    assert flicker(step) == pytest.approx((255 - 10) / 255)
    x = torch.rand(3, 16, 16, 3, generator=g) * 0.8
    assert psnr(x, x + 0.1) == pytest.approx(20.0, rel=1e-6)  # float32 frames
    assert ssim(x, x) == pytest.approx(1.0, abs=1e-12)
    c1, c2 = 0.2, 0.4
    const_a, const_b = torch.full((1, 12, 12, 3), c1), torch.full((1, 12, 12, 3), c2)
    k1 = 1e-4
    assert ssim(const_a, const_b) == pytest.approx((2 * c1 * c2 + k1) / (c1**2 + c2**2 + k1), rel=1e-6)
    assert ssim(x, x.flip(1)) < 0.5
    with pytest.raises(ValueError, match="same"):
        psnr(x, x[:, :8])
    with pytest.raises(ValueError, match="T=1"):
        flicker(x[:1])


def _translating_video(t: int, shift: int, seed: int = 0) -> torch.Tensor:
    """Frames cut from one smooth canvas, each ``shift`` px further right: x_t(p) = x_{t+1}(p + shift)."""
    from vidcore.flow.synthetic import smooth_texture

    g = torch.Generator().manual_seed(seed)
    canvas = smooth_texture(32, 32 + shift * t, g).to(torch.float32)[0, 0]
    frames = [canvas[:, shift * (t - i) : shift * (t - i) + 32] for i in range(t)]
    return torch.stack(frames)[..., None].expand(-1, -1, -1, 3).contiguous()


def test_warp_error_zero_for_exact_motion_and_small_for_estimated_flow():
    video = _translating_video(4, 2)
    flows = torch.zeros(3, 2, 32, 32)
    flows[:, 0] = 2.0  # content moves right by 2 px, so x_t(p) = x_{t+1}(p + 2 px)
    back = -flows
    per_pair = warp_error_per_pair(video, flows, back)
    assert per_pair.shape == (3,)
    assert float(per_pair.max()) == 0.0
    estimated = warp_error(video)
    still = warp_error(video, torch.zeros_like(flows), torch.zeros_like(flows))
    assert estimated < 0.02 * still


def test_dynamic_degree_scores_and_vbench_threshold():
    flows = torch.zeros(2, 2, 20, 20)
    flows[0, 0].view(-1)[:20] = 3.0  # exactly the top 5 % of 400 pixels
    flows[1, 1].view(-1)[:10] = 4.0  # half of the top 5 % at 4 px, the rest 0
    torch.testing.assert_close(flow_motion_scores(flows), torch.tensor([3.0, 2.0], dtype=torch.float64))
    # 256x256 at fps >= 8: threshold 6 px; T = 16 frames -> at least round(4*16/16) = 4 pairs above it.
    scores = torch.tensor([7.0] * 4 + [1.0] * 11)
    assert is_dynamic(scores, 256, 256, fps=24)
    assert not is_dynamic(torch.tensor([7.0] * 3 + [1.0] * 12), 256, 256, fps=24)
    assert not is_dynamic(scores, 256, 256, fps=4)  # low fps doubles the threshold to 12 px


def test_adjacent_cosine_per_frame_curve():
    f = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    torch.testing.assert_close(adjacent_cosine(f), torch.tensor([1.0, 0.0], dtype=torch.float64))


# ----------------------------------------------------------------------------------------------- CLIP


def _tiny_clip_folder(folder, with_tokenizer: bool = True):
    """Save a tiny random CLIPModel (170k-parameter class) and a word-level tokenizer to ``folder``."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import CLIPConfig, CLIPModel, PreTrainedTokenizerFast

    words = "a red cat dog runs on the grass blue sky".split()
    vocab = {"<pad>": 0, "<bos>": 1, "<eos>": 2, "<unk>": 3} | {w: i + 4 for i, w in enumerate(words)}
    text = dict(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=16,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    vision = dict(
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
    )
    torch.manual_seed(0)
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).eval()
    model.save_pretrained(folder)
    if with_tokenizer:
        tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
        tk.pre_tokenizer = pre_tokenizers.Whitespace()
        tk.post_processor = processors.TemplateProcessing(
            single="<bos> $A <eos>", special_tokens=[("<bos>", 1), ("<eos>", 2)]
        )
        fast = PreTrainedTokenizerFast(
            tokenizer_object=tk,
            bos_token="<bos>",
            eos_token="<eos>",
            pad_token="<pad>",
            unk_token="<unk>",
            model_max_length=16,
        )
        fast.save_pretrained(folder)
    return model


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clip")
    model = _tiny_clip_folder(folder)
    return folder, model


def test_clip_preprocess_resizes_short_side_crops_and_normalises():
    from vidcore.metrics.clip import CLIP_MEAN, CLIP_STD, clip_preprocess

    frames = torch.full((2, 20, 40, 3), 0.5)
    frames[:, :, :10] = 0.0  # left quarter dark: cropped away by the centre crop
    out = clip_preprocess(frames, 16, CLIP_MEAN, CLIP_STD)
    assert out.shape == (2, 3, 16, 16)
    expected = (0.5 - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
    torch.testing.assert_close(out[0, :, 8, 8], expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(out[0, :, :, 4:12], expected.view(3, 1, 1).expand(3, 16, 8), atol=1e-4, rtol=0)


def test_clip_sim_and_tc_match_the_model_forward(tiny_clip):
    from vidcore.metrics.clip import (
        clip_image_features,
        clip_preprocess,
        clip_sim,
        clip_sim_from_features,
        clip_tc,
        load_clip,
    )

    folder, model = tiny_clip
    bundle = load_clip(folder)
    g = torch.Generator().manual_seed(3)
    frames = torch.rand(4, 40, 48, 3, generator=g)
    prompt = "a red cat runs on the grass"
    pixels = clip_preprocess(frames, 32, bundle.mean, bundle.std)
    enc = bundle.tokenizer([prompt], padding="max_length", max_length=16, return_tensors="pt")
    with torch.no_grad():
        out = model(pixel_values=pixels, input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
    cos_ref = (out.logits_per_image[:, 0] / model.logit_scale.exp()).double().detach()
    assert clip_sim(frames, prompt, bundle) == pytest.approx(float(cos_ref.mean()), abs=1e-5)
    img = torch.nn.functional.normalize(out.image_embeds, dim=-1)
    assert clip_tc(frames, bundle) == pytest.approx(float((img[1:] * img[:-1]).sum(-1).mean()), abs=1e-5)
    feats = clip_image_features(frames, bundle)
    scaled = clip_sim_from_features(feats, feats[0], torchmetrics_scale=True)
    assert float(scaled[0]) == pytest.approx(100.0)
    assert float(scaled.min()) >= 0.0


def test_clip_folder_without_text_tower_is_refused(tmp_path, tiny_clip):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from vidcore.metrics.clip import clip_tc, load_clip

    vision_dir = tmp_path / "vision_only"
    cfg = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
        projection_dim=16,
    )
    CLIPVisionModelWithProjection(cfg).save_pretrained(vision_dir)
    with pytest.raises(ValueError, match="only a vision tower"):
        load_clip(vision_dir)
    bundle = load_clip(vision_dir, require_text=False)
    assert not bundle.has_text
    frames = torch.rand(3, 32, 32, 3, generator=torch.Generator().manual_seed(0))
    assert -1.0 <= clip_tc(frames, bundle) <= 1.0
    with pytest.raises(ValueError, match="no config.json"):
        load_clip(tmp_path)
    with pytest.raises(ValueError, match="not a folder"):
        load_clip(tmp_path / "clip_vision_h.safetensors")
    no_tok = tmp_path / "no_tokenizer"
    _tiny_clip_folder(no_tok, with_tokenizer=False)
    with pytest.raises(ValueError, match="tokenizer"):
        load_clip(no_tok)


# ------------------------------------------------------------------------------------------ score


def test_score_video_reports_all_metrics_and_curves(tiny_clip, tmp_path):
    from vidcore.metrics.plot import save_curves_png
    from vidcore.metrics.score import score_video

    folder, _ = tiny_clip
    video = _translating_video(5, 1)
    result = score_video(video, fps=8.0, prompt="a blue sky", clip=folder, reference=video.flip(2))
    assert result["num_frames"] == 5 and result["height"] == 32
    assert result["flicker"] == pytest.approx(flicker(video))
    # True motion is 1 px everywhere; the top-5 % mean also picks up the estimator's border errors.
    assert 0.95 < result["dynamic_degree"] < 1.4
    assert result["is_dynamic"] is True  # 4 pairs above 6 * 32 / 256 = 0.75 px >= round(4 * 5 / 16) = 1
    assert result["warp_error"] < 1e-3
    assert -1 <= result["clip_sim"] <= 1 and -1 <= result["clip_tc"] <= 1
    assert result["psnr"] == pytest.approx(psnr(video, video.flip(2)))
    curves = result["per_frame"]
    assert len(curves["flicker_mae"]) == 4 and len(curves["clip_sim"]) == 5 and len(curves["ssim"]) == 5
    png = save_curves_png(tmp_path / "curves.png", curves)
    data = png.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 500
    with pytest.raises(FileExistsError):
        save_curves_png(png, curves)


def test_is_dynamic_judges_frames_subsampled_to_about_8_fps():
    from vidcore.metrics.score import score_video
    from vidcore.metrics.temporal import flow_motion_scores, video_flows

    video = _translating_video(7, 1)
    at24 = score_video(video, fps=24.0)
    assert at24["is_dynamic_interval"] == 3  # VBench: round(24 / 8)
    sub = flow_motion_scores(video_flows(video[::3]))
    assert sub.numel() == 2 and float(sub.min()) > 2.5  # 3 px between the kept frames
    assert at24["is_dynamic"] == is_dynamic(sub, 32, 32, 24.0)
    assert score_video(video, fps=8.0)["is_dynamic_interval"] == 1


def test_warp_error_of_a_pair_without_valid_pixels_is_nan():
    from vidcore.metrics.temporal import warp_error_per_pair

    video = _translating_video(3, 1)
    away = torch.full((2, 2, 32, 32), 100.0)  # every match leaves the frame
    per_pair = warp_error_per_pair(video, away, -away)
    assert torch.isnan(per_pair).all()
    assert math.isnan(warp_error(video, away, -away))


def test_score_video_bad_input():
    from vidcore.metrics.score import score_video

    video = torch.rand(3, 16, 16, 3, generator=torch.Generator().manual_seed(1))
    with pytest.raises(ValueError, match="T=1"):
        score_video(video[:1])
    with pytest.raises(ValueError, match="without clip"):
        score_video(video, prompt="a cat")
    with pytest.raises(ValueError, match="must match frames"):
        score_video(video, reference=video[:, :8])


def test_score_cli_end_to_end(tmp_path, capsys):
    import json

    from vidcore.io.video import write_video
    from vidcore.metrics.cli import main

    video = _translating_video(6, 1)
    folder = tmp_path / "gen"
    folder.mkdir()
    write_video(folder / "a.mp4", video, fps=8)
    write_video(folder / "b.mp4", video.flip(2), fps=8)
    png, out = tmp_path / "curves.png", tmp_path / "score.json"
    args = [
        str(folder / "a.mp4"),
        "--reference",
        str(folder / "b.mp4"),
        "--plot",
        str(png),
        "--output",
        str(out),
    ]
    assert main(args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(out.read_text())
    assert printed["num_frames"] == 6 and printed["fps"] == pytest.approx(8.0)
    assert 0.9 < printed["flicker"] <= 1.0 and printed["psnr"] < 40
    assert png.read_bytes().startswith(b"\x89PNG")
    with pytest.raises(FileExistsError):
        main(args)  # never overwrites without --overwrite
    assert main([str(folder)]) == 0
    both = json.loads(capsys.readouterr().out)
    assert sorted(both["videos"]) == ["a.mp4", "b.mp4"] and "flicker" in both["mean"]
    with pytest.raises(ValueError, match="single video"):
        main([str(folder), "--plot", str(tmp_path / "x.png")])


def test_clip_folders_load_from_safetensors_only(tmp_path):
    from vidcore.metrics.clip import load_clip

    (tmp_path / "config.json").write_text('{"model_type": "clip"}')
    with pytest.raises(FileNotFoundError, match="is missing model.safetensors"):
        load_clip(tmp_path)
    (tmp_path / "pytorch_model.bin").write_bytes(b"not unpickled")
    with pytest.raises(ValueError, match="vidcore never unpickles weights"):
        load_clip(tmp_path)
