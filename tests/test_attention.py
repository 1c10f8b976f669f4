import logging

import pytest
import torch

from vidcore.ops import attention as att

torch.set_num_threads(1)


def _qkv(b=2, h=3, lq=10, lk=10, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(b, h, lq, d, generator=g),
        torch.randn(b, h, lk, d, generator=g),
        torch.randn(b, h, lk, d, generator=g),
    )


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("mask_kind", [None, "bool", "bias"])
@pytest.mark.parametrize("lq,lk", [(10, 10), (4, 10)])
def test_sdpa_matches_math(causal, mask_kind, lq, lk):
    q, k, v = _qkv(lq=lq, lk=lk)
    g = torch.Generator().manual_seed(1)
    mask = None
    if mask_kind == "bool":
        mask = torch.rand(2, 1, 1, lk, generator=g) > 0.3
        mask[..., -1] = True  # keep every row attendable, so both backends are defined
    elif mask_kind == "bias":
        mask = torch.randn(2, 3, lq, lk, generator=g)
    a = att.attention(q, k, v, mask, causal, backend="math")
    b = att.attention(q, k, v, mask, causal, backend="sdpa")
    assert (a - b).abs().max().item() <= 1e-5


def test_math_matches_explicit_formula():
    q, k, v = _qkv(b=1, h=1, lq=3, lk=4, d=2)
    scores = q[0, 0] @ k[0, 0].T / 2**0.5
    expected = scores.softmax(-1) @ v[0, 0]
    assert torch.allclose(att.attention(q, k, v, backend="math")[0, 0], expected, atol=1e-6)


def test_bool_mask_excludes_keys():
    q, k, v = _qkv(lk=6)
    mask = torch.tensor([True, True, True, False, False, False])[None, None, None]
    full = att.attention(q, k[..., :3, :], v[..., :3, :], backend="sdpa")
    masked = att.attention(q, k, v, mask=mask, backend="sdpa")
    assert (full - masked).abs().max().item() < 1e-6


def test_env_var_and_argument_precedence(monkeypatch):
    q, _, _ = _qkv()
    monkeypatch.setenv(att.ENV_VAR, "math")
    assert att.resolve_backend(q) == "math"
    assert att.resolve_backend(q, "sdpa") == "sdpa"
    monkeypatch.delenv(att.ENV_VAR)
    assert att.resolve_backend(q) == "sdpa"


def test_unknown_and_unavailable_backends_are_clear_errors(monkeypatch):
    q, k, v = _qkv()
    with pytest.raises(ValueError, match="'flash9' is unknown; registered: \\['math', 'sdpa', 'xformers'\\]"):
        att.attention(q, k, v, backend="flash9")
    with pytest.raises(RuntimeError, match="xformers.*cannot run on device cpu"):
        att.attention(q, k, v, backend="xformers")
    monkeypatch.setenv(att.ENV_VAR, "xformers")
    with pytest.raises(RuntimeError, match="VIDCORE_ATTENTION"):
        att.attention(q, k, v)


def test_auto_on_cuda_without_xformers_logs_once(monkeypatch, caplog):
    class FakeCuda:
        is_cuda = True
        device = "cuda:0"

    monkeypatch.setattr(att._REGISTRY, "warned", set())
    monkeypatch.setitem(att._REGISTRY.available, "xformers", lambda q: False)
    with caplog.at_level(logging.INFO, logger="vidcore"):
        assert att.resolve_backend(FakeCuda()) == "sdpa"
        assert att.resolve_backend(FakeCuda()) == "sdpa"
    assert sum("xformers is not installed" in r.message for r in caplog.records) == 1


def test_shape_errors_name_shapes():
    q, k, v = _qkv()
    with pytest.raises(ValueError, match="q\\(2, 3, 10, 8\\) k\\(2, 3, 10, 8\\) v\\(2, 3, 9, 8\\)"):
        att.attention(q, k, v[..., :9, :])
    with pytest.raises(ValueError, match="\\[B, heads, L, head_dim\\]"):
        att.attention(q[0], k[0], v[0])


def _video_qkv(b=1, t=4, h=3, w=2, n=2, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, t, h, w, n, d, generator=g) for _ in range(3)]


def test_spatial_attention_equals_per_frame_full_attention():
    q, k, v = _video_qkv()
    out = att.spatial_attention(q, k, v)
    for t in range(q.shape[1]):
        frame = att.full_attention(q[:, t : t + 1], k[:, t : t + 1], v[:, t : t + 1])
        assert (out[:, t : t + 1] - frame).abs().max() < 1e-6


def test_temporal_attention_matches_loop_and_causal_ignores_future():
    q, k, v = _video_qkv()
    out = att.temporal_attention(q, k, v, causal=True)
    # one position by hand
    qq, kk, vv = (x[0, :, 1, 0].transpose(0, 1)[None] for x in (q, k, v))  # [1, n, t, d]
    ref = att.attention(qq, kk, vv, causal=True, backend="math")[0].transpose(0, 1)
    assert (out[0, :, 1, 0] - ref).abs().max() < 1e-5
    # changing frames after t=1 leaves outputs at t <= 1 bit-identical
    k2, v2 = k.clone(), v.clone()
    k2[:, 2:] += 5.0
    v2[:, 2:] -= 3.0
    out2 = att.temporal_attention(q, k2, v2, causal=True)
    assert torch.equal(out[:, :2], out2[:, :2])
    assert not torch.equal(out[:, 2:], out2[:, 2:])


def test_full_attention_mixes_frames_spatial_does_not():
    q, k, v = _video_qkv()
    v2 = v.clone()
    v2[:, 3] += 1.0
    assert torch.equal(att.spatial_attention(q, k, v)[:, :3], att.spatial_attention(q, k, v2)[:, :3])
    assert not torch.equal(att.full_attention(q, k, v)[:, :3], att.full_attention(q, k, v2)[:, :3])


def test_causal_full_attention_is_block_causal_over_frames():
    q, k, v = _video_qkv()
    out = att.full_attention(q, k, v, causal=True)
    for t in range(q.shape[1]):
        # frame t attends to every token of frames 0..t and to nothing later
        seen = att.full_attention(q[:, : t + 1], k[:, : t + 1], v[:, : t + 1], backend="math")
        assert (out[:, t] - seen[:, t]).abs().max() < 1e-5
    assert (out[:, -1] - att.full_attention(q, k, v)[:, -1]).abs().max() < 1e-5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="xformers backend needs a CUDA device; none here")
def test_xformers_matches_math_on_cuda():
    pytest.importorskip("xformers", reason="xformers (the `gpu` extra) is not installed")
    q, k, v = (x.cuda() for x in _qkv(lq=16, lk=16, d=32))
    mask = torch.rand(2, 1, 1, 16, device="cuda") > 0.3
    mask[..., 0] = True
    for causal in (False, True):
        a = att.attention(q, k, v, mask, causal, backend="math")
        b = att.attention(q, k, v, mask, causal, backend="xformers")
        assert (a - b).abs().max().item() <= 1e-5
