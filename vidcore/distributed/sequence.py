"""Sequence parallelism: a model's token sequence split over the ``ring x ulysses`` ranks of a CFG slice.

Installed into vidcore's one attention dispatch (:func:`vidcore.ops.attention.using_sequence_parallel`)
by :func:`sequence_parallel`. A model marks its sequence with ``sequence_shard(L)``: ``split`` pads the
tokens (and per-token tables: RoPE, per-token timesteps) to ``Lp``, a multiple of the group size ``P``, and
keeps this rank's ``c = Lp / P`` tokens; ``gather`` puts the outputs back together and drops the padding.
Text keys of cross-attention stay whole on every rank, so cross-attention needs no communication.

Self-attention (``sequence_attention``, the "full" video pattern):

1. Ulysses (Jacobs et al., 2023, arXiv:2309.14509): one all-to-all turns ``[B, H, c, d]`` (all heads, our
   tokens) into ``[B, H/u, u·c, d]`` (our heads, the tokens of our Ulysses group).
2. Ring (Liu et al., 2023, arXiv:2310.01889): across the ``r`` Ulysses groups, key/value blocks travel
   around the ring (P2P, the next transfer overlapping the current block) and partial outputs merge by
   their log-sum-exp. With ``r = 1`` the whole sequence is local after step 1 and the registered backend
   runs it. Both together are USP (Fang & Zhao, 2024, arXiv:2405.07719).
3. The inverse all-to-all brings ``[B, H, c, d]`` back.

Padded keys are always masked (Wan's own sequence-parallel code leaves them unmasked), so any token count
gives the one-process result.

Factorized video attention (spatial within a frame, temporal across frames): a slice of the flattened
sequence is not a set of whole frames in general, so

- spatial, when every rank holds whole frames (``Lp == L`` and ``c`` a multiple of H·W): local, no
  communication at all (the T-sharded half of DSP, Zhao et al., 2024, arXiv:2403.10266);
- otherwise (and always for temporal): the Ulysses all-to-all gives the whole sequence of the group's
  tokens for ``H/u`` heads, an all-gather over the ring adds the other groups' tokens, the pattern runs on
  the whole clip, and each rank keeps its tokens. Exact; with ``r > 1`` the factorized attention itself
  (O(T·(HW)² + HW·T²), small beside full attention) is computed ``r`` times.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from einops import rearrange
from torch import Tensor

from ..ops.attention import attention, spatial_attention, temporal_attention, using_sequence_parallel
from .comm import all_gather_cat, all_to_all, ring_shift, wait_all
from .mesh import ParallelMesh

# mask_fn(query positions [lq], key positions [lk]) -> bool keep / float bias, [B|1, 1, lq|1, lk], or None
MaskFn = Callable[[Tensor, Tensor], "Tensor | None"]
# Query rows per block of the ring's float32 score matrix are capped so it stays near this many bytes.
SCORE_BYTES = 256 * 2**20


class _Shard:
    """This rank's share of one token sequence (see the module docstring)."""

    def __init__(self, run: SequenceParallelRun, length: int) -> None:
        self.run, self.length = run, length

    def split(self, x: object, dim: int) -> object:
        if x is None:
            return None
        if isinstance(x, tuple):
            return tuple(self.split(t, dim) for t in x)
        if not isinstance(x, Tensor):
            raise TypeError(f"sequence_shard.split takes tensors (or tuples of them), got {type(x).__name__}")
        n, run = x.shape[dim], self.run
        if n == 1 and self.length != 1:
            return x  # broadcast over the tokens (one timestep per sample): the same on every rank
        if n != self.length:
            raise ValueError(
                f"sequence_shard({self.length}).split: dim {dim} of a {tuple(x.shape)} tensor has {n} "
                f"entries, expected the {self.length} tokens (or 1 to broadcast)"
            )
        lp = run.padded(self.length)
        if lp > n:
            pad = list(x.shape)
            pad[dim] = lp - n
            x = torch.cat([x, x.new_zeros(pad)], dim=dim)
        c = lp // run.size
        return x.narrow(dim, run.mesh.sequence_rank * c, c).contiguous()

    def gather(self, x: Tensor, dim: int) -> Tensor:
        run = self.run
        c = run.padded(self.length) // run.size
        if x.shape[dim] != c:
            raise ValueError(
                f"sequence_shard({self.length}).gather: dim {dim} of {tuple(x.shape)} should hold this "
                f"rank's {c} tokens"
            )
        m = run.mesh
        # Sequence order is ring_index · u + ulysses_index: gather inside the Ulysses group, then the ring.
        x = all_gather_cat(x, dim, m.ulysses.group, m.ulysses.size, "gather")
        x = all_gather_cat(x, dim, m.ring.group, m.ring.size, "gather")
        return x.narrow(dim, 0, self.length)


class SequenceParallelRun:
    """The :class:`vidcore.ops.attention.SequenceParallel` implementation over one :class:`ParallelMesh`."""

    def __init__(self, mesh: ParallelMesh) -> None:
        self.mesh = mesh
        self.size = mesh.sequence_size
        self.length: int | None = None

    def padded(self, length: int) -> int:
        return math.ceil(length / self.size) * self.size

    def shard(self, length: int) -> _Shard:
        if isinstance(length, bool) or not isinstance(length, int) or length < 1:
            raise ValueError(f"sequence_shard(length={length!r}) needs a positive token count")
        self.length = length
        return _Shard(self, length)

    # ---- geometry ---------------------------------------------------------------------------------------

    def _local(self, q: Tensor, k: Tensor, v: Tensor, what: str) -> tuple[int, int, int]:
        """(L, Lp, c) of the open sequence; refuses q/k/v that are not this rank's share of it."""
        if self.length is None:
            raise RuntimeError(
                f"{what} ran under sequence_parallel before the model called sequence_shard(L): the model "
                "must split its tokens first"
            )
        length = self.length
        lp = self.padded(length)
        c = lp // self.size
        if q.ndim != 4 or not (q.shape[-2] == k.shape[-2] == v.shape[-2] == c) or q.shape[:2] != k.shape[:2]:
            raise ValueError(
                f"{what} under sequence parallelism expects this rank's {c} of the {length} tokens "
                f"([B, heads, {c}, head_dim]), got q{tuple(q.shape)} k{tuple(k.shape)} v{tuple(v.shape)}"
            )
        return length, lp, c

    # ---- Ulysses all-to-all -------------------------------------------------------------------------------

    def _to_heads(self, x: Tensor) -> Tensor:
        """[S, B, H, c, d] (all heads, our tokens) -> [S, B, H/u, u·c, d] (our heads, the group's tokens)."""
        uly = self.mesh.ulysses
        u = uly.size
        if u == 1:
            return x
        s, b, h, c, d = x.shape
        self.mesh.config.check_heads(h)
        x = x.reshape(s, b, u, h // u, c, d).permute(2, 0, 1, 3, 4, 5)  # [u (head group), S, B, H/u, c, d]
        y = all_to_all(x, uly.group, u, uly.rank, self.mesh.comm, "ulysses")  # [u (token chunk), ...]
        return y.permute(1, 2, 3, 0, 4, 5).reshape(s, b, h // u, u * c, d)

    def _to_sequence(self, x: Tensor) -> Tensor:
        """[B, H/u, u·c, d] -> [B, H, c, d]: the inverse of :meth:`_to_heads`."""
        uly = self.mesh.ulysses
        u = uly.size
        if u == 1:
            return x
        b, hu, uc, d = x.shape
        c = uc // u
        x = x.reshape(b, hu, u, c, d).permute(2, 0, 1, 3, 4)  # [u (token chunk), B, H/u, c, d]
        y = all_to_all(x, uly.group, u, uly.rank, self.mesh.comm, "ulysses")  # [u (head group), ...]
        return y.permute(1, 0, 2, 3, 4).reshape(b, hu * u, c, d)

    # ---- attention --------------------------------------------------------------------------------------

    def attention(
        self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, causal: bool, backend: str | None
    ) -> Tensor:
        length, _, _ = self._local(q, k, v, "sequence_attention")
        fn = None if mask is None else _dense_mask(mask, length)
        if causal:
            fn = _and(fn, lambda qp, kp: (kp[None, :] <= qp[:, None])[None, None])
        return self._attend(q, k, v, fn, backend)

    def video_attention(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        grid: tuple[int, int, int],
        pattern: str,
        causal: bool,
        backend: str | None,
    ) -> Tensor:
        length, lp, c = self._local(q, k, v, "video_self_attention")
        t, h, w = grid
        hw = h * w
        if t * hw != length:
            raise ValueError(f"video_self_attention: grid {grid} has {t * hw} tokens, the sequence {length}")
        if pattern == "full":
            fn = None
            if causal:  # block-causal over frames: a token sees every token of its own and earlier frames
                fn = lambda qp, kp: ((kp // hw)[None, :] <= (qp // hw)[:, None])[None, None]  # noqa: E731
            return self._attend(q, k, v, fn, backend)
        if pattern == "spatial" and lp == length and c % hw == 0:
            video = [rearrange(z, "b n (t h w) d -> b t h w n d", h=h, w=w) for z in (q, k, v)]
            return rearrange(spatial_attention(*video, backend=backend), "b t h w n d -> b n (t h w) d")
        m = self.mesh
        qkv = self._to_heads(torch.stack([q, k, v]))  # [3, B, H/u, u·c, d]
        qkv = all_gather_cat(qkv, 3, m.ring.group, m.ring.size, "ring_gather")  # [3, B, H/u, Lp, d]
        video = [rearrange(z[:, :, :length], "b n (t h w) d -> b t h w n d", t=t, h=h, w=w) for z in qkv]
        if pattern == "spatial":
            out = spatial_attention(*video, backend=backend)
        else:
            out = temporal_attention(*video, causal=causal, backend=backend)
        out = rearrange(out, "b t h w n d -> b n (t h w) d")
        out = torch.cat([out, out.new_zeros(*out.shape[:2], lp - length, out.shape[-1])], dim=2)
        block = m.ulysses.size * c
        return self._to_sequence(out[:, :, m.ring.rank * block : (m.ring.rank + 1) * block])

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, fn: MaskFn | None, backend: str | None) -> Tensor:
        m = self.mesh
        q, k, v = self._to_heads(torch.stack([q, k, v]))  # [B, H/u, u·c, d] each
        block = q.shape[-2]
        qpos = m.ring.rank * block + torch.arange(block, device=q.device)
        if m.ring.size == 1:
            out = attention(q, k, v, mask=self._keep(fn, qpos, qpos), backend=backend)
        else:
            out = self._ring(q, k, v, qpos, fn)
        return self._to_sequence(out)

    def _keep(self, fn: MaskFn | None, qpos: Tensor, kpos: Tensor) -> Tensor | None:
        """The mask for queries at ``qpos`` against keys at ``kpos``: ``fn``'s, with padded keys masked."""
        pad = kpos >= self.length
        mask = None if fn is None else fn(qpos, kpos)
        if mask is None:
            return ~pad[None, None, None, :] if bool(pad.any()) else None
        if mask.dtype == torch.bool:
            return mask & ~pad
        return mask.masked_fill(pad, float("-inf"))

    def _ring(self, q: Tensor, k: Tensor, v: Tensor, qpos: Tensor, fn: MaskFn | None) -> Tensor:
        """Ring attention over the Ulysses groups: our queries against every group's key/value block."""
        ring = self.mesh.ring
        block = q.shape[-2]
        send_to, recv_from = ring.global_rank(ring.rank + 1), ring.global_rank(ring.rank - 1)
        kv = torch.stack([k, v]).contiguous()
        out = lse = None
        for step in range(ring.size):
            pending = None
            if step < ring.size - 1:
                pending = ring_shift(kv, send_to, recv_from, ring.group, "ring")
            src = (ring.rank - step) % ring.size
            kpos = src * block + torch.arange(block, device=q.device)
            o, s = attention_lse(q, kv[0], kv[1], self._keep(fn, qpos, kpos))
            out, lse = (o, s) if out is None else merge_lse(out, lse, o, s)
            if pending is not None:
                reqs, kv = pending
                wait_all(reqs, "ring")
        return out.to(q.dtype)


def attention_lse(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
    """float32 softmax(q kᵀ/√d + mask) v and its log-sum-exp per query (-inf, with output 0, for a query
    whose keys are all masked), in query chunks of bounded size."""
    b, h, lq, d = q.shape
    lk = k.shape[-2]
    scale = 1.0 / math.sqrt(d)
    bias = None if mask is None else mask.float()
    if mask is not None and mask.dtype == torch.bool:
        bias = torch.zeros(mask.shape, device=mask.device).masked_fill(~mask, float("-inf"))
    rows = max(1, SCORE_BYTES // max(1, b * h * lk * 4))
    kf, vf = k.float(), v.float()
    outs, lses = [], []
    for i in range(0, lq, rows):
        scores = torch.einsum("bhqd,bhkd->bhqk", q[:, :, i : i + rows].float(), kf) * scale
        if bias is not None:
            scores = scores + (bias if bias.shape[-2] == 1 else bias[..., i : i + rows, :])
        lse = torch.logsumexp(scores, dim=-1)
        safe = lse.masked_fill(torch.isinf(lse), 0.0)
        outs.append(torch.einsum("bhqk,bhkd->bhqd", torch.exp(scores - safe[..., None]), vf))
        lses.append(lse)
    return torch.cat(outs, dim=2), torch.cat(lses, dim=2)


def merge_lse(out_a: Tensor, lse_a: Tensor, out_b: Tensor, lse_b: Tensor) -> tuple[Tensor, Tensor]:
    """Combine attention over two disjoint key sets from their outputs and log-sum-exps (the online softmax
    of Milakov & Gimelshein, 2018, arXiv:1805.02867, as in FlashAttention's block merge)."""
    lse = torch.logaddexp(lse_a, lse_b)
    safe = lse.masked_fill(torch.isinf(lse), 0.0)
    out = out_a * torch.exp(lse_a - safe)[..., None] + out_b * torch.exp(lse_b - safe)[..., None]
    return out, lse


def _dense_mask(mask: Tensor, length: int) -> MaskFn:
    """A mask over the whole sequence (broadcastable to [B, 1, L, L]) as a function of positions."""
    m = mask.reshape((1,) * (4 - mask.ndim) + tuple(mask.shape)) if mask.ndim < 4 else mask
    if m.ndim != 4 or m.shape[1] != 1 or m.shape[-1] != length or m.shape[-2] not in (1, length):
        raise ValueError(
            f"under sequence parallelism a self-attention mask must broadcast to [B, 1, {length}, {length}] "
            f"(no per-head masks), got {tuple(mask.shape)}"
        )

    def fn(qpos: Tensor, kpos: Tensor) -> Tensor:
        rows = m if m.shape[-2] == 1 else m.index_select(-2, qpos.clamp(max=length - 1))
        return rows.index_select(-1, kpos.clamp(max=length - 1))

    return fn


def _and(a: MaskFn | None, b: MaskFn) -> MaskFn:
    if a is None:
        return b

    def fn(qpos: Tensor, kpos: Tensor) -> Tensor:
        first, keep = a(qpos, kpos), b(qpos, kpos)
        if first.dtype == torch.bool:
            return first & keep
        return first.masked_fill(~keep, float("-inf"))

    return fn


@contextmanager
def sequence_parallel(mesh: ParallelMesh | None) -> Iterator[SequenceParallelRun | None]:
    """Run the enclosed model calls sequence-parallel over ``mesh``'s ``ring x ulysses`` ranks (every rank
    of the CFG slice calls the model with the same inputs and gets the whole output); a no-op for None or
    a mesh without sequence ranks. Yields the run (its ``length`` stays None if no model split tokens)."""
    if mesh is None or mesh.sequence_size == 1:
        yield None
        return
    run = SequenceParallelRun(mesh)
    with using_sequence_parallel(run):
        yield run
