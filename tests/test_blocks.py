import math

import pytest
import torch

from vidcore.ops.embeddings import frame_position_embedding, sincos_3d, sinusoidal_embedding
from vidcore.ops.modulation import AdaLNZero, modulate
from vidcore.ops.patchify import patchify, unpatchify
from vidcore.ops.rope import apply_rope, rope_3d, split_head_dim

torch.set_num_threads(1)


def test_split_head_dim():
    assert split_head_dim(8) == (4, 2, 2)
    assert split_head_dim(32) == (8, 12, 12)
    assert split_head_dim(64) == (16, 24, 24)
    with pytest.raises(ValueError, match="head_dim=7"):
        split_head_dim(7)


def _score(q, k, pos_q, pos_k, dims=(4, 2, 2)):
    """q·k after rotating q at grid position pos_q and k at pos_k (each (t, h, w))."""
    t, h, w = 7, 7, 7
    cos, sin = rope_3d(t, h, w, dims)
    idx_q = (pos_q[0] * h + pos_q[1]) * w + pos_q[2]
    idx_k = (pos_k[0] * h + pos_k[1]) * w + pos_k[2]
    rq = apply_rope(q[None], cos[idx_q : idx_q + 1], sin[idx_q : idx_q + 1])[0]
    rk = apply_rope(k[None], cos[idx_k : idx_k + 1], sin[idx_k : idx_k + 1])[0]
    return (rq * rk).sum().item()


def test_rope_scores_depend_only_on_relative_offsets():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(8, generator=g), torch.randn(8, generator=g)
    base = _score(q, k, (3, 1, 4), (1, 2, 2))
    shifted = _score(q, k, (5, 3, 6), (3, 4, 4))  # same offset (2, -1, 2)
    other = _score(q, k, (5, 3, 6), (3, 4, 5))  # different offset
    assert abs(base - shifted) < 1e-5
    assert abs(base - other) > 1e-3


def test_rope_preserves_norm_and_identity_at_origin():
    x = torch.randn(2, 3, 4 * 5 * 6, 16)
    cos, sin = rope_3d(4, 5, 6, split_head_dim(16))
    y = apply_rope(x, cos, sin)
    assert torch.allclose(y.norm(dim=-1), x.norm(dim=-1), atol=1e-5)
    assert torch.allclose(y[..., 0, :], x[..., 0, :])  # position (0,0,0) rotates by 0


def test_rope_scale_maps_half_grid_onto_full_grid():
    cos_f, _ = rope_3d(1, 8, 8, (2, 2, 2))
    cos_h, _ = rope_3d(1, 4, 4, (2, 2, 2), scale=(1.0, 2.0, 2.0))
    # half-grid (i, j) sits at full-grid (2i, 2j)
    assert torch.allclose(cos_h.view(4, 4, -1), cos_f.view(8, 8, -1)[::2, ::2])


def test_sinusoidal_embedding_values():
    e = sinusoidal_embedding(torch.tensor([0.0, 1.0]), 4)
    # frequencies 1 and 1e-2: [cos(t), cos(t/100), sin(t), sin(t/100)]
    expected = torch.tensor([[1, 1, 0, 0], [math.cos(1), math.cos(0.01), math.sin(1), math.sin(0.01)]])
    assert torch.allclose(e, expected.float(), atol=1e-6)
    assert frame_position_embedding(5, 8).shape == (5, 8)
    pe = sincos_3d(2, 3, 4, 16)
    assert pe.shape == (24, 16) and len({tuple(r.tolist()) for r in pe}) == 24  # all positions distinct


def test_fresh_adaln_zero_is_identity_modulation():
    ada = AdaLNZero(6, 4, 3)
    ada.zero_init()
    shift, scale, gate = ada(torch.randn(2, 6))
    x = torch.randn(2, 5, 4)
    assert torch.equal(modulate(x, shift, scale), x)
    assert torch.count_nonzero(gate) == 0


@pytest.mark.parametrize("p_t,p_s", [(1, 1), (1, 2), (2, 2)])
def test_patchify_round_trip(p_t, p_s):
    x = torch.randn(2, 3, 4, 6, 8)
    tok = patchify(x, p_t, p_s)
    assert tok.shape == (2, 4 // p_t, 6 // p_s, 8 // p_s, 3 * p_t * p_s * p_s)
    assert torch.equal(unpatchify(tok, p_t, p_s), x)


def test_patchify_layout_groups_neighbours():
    x = torch.arange(16.0).view(1, 1, 1, 4, 4)
    tok = patchify(x, 1, 2)
    assert tok[0, 0, 0, 0].tolist() == [0, 1, 4, 5]
    assert tok[0, 0, 1, 1].tolist() == [10, 11, 14, 15]


def test_patchify_rejects_indivisible():
    with pytest.raises(ValueError, match="latent H=5 must be divisible by the patch size 2"):
        patchify(torch.randn(1, 3, 2, 5, 4), 1, 2)
