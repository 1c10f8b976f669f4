"""SmolVLM2 captioning, tiny random model: prompt format, sampling, preprocessing, batching, refine, CLI."""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

torch.set_num_threads(1)

sys.path.insert(0, str(Path(__file__).parent))
import _tiny_hf as tiny  # noqa: E402

from vidcore.caption import (  # noqa: E402
    VisionPreprocess,
    caption_to_prompt,
    load_captioner,
    number_to_words,
    preprocess_frames,
    sample_frame_indices,
    understand_improve_generate,
    video_prompt,
)
from vidcore.caption.cli import add_caption_arguments, run_caption  # noqa: E402
from vidcore.caption.refine import VLM_REWRITE_REQUEST  # noqa: E402


@pytest.fixture(scope="module")
def smol_dir(tmp_path_factory):
    return tiny.make_smolvlm_folder(tmp_path_factory.mktemp("smol") / "SmolVLM2-tiny")


@pytest.fixture(scope="module")
def captioner(smol_dir):
    return load_captioner(smol_dir)


def _frames(t: int, h: int = 40, w: int = 72, seed: int = 0) -> torch.Tensor:
    return torch.rand(t, h, w, 3, generator=torch.Generator().manual_seed(seed))


# ---- pure prompt pieces ----


def test_number_to_words():
    cases = {0: "zero", 4: "four", 13: "thirteen", 20: "twenty", 21: "twenty-one", 64: "sixty-four"}
    cases.update({100: "one hundred", 105: "one hundred and five", 342: "three hundred and forty-two"})
    assert {n: number_to_words(n) for n in cases} == cases
    with pytest.raises(ValueError, match="0..999"):
        number_to_words(1000)


def test_sample_indices_match_numpy_rule():
    rng = np.random.default_rng(0)
    for _ in range(200):
        total, vfps = int(rng.integers(1, 3000)), float(rng.choice([8, 12.5, 24, 29.97, 60]))
        fps, max_frames = float(rng.choice([0.5, 1, 2])), int(rng.integers(1, 65))
        duration = total / vfps
        n = max(1, min(int(round(fps * duration)), max_frames))
        start, end = 0, total - 1
        if duration - 2 > max_frames * fps:
            start, end = int(vfps), min(int(total - vfps), total - 1)
        if start >= end:
            start, end = 0, total - 1
        expected = np.unique(np.linspace(start, end, n, dtype=int)).tolist()
        assert sample_frame_indices(total, vfps, fps=fps, max_frames=max_frames) == expected
    assert sample_frame_indices(10, 24, num_frames=4) == [0, 3, 6, 9]
    assert sample_frame_indices(3, 24, num_frames=8) == [0, 1, 2]
    assert sample_frame_indices(1000, 10.0, fps=1.0, max_frames=8) == [10, 150, 290, 430, 570, 710, 850, 990]
    with pytest.raises(ValueError, match="at least one frame"):
        sample_frame_indices(0, 24)
    with pytest.raises(ValueError, match="video_fps"):
        sample_frame_indices(10, 0)


def test_video_prompt_exact_text():
    text = video_prompt("Describe this video.", [0.0, 1.5], 2.9, image_seq_len=2)
    img = "<fake_token_around_image><global-img><image><image><fake_token_around_image>"
    expected = (
        "<|im_start|>User: You are provided the following series of two frames "
        "from a 0:00:02 [H:MM:SS] video.\n"
        f"\nFrame from 00:00:{img}\nFrame from 00:01:{img}"
        "\n\nDescribe this video.<end_of_utterance>\nAssistant:"
    )
    assert text == expected
    # The reference example: 4 frames of the 256M model, 64 tokens per frame.
    big = video_prompt("Describe this video.", [0, 1, 2, 3], 4.0, image_seq_len=64)
    assert big.count("<image>") == 256 and "four frames from a 0:00:04" in big and "Frame from 00:03:" in big
    assert "Frame from 01:05:" in video_prompt("q", [65.9], 70, 1)


def test_preprocess_numbers():
    prep = VisionPreprocess(
        video_size=64, image_size=32, mean=(0.5,) * 3, std=(0.5,) * 3, fps=1, max_frames=8
    )
    flat = torch.full((2, 30, 50, 3), 0.75)
    out = preprocess_frames(flat, prep)
    assert out.shape == (2, 3, 32, 32)
    torch.testing.assert_close(out, torch.full_like(out, 0.5))  # (0.75 - 0.5) / 0.5; resizing keeps constants
    ramp = torch.linspace(0, 1, 50).view(1, 1, 50, 1).expand(1, 30, 50, 3).contiguous()
    row = preprocess_frames(ramp, prep)[0, 0, 16]
    assert float(row[0]) < -0.9 and float(row[-1]) > 0.9 and bool(torch.all(row[1:] >= row[:-1] - 1e-4))


# ---- tiny model end to end ----


def test_image_tokens_equal_frames_times_seq_len(captioner):
    assert captioner.image_seq_len == 4  # (64/16)^2 / 2^2
    batch = captioner.build_inputs([_frames(48)], video_fps=12.0)  # 4 s at 1 fps -> 4 frames
    ids = batch["input_ids"][0]
    assert int((ids == captioner.image_token_id).sum()) == 4 * 4
    assert batch["pixel_values"].shape == (1, 4, 3, 64, 64) and bool(batch["pixel_attention_mask"].all())
    text = captioner.tokenizer.decode(ids)
    assert text.startswith(
        "<|im_start|>User: You are provided the following series of four frames from a 0:00:04"
    )
    assert [text.count(f"Frame from 00:0{s}:") for s in range(4)] == [1, 1, 1, 1]
    batch8 = captioner.build_inputs([_frames(48)], video_fps=12.0, num_frames=7)
    assert int((batch8["input_ids"] == captioner.image_token_id).sum()) == 7 * 4


def test_caption_deterministic_and_batched(captioner):
    a, b = _frames(48, seed=1), _frames(20, seed=2)
    solo_a = captioner.caption(a, video_fps=12.0, max_new_tokens=6)
    solo_b = captioner.caption(b, video_fps=10.0, max_new_tokens=6)
    assert isinstance(solo_a, str) and solo_a == captioner.caption(a, video_fps=12.0, max_new_tokens=6)
    assert captioner.caption_batch([a, b], video_fps=[12.0, 10.0], max_new_tokens=6) == [solo_a, solo_b]
    batch = captioner.build_inputs([a, b], video_fps=[12.0, 10.0])
    assert batch["pixel_values"].shape[1] == 4 and batch["pixel_attention_mask"][1].sum(
        dim=(1, 2)
    ).tolist() == [
        64 * 64,
        64 * 64,
        0,
        0,
    ]  # b: 2 s -> 2 frames, padded to 4 with all-zero frames the model drops
    assert batch["attention_mask"][1, 0] == 0  # left padding
    sampled = [
        captioner.caption(a, video_fps=12.0, max_new_tokens=6, temperature=1.0, seed=s) for s in (3, 3, 4)
    ]
    assert sampled[0] == sampled[1]
    n_new = len(captioner.tokenizer(solo_a, add_special_tokens=False)["input_ids"])
    assert n_new <= 6 + 2  # decoding may split differently, but the caption is bounded by max_new_tokens


def test_caption_from_file(captioner, tmp_path):
    from vidcore.io.video import write_video

    path = write_video(tmp_path / "clip.mp4", _frames(16, 32, 32), fps=8)
    batch = captioner.build_inputs([path])
    text = captioner.tokenizer.decode(batch["input_ids"][0])
    assert (
        "two frames from a 0:00:02" in text
        and int((batch["input_ids"] == captioner.image_token_id).sum()) == 8
    )
    assert isinstance(captioner.caption(path, max_new_tokens=3), str)
    with pytest.raises(ValueError, match="read from the file"):
        captioner.caption(path, video_fps=8)


def test_bad_video_inputs(captioner):
    with pytest.raises(ValueError, match="zero frames"):
        captioner.caption(torch.zeros(0, 8, 8, 3), video_fps=24)
    with pytest.raises(ValueError, match="video_fps is needed"):
        captioner.caption(_frames(4))
    with pytest.raises(ValueError, match=r"values span .*expected 0..1"):
        captioner.caption(_frames(4) * 255, video_fps=24)
    with pytest.raises(ValueError, match=r"shape \(4, 3, 8, 8\)"):
        captioner.caption(torch.rand(4, 3, 8, 8), video_fps=24)
    with pytest.raises(TypeError, match="got list"):
        captioner.caption([1, 2], video_fps=24)
    with pytest.raises(ValueError, match="max_new_tokens=0"):
        captioner.caption(_frames(4), video_fps=24, max_new_tokens=0)
    with pytest.raises(ValueError, match="2 entries for 1 videos"):
        captioner.caption_batch([_frames(4)], video_fps=[24, 24])


def test_release(smol_dir):
    cap = load_captioner(smol_dir)
    cap.release()
    assert cap.model is None and "released" in repr(cap)
    with pytest.raises(RuntimeError, match="released"):
        cap.caption(_frames(4), video_fps=24)


def test_folder_errors(smol_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(smol_dir, broken)
    (broken / "tokenizer.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing tokenizer files \(tokenizer.json\)"):
        load_captioner(broken)
    bert = tiny.make_bert_folder(tmp_path / "bert")
    with pytest.raises(
        ValueError, match=r"holds a 'bert' model .* reads model_type \['smolvlm', 'idefics3'\]"
    ):
        load_captioner(bert)
    wrong = tmp_path / "wrong"
    shutil.copytree(smol_dir, wrong)
    (wrong / "processor_config.json").write_text(json.dumps({"image_seq_len": 64}))
    with pytest.raises(ValueError, match="image_seq_len=64 but the model config gives"):
        load_captioner(wrong)


# ---- caption -> prompt and the loop ----


def test_caption_to_prompt():
    assert caption_to_prompt("The video shows a red circle moving right.", "cinematic", ["4k"]) == (
        "a red circle moving right, cinematic, 4k"
    )
    assert caption_to_prompt("In this video, a cat  walks.") == "a cat walks"
    assert caption_to_prompt("A video game screen.") == "A video game screen"
    with pytest.raises(TypeError, match=r"extra_terms\[1\] is int"):
        caption_to_prompt("a cat", extra_terms=["ok", 5])
    with pytest.raises(ValueError, match="caption=''"):
        caption_to_prompt("")
    with pytest.raises(ValueError, match="no content"):
        caption_to_prompt("The video shows .")


def test_understand_improve_generate(captioner):
    calls = []

    def fake_generate(
        prompt,
        negative_prompt="",
        num_frames=None,
        height=None,
        width=None,
        steps=None,
        guidance=None,
        seed=0,
    ):
        calls.append(
            dict(
                prompt=prompt,
                negative_prompt=negative_prompt,
                num_frames=num_frames,
                seed=seed,
                height=height,
                width=width,
                steps=steps,
                guidance=guidance,
            )
        )
        return torch.full((num_frames, height, width, 3), 0.5)

    video = _frames(24, seed=5)
    result = understand_improve_generate(
        video,
        captioner,
        fake_generate,
        style="cinematic",
        extra_terms=["smooth"],
        video_fps=12.0,
        max_new_tokens=6,
        num_frames=5,
        height=16,
        width=24,
        steps=2,
        guidance=3.0,
        seed=7,
    )
    expected_caption = captioner.caption(video, video_fps=12.0, max_new_tokens=6, seed=7)
    assert result.caption == expected_caption
    assert result.prompt == caption_to_prompt(expected_caption, "cinematic", ["smooth"])
    assert calls == [
        dict(
            prompt=result.prompt,
            negative_prompt="",
            num_frames=5,
            seed=7,
            height=16,
            width=24,
            steps=2,
            guidance=3.0,
        )
    ]
    assert result.frames.shape == (5, 16, 24, 3) and float(result.frames.mean()) == 0.5
    vlm = understand_improve_generate(
        video,
        captioner,
        fake_generate,
        rewrite="vlm",
        video_fps=12.0,
        max_new_tokens=6,
        num_frames=2,
        height=8,
        width=8,
    )
    assert vlm.prompt == caption_to_prompt(
        captioner.ask(
            VLM_REWRITE_REQUEST.format(caption=" ".join(vlm.caption.split()), style=""),
            max_new_tokens=77,
        )
    )
    with pytest.raises(TypeError, match=r"generate returned \(2, 3\)"):
        understand_improve_generate(
            video, captioner, lambda p, **k: torch.zeros(2, 3), video_fps=12.0, max_new_tokens=4
        )
    with pytest.raises(ValueError, match="rewrite='llm'"):
        understand_improve_generate(video, captioner, fake_generate, rewrite="llm", video_fps=12.0)


def test_cli(smol_dir, tmp_path):
    from vidcore.io.video import write_video

    path = write_video(tmp_path / "clip.mp4", _frames(16, 32, 32), fps=8)
    parser = add_caption_arguments(argparse.ArgumentParser())
    out = io.StringIO()
    args = parser.parse_args([str(path), "--model", str(smol_dir), "--max-new-tokens", "4", "--json"])
    assert run_caption(args, out) == 0
    record = json.loads(out.getvalue())
    assert record["video"] == str(path) and isinstance(record["caption"], str)
    args = parser.parse_args([str(path), "--model", str(smol_dir), "--style", "noir"])
    with pytest.raises(ValueError, match="add --as-prompt"):
        run_caption(args, io.StringIO())


def test_components_are_the_torch_modules(smol_dir):
    cap = load_captioner(smol_dir)
    parts = cap.components()
    assert list(parts) == ["captioner"] and parts["captioner"] is cap.model
    assert isinstance(parts["captioner"], torch.nn.Module)
    cap.release()
    assert cap.components() == {}
