"""Tiny random diffusers Wan pipelines saved as diffusers folders (test-only): 2.1 T2V, 2.2 A14B (two
experts), 2.1 I2V and FLF2V (CLIP vision tokens, a tiny CLIPVisionModel in image_encoder/), 2.2 I2V-A14B
and TI2V, with a tiny umT5.

``make_wan_folders(dest, variants)`` builds the diffusers pipelines and writes each with ``save_pretrained``
to ``dest/<name>`` (default names ``wan-<variant>``); the pipelines come back too, as the reference runs of
tests/test_wan_pipeline.py. Only building needs diffusers; vidcore loads the folders on its own.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ._tiny_hf import make_t5_folder
from ._wan_fixtures import CONFIGS, IMAGE_DIM, diffusers  # skips the importing test without diffusers
from ._wan_vae_fixtures import tiny_vae

TEXT_DIM = 32  # the tiny umT5's width
VARIANTS = ("t2v", "t2v_a14b", "i2v", "ti2v", "flf2v", "i2v_a14b")
DEFAULT_NAMES = {
    "t2v": "wan-t2v",
    "t2v_a14b": "wan-a14b",
    "i2v": "wan-i2v",
    "ti2v": "wan-ti2v",
    "flf2v": "wan-flf2v",
    "i2v_a14b": "wan-i2v-a14b",
}


def tiny_transformer(variant: str, seed: int):
    """A seeded, perturbed tiny diffusers WanTransformer3DModel reading the tiny umT5's states."""
    cfg = dict(CONFIGS[variant], text_dim=TEXT_DIM)
    if variant == "t2v":
        cfg.update(in_channels=16, out_channels=16)
    torch.manual_seed(seed)
    model = diffusers.WanTransformer3DModel(**cfg)
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model.eval()


def tiny_text(folder: Path):
    """(tokenizer, UMT5EncoderModel) of a tiny umT5 transformers folder written to ``folder``."""
    from transformers import AutoTokenizer, UMT5EncoderModel

    folder = make_t5_folder(folder, seed=3, umt5=True)
    return AutoTokenizer.from_pretrained(folder), UMT5EncoderModel.from_pretrained(folder).eval()


def tiny_clip():
    """(CLIPVisionModel, CLIPImageProcessor): a 2-layer CLIP vision tower of width IMAGE_DIM on 32x32."""
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(7)
    cfg = CLIPVisionConfig(
        hidden_size=IMAGE_DIM,
        projection_dim=IMAGE_DIM,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=32,
        intermediate_size=16,
        patch_size=16,
    )
    return CLIPVisionModel(cfg).eval(), CLIPImageProcessor(crop_size=32, size=32)


def scheduler(shift: float):
    """Wan's scheduler as the diffusers repositories ship it (scheduler/scheduler_config.json flow_shift)."""
    return diffusers.UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=shift
    )


def build(variant: str, text: tuple):
    """The diffusers pipeline of one tiny variant; ``text`` = tiny_text(...)."""
    tok, te = text
    if variant == "t2v":
        return diffusers.WanPipeline(
            tokenizer=tok, text_encoder=te, transformer=tiny_transformer("t2v", 1), vae=tiny_vae("2.1", 2),
            scheduler=scheduler(3.0),
        )  # fmt: skip
    if variant == "t2v_a14b":
        return diffusers.WanPipeline(
            tokenizer=tok, text_encoder=te, transformer=tiny_transformer("t2v", 4),
            transformer_2=tiny_transformer("t2v", 5), vae=tiny_vae("2.1", 2), scheduler=scheduler(5.0),
            boundary_ratio=0.875,
        )  # fmt: skip
    if variant == "i2v":
        clip, processor = tiny_clip()
        return diffusers.WanImageToVideoPipeline(
            tokenizer=tok, text_encoder=te, transformer=tiny_transformer("i2v", 6), vae=tiny_vae("2.1", 2),
            scheduler=scheduler(3.0), image_encoder=clip, image_processor=processor,
        )  # fmt: skip
    if variant == "i2v_a14b":  # 2.2 I2V-A14B: two 36-channel experts, no CLIP
        return diffusers.WanImageToVideoPipeline(
            tokenizer=tok, text_encoder=te, transformer=tiny_transformer("i2v_a14b", 11),
            transformer_2=tiny_transformer("i2v_a14b", 12), vae=tiny_vae("2.1", 2), scheduler=scheduler(5.0),
            boundary_ratio=0.9,
        )  # fmt: skip
    if variant == "ti2v":
        return diffusers.WanImageToVideoPipeline(
            tokenizer=tok, text_encoder=te, transformer=tiny_transformer("ti2v", 8), vae=tiny_vae("2.2", 9),
            scheduler=scheduler(5.0), expand_timesteps=True,
        )  # fmt: skip
    if variant == "flf2v":
        clip, processor = tiny_clip()
        return diffusers.WanImageToVideoPipeline(
            tokenizer=tok, text_encoder=te, transformer=tiny_transformer("flf2v", 10), vae=tiny_vae("2.1", 2),
            scheduler=scheduler(3.0), image_encoder=clip, image_processor=processor,
        )  # fmt: skip
    raise ValueError(f"unknown tiny Wan variant {variant!r}; known: {VARIANTS}")


def make_wan_folders(
    dest: str | Path,
    variants: tuple[str, ...] = VARIANTS,
    names: dict[str, str] | None = None,
    scratch: str | Path | None = None,
) -> dict[str, tuple]:
    """Write tiny diffusers Wan folders ``dest/<name>`` and return ``{variant: (pipeline, path)}``; the
    umT5 they share is first written to ``scratch/umt5`` (default ``dest/umt5``)."""
    dest = Path(dest)
    names = {**DEFAULT_NAMES, **(names or {})}
    text = tiny_text(Path(scratch if scratch is not None else dest) / "umt5")
    out = {}
    for variant in variants:
        pipe, path = build(variant, text), dest / names[variant]
        pipe.set_progress_bar_config(disable=True)
        pipe.save_pretrained(path)
        out[variant] = (pipe, path)
    return out


def tiny_image(height: int, width: int | None = None, seed: int = 4):
    """A seeded random RGB picture: (PIL image, frames [1, H, W, 3] in 0..1 as the PNG holds them)."""
    from PIL import Image

    width = height if width is None else width
    g = torch.Generator().manual_seed(seed)
    pixels = (torch.rand(height, width, 3, generator=g) * 255).to(torch.uint8)
    return Image.fromarray(pixels.numpy()), pixels.float()[None] / 255
