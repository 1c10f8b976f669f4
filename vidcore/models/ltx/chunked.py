"""Temporal chunked decoding of the LTX VAE: bounded memory, overlaps blended linearly."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def chunk_starts(num_latent: int, chunk: int, overlap: int) -> list[int]:
    """First latent frame of every chunk; chunks of ``chunk`` frames overlap by ``overlap`` frames."""
    if chunk < 2:
        raise ValueError(f"temporal_chunk={chunk} must be >= 2 latent frames")
    if not 0 < overlap < chunk:
        raise ValueError(f"temporal_overlap={overlap} must be in [1, temporal_chunk - 1 = {chunk - 1}]")
    starts, step = [0], chunk - overlap
    while starts[-1] + chunk < num_latent:
        starts.append(min(starts[-1] + step, num_latent - chunk))
    return starts


@torch.no_grad()
def decode_in_chunks(
    decoder: nn.Module,
    latents: Tensor,
    timestep: Tensor | None,
    generator: torch.Generator | None,
    chunk: int,
    overlap: int,
    temporal_ratio: int,
) -> Tensor:
    """Decode ``chunk`` latent frames at a time; pixel frames decoded twice are blended linearly.

    Every chunk replays the same RNG state, so noise-injecting decoders (0.9.1) add the same spatial
    noise to every chunk, as they do over time inside one full decode. The decoder is not causal, so the
    result approximates (does not equal) a full decode near chunk borders.
    """
    num_latent = latents.shape[2]
    if generator is None:
        # One draw from the global RNG seeds a private generator that every chunk replays.
        generator = torch.Generator(device=latents.device)
        generator.manual_seed(int(torch.randint(0, 2**62, (1,)).item()))
    state = generator.get_state()
    out: Tensor | None = None
    written = 0  # pixel frames [0, written) hold final or partially blended values
    for s in chunk_starts(num_latent, chunk, overlap):
        generator.set_state(state)
        part = decoder(latents[:, :, s : s + chunk], timestep, generator)
        first = s * temporal_ratio  # global pixel index of the chunk's first frame
        if out is None:
            b, c, _, h, w = part.shape
            out = part.new_empty(b, c, 1 + temporal_ratio * (num_latent - 1), h, w)
        shared = max(0, written - first)
        if shared:
            ramp = torch.arange(1, shared + 1, device=part.device, dtype=part.dtype) / (shared + 1)
            ramp = ramp.view(1, 1, -1, 1, 1)
            out[:, :, first:written] = out[:, :, first:written] * (1 - ramp) + part[:, :, :shared] * ramp
        end = first + part.shape[2]
        out[:, :, written:end] = part[:, :, shared:]
        written = end
    assert out is not None
    return out
