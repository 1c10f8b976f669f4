"""Text encoding, empty latents and VAE encode/decode nodes."""

from __future__ import annotations

import torch

from . import _host
from ._convert import image_to_video, latent_samples, make_latent, to_conditioning, video_to_image

CHUNK_TIP = "0 = whole clip at once."
TILE_TIP = "Spatial tile size in pixels (a multiple of the VAE's spatial factor); 0 = no tiling."
OVERLAP_TIP = "Tile overlap in pixels (a multiple of the spatial factor); -1 = a quarter of the tile."


def _opt(value: int) -> int | None:
    return None if value == 0 else value


def _overlap(value: int, tile_size: int) -> int | None:
    if tile_size == 0 and value != -1:
        raise ValueError(f"tile_overlap={value} needs tiling: set tile_size > 0, or tile_overlap to -1")
    return None if value == -1 else value


def _tiling_inputs(chunk_tip: str) -> dict:
    return {
        "temporal_chunk": ("INT", {"default": 0, "min": 0, "max": 4096, "tooltip": chunk_tip}),
        "tile_size": ("INT", {"default": 0, "min": 0, "max": 8192, "step": 8, "tooltip": TILE_TIP}),
        "tile_overlap": ("INT", {"default": -1, "min": -1, "max": 4096, "tooltip": OVERLAP_TIP}),
    }


class VidCoreTextEncode:
    DESCRIPTION = (
        "Encode a prompt with a VidCore text encoder into ComfyUI CONDITIONING [[embeddings, "
        "{attention_mask, pooled_output}]]. An empty prompt is the unconditional (negative) prompt."
    )
    CATEGORY = "VidCore/conditioning"
    FUNCTION = "encode"
    RETURN_TYPES = ("CONDITIONING",)
    OUTPUT_TOOLTIPS = (
        "Token embeddings [1, L, D] with a bool attention mask and the pooled sentence vector.",
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "text_encoder": ("VIDCORE_TEXT_ENCODER", {"tooltip": "Text encoder from a VidCore loader."}),
                "text": ("STRING", {"multiline": True, "default": "", "tooltip": "The prompt."}),
            }
        }

    def encode(self, text_encoder, text: str):
        from vidcore.pipelines import TextConditioning

        if not isinstance(text, str):
            raise TypeError(f"text must be a string, got {type(text).__name__}")
        _host.check_interrupted()
        _host.use(text_encoder)
        with torch.no_grad():
            emb, mask = text_encoder.encode([text])
            pooled = text_encoder.encode_pooled([text])
        dev = _host.intermediate_device()
        return (to_conditioning(TextConditioning(emb.to(dev), mask.to(dev), pooled.to(dev))),)


class VidCoreEmptyVideoLatent:
    DESCRIPTION = (
        "Empty (all-zero) video latents for text-to-video. Frames, height and width are checked against the "
        "model's VAE and patch sizes, with valid sizes suggested in the error."
    )
    CATEGORY = "VidCore/latent"
    FUNCTION = "generate"
    RETURN_TYPES = ("LATENT",)
    OUTPUT_TOOLTIPS = ("LATENT {'samples': [B, C, T', H', W']} of zeros.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("VIDCORE_MODEL", {"tooltip": "The model the latents are for (its patch size)."}),
                "vae": ("VIDCORE_VAE", {"tooltip": "The VAE the latents are for (its compression)."}),
                "width": (
                    "INT",
                    {"default": 64, "min": 8, "max": 8192, "step": 8, "tooltip": "Video width."},
                ),
                "height": (
                    "INT",
                    {"default": 64, "min": 8, "max": 8192, "step": 8, "tooltip": "Video height."},
                ),
                "num_frames": (
                    "INT",
                    {
                        "default": 17,
                        "min": 1,
                        "max": 4097,
                        "tooltip": "Frames; 1 + k x temporal compression.",
                    },
                ),
                "batch_size": ("INT", {"default": 1, "min": 1, "max": 64, "tooltip": "Videos per batch."}),
            }
        }

    def generate(self, model, vae, width: int, height: int, num_frames: int, batch_size: int):
        shape = model.latent_shape(num_frames, height, width, vae=vae)
        return (make_latent(torch.zeros((batch_size, *shape), device=_host.intermediate_device())),)


class VidCoreVAEEncode:
    DESCRIPTION = (
        "Encode video frames (IMAGE) into normalised VidCore latents, optionally in temporal chunks and "
        "spatial tiles to bound memory. Progress and cancel are checked after every chunk."
    )
    CATEGORY = "VidCore/latent"
    FUNCTION = "encode"
    RETURN_TYPES = ("LATENT",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "vae": ("VIDCORE_VAE", {"tooltip": "VidCore video VAE."}),
                "images": ("IMAGE", {"tooltip": "Frames [T, H, W, 3]; T = 1 + k x temporal compression."}),
                **_tiling_inputs(
                    "Pixel frames per chunk (a multiple of the temporal compression); " + CHUNK_TIP
                ),
            }
        }

    def encode(self, vae, images, temporal_chunk: int, tile_size: int, tile_overlap: int):
        _host.use(vae)
        video = image_to_video(images, next(vae.parameters()).device, vae.dtype)
        with _host.Progress(1, "vae encode") as bar, torch.no_grad():
            z = vae.encode(
                video,
                temporal_chunk=_opt(temporal_chunk),
                tile_size=_opt(tile_size),
                tile_overlap=_overlap(tile_overlap, tile_size),
                callback=bar.chunk_callback(),
            )
        return (make_latent(z.float().to(_host.intermediate_device())),)


class VidCoreVAEDecode:
    DESCRIPTION = (
        "Decode VidCore latents into video frames (IMAGE, 0..1), optionally in temporal chunks and spatial "
        "tiles. A batch of B videos comes out end to end (B x T frames)."
    )
    CATEGORY = "VidCore/latent"
    FUNCTION = "decode"
    RETURN_TYPES = ("IMAGE",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "vae": ("VIDCORE_VAE", {"tooltip": "VidCore video VAE (the one the latents were made for)."}),
                "samples": ("LATENT", {"tooltip": "Video latents [B, C, T', H', W']."}),
                **_tiling_inputs("Latent frames per chunk; " + CHUNK_TIP),
            }
        }

    def decode(self, vae, samples, temporal_chunk: int, tile_size: int, tile_overlap: int):
        _host.use(vae)
        z = latent_samples(samples, "samples").to(next(vae.parameters()).device)
        with _host.Progress(1, "vae decode") as bar, torch.no_grad():
            video = vae.decode(
                z,
                temporal_chunk=_opt(temporal_chunk),
                tile_size=_opt(tile_size),
                tile_overlap=_overlap(tile_overlap, tile_size),
                callback=bar.chunk_callback(),
            )
        return (video_to_image(video, _host.intermediate_device()),)
