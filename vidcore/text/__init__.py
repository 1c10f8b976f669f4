"""Text encoders: one interface, ``encode(prompts) -> (embeddings [B, L, D], mask [B, L])``, for T5/CLIP/BERT.

transformers is imported lazily, inside the loaders.
"""

from vidcore.text.base import (
    TextEncoder,
    check_prompts,
    l2_normalize,
    masked_mean,
    resolve_device,
    resolve_dtype,
)
from vidcore.text.encoders import BertTextEncoder, CLIPTextEncoder, T5TextEncoder
from vidcore.text.files import TOKENIZER_FILES, has_tokenizer, tokenizer_options
from vidcore.text.loading import BUILTINS, MODEL_TYPES, builtin_folder, inspect_folder, load_text_encoder
from vidcore.text.single_file import detect_t5_checkpoint

__all__ = [
    "BUILTINS",
    "MODEL_TYPES",
    "TOKENIZER_FILES",
    "BertTextEncoder",
    "CLIPTextEncoder",
    "T5TextEncoder",
    "TextEncoder",
    "builtin_folder",
    "check_prompts",
    "detect_t5_checkpoint",
    "has_tokenizer",
    "inspect_folder",
    "l2_normalize",
    "load_text_encoder",
    "masked_mean",
    "resolve_device",
    "resolve_dtype",
    "tokenizer_options",
]
