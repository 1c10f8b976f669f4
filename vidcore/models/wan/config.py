"""Frozen config of the Wan 2.1 / 2.2 transformer (field names follow Wan-Video/Wan2.1 wan/modules/model.py,
with ``from_diffusers`` / ``to_diffusers`` for diffusers' WanTransformer3DModel config.json).

Wan 2.2 A14B checkpoints are two experts of the 2.1 14B architecture (a high-noise one for
t >= boundary·1000 and a low-noise one below; Wan-Video/Wan2.2 wan/text2video.py). Each expert is one
WanTransformer loaded on its own; choosing between them per step is sampler/pipeline logic and lives nowhere
in this package.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vidcore.config import ConfigMixin, check_choice, check_positive, check_positive_int

DIFFUSERS_CLASS = "WanTransformer3DModel"
# diffusers' only qk_norm value; its attention builds the RMSNorms whatever the field says.
DIFFUSERS_QK_NORM = "rms_norm_across_heads"
VARIANTS = ("t2v", "i2v", "flf2v", "ti2v")


@dataclass(frozen=True)
class WanTransformerConfig(ConfigMixin):
    """WanModel hyper-parameters (defaults: the 14B text-to-video model of Wan 2.1).

    ``image_dim``: width of the CLIP image tokens fed through ``img_emb`` (1280 for I2V-14B / FLF2V; None
    when the model takes no CLIP features). ``has_image_kv``: cross-attention has the separate image
    key/value branch (k_img / v_img) of Wan 2.1 I2V; without it image tokens simply precede the text.
    ``image_pos_len``: FLF2V's learned position table over first+last frame tokens (2·257 = 514).
    Channels ``in_channels - out_channels`` (20 for I2V: mask 4 + image latent 16) are the conditioning
    ``y`` concatenated to the noisy latent by the model.
    """

    dim: int = 5120
    ffn_dim: int = 13824
    num_heads: int = 40
    num_layers: int = 40
    in_channels: int = 16
    out_channels: int = 16
    text_dim: int = 4096
    freq_dim: int = 256
    patch: tuple[int, int, int] = (1, 2, 2)
    eps: float = 1e-6
    cross_attn_norm: bool = True
    image_dim: int | None = None
    has_image_kv: bool = False
    image_pos_len: int | None = None
    text_len: int = 512
    rope_max_seq_len: int = 1024

    def __post_init__(self) -> None:
        for name in (
            "dim",
            "ffn_dim",
            "num_heads",
            "num_layers",
            "in_channels",
            "out_channels",
            "text_dim",
            "freq_dim",
            "text_len",
            "rope_max_seq_len",
        ):
            check_positive_int(name, getattr(self, name))
        check_positive("eps", self.eps)
        if self.freq_dim % 2:
            raise ValueError(f"freq_dim={self.freq_dim} must be even (cos and sin halves)")
        if len(self.patch) != 3:
            raise ValueError(f"patch={self.patch!r} must be a (t, h, w) triple, e.g. (1, 2, 2)")
        for p in self.patch:
            check_positive_int("patch entry", p)
        if self.dim % self.num_heads:
            raise ValueError(
                f"dim={self.dim} is not divisible by num_heads={self.num_heads} "
                "(released Wan models use 128-wide heads: num_heads = dim // 128)"
            )
        hd = self.head_dim
        if hd % 2 or hd < 6:
            raise ValueError(
                f"head_dim = dim / num_heads = {hd} must be even and >= 6 (3-axis RoPE over rotated pairs)"
            )
        if self.image_dim is not None:
            check_positive_int("image_dim", self.image_dim)
        if self.image_pos_len is not None:
            check_positive_int("image_pos_len", self.image_pos_len)
        if self.image_dim is None and (self.has_image_kv or self.image_pos_len is not None):
            raise ValueError(
                f"has_image_kv={self.has_image_kv} / image_pos_len={self.image_pos_len} need image_dim "
                "(the width of the CLIP image tokens), got image_dim=None"
            )

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @property
    def rope_dims(self) -> tuple[int, int, int]:
        """Channels of each head rotated by the (t, h, w) positions: h = w = 2·(d // 6), t takes the rest
        (44/42/42 for 128; Wan-Video/Wan2.1 wan/modules/model.py splits the d/2 complex pairs the same)."""
        hw = 2 * (self.head_dim // 6)
        return self.head_dim - 2 * hw, hw, hw

    @property
    def cond_channels(self) -> int:
        """Channels of the conditioning ``y`` the model concatenates to the latent (0: none)."""
        return max(0, self.in_channels - self.out_channels)

    @property
    def variant(self) -> str:
        """ "flf2v" (image position table), "i2v" (CLIP tokens, or a y input as 2.2 I2V-A14B), "ti2v" (48
        latent channels of the Wan 2.2 VAE: TI2V-5B, image given through per-token timesteps) or "t2v"."""
        if self.image_pos_len is not None:
            return "flf2v"
        if self.image_dim is not None or self.cond_channels:
            return "i2v"
        if self.out_channels == 48:
            return "ti2v"
        return "t2v"

    @classmethod
    def from_diffusers(cls, data: dict[str, Any]) -> WanTransformerConfig:
        """Read a diffusers ``transformer/config.json`` dict; refuse options this implementation lacks."""
        name = data.get("_class_name", DIFFUSERS_CLASS)
        if name != DIFFUSERS_CLASS:
            raise ValueError(f"config _class_name={name!r} is not a diffusers {DIFFUSERS_CLASS} config")
        d = {k: v for k, v in data.items() if not k.startswith("_")}
        qk = d.pop("qk_norm", DIFFUSERS_QK_NORM)
        if qk != DIFFUSERS_QK_NORM:
            raise ValueError(
                f"Wan transformer config qk_norm={qk!r} is not supported; expected {DIFFUSERS_QK_NORM!r}"
            )
        heads = d.pop("num_attention_heads", 40)
        head_dim = d.pop("attention_head_dim", 128)
        dim = heads * head_dim
        added_kv = d.pop("added_kv_proj_dim", None)
        if added_kv is not None and added_kv != dim:
            # The image key/value projections read img_emb's output, which is dim wide.
            raise ValueError(
                f"added_kv_proj_dim={added_kv} must be None or num_attention_heads * attention_head_dim "
                f"= {dim}"
            )
        renames = {"patch_size": "patch", "pos_embed_seq_len": "image_pos_len"}
        out: dict[str, Any] = {renames.get(k, k): v for k, v in d.items()}
        if out.get("out_channels") is None:
            out["out_channels"] = out.get("in_channels", 16)  # diffusers: out_channels or in_channels
        out.update(dim=dim, num_heads=heads, has_image_kv=added_kv is not None)
        return cls.from_dict(out)

    def to_diffusers(self) -> dict[str, Any]:
        """The equivalent diffusers WanTransformer3DModel config (``_class_name`` included)."""
        return {
            "_class_name": DIFFUSERS_CLASS,
            "patch_size": list(self.patch),
            "num_attention_heads": self.num_heads,
            "attention_head_dim": self.head_dim,
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "text_dim": self.text_dim,
            "freq_dim": self.freq_dim,
            "ffn_dim": self.ffn_dim,
            "num_layers": self.num_layers,
            "cross_attn_norm": self.cross_attn_norm,
            "qk_norm": DIFFUSERS_QK_NORM,
            "eps": self.eps,
            "image_dim": self.image_dim,
            "added_kv_proj_dim": self.dim if self.has_image_kv else None,
            "rope_max_seq_len": self.rope_max_seq_len,
            "pos_embed_seq_len": self.image_pos_len,
        }


_14B = dict(dim=5120, ffn_dim=13824, num_heads=40, num_layers=40)
_CLIP = dict(image_dim=1280, has_image_kv=True)
# Sources: Wan-Video/Wan2.1 wan/configs/wan_{t2v_1_3B,t2v_14B,i2v_14B}.py and Wan-Video/Wan2.2
# wan/configs/wan_{t2v_A14B,i2v_A14B,ti2v_5B}.py; FLF2V's 514-token table from Wan2.1 wan/modules/model.py.
WAN_TRANSFORMER_PRESETS: dict[str, dict[str, Any]] = {
    "t2v_1.3b": dict(dim=1536, ffn_dim=8960, num_heads=12, num_layers=30),
    "t2v_14b": _14B,
    "i2v_14b": dict(_14B, in_channels=36, **_CLIP),
    "flf2v_14b": dict(_14B, in_channels=36, image_pos_len=514, **_CLIP),
    "t2v_a14b": _14B,  # per expert (high- and low-noise share the architecture)
    "i2v_a14b": dict(_14B, in_channels=36),  # per expert; 2.2 I2V takes no CLIP features
    "ti2v_5b": dict(dim=3072, ffn_dim=14336, num_heads=24, num_layers=30, in_channels=48, out_channels=48),
}


def wan_transformer_config(name: str) -> WanTransformerConfig:
    """Config of a released Wan transformer, a name of ``WAN_TRANSFORMER_PRESETS`` (e.g. "ti2v_5b")."""
    check_choice("name", name, sorted(WAN_TRANSFORMER_PRESETS))
    return WanTransformerConfig(**WAN_TRANSFORMER_PRESETS[name])
