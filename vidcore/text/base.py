"""The one text-encoder interface: prompts -> (embeddings [B, L, D], bool mask [B, L]), with a cache."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections import OrderedDict
from typing import Any

import torch
from torch import Tensor

from vidcore.devices import DTYPES, resolve_device, resolve_dtype

logger = logging.getLogger(__name__)

PADDINGS = ("max_length", "longest")
# DTYPES, resolve_device and resolve_dtype live in vidcore.devices; they stay importable from here.
__all__ = [
    "DTYPES",
    "PADDINGS",
    "TextEncoder",
    "check_prompts",
    "l2_normalize",
    "masked_mean",
    "resolve_device",
    "resolve_dtype",
]


def check_prompts(prompts: Any) -> list[str]:
    """Validate a prompt list: a non-empty list/tuple of str (the empty string is allowed)."""
    if isinstance(prompts, str):
        raise TypeError(f"prompts must be a list of strings, got the str {prompts[:40]!r}; wrap it in a list")
    if not isinstance(prompts, (list, tuple)):
        raise TypeError(f"prompts must be a list of strings, got {type(prompts).__name__}")
    if len(prompts) == 0:
        raise ValueError('prompts=[] is empty; pass at least one prompt ("" is the unconditional prompt)')
    for i, p in enumerate(prompts):
        if not isinstance(p, str):
            raise TypeError(f"prompts[{i}] is {type(p).__name__} ({p!r:.40}); every prompt must be a str")
    return list(prompts)


class TextEncoder(ABC):
    """Prompts -> token embeddings [B, L, D] + bool mask [B, L] (True = real token), and a pooled vector.

    Padding rules (per family, chosen by the subclass defaults, overridable):
      * ``padding="max_length"``: every batch is L = ``max_length`` long. Rows at padded positions hold
        whatever the encoder produced there (with ``encoder_mask=False`` the encoder saw the pads, as
        LTX-Video / CogVideoX run T5 and Stable Diffusion runs CLIP); the mask marks them False.
      * ``padding="longest"``: L = the longest prompt of the batch; padded rows are zeros. Needs
        ``encoder_mask=True`` so a prompt's embedding does not depend on its batch.
    Prompts longer than ``max_length`` tokens (special tokens included) are truncated, with one
    ``logging.warning`` per :meth:`encode` call naming the limit. Results are cached per prompt (LRU of
    ``cache_size`` prompts), so a repeated prompt does not run the model again.
    """

    family: str = ""
    default_max_length: int = 77
    default_padding: str = "max_length"
    default_encoder_mask: bool = False

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        dim: int,
        max_length: int | None = None,
        padding: str | None = None,
        encoder_mask: bool | None = None,
        position_limit: int | None = None,
        cache_size: int = 64,
        source: str = "",
    ) -> None:
        max_length = self.default_max_length if max_length is None else max_length
        padding = self.default_padding if padding is None else padding
        encoder_mask = self.default_encoder_mask if encoder_mask is None else encoder_mask
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
            raise ValueError(f"max_length={max_length!r} must be an int >= 2")
        if position_limit is not None and max_length > position_limit:
            raise ValueError(
                f"max_length={max_length} exceeds this {self.family} model's {position_limit} positions"
            )
        if padding not in PADDINGS:
            raise ValueError(f"padding={padding!r} must be one of {list(PADDINGS)}")
        if padding == "longest" and not encoder_mask:
            raise ValueError(
                "padding='longest' needs encoder_mask=True: without the mask the pad tokens change the real "
                "tokens' embeddings, so a prompt's result would depend on the rest of its batch"
            )
        if isinstance(cache_size, bool) or not isinstance(cache_size, int) or cache_size < 0:
            raise ValueError(f"cache_size={cache_size!r} must be an int >= 0 (0 disables the cache)")
        if getattr(tokenizer, "pad_token", None) is None:
            raise ValueError(f"the tokenizer of {source!r} has no pad token; batches need one")
        # Rows are stored as "real tokens first": keep padding on the right whatever the folder says.
        tokenizer.padding_side = "right"
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.dim = int(dim)
        self.max_length = max_length
        self.padding = padding
        self.encoder_mask = bool(encoder_mask)
        self.cache_size = cache_size
        self.source = source
        self.model_calls = 0  # forward passes actually run (the cache skips them)
        self._cache: OrderedDict[str, tuple[Tensor, int, Tensor]] = OrderedDict()

    def components(self) -> dict[str, torch.nn.Module]:
        """The torch modules this handle runs (what a host such as ComfyUI moves between devices
        and frees)."""
        return {"text_encoder": self.model}

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(source={self.source!r}, dim={self.dim}, max_length={self.max_length}, "
            f"padding={self.padding!r}, encoder_mask={self.encoder_mask}, dtype={self.dtype}, "
            f"device={self.device})"
        )

    @abstractmethod
    def _run(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        """Run the model: return (last hidden states [B, L, D], pooled [B, D'] before normalisation)."""

    def clear_cache(self) -> None:
        self._cache.clear()

    def to(
        self, device: str | torch.device | None = None, dtype: str | torch.dtype | None = None
    ) -> TextEncoder:
        """Move/cast the model in place; cached rows are dropped (they live on the old device/dtype)."""
        kwargs: dict[str, Any] = {}
        if device is not None:
            kwargs["device"] = resolve_device(device)
        if dtype is not None:
            kwargs["dtype"] = resolve_dtype(dtype)
        self.model.to(**kwargs)
        self.clear_cache()
        return self

    def _encode_new(self, prompts: list[str]) -> None:
        """Tokenize and encode prompts missing from the cache, then store their rows."""
        tok = self.tokenizer
        # One token past the limit tells which prompts were truncated, without tokenizing whole essays.
        probe = tok(prompts, truncation=True, max_length=self.max_length + 1)["input_ids"]
        cut = [i for i, ids in enumerate(probe) if len(ids) > self.max_length]
        if cut:
            logger.warning(
                "%d prompt(s) longer than this %s encoder's max_length=%d tokens were truncated "
                "(batch indices %s)",
                len(cut),
                self.family,
                self.max_length,
                cut[:10],
            )
        batch = tok(
            prompts,
            padding="max_length" if self.padding == "max_length" else "longest",
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        ids = batch["input_ids"].to(self.device)
        mask = batch["attention_mask"].to(self.device).bool()
        with torch.no_grad():
            hidden, pooled = self._run(ids, mask)
            pooled = l2_normalize(pooled)
        self.model_calls += 1
        for i, p in enumerate(prompts):
            n = int(mask[i].sum())
            # "longest" keeps only the real tokens (pads are re-added as zeros per batch);
            # "max_length" keeps the full row, pad positions included, as the encoder produced them.
            row = hidden[i, :n] if self.padding == "longest" else hidden[i]
            self._cache[p] = (row.clone(), n, pooled[i].clone())
            self._cache.move_to_end(p)

    def _rows(self, prompts: Any) -> list[tuple[Tensor, int, Tensor]]:
        prompts = check_prompts(prompts)
        unique_missing = list(dict.fromkeys(p for p in prompts if p not in self._cache))
        if unique_missing:
            self._encode_new(unique_missing)
        rows = []
        for p in prompts:
            rows.append(self._cache[p])
            self._cache.move_to_end(p)
        # Trim only after the batch is assembled, so a batch larger than the cache still works.
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return rows

    def encode(self, prompts: list[str]) -> tuple[Tensor, Tensor]:
        """Return (embeddings [B, L, D] in the model dtype, mask [B, L] bool, True = real token)."""
        rows = self._rows(prompts)
        length = self.max_length if self.padding == "max_length" else max(n for _, n, _ in rows)
        out = torch.zeros(len(rows), length, self.dim, dtype=rows[0][0].dtype, device=rows[0][0].device)
        mask = torch.zeros(len(rows), length, dtype=torch.bool, device=out.device)
        for i, (row, n, _) in enumerate(rows):
            out[i, : row.shape[0]] = row
            mask[i, :n] = True
        return out, mask

    __call__ = encode

    def encode_pooled(self, prompts: list[str]) -> Tensor:
        """Return one L2-normalised sentence vector per prompt [B, D'] (the family's pooling)."""
        rows = self._rows(prompts)
        return torch.stack([pooled for _, _, pooled in rows])


def masked_mean(hidden: Tensor, mask: Tensor) -> Tensor:
    """Mean of hidden [B, L, D] over the True positions of mask [B, L] (sentence-transformers pooling)."""
    weights = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


def l2_normalize(x: Tensor, eps: float = 1e-12) -> Tensor:
    """x / max(||x||, eps) along the last axis, computed in float32 and cast back."""
    x32 = x.float()
    return (x32 / x32.norm(dim=-1, keepdim=True).clamp(min=eps)).to(x.dtype)
