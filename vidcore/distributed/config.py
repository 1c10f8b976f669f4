"""How a run is split over processes: :class:`ParallelConfig` and the checks that word its refusals."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..config import ConfigMixin, check_choice, check_positive_int

COMM_MODES = ("auto", "all_to_all", "all_gather")
LAUNCH_HINT = (
    "launch one process per rank with torchrun, e.g. `torchrun --nproc-per-node {n} -m vidcore.cli generate "
    "PROMPT -o OUT.mp4 --parallel {spec}` (several machines: add torchrun's --nnodes, --node-rank and "
    "--rdzv-endpoint), or call torch.distributed.init_process_group yourself before load_pipeline"
)


@dataclass(frozen=True)
class ParallelConfig(ConfigMixin):
    """Degrees of parallelism over a DeviceMesh ``(cfg, ring, ulysses)``; ``cfg x ring x ulysses`` processes.

    ``ulysses``: all-to-all between sequence and heads shards (Jacobs et al., 2023, DeepSpeed-Ulysses,
    arXiv:2309.14509); must divide the attention heads. ``ring``: key/value blocks passed around a ring with a
    log-sum-exp merge (Liu et al., 2023, Ring Attention, arXiv:2310.01889); any degree. Both together are USP
    (Fang & Zhao, 2024, arXiv:2405.07719). ``cfg``: the conditional and unconditional CFG branches on
    different ranks. ``fsdp``: the denoiser's blocks sharded with FSDP2 over every rank (weights gathered
    per block when it runs). ``comm``: how the Ulysses all-to-all travels: ``all_to_all``, ``all_gather``
    (gather + slice, for backends without all-to-all) or ``auto`` (probe the backend once). ``timeout``:
    seconds a collective waits for the other ranks before failing (a dead or stuck rank).
    """

    ulysses: int = 1
    ring: int = 1
    cfg: int = 1
    fsdp: bool = False
    comm: str = "auto"
    timeout: float = 600.0

    def __post_init__(self) -> None:
        for name in ("ulysses", "ring", "cfg"):
            check_positive_int(f"ParallelConfig.{name}", getattr(self, name))
        if not isinstance(self.fsdp, bool):
            raise ValueError(f"ParallelConfig.fsdp={self.fsdp!r} must be true or false")
        check_choice("ParallelConfig.comm", self.comm, COMM_MODES)
        t = self.timeout
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not (math.isfinite(t) and t > 0):
            raise ValueError(f"ParallelConfig.timeout={t!r} must be a number of seconds > 0")

    @property
    def sequence_degree(self) -> int:
        """Processes one token sequence is split over (``ulysses x ring``)."""
        return self.ulysses * self.ring

    @property
    def world_size(self) -> int:
        """Processes the run needs (``cfg x ring x ulysses``)."""
        return self.cfg * self.ring * self.ulysses

    def spec(self) -> str:
        """The ``parse`` form of this config, e.g. ``ulysses=2,ring=2``."""
        parts = [f"{n}={getattr(self, n)}" for n in ("ulysses", "ring", "cfg") if getattr(self, n) != 1]
        parts += ["fsdp"] if self.fsdp else []
        parts += [f"comm={self.comm}"] if self.comm != "auto" else []
        parts += [f"timeout={self.timeout:g}"] if self.timeout != 600.0 else []
        return ",".join(parts) or "ulysses=1"

    @classmethod
    def parse(cls, text: str) -> ParallelConfig:
        """``"ulysses=2,ring=2"``, ``"cfg=2,fsdp"``, ``"ulysses=4,comm=all_gather,timeout=120"`` -> config."""
        if not isinstance(text, str) or not text.strip():
            raise ValueError(
                f"parallel={text!r} must be a string like 'ulysses=2,ring=2' (keys: ulysses, ring, cfg, "
                "fsdp, comm, timeout)"
            )
        values: dict[str, object] = {}
        for item in text.split(","):
            key, sep, raw = (s.strip() for s in item.partition("="))
            if key == "fsdp" and not sep:
                raw, sep = "true", "="
            if key not in ("ulysses", "ring", "cfg", "fsdp", "comm", "timeout") or not sep:
                raise ValueError(
                    f"parallel={text!r}: cannot read {item.strip()!r}; expected key=value pairs separated by "
                    "commas with keys ulysses, ring, cfg (integers), fsdp (true/false, or alone), comm "
                    f"({', '.join(COMM_MODES)}), timeout (seconds), e.g. 'ulysses=2,ring=2'"
                )
            if key in values:
                raise ValueError(f"parallel={text!r} gives {key} twice")
            values[key] = _value(text, key, raw)
        return cls(**values)  # type: ignore[arg-type]

    def check_world(self, world: int) -> None:
        """Refuse a world whose size is not ``cfg x ring x ulysses``."""
        if world != self.world_size:
            raise ValueError(
                f"parallel {self.spec()} needs cfg x ring x ulysses = {self.cfg} x {self.ring} x "
                f"{self.ulysses} = {self.world_size} processes, but {world} were launched "
                f"(torchrun --nproc-per-node x --nnodes must equal {self.world_size})"
            )

    def check_heads(self, heads: int) -> None:
        """Refuse a Ulysses degree that does not divide ``heads``; name the valid degrees, suggest ring."""
        if heads % self.ulysses == 0:
            return
        valid = [d for d in range(1, heads + 1) if heads % d == 0]
        n = self.sequence_degree
        best = max(d for d in valid if n % d == 0)
        raise ValueError(
            f"ulysses={self.ulysses} does not divide the model's {heads} attention heads (valid Ulysses "
            f"degrees for {heads} heads: {', '.join(map(str, valid))}); give the rest of the {n} sequence "
            f"ranks to ring, which takes any degree: e.g. ulysses={best},ring={n // best}"
        )


def _value(text: str, key: str, raw: str) -> object:
    if key == "comm":
        return raw
    if key == "fsdp":
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"parallel={text!r}: fsdp={raw!r} must be true or false")
    try:
        return float(raw) if key == "timeout" else int(raw)
    except ValueError:
        kind = "a number of seconds" if key == "timeout" else "a positive integer"
        raise ValueError(f"parallel={text!r}: {key}={raw!r} must be {kind}") from None


def as_parallel_config(parallel: str | ParallelConfig) -> ParallelConfig:
    """A ``ParallelConfig`` from itself or its ``parse`` string."""
    if isinstance(parallel, ParallelConfig):
        return parallel
    if isinstance(parallel, str):
        return ParallelConfig.parse(parallel)
    raise TypeError(
        f"parallel={parallel!r} must be a ParallelConfig or a string like 'ulysses=2,ring=2', "
        f"got {type(parallel).__name__}"
    )
