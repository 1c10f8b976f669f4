"""The process mesh ``(cfg, ring, ulysses)`` of a parallel run, and the process group it needs.

Rank layout: global rank = (cfg_index · ring + ring_index) · ulysses + ulysses_index, so the ranks of one
Ulysses group are neighbours (one node, fast links) and a token sequence is split over the ``ring x
ulysses`` ranks of one CFG slice in the order ring_index · ulysses + ulysses_index.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import DeviceMesh

from .comm import ParallelError, probe_all_to_all
from .config import LAUNCH_HINT, ParallelConfig, as_parallel_config

log = logging.getLogger("vidcore")

DIMS = ("cfg", "ring", "ulysses")


@dataclass(frozen=True)
class Axis:
    """One mesh dimension as this rank sees it: its process group, size and index in it."""

    group: dist.ProcessGroup
    size: int
    rank: int

    def global_rank(self, index: int) -> int:
        return dist.get_global_rank(self.group, index % self.size)


@dataclass(frozen=True)
class ParallelMesh:
    """This rank's place in a parallel run: the DeviceMesh, one :class:`Axis` per dimension, the device
    the rank computes on and how the Ulysses all-to-all travels (``all_to_all`` or ``all_gather``)."""

    config: ParallelConfig
    mesh: DeviceMesh
    device: torch.device
    cfg: Axis
    ring: Axis
    ulysses: Axis
    comm: str

    @property
    def rank(self) -> int:
        return dist.get_rank()

    @property
    def world_size(self) -> int:
        return dist.get_world_size()

    @property
    def sequence_size(self) -> int:
        return self.ring.size * self.ulysses.size

    @property
    def sequence_rank(self) -> int:
        """Position of this rank's slice in its CFG slice's token sequence."""
        return self.ring.rank * self.ulysses.size + self.ulysses.rank

    def with_comm(self, comm: str) -> ParallelMesh:
        """The same mesh with the Ulysses all-to-all travelling another way (tests, benchmarks)."""
        if comm not in ("all_to_all", "all_gather"):
            raise ValueError(f"comm={comm!r} must be 'all_to_all' or 'all_gather'")
        return ParallelMesh(self.config, self.mesh, self.device, self.cfg, self.ring, self.ulysses, comm)


def parallel_device(device: str | torch.device | None) -> torch.device:
    """The device of this rank: ``cuda`` without an index means ``cuda:LOCAL_RANK`` (torchrun's)."""
    device = torch.device("cpu" if device is None else device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def ensure_process_group(config: ParallelConfig, device: torch.device) -> None:
    """Use the initialised default process group, or start one from torchrun's environment (RANK,
    WORLD_SIZE, MASTER_ADDR, MASTER_PORT) with ``config.timeout``; else say how to launch."""
    if dist.is_initialized():
        return
    if not dist.is_available():
        raise ParallelError("parallel runs need torch.distributed, which this PyTorch build lacks")
    missing = [v for v in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if v not in os.environ]
    if missing:
        raise ParallelError(
            f"parallel={config.spec()!r} needs torch.distributed, which is not initialised (and "
            f"{', '.join(missing)} are not set): "
            + LAUNCH_HINT.format(n=config.world_size, spec=config.spec())
        )
    # NCCL for CUDA tensors; gloo keeps CPU collectives (the agreement check) working beside it.
    backend = "cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(
        backend,
        timeout=timedelta(seconds=config.timeout),
        device_id=device if device.type == "cuda" else None,
    )


# (default group, cfg, ring, ulysses, timeout) -> the groups of _axis_groups: every load_pipeline(parallel=)
# of a long-lived process reuses them instead of creating new ones.
_GROUPS: dict[tuple, dict[str, tuple[dist.ProcessGroup, int, int]]] = {}


def _axis_groups(config: ParallelConfig) -> dict[str, tuple[dist.ProcessGroup, int, int]]:
    """One process group per mesh dimension (made with ``config.timeout``): name -> (group, size, rank)."""
    key = (id(dist.group.WORLD), config.cfg, config.ring, config.ulysses, config.timeout)
    if key not in _GROUPS:
        _GROUPS[key] = _new_axis_groups(config)
    return _GROUPS[key]


def _new_axis_groups(config: ParallelConfig) -> dict[str, tuple[dist.ProcessGroup, int, int]]:
    sizes = {"cfg": config.cfg, "ring": config.ring, "ulysses": config.ulysses}
    grid = torch.arange(config.world_size).reshape(config.cfg, config.ring, config.ulysses)
    timeout = timedelta(seconds=config.timeout)
    out = {}
    for axis, name in enumerate(DIMS):
        lines = grid.movedim(axis, -1).reshape(-1, sizes[name]).tolist()
        group, _ = dist.new_subgroups_by_enumeration(lines, timeout=timeout)
        out[name] = (group, sizes[name], dist.get_rank(group))
    return out


def init_parallel(
    parallel: str | ParallelConfig, device: str | torch.device | None = None, comm: str | None = None
) -> ParallelMesh:
    """This rank's :class:`ParallelMesh` for ``parallel`` (a config or ``"ulysses=2,ring=2"``); every rank
    calls it, in the same order as its other collectives. ``comm`` overrides ``config.comm``."""
    config = as_parallel_config(parallel)
    device = parallel_device(device)
    ensure_process_group(config, device)
    config.check_world(dist.get_world_size())
    groups = _axis_groups(config)
    mesh = DeviceMesh.from_group(
        [groups[n][0] for n in DIMS],
        device.type,
        mesh=torch.arange(config.world_size).reshape(config.cfg, config.ring, config.ulysses),
        mesh_dim_names=DIMS,
    )
    axes = {n: Axis(*groups[n]) for n in DIMS}
    mode = comm or config.comm
    if mode == "auto":
        uly = axes["ulysses"]
        ok = uly.size == 1 or probe_all_to_all(uly.group, uly.size, device)
        mode = "all_to_all" if ok else "all_gather"
        if not ok:
            log.info("vidcore parallel: this backend has no all_to_all; Ulysses uses all_gather + slice")
    if mode not in ("all_to_all", "all_gather"):
        raise ValueError(f"comm={mode!r} must be 'auto', 'all_to_all' or 'all_gather'")
    return ParallelMesh(config, mesh, device, axes["cfg"], axes["ring"], axes["ulysses"], mode)
