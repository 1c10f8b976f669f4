"""Tiny random diffusers Wan VAEs (2.1, 2.2) saved as diffusers folders and original-key files (test-only)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from vidcore.models.wan.vae_config import WanVAEConfig
from vidcore.models.wan.vae_loading import vae_key_to_original

diffusers = pytest.importorskip("diffusers", reason="the Wan VAE parity tests need diffusers (test extra)")

# diffusers' pipeline-test VAEs (tests/pipelines/wan/*), a little wider and with dim_mult (1, 2, 2, 2) so that
# the encoder's width-changing shortcut convs exist too.
TINY_21 = WanVAEConfig(base_dim=4, z_dim=16, dim_mult=(1, 2, 2, 2), num_res_blocks=1)
TINY_22 = WanVAEConfig(
    base_dim=4,
    decoder_base_dim=6,
    z_dim=48,
    dim_mult=(1, 2, 2, 2),
    num_res_blocks=1,
    is_residual=True,
    in_channels=12,
    out_channels=12,
    patch_size=2,
    scale_factor_spatial=16,
    latents_mean=tuple(0.1 * ((i * 7) % 11 - 5) for i in range(48)),
    latents_std=tuple(0.5 + 0.05 * ((i * 5) % 13) for i in range(48)),
)
TINY = {"2.1": TINY_21, "2.2": TINY_22}
VIDEO_SIZE = {"2.1": 16, "2.2": 32}  # two latent cells per side


def perturb_(model: torch.nn.Module, seed: int, std: float = 0.05) -> torch.nn.Module:
    """Add seeded noise to every parameter so the all-ones RMS gains matter too."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.state_dict().values():
            p.add_(std * torch.randn(p.shape, generator=g))
    return model.eval()


def tiny_vae(version: str, seed: int = 0):
    """A seeded random diffusers AutoencoderKLWan of the tiny ``version`` config."""
    torch.manual_seed(seed)
    return perturb_(diffusers.AutoencoderKLWan(**TINY[version].to_diffusers()), seed + 1)


def original_state_dict(vae, version: str, prefix: str = "") -> dict[str, torch.Tensor]:
    """The VAE's weights under the original Wan key names (what ComfyUI's files hold), via the inverse map."""
    nrb = vae.config.num_res_blocks
    return {
        prefix + vae_key_to_original(k, version, nrb): v.detach().clone().contiguous()
        for k, v in vae.state_dict().items()
    }


def save_original(path: Path, vae, version: str, prefix: str = "", extra=None) -> Path:
    tensors = original_state_dict(vae, version, prefix)
    tensors.update(extra or {})
    save_file(tensors, str(path))
    return path


def video(version: str, frames: int = 9, seed: int = 1) -> torch.Tensor:
    size = VIDEO_SIZE[version]
    return torch.rand(1, 3, frames, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1
