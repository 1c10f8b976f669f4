"""T5, CLIP-text and BERT-class implementations of :class:`vidcore.text.base.TextEncoder`.

Defaults (each overridable through ``load_text_encoder``):

* T5 / UMT5: max_length 128 (LTX-Video; CogVideoX uses 226), padding "max_length", encoder_mask False
  (the encoder sees the pads, as diffusers' LTXPipeline runs it: ``text_encoder(input_ids)`` with no
  mask; the mask is returned for the DiT's cross-attention). Pooled: masked mean.
  Empty prompt: ``</s>`` (1 token).
* CLIP text: max_length = the model's positions (77), padding "max_length", encoder_mask False (CLIP's
  causal mask keeps pads from reaching real tokens). Pooled: the EOS state, projected when the weights
  have ``text_projection``. Empty prompt: ``<|startoftext|><|endoftext|>`` (2 tokens).
* BERT (the built-in MiniLM): max_length = sentence-transformers ``max_seq_length`` (256) else the
  positions, padding "longest", encoder_mask True. Pooled: masked mean (= sentence-transformers).
  Empty prompt: ``[CLS][SEP]`` (2 tokens).

Pooled vectors are L2-normalised. The empty prompt is the classifier-free-guidance unconditional
branch; it is encoded like any other prompt (its special tokens only), never replaced by zeros.
"""

from __future__ import annotations

from torch import Tensor

from vidcore.text.base import TextEncoder, masked_mean


class T5TextEncoder(TextEncoder):
    """T5 v1.1 / XXL (and UMT5) encoder stack; pooled = masked mean of the last hidden state."""

    family = "t5"
    default_max_length = 128
    default_padding = "max_length"
    default_encoder_mask = False

    def _run(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        mask = attention_mask.long() if self.encoder_mask else None
        hidden = self.model(input_ids=input_ids, attention_mask=mask).last_hidden_state
        return hidden, masked_mean(hidden, attention_mask)


class CLIPTextEncoder(TextEncoder):
    """CLIP text transformer (Radford et al. 2021); pooled = the EOS token state (projected if available)."""

    family = "clip"
    default_max_length = 77
    default_padding = "max_length"
    default_encoder_mask = False

    def _run(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        mask = attention_mask.long() if self.encoder_mask else None
        out = self.model(input_ids=input_ids, attention_mask=mask)
        pooled = out.text_embeds if getattr(out, "text_embeds", None) is not None else out.pooler_output
        return out.last_hidden_state, pooled


class BertTextEncoder(TextEncoder):
    """BERT-class encoder (the built-in all-MiniLM-L6-v2); pooled = masked mean (Reimers & Gurevych 2019)."""

    family = "bert"
    default_max_length = 256
    default_padding = "longest"
    default_encoder_mask = True

    def _run(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        mask = attention_mask.long() if self.encoder_mask else None
        hidden = self.model(input_ids=input_ids, attention_mask=mask).last_hidden_state
        return hidden, masked_mean(hidden, attention_mask)
