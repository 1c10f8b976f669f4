"""``vidcore eval text-probe``: how far the text encoder alone carries held-out words to their labels."""

import json
import sys

import pytest
import torch

from vidcore.eval.text_probe import probe_text_encoder, word_vectors
from vidcore.text import load_text_encoder
from vidcore.train.captions import HELDOUT_SHAPE_WORDS

from ._cli import run
from ._tiny_hf import make_bert_folder

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def minilm():
    return load_text_encoder("minilm")


def test_word_vectors_average_exactly_the_words_tokens(minilm):
    contexts = ("a {} circle moving right", "the {} square falls")
    got = word_vectors(minilm, ["red", "three-sided shape"], contexts)
    assert got.shape == (2, minilm.dim)
    expected = []
    for word in ("red", "three-sided shape"):
        rows = []
        for c in contexts:
            emb, _ = minilm.encode([c.format(word)])
            # [CLS] + the context's tokens before the word; the word's own pieces follow.
            before = len(minilm.tokenizer(c.split("{}")[0].strip(), add_special_tokens=False)["input_ids"])
            n = len(minilm.tokenizer(word, add_special_tokens=False)["input_ids"])
            rows.append(emb[0, 1 + before : 1 + before + n].mean(0))
        expected.append(torch.nn.functional.normalize(torch.stack(rows).mean(0), dim=0))
    assert torch.allclose(got, torch.stack(expected), atol=1e-5)


def test_minilm_carries_the_heldout_shape_words(minilm):
    report = probe_text_encoder(minilm, attributes=("shape",))
    shape = report["shape"]
    held = {w for ws in HELDOUT_SHAPE_WORDS.values() for w in ws}
    assert set(shape["heldout_guesses"]) == held and shape["heldout_words"] == len(held)
    # Measured 6/6 (orb, sphere -> circle; tile, cube -> square; pyramid, three-sided shape -> triangle).
    assert shape["heldout_carried"] >= 5 / 6
    assert shape["train_leave_one_out"] > 0.6  # chance is 1/3
    with pytest.raises(ValueError, match="must be a non-empty subset of \\['colour', 'shape', 'motion'\\]"):
        probe_text_encoder(minilm, attributes=("size",))


def test_text_probe_command_on_a_local_encoder_folder(tmp_path):
    folder = make_bert_folder(tmp_path / "bert")
    res = run([sys.executable, "-m", "vidcore.cli", "eval", "text-probe", "--text-encoder", str(folder)])
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert set(report) == {"colour", "shape", "motion"}
    for part in report.values():
        assert 0 <= part["heldout_carried"] <= 1 and part["heldout_words"] == len(part["heldout_guesses"])
