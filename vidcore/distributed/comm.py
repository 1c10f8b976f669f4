"""The collectives sequence / CFG parallelism use, each counting the bytes it sends (:class:`CommCounter`).

Bytes are counted as what this rank sends: an all-to-all of ``n`` bytes over ``g`` ranks keeps ``n/g`` and
sends ``n·(g-1)/g``; an all-gather sends its ``n`` bytes to each of the ``g-1`` others; a ring step sends
its block once. These are the quantities of the per-layer formulas of DeepSpeed-Ulysses (arXiv:2309.14509,
§3.2) and Ring Attention (arXiv:2310.01889).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar

import torch
import torch.distributed as dist
from torch import Tensor


class ParallelError(RuntimeError):
    """A parallel run cannot go on: another rank failed, exited, timed out or disagrees about the job."""


def failure(label: str, cause: BaseException) -> ParallelError:
    """The error of a failed collective, saying what probably happened."""
    where = f"rank {dist.get_rank()} of {dist.get_world_size()}" if dist.is_initialized() else "this rank"
    return ParallelError(
        f"vidcore parallel ({where}): the {label} collective with the other ranks failed; another rank "
        "probably exited, crashed or did not answer within the process-group timeout, so this run stops "
        f"and writes nothing. Cause: {cause}"
    )


@contextmanager
def collective(label: str) -> Iterator[None]:
    """Time a blocking collective (into the active :class:`CommCounter`) and turn its failure into a
    :class:`ParallelError` (see :func:`failure`)."""
    start = time.perf_counter()
    try:
        yield
    except ParallelError:
        raise
    except RuntimeError as e:  # torch.distributed.DistError and the backends' own errors
        raise failure(label, e) from e
    counter = _COUNTER.get()
    if counter is not None:
        counter.seconds[label] += time.perf_counter() - start


class CommCounter:
    """Bytes sent, calls made and seconds spent waiting (for a ring step: the part its transfer did not hide
    behind the block's compute) by this rank, per label (``ulysses``, ``ring``, ``gather``, ``cfg``, ...).
    Seconds are host time: on CUDA they include a transfer only where the host waits for it."""

    def __init__(self) -> None:
        self.bytes: dict[str, int] = defaultdict(int)
        self.calls: dict[str, int] = defaultdict(int)
        self.seconds: dict[str, float] = defaultdict(float)

    def add(self, label: str, nbytes: float) -> None:
        self.bytes[label] += int(round(nbytes))
        self.calls[label] += 1

    @property
    def total(self) -> int:
        return sum(self.bytes.values())


_COUNTER: ContextVar[CommCounter | None] = ContextVar("vidcore_comm_counter", default=None)


@contextmanager
def count_comm() -> Iterator[CommCounter]:
    """Count the bytes the enclosed vidcore collectives send from this rank."""
    counter = CommCounter()
    token = _COUNTER.set(counter)
    try:
        yield counter
    finally:
        _COUNTER.reset(token)


def _count(label: str, nbytes: float) -> None:
    counter = _COUNTER.get()
    if counter is not None:
        counter.add(label, nbytes)


def _nbytes(x: Tensor) -> int:
    return x.numel() * x.element_size()


def all_to_all(x: Tensor, group: dist.ProcessGroup, size: int, rank: int, mode: str, label: str) -> Tensor:
    """Chunk ``i`` of ``x``'s first dim goes to rank ``i``; chunk ``j`` of the result came from rank ``j``.

    ``mode="all_gather"`` gets the same result from an all-gather and a local slice (``size``× the traffic)
    for backends without all-to-all; the numbers are identical.
    """
    x = x.contiguous()
    if mode == "all_to_all":
        out = torch.empty_like(x)
        with collective(label):
            dist.all_to_all_single(out, x, group=group)
        _count(label, _nbytes(x) * (size - 1) / size)
        return out
    parts = [torch.empty_like(x) for _ in range(size)]
    with collective(label):
        dist.all_gather(parts, x, group=group)
    _count(label, _nbytes(x) * (size - 1))
    # Rank j's x holds our chunk at position `rank` of its first dim.
    return torch.cat([p.chunk(size)[rank] for p in parts])


def all_gather_cat(x: Tensor, dim: int, group: dist.ProcessGroup, size: int, label: str) -> Tensor:
    """The ``x`` of every rank of ``group``, concatenated along ``dim`` in group-rank order."""
    if size == 1:
        return x
    x = x.contiguous()
    parts = [torch.empty_like(x) for _ in range(size)]
    with collective(label):
        dist.all_gather(parts, x, group=group)
    _count(label, _nbytes(x) * (size - 1))
    return torch.cat(parts, dim=dim)


def ring_shift(
    x: Tensor, send_to: int, recv_from: int, group: dist.ProcessGroup, label: str
) -> tuple[list, Tensor]:
    """Start sending ``x`` to global rank ``send_to`` and receiving a same-shaped tensor from ``recv_from``;
    returns ``(requests, buffer)`` to wait on (the transfer overlaps whatever runs before the wait)."""
    buf = torch.empty_like(x)
    ops = [dist.P2POp(dist.isend, x, send_to, group), dist.P2POp(dist.irecv, buf, recv_from, group)]
    with collective(label):
        reqs = dist.batch_isend_irecv(ops)
    _count(label, _nbytes(x))
    return reqs, buf


def wait_all(reqs: Sequence, label: str) -> None:
    """Wait for the requests of :func:`ring_shift`."""
    with collective(label):
        for req in reqs:
            req.wait()


def probe_all_to_all(group: dist.ProcessGroup, size: int, device: torch.device) -> bool:
    """Whether the backend runs ``all_to_all_single`` (one tiny call on ``group``)."""
    x = torch.arange(size, dtype=torch.float32, device=device)
    out = torch.empty_like(x)
    try:
        dist.all_to_all_single(out, x, group=group)
    except (RuntimeError, NotImplementedError, ValueError):
        return False
    return True
