"""A pipeline run on several processes: what ``load_pipeline(..., parallel=...)`` attaches as
``pipe.parallel``.

Every rank runs the whole sampler on the whole latents; only the denoiser's forward is split. The CFG batch
``[uncond; cond]`` (CFGDenoiser batches both branches) is split over the ``cfg`` ranks and gathered after,
the token sequence over the ``ring x ulysses`` ranks (:mod:`.sequence`), and with ``fsdp`` the blocks' weights
over all ranks (:mod:`.fsdp`). The gathers hand every rank the same output, so every rank holds the same
latents, decodes the same video and ``generate`` returns the full frames everywhere.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .comm import ParallelError, all_gather_cat, collective, failure
from .fsdp import shard_weights
from .mesh import ParallelMesh
from .sequence import sequence_parallel

log = logging.getLogger("vidcore")

# Pipeline.sample's job items -> how a user would name them in an error message.
# Relative L2 distance to rank 0's tensor below which a job's floating tensors agree: room for last-bit
# differences of text encoded on two GPU models (a bf16 rounding step is 2^-8 relative), while another seed
# gives sqrt(2) and another prompt a distance of order 1.
AGREE_RTOL = 5e-2
JOB_WORDS = {
    "options": "sampling options",
    "noise": "initial noise (seed, size or given latents)",
    "cond": "prompt (its text embeddings)",
    "uncond": "negative prompt (its text embeddings)",
    "init_latents": "input video (its latents)",
    "image": "image conditioning",
}


class ParallelDenoiser:
    """A denoiser ``model(x, sigma, **kwargs)`` run over a :class:`ParallelMesh`: the batch split over the
    CFG ranks (tensors whose first dim is x's batch), the tokens over the sequence ranks; returns the whole
    output on every rank."""

    def __init__(self, model: Callable[..., Tensor], mesh: ParallelMesh) -> None:
        self.model, self.mesh = model, mesh
        self._told = self._warned = False

    def __call__(self, x: Tensor, sigma: Tensor | float, **kwargs: Any) -> Tensor:
        cfg = self.mesh.cfg
        n = x.shape[0]
        split = cfg.size > 1 and n % cfg.size == 0
        if cfg.size > 1 and not split and not self._told:
            self._told = True
            log.info(
                "vidcore parallel: batch %d does not split over cfg=%d ranks; they compute it alike",
                n,
                cfg.size,
            )

        def part(value: Any) -> Any:
            if split and isinstance(value, Tensor) and value.ndim and value.shape[0] == n:
                return value.chunk(cfg.size)[cfg.rank]
            return value

        try:
            with sequence_parallel(self.mesh) as run:
                out = self.model(part(x), part(sigma), **{k: part(v) for k, v in kwargs.items()})
        except dist.DistError as e:  # FSDP's weight gathers and anything else torch.distributed raises
            raise failure("model forward", e) from e
        if run is not None and run.length is None and not self._warned:
            self._warned = True
            log.warning(
                "vidcore parallel: this denoiser splits no token sequence (its model never calls "
                "sequence_shard, e.g. a convolutional U-Net), so the ring x ulysses ranks compute the same "
                "thing; use cfg parallelism for it"
            )
        return all_gather_cat(out, 0, cfg.group, cfg.size, "cfg") if split else out


class ParallelRun:
    """``pipe.parallel``: the mesh of this rank and the hook :meth:`Pipeline.sample` calls."""

    def __init__(self, mesh: ParallelMesh) -> None:
        self.mesh = mesh

    @property
    def is_writer(self) -> bool:
        """Whether this rank writes the results (rank 0; the others hold the same frames)."""
        return dist.get_rank() == 0

    def denoiser(self, model: Callable[..., Tensor], **job: Any) -> ParallelDenoiser:
        """``model`` run over the mesh, once every rank is known to run the same ``job`` (the keywords of
        :data:`JOB_WORDS`: options, noise, text conditionings, ...)."""
        check_agreement(job)
        return ParallelDenoiser(model, self.mesh)


def _fingerprint(value: Any, name: str, out: dict[str, str], floats: dict[str, Tensor]) -> None:
    """Flatten ``value`` into ``out`` (path -> short text compared exactly) and ``floats`` (path -> floating
    tensor, compared by value: computed on different GPU models they may differ in the last bits)."""
    if isinstance(value, Tensor):
        out[name] = f"{value.dtype} {tuple(value.shape)}"
        if value.is_floating_point():
            floats[name] = value.detach()
        else:
            data = value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
            out[name] += f" sha256:{hashlib.sha256(data).hexdigest()[:16]}"
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            _fingerprint(getattr(value, f.name), f"{name}.{f.name}", out, floats)
    elif isinstance(value, dict):
        for key in sorted(value, key=str):
            _fingerprint(value[key], f"{name}.{key}", out, floats)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _fingerprint(item, f"{name}[{i}]", out, floats)
    else:
        out[name] = repr(value)


def _top(path: str) -> str:
    return path.split(".")[0].split("[")[0]


def check_agreement(job: dict[str, Any]) -> None:
    """Refuse, on every rank at once, a job that differs between ranks (different prompt, seed, size or
    options: the gathered results would not fit together). Types, shapes and plain values are compared
    exactly; floating tensors against rank 0's (one broadcast each) within a relative L2 distance of
    ``AGREE_RTOL``, so text encoded on different GPU models still agrees while another prompt does not."""
    mine: dict[str, str] = {}
    floats: dict[str, Tensor] = {}
    for name, value in job.items():
        _fingerprint(value, name, mine, floats)
    world = dist.get_world_size()
    every: list[dict[str, str]] = [{} for _ in range(world)]
    with collective("agreement check"):
        dist.all_gather_object(every, mine)
    keys = sorted(set().union(*every))
    differ = {k: [e.get(k) for e in every] for k in keys if len({e.get(k) for e in every}) > 1}
    distance: dict[str, float] = {}
    for path in sorted(floats):
        if path in differ:
            continue  # dtype or shape differ: nothing to broadcast into
        ref = floats[path].contiguous().clone()
        with collective("agreement check"):
            dist.broadcast(ref, src=0)
        scale = float(ref.double().norm()) or 1.0
        distance[path] = float((floats[path].double() - ref.double()).norm()) / scale
    if distance:
        distances: list[dict[str, float]] = [{} for _ in range(world)]
        with collective("agreement check"):
            dist.all_gather_object(distances, distance)
        for path in distance:
            far = [r for r, d in enumerate(distances) if d[path] > AGREE_RTOL]
            if far:
                differ[path] = ["rank 0's" if r not in far else f"rank {r}'s" for r in range(world)]
    if not differ:
        return
    parts = []
    for top in dict.fromkeys(_top(k) for k in differ):
        words = JOB_WORDS.get(top, top)
        paths = [k for k in differ if _top(k) == top]
        if top == "options":
            shown = "; ".join(
                f"{k[len('options.') :]}: " + ", ".join(f"rank {r} has {v}" for r, v in enumerate(differ[k]))
                for k in paths
            )
            parts.append(f"{words} differ ({shown})")
            continue
        groups: dict[str, list[int]] = {}
        for rank in range(world):
            groups.setdefault(str([differ[k][rank] for k in paths]), []).append(rank)
        ranks = " vs ".join(",".join(map(str, g)) for g in groups.values())
        parts.append(f"{words} differs between ranks {ranks}")
    raise ParallelError(
        "vidcore parallel: the ranks were given different jobs, so their results would not fit together: "
        + "; ".join(parts)
        + ". Give every rank the same prompt, negative prompt, seed, size and options (under torchrun: one "
        "command line for all ranks)."
    )


def attention_heads(model: nn.Module) -> set[int]:
    """Head counts of the model's attention modules (their integer ``heads`` attribute: SpacetimeDiT's,
    LTX-Video's and Wan's attention modules all have one)."""
    return {m.heads for m in model.modules() if isinstance(getattr(m, "heads", None), int)}


def denoising_modules(pipe: Any) -> list[nn.Module]:
    """The networks the sampler runs: ``pipe.dit`` and, for two-expert models (Wan 2.2), ``transformer_2``."""
    parts = pipe.components()
    return [parts[k] for k in ("dit", "transformer_2") if isinstance(parts.get(k), nn.Module)]


def parallelize(pipe: Any, mesh: ParallelMesh) -> Any:
    """Attach ``mesh`` to a loaded pipeline (checking the Ulysses degree against its heads; sharding its
    denoisers' weights when ``fsdp``); returns the pipeline."""
    models = denoising_modules(pipe)
    for model in models:
        for heads in sorted(attention_heads(model)):
            mesh.config.check_heads(heads)
    if mesh.config.fsdp:
        for model in models:
            shard_weights(model, mesh.device)
    pipe.parallel = ParallelRun(mesh)
    return pipe
