"""Wan 2.1 / 2.2 diffusion transformer (Wan Team, 2025, "Wan: Open and Advanced Large-Scale Video
Generative Models", arXiv:2503.20314), written from Wan-Video/Wan2.1 wan/modules/model.py and Wan-Video/Wan2.2
wan/modules/model.py, with the float32 numerics of diffusers
src/diffusers/models/transformers/transformer_wan.py.

Parameter names are diffusers' (``blocks.N.attn1.to_q`` ...), so a diffusers folder loads as is; the original
(and ComfyUI) names are mapped in ``keymaps.py``. Where diffusers and the original code differ, this follows
diffusers (the parity oracle of the tests) and says so:

- time sinusoid in float32 (original: float64), time MLP in its own float32 weights, then ``e`` cast to the
  model dtype before ``time_projection`` (original keeps e / e0 in float32 under autocast);
- no token padding / key masking: the original pads tokens to ``seq_len`` and masks padded keys (k_lens),
  diffusers runs the exact token count. Both agree when nothing is padded (one video per call);
- the text context is not zero-padded to ``text_len`` inside the model (the original does it in forward;
  diffusers and vidcore expect the caller, i.e. the pipeline, to pass 512 zero-padded T5 rows);
- I2V image tokens: diffusers and the original concatenate [image, text] and split again at L - 512 in every
  cross-attention; here the image tokens travel separately (same result for 512 text rows, and no silent
  mis-split when a caller passes fewer);
- FLF2V: both reshape CLIP features [2B, 257, C] -> [B, 514, C]; here ``clip_fea`` is [B, 514, C] directly;
- output in the model dtype cast to the input's (original: always float32).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from vidcore.models.wan.config import WanTransformerConfig
from vidcore.models.wan.layers import ConditionEmbedder, GeluMLP, layer_norm_fp32, wan_rope
from vidcore.ops.attention import attention, sequence_attention, sequence_shard
from vidcore.ops.rope import apply_rope

# Parameters kept in float32 whatever dtype the model is loaded in (diffusers' _keep_in_fp32_modules of
# WanTransformer3DModel): the time MLP, modulation tables and the affine LayerNorms; matched per dotted
# segment of the parameter name.
FP32_MODULES = ("time_embedder", "scale_shift_table", "norm1", "norm2", "norm3")


def keeps_fp32(name: str) -> bool:
    """Whether parameter ``name`` stays float32 when the model is loaded in a lower precision."""
    return any(seg in FP32_MODULES for seg in name.split("."))


def _per_token(m: Tensor, index: Tensor | None) -> Tensor:
    """Modulation rows [R, D] -> [B, 1, D] (one timestep per sample) or [B, S, D] (per-token rows)."""
    return m[:, None] if index is None else m[index]


class WanAttention(nn.Module):
    """Multi-head attention with RMSNorm on the full q and k (across heads, eps 1e-6) and optional RoPE;
    with ``image_kv`` a second key/value set over the CLIP tokens whose output is added before ``to_out``
    (Wan 2.1 I2V: WanI2VCrossAttention in Wan-Video/Wan2.1 wan/modules/model.py)."""

    def __init__(self, dim: int, heads: int, eps: float, image_kv: bool = False) -> None:
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim)
        self.to_k = nn.Linear(dim, dim)
        self.to_v = nn.Linear(dim, dim)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim)])
        self.norm_q = nn.RMSNorm(dim, eps=eps)
        self.norm_k = nn.RMSNorm(dim, eps=eps)
        if image_kv:
            self.add_k_proj = nn.Linear(dim, dim)
            self.add_v_proj = nn.Linear(dim, dim)
            self.norm_added_k = nn.RMSNorm(dim, eps=eps)

    def _heads(self, t: Tensor) -> Tensor:
        return rearrange(t, "b l (h d) -> b h l d", h=self.heads)

    def forward(
        self,
        x: Tensor,
        context: Tensor | None = None,
        rope: tuple[Tensor, Tensor] | None = None,
        image: Tensor | None = None,
    ) -> Tensor:
        ctx = x if context is None else context
        q = self._heads(self.norm_q(self.to_q(x)))
        k = self._heads(self.norm_k(self.to_k(ctx)))
        v = self._heads(self.to_v(ctx))
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        # Cross-attention is unmasked in Wan: the zero-padded text rows are attended like the others.
        out = (sequence_attention if ctx is x else attention)(q, k, v)
        if image is not None:
            k_img = self._heads(self.norm_added_k(self.add_k_proj(image)))
            out = out + attention(q, k_img, self._heads(self.add_v_proj(image)))
        return self.to_out[0](rearrange(out, "b h l d -> b l (h d)"))


class WanBlock(nn.Module):
    """x += SA(LN(x)(1+s1)+b1)·g1; x += CA(LN_affine(x), ctx); x += FFN(LN(x)(1+s2)+b2)·g2.

    Modulation = learned table + timestep projection, added, applied and gated in float32; the LayerNorms
    (eps 1e-6, no affine except the cross-attention one) run in float32. The original calls the affine
    cross-attention norm ``norm3`` and the FFN norm ``norm2``; diffusers (and this module) swap them.
    """

    def __init__(self, cfg: WanTransformerConfig) -> None:
        super().__init__()
        d = cfg.dim
        self.eps = cfg.eps
        self.attn1 = WanAttention(d, cfg.num_heads, cfg.eps)
        self.attn2 = WanAttention(d, cfg.num_heads, cfg.eps, image_kv=cfg.has_image_kv)
        self.norm2 = nn.LayerNorm(d, eps=cfg.eps) if cfg.cross_attn_norm else None
        self.ffn = GeluMLP(d, cfg.ffn_dim, d, approximate="tanh")
        self.scale_shift_table = nn.Parameter(torch.empty(1, 6, d))

    def forward(
        self,
        x: Tensor,
        context: Tensor,
        image: Tensor | None,
        e0: Tensor,
        index: Tensor | None,
        rope: tuple[Tensor, Tensor],
    ) -> Tensor:
        """x [B, S, D]; e0 [R, 6, D] float32 timestep projections; index [B, S] row of each token or None
        (then R = B, one row per sample). Rows are gathered one at a time, so per-token timesteps never
        hold all six [B, S, D] float32 tensors at once."""
        dtype = x.dtype
        mod = self.scale_shift_table[0].float() + e0  # [R, 6, D]: shift, scale, gate (attn); same (ffn)
        mod[:, 1::3] += 1  # 1 + scale, on the R rows before they are spread over tokens

        def take(i: int) -> Tensor:
            return _per_token(mod[:, i], index)

        # addcmul(a, b, c) = a + b·c in one pass, float32 (a float32 operand promotes the others).
        h = torch.addcmul(take(0), layer_norm_fp32(x, self.eps), take(1)).to(dtype)
        x = torch.addcmul(x.float(), self.attn1(h, rope=rope), take(2)).to(dtype)
        h = x if self.norm2 is None else layer_norm_fp32(x, self.eps, self.norm2).to(dtype)
        x = x + self.attn2(h, context=context, image=image)
        h = torch.addcmul(take(3), layer_norm_fp32(x, self.eps), take(4)).to(dtype)
        return torch.addcmul(x.float(), self.ffn(h), take(5)).to(dtype)


class WanTransformer(nn.Module):
    """Wan denoiser: latents [B, C, F, H, W] + timesteps + umT5 states (+ CLIP tokens, + conditioning y)
    -> flow-matching velocity [B, C_out, F, H, W] (as diffusers WanTransformer3DModel)."""

    def __init__(self, cfg: WanTransformerConfig) -> None:
        super().__init__()
        self.config = cfg
        d = cfg.dim
        self.patch_embedding = nn.Conv3d(cfg.in_channels, d, kernel_size=cfg.patch, stride=cfg.patch)
        self.condition_embedder = ConditionEmbedder(
            d, cfg.freq_dim, cfg.text_dim, cfg.image_dim, cfg.image_pos_len
        )
        self.blocks = nn.ModuleList([WanBlock(cfg) for _ in range(cfg.num_layers)])
        self.proj_out = nn.Linear(d, cfg.out_channels * math.prod(cfg.patch))
        self.scale_shift_table = nn.Parameter(torch.empty(1, 2, d))
        if not self.proj_out.weight.is_meta:
            self.initialize_weights()

    def initialize_weights(self, generator: torch.Generator | None = None) -> None:
        """Init of Wan-Video/Wan2.1 wan/modules/model.py (init_weights): Xavier-uniform Linears, N(0, 0.02)
        text/time embeddings, modulation tables ~ N(0, 1/D). Zero-init: every Linear/Conv bias, the output
        projection ``proj_out`` (weight and bias: a fresh model predicts zero velocity) and the FLF2V image
        position table ``pos_embed``; norms start at weight 1, bias 0."""
        g = generator
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, nn.Linear):
                    nn.init.xavier_uniform_(m.weight, generator=g)
                    nn.init.zeros_(m.bias)
                elif isinstance(m, (nn.LayerNorm, nn.RMSNorm)):
                    m.reset_parameters()
            w = self.patch_embedding.weight
            nn.init.xavier_uniform_(w.view(w.shape[0], -1), generator=g)
            nn.init.zeros_(self.patch_embedding.bias)
            ce = self.condition_embedder
            for mlp in (ce.text_embedder, ce.time_embedder):
                for lin in (mlp.linear_1, mlp.linear_2):
                    nn.init.normal_(lin.weight, std=0.02, generator=g)
            nn.init.normal_(ce.time_proj.weight, std=0.02, generator=g)
            nn.init.zeros_(self.proj_out.weight)
            nn.init.zeros_(self.proj_out.bias)
            if ce.image_embedder is not None and ce.image_embedder.pos_embed is not None:
                nn.init.zeros_(ce.image_embedder.pos_embed)
            d = self.config.dim
            for p in [self.scale_shift_table] + [b.scale_shift_table for b in self.blocks]:
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(d))

    def _check_inputs(
        self, x: Tensor, timestep: Tensor, context: Tensor, clip_fea: Tensor | None, y: Tensor | None
    ) -> tuple[int, int, int]:
        """Validate shapes against the config; return the token grid (F', H', W')."""
        cfg = self.config
        if x.ndim != 5:
            raise ValueError(f"x must be latents [B, C, F, H, W], got shape {tuple(x.shape)}")
        b, c, f, h, w = x.shape
        want_c = cfg.in_channels - cfg.cond_channels
        if c != want_c:
            raise ValueError(f"x has {c} channels; this Wan transformer ({cfg.variant}) expects {want_c}")
        if cfg.cond_channels:
            if y is None:
                raise ValueError(
                    f"this {cfg.variant} Wan transformer needs y: the conditioning latents "
                    f"[B, {cfg.cond_channels}, F, H, W] (mask + image latent) concatenated to x"
                )
            if tuple(y.shape) != (b, cfg.cond_channels, f, h, w):
                raise ValueError(f"y has shape {tuple(y.shape)}, expected {(b, cfg.cond_channels, f, h, w)}")
        elif y is not None:
            raise ValueError(
                f"y was given but this {cfg.variant} Wan transformer has in_channels == out_channels "
                f"({cfg.in_channels}) and takes no conditioning latents"
            )
        if cfg.image_dim is not None:
            n = cfg.image_pos_len
            if clip_fea is None:
                raise ValueError(
                    f"this {cfg.variant} Wan transformer needs clip_fea: CLIP image tokens "
                    f"[B, {n or 257}, {cfg.image_dim}]" + (" (first + last frame)" if n else "")
                )
            if clip_fea.ndim != 3 or clip_fea.shape[0] != b or clip_fea.shape[2] != cfg.image_dim:
                raise ValueError(
                    f"clip_fea has shape {tuple(clip_fea.shape)}, expected [{b}, N, {cfg.image_dim}]"
                )
            if n is not None and clip_fea.shape[1] != n:
                raise ValueError(
                    f"clip_fea has {clip_fea.shape[1]} tokens; FLF2V expects image_pos_len={n} "
                    "(first- and last-frame CLIP tokens concatenated)"
                )
        elif clip_fea is not None:
            raise ValueError(
                f"clip_fea was given but this {cfg.variant} Wan transformer has no image embedder"
            )
        grid = []
        for name, size, p in zip(("frames F", "height H", "width W"), (f, h, w), cfg.patch, strict=True):
            if size % p:
                raise ValueError(
                    f"latent {name}={size} is not divisible by the patch size {p} (patch={cfg.patch})"
                )
            if size // p > cfg.rope_max_seq_len:
                raise ValueError(
                    f"latent {name}={size} gives {size // p} positions; RoPE covers rope_max_seq_len="
                    f"{cfg.rope_max_seq_len}"
                )
            grid.append(size // p)
        tokens = math.prod(grid)
        if (
            timestep.ndim not in (1, 2)
            or timestep.shape[0] != b
            or (timestep.ndim == 2 and timestep.shape[1] != tokens)
        ):
            raise ValueError(
                f"timestep has shape {tuple(timestep.shape)}; expected [{b}] or per-token [{b}, {tokens}] "
                f"(F·H·W / {math.prod(cfg.patch)} tokens)"
            )
        if context.ndim != 3 or context.shape[0] != b or context.shape[2] != cfg.text_dim:
            raise ValueError(f"context has shape {tuple(context.shape)}, expected [{b}, L, {cfg.text_dim}]")
        if context.shape[1] > cfg.text_len:
            raise ValueError(
                f"context has {context.shape[1]} tokens, more than text_len={cfg.text_len} "
                "(Wan pads umT5 states to text_len rows with zeros, and never truncates)"
            )
        return grid[0], grid[1], grid[2]

    def forward(
        self,
        x: Tensor,
        timestep: Tensor,
        context: Tensor,
        clip_fea: Tensor | None = None,
        y: Tensor | None = None,
    ) -> Tensor:
        """Velocity for latents ``x [B, C, F, H, W]`` at ``timestep`` σ·1000 ``[B]`` or per token ``[B, S]``
        (S = F·H·W / 4; TI2V gives the first frame's tokens t = 0), text ``context [B, L<=512, text_dim]``
        (zero-padded umT5 states), I2V/FLF2V ``clip_fea [B, 257 | 514, image_dim]`` and ``y`` (the
        ``in_channels - out_channels`` conditioning channels, concatenated to x here).
        Returns ``[B, out_channels, F, H, W]`` in x's dtype.
        """
        cfg = self.config
        grid = self._check_inputs(x, timestep, context, clip_fea, y)
        dtype = self.patch_embedding.weight.dtype
        out_dtype = x.dtype
        if y is not None:
            x = torch.cat([x, y.to(x.dtype)], dim=1)
        pt, ph, pw = cfg.patch
        # Patchify as a Linear over (c, pt, ph, pw) vectors: the stride = kernel Conv3d of the checkpoints.
        tokens = rearrange(
            x.to(dtype), "b c (f pt) (h ph) (w pw) -> b (f h w) (c pt ph pw)", pt=pt, ph=ph, pw=pw
        )
        h = F.linear(tokens, self.patch_embedding.weight.flatten(1), self.patch_embedding.bias)
        rope = wan_rope(grid, cfg.rope_dims, h.device)

        # One time embedding per distinct value: per-token timesteps (TI2V) hold few values.
        index = None
        values = timestep
        if timestep.ndim == 2:
            values, index = torch.unique(timestep.reshape(-1), return_inverse=True)
            index = index.view(timestep.shape)
        e, e0 = self.condition_embedder.time(values, dtype)
        e0 = e0.float()
        ctx = self.condition_embedder.text_embedder(context.to(dtype))
        image = None
        if self.condition_embedder.image_embedder is not None:
            image = self.condition_embedder.image_embedder(clip_fea.to(dtype))
            if not cfg.has_image_kv:
                ctx, image = torch.cat([image, ctx], dim=1), None  # image tokens simply precede the text
        sp = sequence_shard(h.shape[1])  # the whole sequence on one process; this rank's tokens under SP
        h, rope, index = sp.split(h, dim=1), sp.split(rope, dim=0), sp.split(index, dim=1)
        for block in self.blocks:
            h = block(h, ctx, image, e0, index, rope)

        # The head modulation reads e (before time_proj), not e0.
        mod = self.scale_shift_table[0].float() + e.float()[:, None]  # [R, 2, D]: shift, scale
        mod[:, 1] += 1
        shift, scale = _per_token(mod[:, 0], index), _per_token(mod[:, 1], index)
        h = torch.addcmul(shift, layer_norm_fp32(h, cfg.eps), scale)
        h = sp.gather(self.proj_out(h.to(dtype)), dim=1)
        f, hh, ww = grid
        out = rearrange(
            h, "b (f h w) (pt ph pw c) -> b c (f pt) (h ph) (w pw)", f=f, h=hh, w=ww, pt=pt, ph=ph, pw=pw
        )
        return out.to(out_dtype)
