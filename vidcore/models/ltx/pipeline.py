"""LTX-Video text-to-video: T5 embeddings -> flow-matching Euler with CFG -> causal VAE decode (§8, §9)."""

from __future__ import annotations

import os
from typing import Any, Protocol

import torch
from torch import Tensor

from vidcore.models.ltx.loading import load_ltx
from vidcore.models.ltx.transformer import LTXVideoTransformer, pack_latents, unpack_latents
from vidcore.models.ltx.vae import LTXVideoVAE
from vidcore.sampling.guidance import CFGDenoiser
from vidcore.sampling.samplers import sample_euler
from vidcore.sampling.schedules import dynamic_sigmas


class PromptEncoder(Protocol):
    def encode(self, prompts: list[str]) -> tuple[Tensor, Tensor]: ...


def check_ltx_size(
    num_frames: int, height: int, width: int, temporal_ratio: int = 8, spatial_ratio: int = 32
) -> None:
    """Raise ValueError unless num_frames = 8k + 1 and height, width are multiples of 32 (lists valid)."""
    for name, v in (("num_frames", num_frames), ("height", height), ("width", width)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"{name}={v!r} must be an int")
    if num_frames < 1 or (num_frames - 1) % temporal_ratio:
        k = max(0, (num_frames - 1) // temporal_ratio)
        near = sorted({1 + temporal_ratio * k, 1 + temporal_ratio * (k + 1)})
        raise ValueError(
            f"num_frames={num_frames} must be {temporal_ratio}k + 1 "
            f"(valid: 1, 9, 17, ..., 161, 257; nearest {near})"
        )
    for name, v in (("height", height), ("width", width)):
        if v < spatial_ratio or v % spatial_ratio:
            near = sorted(
                {
                    max(spatial_ratio, v // spatial_ratio * spatial_ratio),
                    (v // spatial_ratio + 1) * spatial_ratio,
                }
            )
            raise ValueError(
                f"{name}={v} must be a positive multiple of {spatial_ratio} (nearest valid: {near})"
            )


class LTXDenoiser:
    """vidcore denoiser over unpacked latents: ``(x [B,C,F,H,W], sigma [B]) -> velocity`` (float32)."""

    def __init__(self, transformer: LTXVideoTransformer, rope_scale: tuple[float, float, float]) -> None:
        self.transformer = transformer
        self.rope_scale = rope_scale

    def __call__(self, x: Tensor, sigma: Tensor, context: Tensor, context_mask: Tensor) -> Tensor:
        cfg = self.transformer.config
        b, _, f, h, w = x.shape
        p, pt = cfg.patch_size, cfg.patch_size_t
        dtype = next(self.transformer.parameters()).dtype
        tokens = pack_latents(x, p, pt).to(dtype)
        t = (sigma.float() * 1000).to(x.device)  # the model reads σ·1000 (trap 5)
        out = self.transformer(
            tokens, context.to(dtype), t, context_mask, f // pt, h // p, w // p, rope_scale=self.rope_scale
        )
        return unpack_latents(out.float(), f // pt, h // p, w // p, p, pt)


class LTXPipeline:
    """LTX-Video text-to-video with a ``.generate`` like vidcore's pipeline; frames [T, H, W, 3] in 0..1."""

    def __init__(
        self, transformer: LTXVideoTransformer, vae: LTXVideoVAE, text_encoder: PromptEncoder
    ) -> None:
        if not callable(getattr(text_encoder, "encode", None)):
            raise TypeError(
                f"text_encoder must have encode(prompts) -> (emb, mask); got {type(text_encoder).__name__}"
            )
        self.transformer = transformer
        self.vae = vae
        self.text_encoder = text_encoder

    @property
    def dit(self) -> LTXVideoTransformer:
        return self.transformer

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike,
        text_encoder: PromptEncoder,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
    ) -> LTXPipeline:
        """Transformer + VAE from one LTX checkpoint (single file or diffusers folder); T5 separately."""
        models = load_ltx(path, dtype=dtype, device=device)
        if models.transformer is None or models.vae is None:
            raise ValueError(f"{str(path)!r} must hold both the LTX transformer and VAE to build a pipeline")
        return cls(models.transformer, models.vae, text_encoder)

    def encode_prompts(self, prompt: str, negative_prompt: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        emb, mask = self.text_encoder.encode([negative_prompt, prompt])
        width = self.transformer.config.caption_channels
        if emb.ndim != 3 or emb.shape[-1] != width:
            raise ValueError(
                f"text encoder gives embeddings {tuple(emb.shape)} but the LTX transformer expects width "
                f"{width} (T5-v1.1-XXL for released checkpoints)"
            )
        return emb[1:], mask[1:], emb[:1], mask[:1]

    @torch.no_grad()
    def generate(
        self,
        prompt: str,
        negative_prompt: str = "",
        num_frames: int = 161,
        height: int = 512,
        width: int = 704,
        steps: int = 50,
        guidance: float = 3.0,
        seed: int = 0,
        guidance_rescale: float = 0.0,
        frame_rate: float = 25.0,
        decode_timestep: float = 0.0,
        decode_noise_scale: float | None = None,
        latents: Tensor | None = None,
        callback: Any = None,
        progress: bool = False,
    ) -> Tensor:
        """Frames [T, H, W, 3] in 0..1 (diffusers LTXPipeline defaults). ``latents``: optional initial
        noise [1, 128, F', H/32, W/32] (normalised space); otherwise drawn from ``seed``."""
        if not isinstance(prompt, str) or not isinstance(negative_prompt, str):
            raise TypeError("prompt and negative_prompt must be strings")
        tr, sr = self.vae.temporal_ratio, self.vae.spatial_ratio
        check_ltx_size(num_frames, height, width, tr, sr)
        if frame_rate <= 0:
            raise ValueError(f"frame_rate={frame_rate!r} must be > 0")
        device = next(self.transformer.parameters()).device
        shape = (1, self.vae.config.latent_channels, (num_frames - 1) // tr + 1, height // sr, width // sr)
        generator = torch.Generator(device="cpu").manual_seed(int(seed))
        if latents is None:
            # Drawn unpacked [B, C, F, H, W] as diffusers does, so seeds give the same noise.
            latents = torch.randn(shape, generator=generator)
        elif tuple(latents.shape) != shape:
            raise ValueError(f"latents have shape {tuple(latents.shape)}, expected {shape}")
        x = latents.to(device=device, dtype=torch.float32)
        emb, mask, neg_emb, neg_mask = self.encode_prompts(prompt, negative_prompt)
        sigmas = dynamic_sigmas(steps, seq_len=shape[2] * shape[3] * shape[4])
        model = LTXDenoiser(self.transformer, (tr / frame_rate, float(sr), float(sr)))
        denoiser = CFGDenoiser(
            model,
            cond={"context": emb.to(device), "context_mask": mask.to(device)},
            uncond={"context": neg_emb.to(device), "context_mask": neg_mask.to(device)},
            scale=guidance,
            rescale=guidance_rescale,
        )
        x = sample_euler(denoiser, x, sigmas, callback=callback, disable=not progress)
        video = self.decode(x, decode_timestep, decode_noise_scale, generator)
        return (video[0] / 2 + 0.5).clamp(0, 1).permute(1, 2, 3, 0).float().cpu()

    def decode(
        self,
        latents: Tensor,
        decode_timestep: float = 0.0,
        decode_noise_scale: float | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Normalised latents -> video [B, 3, T, H, W] in about -1..1 (decode timestep/noise: 0.9.1+)."""
        vae_dtype = next(self.vae.parameters()).dtype
        z = self.vae.denormalize_latents(latents.float())
        timestep = None
        if self.vae.config.timestep_conditioning:
            scale = decode_timestep if decode_noise_scale is None else decode_noise_scale
            noise = torch.randn(z.shape, generator=generator).to(z.device)
            z = (1 - scale) * z + scale * noise
            timestep = torch.full((z.shape[0],), float(decode_timestep), device=z.device)
        return self.vae.decode(z.to(vae_dtype), timestep, generator=generator)
