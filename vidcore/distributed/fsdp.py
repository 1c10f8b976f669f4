"""Weights sharded over every rank with FSDP2 (``torch.distributed.fsdp.fully_shard``, Zhao et al., 2023,
"PyTorch FSDP", arXiv:2304.11277): each rank stores 1/P of every block and gathers a block's weights just
before it runs, freeing them after."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import fully_shard


def block_lists(model: nn.Module) -> list[nn.ModuleList]:
    """The model's stacks of transformer blocks: the ``nn.ModuleList`` children of its root (``blocks`` of
    SpacetimeDiT and Wan, ``transformer_blocks`` of LTX-Video)."""
    return [m for m in model.children() if isinstance(m, nn.ModuleList) and len(m)]


def minority_params(params: list[nn.Parameter]) -> set[nn.Parameter]:
    """The parameters not in the dtype holding most elements. FSDP2 gathers one dtype per unit, so these
    (e.g. Wan's float32 norms and modulation tables beside bfloat16 weights) stay whole on every rank."""
    sizes: dict[torch.dtype, int] = {}
    for param in params:
        sizes[param.dtype] = sizes.get(param.dtype, 0) + param.numel()
    if len(sizes) < 2:
        return set()
    main = max(sizes, key=lambda d: sizes[d])
    return {param for param in params if param.dtype != main}


def shard_weights(model: nn.Module, device: torch.device) -> nn.Module:
    """Shard ``model`` in place over the default process group: one FSDP2 unit per block, one for the rest
    (embeddings, head); parameters of a minority dtype stay replicated (:func:`minority_params`). Every rank
    must then run the model the same number of times (they gather together)."""
    if not dist.is_initialized():
        raise RuntimeError("shard_weights needs an initialised torch.distributed process group")
    lists = block_lists(model)
    if not lists:
        raise ValueError(f"{type(model).__name__} has no nn.ModuleList of blocks at its top level to shard")
    mesh = DeviceMesh.from_group(dist.group.WORLD, device.type)
    blocks = [block for stack in lists for block in stack]
    in_blocks = {param for block in blocks for param in block.parameters()}
    rest = [param for param in model.parameters() if param not in in_blocks]  # before sharding renews them
    for block in blocks:
        fully_shard(block, mesh=mesh, ignored_params=minority_params(list(block.parameters())) or None)
    fully_shard(model, mesh=mesh, ignored_params=minority_params(rest) or None)
    return model
