"""Tiny random diffusers LTX-Video models saved in both checkpoint layouts (test-only)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from vidcore.models.ltx.keymaps import transformer_key_to_original, vae_key_to_original

diffusers = pytest.importorskip("diffusers", reason="the LTX parity tests need diffusers (test extra)")

TINY_TRANSFORMER = dict(
    in_channels=8,
    out_channels=8,
    patch_size=1,
    patch_size_t=1,
    num_attention_heads=2,
    attention_head_dim=16,
    cross_attention_dim=32,
    num_layers=2,
    caption_channels=16,
)
VAE_090 = dict(
    latent_channels=8,
    block_out_channels=(8, 16, 32, 32),
    decoder_block_out_channels=(8, 16, 32, 32),
    layers_per_block=(1, 1, 1, 1, 1),
    decoder_layers_per_block=(1, 1, 1, 1, 1),
    spatio_temporal_scaling=(True, True, True, False),
    decoder_spatio_temporal_scaling=(True, True, True, False),
    decoder_inject_noise=(False,) * 5,
    upsample_residual=(False,) * 4,
    upsample_factor=(1,) * 4,
    timestep_conditioning=False,
    patch_size=4,
    patch_size_t=1,
    encoder_causal=True,
    decoder_causal=False,
)
VAE_091 = dict(
    VAE_090,
    decoder_block_out_channels=(16, 32, 64),
    decoder_layers_per_block=(1, 1, 1, 1),
    decoder_spatio_temporal_scaling=(True, True, True),
    decoder_inject_noise=(True, True, True, False),
    upsample_residual=(True, True, True),
    upsample_factor=(2, 2, 2),
    timestep_conditioning=True,
)
VAE_095 = dict(
    VAE_091,
    block_out_channels=(8, 16, 32, 64, 64),
    down_block_types=("LTXVideo095DownBlock3D",) * 4,
    downsample_type=("spatial", "temporal", "spatiotemporal", "spatiotemporal"),
    spatio_temporal_scaling=(True, True, True, True),
    decoder_inject_noise=(False,) * 4,
    spatial_compression_ratio=32,
    temporal_compression_ratio=8,
)
VAE_CONFIGS = {"0.9.0": VAE_090, "0.9.1": VAE_091, "0.9.5": VAE_095}


def perturb_(model: torch.nn.Module, seed: int, std: float = 0.05) -> torch.nn.Module:
    """Add seeded noise to every parameter/buffer so zero-initialised ones (noise scales, stats) matter."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.state_dict().items():
            if name.endswith("latents_std"):
                p.copy_(1 + 0.5 * torch.rand(p.shape, generator=g))
            elif name.endswith("timestep_scale_multiplier"):
                p.copy_(torch.tensor(900.0))
            elif p.is_floating_point():
                p.add_(std * torch.randn(p.shape, generator=g))
    return model.eval()


def tiny_transformer(seed: int = 0):
    torch.manual_seed(seed)
    return perturb_(diffusers.LTXVideoTransformer3DModel(**TINY_TRANSFORMER), seed)


def tiny_vae(version: str, seed: int = 0):
    torch.manual_seed(seed)
    return perturb_(diffusers.AutoencoderKLLTXVideo(**VAE_CONFIGS[version]), seed + 1)


def save_diffusers(root: Path, transformer=None, vae=None) -> Path:
    """diffusers pipeline folder: transformer/ and vae/, each config.json + weights."""
    root.mkdir(parents=True, exist_ok=True)
    if transformer is not None:
        transformer.save_pretrained(root / "transformer", safe_serialization=True)
    if vae is not None:
        vae.save_pretrained(root / "vae", safe_serialization=True)
    return root


def original_state_dict(transformer=None, vae=None, vae_layout: str | None = None) -> dict[str, torch.Tensor]:
    """Lightricks single-file keys (model.diffusion_model.* + vae.*) made by inverting the key maps."""
    out: dict[str, torch.Tensor] = {}
    if transformer is not None:
        for k, v in transformer.state_dict().items():
            out[transformer_key_to_original(k)] = v.detach().clone().contiguous()
    if vae is not None:
        for k, v in vae.state_dict().items():
            out[vae_key_to_original(k, vae_layout)] = v.detach().clone().contiguous()
        c = vae.config.latent_channels
        # Extra statistics real files carry and loaders must drop.
        out["vae.per_channel_statistics.channel"] = torch.arange(c, dtype=torch.float32)
        out["vae.per_channel_statistics.mean-of-stds"] = torch.ones(c)
    return out


def save_original(
    path: Path, transformer=None, vae=None, vae_layout: str | None = None, metadata=None
) -> Path:
    save_file(original_state_dict(transformer, vae, vae_layout), str(path), metadata=metadata)
    return path
