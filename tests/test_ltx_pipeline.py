"""LTX-Video pipeline: a short sampling run equals diffusers' LTXPipeline from the same noise."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from vidcore.models.ltx.config import LTXTransformerConfig, LTXVAEConfig
from vidcore.models.ltx.transformer import LTXVideoTransformer
from vidcore.models.ltx.vae import LTXVideoVAE
from vidcore.pipelines.ltx import LTXPipeline, LTXPipelineConfig

torch.set_num_threads(1)

sys.path.insert(0, str(Path(__file__).parent))
import _ltx_fixtures as fx  # noqa: E402  (skips the module when diffusers is not installed)


class FakeT5:
    """Deterministic stand-in for the T5 encoder: (emb [B, 6, width], mask [B, 6]) per prompt."""

    def __init__(self, width: int = 16) -> None:
        self.width = width

    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        embs, masks = [], []
        for p in prompts:
            g = torch.Generator().manual_seed(sum(map(ord, p)) + 1)
            embs.append(torch.randn(6, self.width, generator=g))
            n = min(6, 1 + len(p.split()))
            masks.append(torch.arange(6) < n)
        return torch.stack(embs), torch.stack(masks)


@pytest.fixture(scope="module")
def pair():
    ref_t = fx.tiny_transformer(seed=4)
    ref_v = fx.tiny_vae("0.9.1", seed=5)
    t = LTXVideoTransformer(LTXTransformerConfig.from_diffusers(dict(ref_t.config)))
    t.load_state_dict(ref_t.state_dict())
    v = LTXVideoVAE(LTXVAEConfig.from_diffusers(dict(ref_v.config)))
    v.load_state_dict(ref_v.state_dict())
    # decode settings of the reference run below (a pipeline's decode settings are part of its config)
    cfg = LTXPipelineConfig(decode_timestep=0.05, decode_noise_scale=0.025)
    return ref_t, ref_v, LTXPipeline(t.eval(), v.eval(), FakeT5(), cfg)


def _reference(name: str, transformer, vae):
    """diffusers' LTX pipeline ``name`` with LTX-Video's scheduler (dynamic shift, terminal 0.1), no T5."""
    diffusers = pytest.importorskip("diffusers")
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler(
        use_dynamic_shifting=True,
        base_shift=0.95,
        max_shift=2.05,
        base_image_seq_len=1024,
        max_image_seq_len=4096,
        shift_terminal=0.1,
    )
    ref = getattr(diffusers, name)(
        scheduler=scheduler, vae=vae, text_encoder=None, tokenizer=None, transformer=transformer
    )
    ref.set_progress_bar_config(disable=True)
    return ref


def test_ltx_pipeline_matches_diffusers_ltx_pipeline(pair):
    ref_t, ref_v, ours = pair
    ref = _reference("LTXPipeline", ref_t, ref_v)
    prompt, negative = "a red fox running", "blurry"
    emb, mask = FakeT5().encode([prompt, negative])
    kw = dict(num_frames=9, height=64, width=64, guidance_rescale=0.5)
    ref_kw = dict(decode_timestep=0.05, decode_noise_scale=0.025, frame_rate=24)
    seed, shape = 11, (1, 8, 2, 2, 2)
    # diffusers' VAE draws its injected noise from the global RNG; ours continues the pipeline generator.
    g = torch.Generator().manual_seed(seed)
    torch.randn(shape, generator=g), torch.randn(shape, generator=g)
    torch.set_rng_state(g.get_state())
    with torch.no_grad():
        want = ref(
            prompt_embeds=emb[:1],
            prompt_attention_mask=mask[:1].long(),
            negative_prompt_embeds=emb[1:],
            negative_prompt_attention_mask=mask[1:].long(),
            num_inference_steps=3,
            guidance_scale=3.0,
            generator=torch.Generator().manual_seed(seed),
            output_type="pt",
            **kw,
            **ref_kw,
        ).frames[0]  # [T, 3, H, W]
    got = ours.generate(prompt, negative, steps=3, guidance=3.0, seed=seed, fps=24, **kw)
    assert got.shape == (9, 64, 64, 3)
    want = want.permute(0, 2, 3, 1)
    assert 0.05 < want.std() and ((want - got).abs().max() / want.abs().max()) < 1e-5
    # the negative prompt is used
    other = ours.generate(prompt, "", steps=3, guidance=3.0, seed=seed, fps=24, **kw)
    assert (other - got).abs().max() > 1e-4


def test_ltx_pipeline_bad_input(pair):
    _, _, ours = pair
    with pytest.raises(ValueError, match=r"num_frames=10 must be 8k \+ 1 .*nearest \[9, 17\]"):
        ours.generate("x", num_frames=10, height=64, width=64, steps=1)
    with pytest.raises(
        ValueError, match=r"width=100 must be a positive multiple of 32 \(nearest valid: \[96, 128\]\)"
    ):
        ours.generate("x", num_frames=9, height=64, width=100, steps=1)
    wide = LTXPipeline(ours.transformer, ours.vae, FakeT5(width=4096))
    with pytest.raises(ValueError, match="expects width 16"):
        wide.generate("x", num_frames=9, height=64, width=64, steps=1)
    with pytest.raises(TypeError, match="encode"):
        LTXPipeline(ours.transformer, ours.vae, object())


def test_ltx_image_to_video_matches_diffusers(pair):
    ref_t, ref_v, ours = pair
    ref = _reference("LTXImageToVideoPipeline", ref_t, ref_v)
    prompt, negative = "a red fox running", "blurry"
    emb, mask = FakeT5().encode([prompt, negative])
    image = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(3))  # ComfyUI IMAGE layout
    seed, shape = 11, (1, 8, 2, 2, 2)
    # Both draw the posterior sample, the noise and the decode noise from the pipeline generator; diffusers'
    # VAE then draws its injected noise from the global RNG, ours from the same generator.
    g = torch.Generator().manual_seed(seed)
    (
        torch.randn((1, 8, 1, 2, 2), generator=g),
        torch.randn(shape, generator=g),
        torch.randn(shape, generator=g),
    )
    torch.set_rng_state(g.get_state())
    kw = dict(num_frames=9, height=64, width=64, guidance_rescale=0.5)
    with torch.no_grad():
        want = ref(
            image=image.permute(0, 3, 1, 2),
            prompt_embeds=emb[:1],
            prompt_attention_mask=mask[:1].long(),
            negative_prompt_embeds=emb[1:],
            negative_prompt_attention_mask=mask[1:].long(),
            num_inference_steps=3,
            guidance_scale=3.0,
            generator=torch.Generator().manual_seed(seed),
            output_type="pt",
            decode_timestep=0.05,
            decode_noise_scale=0.025,
            frame_rate=24,
            **kw,
        ).frames[0]  # [T, 3, H, W]
    got = ours.generate(prompt, negative, image=image, steps=3, guidance=3.0, seed=seed, fps=24, **kw)
    want = want.permute(0, 2, 3, 1)
    assert got.shape == (9, 64, 64, 3) and 0.05 < want.std()
    assert ((want - got).abs().max() / want.abs().max()) < 1e-5
    # the image is used, and its size is the video's unless given
    other = ours.generate(
        prompt, negative, image=image.flip(1), steps=3, guidance=3.0, seed=seed, fps=24, **kw
    )
    assert (other - got).abs().max() > 1e-4
    same_size = dict(kw, height=None, width=None)
    assert torch.equal(
        ours.generate(prompt, negative, image=image, steps=3, guidance=3.0, seed=seed, fps=24, **same_size),
        got,
    )
    with pytest.raises(ValueError, match=r"image is 64x64 \(WxH\) but the video is 96x64"):
        ours.generate(prompt, image=image, steps=1, num_frames=9, height=64, width=96)
    with pytest.raises(ValueError, match="last_image .* is not supported by LTX-Video models"):
        ours.generate(prompt, image=image, last_image=image, steps=1, num_frames=9)
