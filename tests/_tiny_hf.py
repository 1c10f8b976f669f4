"""Helpers that build tiny random Hugging Face models and tokenizers in folders, fully offline.

Tokenizers are trained in memory with the ``tokenizers`` library on a small fixed corpus; models are built
from tiny configs with seeded weights and saved with ``save_pretrained`` (safetensors). Other tests may
reuse these folders (nodes, workflows, pipeline).
"""

from __future__ import annotations

from pathlib import Path

import torch

CORPUS = [
    "a red circle moving right",
    "a blue square moving left on a black background",
    "a green triangle bouncing up and down",
    "the camera pans slowly across a sunny beach with waves",
    "a cat walks through a garden full of flowers at sunset",
    "cinematic shot of a city street at night with neon lights",
    "describe this video in one sentence",
    "the video shows a small object that moves across the frame",
    "rewrite the caption as a short prompt for a video generator",
    "you are provided the following series of frames from a video",
    "zero one two three four five six seven eight nine ten",
] * 4

SMOLVLM_SPECIAL = [
    "<|endoftext|>",
    "<|im_start|>",
    "<end_of_utterance>",
    "<image>",
    "<fake_token_around_image>",
    "<global-img>",
    "<video>",
    "<row_1_col_1>",
]


def _fast(tok, **special):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=tok, **special)


def train_bert_tokenizer(vocab_size: int = 200):
    """WordPiece tokenizer with ``[CLS] ... [SEP]`` post-processing (BERT layout)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(CORPUS, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=special))
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    tok.decoder = decoders.WordPiece()
    return _fast(
        tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]"
    )


def train_t5_tokenizer(vocab_size: int = 200):
    """Unigram tokenizer with ``<pad>=0, </s>=1, <unk>=2`` and ``$A </s>`` post-processing (T5 layout)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    special = ["<pad>", "</s>", "<unk>"]
    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(
        CORPUS, trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=special, unk_token="<unk>")
    )
    eos_id = tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", eos_id)]
    )
    return _fast(tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def _train_bpe(special: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(CORPUS, trainer)
    return tok


def train_clip_tokenizer(vocab_size: int = 300):
    """Byte-level BPE with ``<|startoftext|> ... <|endoftext|>`` post-processing (CLIP layout)."""
    from tokenizers import processors

    tok = _train_bpe(["<|startoftext|>", "<|endoftext|>"], vocab_size)
    bos, eos = tok.token_to_id("<|startoftext|>"), tok.token_to_id("<|endoftext|>")
    tok.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A <|endoftext|>",
        pair="<|startoftext|> $A <|endoftext|> $B <|endoftext|>",
        special_tokens=[("<|startoftext|>", bos), ("<|endoftext|>", eos)],
    )
    return _fast(tok, bos_token="<|startoftext|>", eos_token="<|endoftext|>", pad_token="<|endoftext|>")


def train_smolvlm_tokenizer(vocab_size: int = 400):
    """Byte-level BPE with the special tokens of the SmolVLM2 hub tokenizers."""
    tok = _train_bpe(SMOLVLM_SPECIAL, vocab_size)
    return _fast(
        tok,
        bos_token="<|im_start|>",
        eos_token="<end_of_utterance>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        extra_special_tokens={
            "image_token": "<image>",
            "fake_image_token": "<fake_token_around_image>",
            "global_image_token": "<global-img>",
            "video_token": "<video>",
            "end_of_utterance_token": "<end_of_utterance>",
        },
    )


def _seeded_save(model, folder: Path, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    model.save_pretrained(folder, safe_serialization=True)


def make_bert_folder(folder: str | Path, seed: int = 0) -> Path:
    """Tiny BertModel (2 layers, hidden 32) + WordPiece tokenizer, saved as a local folder."""
    from transformers import BertConfig, BertModel

    folder = Path(folder)
    tok = train_bert_tokenizer()
    cfg = BertConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        pad_token_id=tok.pad_token_id,
    )
    _seeded_save(BertModel(cfg, add_pooling_layer=False).eval(), folder, seed)
    tok.save_pretrained(folder)
    return folder


def make_t5_folder(folder: str | Path, seed: int = 0, umt5: bool = False) -> Path:
    """Tiny T5 v1.1-style encoder (gated-gelu, 2 layers, d_model 32) + Unigram tokenizer."""
    from transformers import T5Config, T5EncoderModel, UMT5Config, UMT5EncoderModel

    folder = Path(folder)
    tok = train_t5_tokenizer()
    config_cls, model_cls = (UMT5Config, UMT5EncoderModel) if umt5 else (T5Config, T5EncoderModel)
    cfg = config_cls(
        vocab_size=len(tok),
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        feed_forward_proj="gated-gelu",
        is_encoder_decoder=False,
        tie_word_embeddings=False,
        pad_token_id=0,
        eos_token_id=1,
    )
    _seeded_save(model_cls(cfg).eval(), folder, seed)
    tok.save_pretrained(folder)
    return folder


def make_t5_single_file(
    path: str | Path,
    t5_folder: str | Path,
    prefix: str = "",
    drop_embed: bool = True,
    dtype: torch.dtype = torch.float16,
) -> Path:
    """Write a ComfyUI-style single-file T5 encoder (``shared.weight`` + ``encoder.*``) from a T5 folder."""
    from safetensors.torch import load_file, save_file

    state = load_file(str(Path(t5_folder) / "model.safetensors"))
    if drop_embed:  # ComfyUI's t5xxl files keep only `shared.weight` for the tied input embedding
        state.pop("encoder.embed_tokens.weight", None)
    save_file({prefix + k: v.to(dtype).contiguous() for k, v in state.items()}, str(path))
    return Path(path)


def make_clip_text_folder(folder: str | Path, seed: int = 0) -> Path:
    """Tiny CLIPTextModelWithProjection (2 layers, hidden 32, max 16 positions) + byte-level BPE tokenizer."""
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    folder = Path(folder)
    tok = train_clip_tokenizer()
    cfg = CLIPTextConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=16,
        projection_dim=24,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    _seeded_save(CLIPTextModelWithProjection(cfg).eval(), folder, seed)
    tok.save_pretrained(folder)
    return folder


def make_clip_full_folder(folder: str | Path, seed: int = 0) -> Path:
    """Tiny full CLIPModel folder (model_type "clip": text + vision towers, projection_dim 24)."""
    from transformers import CLIPConfig, CLIPModel

    folder = Path(folder)
    tok = train_clip_tokenizer()
    text = {
        "vocab_size": len(tok),
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "max_position_embeddings": 16,
        "bos_token_id": tok.bos_token_id,
        "eos_token_id": tok.eos_token_id,
        "pad_token_id": tok.pad_token_id,
    }
    vision = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "image_size": 32,
        "patch_size": 16,
    }
    cfg = CLIPConfig(text_config=text, vision_config=vision, projection_dim=24)
    _seeded_save(CLIPModel(cfg).eval(), folder, seed)
    tok.save_pretrained(folder)
    return folder


def make_smolvlm_folder(folder: str | Path, seed: int = 0) -> Path:
    """Tiny SmolVLM (Idefics3 family): SigLIP 64px/16 + llama text, scale 2 -> 4 tokens per frame."""
    import json

    from transformers import SmolVLMConfig, SmolVLMForConditionalGeneration

    folder = Path(folder)
    tok = train_smolvlm_tokenizer()
    cfg = SmolVLMConfig(
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 64,
            "patch_size": 16,
        },
        text_config={
            "model_type": "llama",
            "vocab_size": len(tok),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 4096,
            "rms_norm_eps": 1e-5,
            "pad_token_id": tok.pad_token_id,
            "bos_token_id": tok.bos_token_id,
            "eos_token_id": tok.eos_token_id,
        },
        scale_factor=2,
        image_token_id=tok.convert_tokens_to_ids("<image>"),
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(seed)
    model = SmolVLMForConditionalGeneration(cfg).eval()
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.bos_token_id = tok.bos_token_id
    model.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    # The hub folders (e.g. HuggingFaceTB/SmolVLM2-256M-Video-Instruct) carry these two small files; write
    # tiny equivalents.
    (folder / "processor_config.json").write_text(
        json.dumps({"image_seq_len": 4, "processor_class": "SmolVLMProcessor"})
    )
    (folder / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "do_convert_rgb": True,
                "do_image_splitting": False,
                "do_normalize": True,
                "do_pad": True,
                "do_rescale": True,
                "do_resize": True,
                "image_mean": [0.5, 0.5, 0.5],
                "image_std": [0.5, 0.5, 0.5],
                "max_image_size": {"longest_edge": 64},
                "resample": 1,
                "rescale_factor": 1 / 255,
                "size": {"longest_edge": 64},
                "video_sampling": {"fps": 1, "max_frames": 8, "video_size": {"longest_edge": 64}},
                "image_processor_type": "SmolVLMImageProcessor",
                "processor_class": "SmolVLMProcessor",
            }
        )
    )
    return folder
