"""Closed-form bytes each rank sends per attention layer (and per forward), the quantities
:class:`~vidcore.distributed.comm.CommCounter` measures: DeviceMesh degrees ``u`` (Ulysses) and ``r`` (ring),
``P = u·r``, a sequence of ``L`` tokens padded to ``Lp`` (a multiple of P), hidden size ``C`` (heads x head
dim), ``b`` bytes per element, batch ``B``.

- Ulysses (arXiv:2309.14509 §3.2): q, k, v in and the output back, each ``B·Lp/P·C`` elements of which
  ``(u-1)/u`` leave the rank: ``4·B·(Lp/P)·C·b·(u-1)/u``; with ``comm="all_gather"`` each of the 4 tensors is
  sent whole to the u-1 others: ``4·B·(Lp/P)·C·b·(u-1)``.
- Ring (arXiv:2310.01889): after the all-to-all a rank holds ``Lp/r`` tokens of ``C/u`` channels; its k and
  v block travel ``r-1`` steps: ``2·B·(Lp/r)·(C/u)·b·(r-1)``.
"""

from __future__ import annotations

import math


def padded_length(length: int, ranks: int) -> int:
    """Tokens after padding to a multiple of the sequence ranks."""
    return math.ceil(length / ranks) * ranks


def ulysses_bytes(
    length: int,
    hidden: int,
    itemsize: int,
    ulysses: int,
    ring: int = 1,
    batch: int = 1,
    comm: str = "all_to_all",
) -> float:
    """Bytes one rank sends in the all-to-alls of one self-attention layer (q, k, v in; the output back)."""
    p = ulysses * ring
    local = batch * padded_length(length, p) / p * hidden * itemsize  # one of q, k, v, out on this rank
    if comm == "all_to_all":
        return 4 * local * (ulysses - 1) / ulysses
    if comm == "all_gather":
        return 4 * local * (ulysses - 1)
    raise ValueError(f"comm={comm!r} must be 'all_to_all' or 'all_gather'")


def ring_bytes(length: int, hidden: int, itemsize: int, ulysses: int, ring: int, batch: int = 1) -> float:
    """Bytes one rank sends passing its key/value block around the ring in one self-attention layer."""
    lp = padded_length(length, ulysses * ring)
    return 2 * batch * (lp / ring) * (hidden / ulysses) * itemsize * (ring - 1)


def attention_bytes(
    length: int,
    hidden: int,
    itemsize: int,
    ulysses: int = 1,
    ring: int = 1,
    batch: int = 1,
    comm: str = "all_to_all",
) -> float:
    """Bytes one rank sends for one sequence-parallel self-attention layer (USP: both parts)."""
    uly = ulysses_bytes(length, hidden, itemsize, ulysses, ring, batch, comm)
    return uly + ring_bytes(length, hidden, itemsize, ulysses, ring, batch)


def gather_bytes(
    length: int, channels: int, itemsize: int, ulysses: int = 1, ring: int = 1, batch: int = 1
) -> float:
    """Bytes one rank sends to put a ``channels``-wide output sequence back together (once per forward): its
    ``Lp/P`` tokens to the u-1 others of its Ulysses group, then the group's ``Lp/r`` to the r-1 others."""
    p = ulysses * ring
    lp = padded_length(length, p)
    row = batch * channels * itemsize
    return row * lp / p * (ulysses - 1) + row * lp / ring * (ring - 1)


def weight_gather_bytes(weight_bytes: float, ranks: int) -> float:
    """Bytes one rank sends per forward when FSDP gathers every weight: its 1/P shard to the P-1 others."""
    return weight_bytes / ranks * (ranks - 1)
