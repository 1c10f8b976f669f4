import pytest
import torch

from vidcore.io.checkpoint import CheckpointError
from vidcore.models.dit import DiTBlock, DiTConfig, SpacetimeDiT, dit_parameter_count

torch.set_num_threads(1)

TINY = dict(in_channels=4, out_channels=4, width=16, depth=2, heads=2, text_dim=12)


def _inputs(b=2, t=3, h=4, w=4, c=4, text=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, c, t, h, w, generator=g)
    ctx = torch.randn(b, 5, text, generator=g)
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])[:b]
    pooled = torch.randn(b, text, generator=g)
    return x, ctx, mask, pooled


def _randomize(model, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return model


@pytest.mark.parametrize("layout", ["full", "factorized"])
@pytest.mark.parametrize("pooled_text,qk_norm,patch", [(True, True, (1, 1)), (False, False, (1, 2))])
def test_parameter_count_matches_closed_form(layout, pooled_text, qk_norm, patch):
    cfg = DiTConfig(
        **TINY, layout=layout, pooled_text=pooled_text, qk_norm=qk_norm, patch_t=patch[0], patch_s=patch[1]
    )
    assert sum(p.numel() for p in SpacetimeDiT(cfg).parameters()) == dit_parameter_count(cfg)
    # the default (built-in size) model too
    assert sum(p.numel() for p in SpacetimeDiT(DiTConfig()).parameters()) == 1_669_256


@pytest.mark.parametrize("layout", ["full", "factorized"])
def test_fresh_block_is_identity(layout):
    cfg = DiTConfig(**TINY, layout=layout)
    block = DiTBlock(cfg)
    model = SpacetimeDiT(cfg)  # initialize_weights zero-inits the AdaLN and cross-attn projections
    block.load_state_dict(model.blocks[0].state_dict())
    x = torch.randn(2, 3 * 4 * 4, 16)
    c = torch.randn(2, 16)
    ctx = torch.randn(2, 5, 16)
    from vidcore.ops.rope import rope_3d, split_head_dim

    rope = rope_3d(3, 4, 4, split_head_dim(8))
    assert torch.equal(block(x, c, ctx, None, (3, 4, 4), rope), x)


def test_fresh_model_outputs_zero_and_any_size_runs():
    model = SpacetimeDiT(DiTConfig(**TINY))
    for t, h, w in [(1, 2, 2), (3, 4, 6), (5, 8, 4)]:
        x, ctx, mask, pooled = _inputs(t=t, h=h, w=w)
        out = model(x, torch.tensor([0.3, 0.9]), ctx, mask, pooled)
        assert out.shape == x.shape and torch.count_nonzero(out) == 0


@pytest.mark.parametrize("layout", ["full", "factorized"])
def test_padding_tokens_are_ignored(layout):
    model = _randomize(SpacetimeDiT(DiTConfig(**TINY, layout=layout))).eval()
    x, ctx, mask, pooled = _inputs()
    out = model(x, 0.5, ctx, mask, pooled)
    ctx2 = ctx.clone()
    ctx2[1, 3:] = 100.0  # masked-out tokens of sample 1
    out2 = model(x, 0.5, ctx2, mask, pooled)
    assert torch.allclose(out[1], out2[1], atol=1e-5)
    ctx3 = ctx.clone()
    ctx3[1, 0] += 1.0  # a kept token changes the output
    assert not torch.allclose(out[1], model(x, 0.5, ctx3, mask, pooled)[1], atol=1e-4)


@pytest.mark.parametrize("layout", ["full", "factorized"])
def test_temporal_causal_ignores_later_frames(layout):
    model = _randomize(SpacetimeDiT(DiTConfig(**TINY, layout=layout, temporal_causal=True))).eval()
    x, ctx, mask, pooled = _inputs(t=4)
    out = model(x, 0.5, ctx, mask, pooled)
    x2 = x.clone()
    x2[:, :, 2:] += 1.0
    out2 = model(x2, 0.5, ctx, mask, pooled)
    assert torch.allclose(out[:, :, :2], out2[:, :, :2], atol=1e-5)
    assert not torch.allclose(out[:, :, 2:], out2[:, :, 2:], atol=1e-3)


def test_non_causal_full_mixes_frames_and_timestep_matters():
    model = _randomize(SpacetimeDiT(DiTConfig(**TINY))).eval()
    x, ctx, mask, pooled = _inputs(t=4)
    out = model(x, 0.5, ctx, mask, pooled)
    x2 = x.clone()
    x2[:, :, 3] += 1.0
    assert not torch.allclose(out[:, :, 0], model(x2, 0.5, ctx, mask, pooled)[:, :, 0], atol=1e-4)
    assert not torch.allclose(out, model(x, 0.6, ctx, mask, pooled), atol=1e-4)


def test_batch_elements_are_independent():
    model = _randomize(SpacetimeDiT(DiTConfig(**TINY))).eval()
    x, ctx, mask, pooled = _inputs()
    both = model(x, torch.tensor([0.2, 0.7]), ctx, mask, pooled)
    one = model(x[1:], torch.tensor([0.7]), ctx[1:], mask[1:], pooled[1:])
    assert torch.allclose(both[1:], one, atol=1e-5)


def test_save_load_bit_identical_and_meta_build(tmp_path):
    model = _randomize(SpacetimeDiT(DiTConfig(**TINY, layout="factorized"))).eval()
    path = model.save(tmp_path / "dit.safetensors")
    loaded = SpacetimeDiT.from_checkpoint(path)
    assert loaded.config == model.config
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(a, b)
    x, ctx, mask, pooled = _inputs()
    assert torch.equal(model(x, 0.5, ctx, mask, pooled), loaded(x, 0.5, ctx, mask, pooled))
    with pytest.raises(FileExistsError):
        model.save(path)
    half = SpacetimeDiT.from_checkpoint(path, dtype=torch.bfloat16)
    assert next(half.parameters()).dtype == torch.bfloat16


def test_bad_inputs_are_clear_errors():
    model = SpacetimeDiT(DiTConfig(**TINY, patch_s=2))
    x, ctx, mask, pooled = _inputs(h=5)
    with pytest.raises(ValueError, match="latent H=5 must be divisible by the patch size 2"):
        model(x, 0.5, ctx, mask, pooled)
    x, ctx, mask, pooled = _inputs()
    with pytest.raises(ValueError, match="context must be text embeddings"):
        model(x, 0.5, ctx[..., :3], mask, pooled)
    with pytest.raises(ValueError, match="needs pooled text embeddings"):
        model(x, 0.5, ctx, mask, None)
    with pytest.raises(ValueError, match="context_mask must be a bool tensor"):
        model(x, 0.5, ctx, mask.float(), pooled)
    with pytest.raises(ValueError, match="width=18 must be divisible by heads=4"):
        DiTConfig(width=18, heads=4)
    with pytest.raises(ValueError, match="layout='spatial'"):
        DiTConfig(layout="spatial")
    with pytest.raises(ValueError, match="unknown DiTConfig keys \\['depht'\\]"):
        DiTConfig.from_dict({"depht": 3})


def test_checkpoint_with_missing_key_lists_it(tmp_path):
    from safetensors.torch import load_file, save_file

    model = SpacetimeDiT(DiTConfig(**TINY))
    path = model.save(tmp_path / "dit.safetensors")
    from vidcore.io.checkpoint import read_metadata

    meta = read_metadata(path)
    state = load_file(str(path))
    state.pop("blocks.1.mlp.0.weight")
    state["extra.weight"] = torch.zeros(1)
    save_file(state, str(tmp_path / "broken.safetensors"), metadata=meta)
    with pytest.raises(CheckpointError, match="missing keys \\['blocks.1.mlp.0.weight'\\].*unexpected keys"):
        SpacetimeDiT.from_checkpoint(tmp_path / "broken.safetensors")


def test_refuses_non_safetensors(tmp_path):
    p = tmp_path / "model.pt"
    p.write_bytes(b"not a pickle you should load")
    with pytest.raises(ValueError, match="must be a .safetensors file"):
        SpacetimeDiT.from_checkpoint(p)


HELPERS = ("full_attention", "spatial_attention", "temporal_attention")


def _spy_helpers(monkeypatch):
    """Wrap the helpers where dit.py looks them up (its module globals) and record every call."""
    from vidcore.models import dit

    calls = []

    def spy(name):
        helper = getattr(dit, name)

        def wrapped(q, k, v, *args, **kwargs):
            calls.append((name, tuple(q.shape), kwargs.get("causal", False)))
            return helper(q, k, v, *args, **kwargs)

        return wrapped

    for name in HELPERS:
        monkeypatch.setattr(dit, name, spy(name))
    return calls


@pytest.mark.parametrize(
    "pattern,causal",
    [("full", False), ("full", True), ("spatial", False), ("temporal", False), ("temporal", True)],
)
def test_self_attention_equals_a_hand_built_call_of_the_public_helper(monkeypatch, pattern, causal):
    from einops import rearrange

    from vidcore.models.dit import SelfAttention
    from vidcore.ops import attention as att
    from vidcore.ops.rope import apply_rope, rope_3d, split_head_dim

    cfg = DiTConfig(**TINY)
    attn = _randomize(SelfAttention(cfg)).eval()
    t, h, w = 3, 2, 4
    x = torch.randn(2, t * h * w, cfg.width, generator=torch.Generator().manual_seed(3))
    rope = rope_3d(t, h, w, split_head_dim(cfg.head_dim))
    calls = _spy_helpers(monkeypatch)
    with torch.no_grad():
        out = attn(x, (t, h, w), rope, pattern, causal)
        # Reference: projections and RoPE written out, then the helper itself on [B, T, H, W, heads, d].
        q, k, v = (x @ attn.qkv.weight.T + attn.qkv.bias).chunk(3, dim=-1)
        q, k, v = (rearrange(z, "b l (n d) -> b n l d", n=cfg.heads) for z in (q, k, v))
        q, k = apply_rope(attn.q_norm(q), *rope), apply_rope(attn.k_norm(k), *rope)
        q, k, v = (rearrange(z, "b n (t h w) d -> b t h w n d", t=t, h=h, w=w) for z in (q, k, v))
        helper = getattr(att, f"{pattern}_attention")
        kwargs = {"causal": causal} if pattern != "spatial" else {}
        ref = rearrange(helper(q, k, v, backend="math", **kwargs), "b t h w n d -> b (t h w) (n d)")
        ref = attn.proj(ref)
    assert (out - ref).abs().max().item() < 1e-5
    assert calls == [(f"{pattern}_attention", (2, t, h, w, cfg.heads, cfg.head_dim), causal)]


@pytest.mark.parametrize("layout,causal", [("full", False), ("full", True), ("factorized", True)])
def test_dit_attention_goes_through_the_public_helpers(monkeypatch, layout, causal):
    model = _randomize(SpacetimeDiT(DiTConfig(**TINY, layout=layout, temporal_causal=causal))).eval()
    x, ctx, mask, pooled = _inputs()
    calls = _spy_helpers(monkeypatch)
    model(x, 0.5, ctx, mask, pooled)
    tokens = (2, 3, 4, 4, 2, 8)
    if layout == "full":
        expected = [("full_attention", tokens, causal)] * 2
    else:  # spatial never causal, temporal causal as configured
        expected = [("spatial_attention", tokens, False), ("temporal_attention", tokens, causal)] * 2
    assert calls == expected
