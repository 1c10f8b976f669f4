"""Persistent worker processes for parallel runs started from one long-lived process (a ComfyUI server, a
notebook, a service): :class:`WorkerPool` spawns the other ``N - 1`` ranks once, the calling process being
rank 0, and then serves jobs; every rank runs the same pipeline method and rank 0 returns its result.

The design follows single-node serving engines that keep one worker process per device and send them
commands (vLLM's multiprocessing executor, FastVideo's ``MultiprocExecutor``): the process group is made once
on ``tcp://127.0.0.1:<free port>`` (gloo on CPU, NCCL on CUDA devices with gloo beside it for control
collectives), the pipeline is loaded with ``parallel=`` on every rank, each job travels to the workers over a
queue. A worker exits when the parent process dies (it watches the parent's pid) or on :meth:`close`. A
worker that dies mid-job makes rank 0 raise :class:`ParallelError` (gloo reports the closed connection at
once; any backend gives up after ``ParallelConfig.timeout``); the pool is then closed and the next job
starts it again.

torch.distributed has one default process group per process, so one process holds one live pool at a time;
:func:`shared_pool` keeps it and closes it when another (model, parallel, devices) is asked for.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import queue
import socket
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import Tensor

from .comm import ParallelError
from .config import ParallelConfig, as_parallel_config

log = logging.getLogger("vidcore")

START_TIMEOUT = 120.0  # seconds a worker may take to start Python and import vidcore
ERROR_GRACE = 5.0  # seconds rank 0 waits for the workers' answers after its own part of a job failed
WATCH_INTERVAL = 0.5  # seconds between a worker's checks that its parent is alive


# ---- devices -------------------------------------------------------------------------------------------


def parse_devices(devices: str | list | tuple | None, world: int) -> list[torch.device]:
    """One device per rank from ``"cpu"`` (every rank on the CPU), ``"cuda"`` (``cuda:0`` .. ``cuda:N-1``)
    or a comma-separated list of ``world`` devices (``"cuda:0,cuda:1"``); refuses, before anything is
    spawned, CUDA devices this machine lacks, a device twice (NCCL needs one GPU per rank) and CPU mixed
    with CUDA."""
    text = devices if isinstance(devices, str) else ",".join(map(str, devices or ()))
    names = [d.strip() for d in text.split(",") if d.strip()]
    if not names:
        raise ValueError(f"devices={devices!r} must name the devices, e.g. 'cpu' or 'cuda:0,cuda:1'")
    try:
        parsed = [torch.device(n) for n in names]
    except RuntimeError:
        raise ValueError(
            f"devices={devices!r}: cannot read it; expected 'cpu', 'cuda' or a list like 'cuda:0,cuda:1'"
        ) from None
    if len(parsed) == 1 and parsed[0].index is None:
        kind = parsed[0].type
        parsed = [torch.device(kind, i) if kind == "cuda" else torch.device(kind) for i in range(world)]
    if len(parsed) != world:
        raise ValueError(
            f"devices={devices!r} names {len(parsed)} devices but the parallel run has {world} ranks; give "
            f"one device per rank, or 'cpu' / 'cuda' for all of them"
        )
    kinds = {d.type for d in parsed}
    if kinds - {"cpu", "cuda"}:
        raise ValueError(f"devices={devices!r}: only 'cpu' and 'cuda' devices are supported")
    if len(kinds) > 1:
        raise ValueError(f"devices={devices!r} mixes the CPU and CUDA devices; use one kind for all ranks")
    if kinds == {"cuda"}:
        parsed = [torch.device("cuda", d.index if d.index is not None else 0) for d in parsed]
        have = torch.cuda.device_count() if torch.cuda.is_available() else 0
        wanted = max(d.index for d in parsed) + 1
        if wanted > have:
            raise ValueError(
                f"devices={devices!r} asks for {wanted} CUDA devices, this machine has {have} "
                f"(torch.cuda.device_count()); name fewer devices or use a smaller parallel degree"
            )
        if len(set(parsed)) != len(parsed):
            raise ValueError(f"devices={devices!r} names a GPU twice; each rank needs its own GPU")
    return parsed


# ---- what travels over the queues ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _OnDevice:
    """A tensor sent as a CPU copy that was on rank 0's accelerator: the worker puts it on its own."""

    tensor: Tensor


@dataclasses.dataclass(frozen=True)
class _Generator:
    """A torch.Generator as its state (the workers draw the same numbers as rank 0)."""

    device: str
    state: Tensor


def _pack(value: Any) -> Any:
    """``value`` with tensors on the CPU (tagged when they were not) and generators as their state."""
    if isinstance(value, Tensor):
        cpu = value.detach().cpu()
        return cpu if value.device.type == "cpu" else _OnDevice(cpu)
    if isinstance(value, torch.Generator):
        return _Generator(value.device.type, value.get_state())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: _pack(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init}
        return dataclasses.replace(value, **fields) if fields else value
    if isinstance(value, dict):
        return {k: _pack(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_pack(v) for v in value)
    return value


def _unpack(value: Any, device: torch.device) -> Any:
    if isinstance(value, _OnDevice):
        return value.tensor.to(device)
    if isinstance(value, _Generator):
        gen = torch.Generator(device=device if value.device != "cpu" else "cpu")
        gen.set_state(value.state)
        return gen
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {
            f.name: _unpack(getattr(value, f.name), device) for f in dataclasses.fields(value) if f.init
        }
        return dataclasses.replace(value, **fields) if fields else value
    if isinstance(value, dict):
        return {k: _unpack(v, device) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_unpack(v, device) for v in value)
    return value


# ---- the worker side ----------------------------------------------------------------------------------


def _init_group(rank: int, world: int, port: int, device: torch.device, timeout: float) -> None:
    # NCCL for CUDA tensors; gloo keeps CPU collectives (the agreement check) working beside it.
    backend = "cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(
        backend,
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
        timeout=timedelta(seconds=timeout),
        device_id=device if device.type == "cuda" else None,
    )


def _watch_parent(parent: int) -> None:
    """Exit this worker once its parent is gone (it would otherwise hold its GPU forever)."""
    while True:
        if os.getppid() != parent:
            os._exit(3)
        time.sleep(WATCH_INTERVAL)


def _worker_main(
    rank: int,
    world: int,
    port: int,
    spec: str,
    device: str,
    model: str,
    load_kwargs: dict,
    threads: int | None,
    parent: int,
    jobs: Any,
    answers: Any,
) -> None:
    """Rank ``rank``: join the group, load the pipeline, run every job rank 0 sends until told to stop."""
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    if threads:
        torch.set_num_threads(threads)
    answers.put(("hello", rank, os.getpid()))
    dev = torch.device(device)
    try:
        from ..pipelines import load_pipeline

        config = as_parallel_config(spec)
        _init_group(rank, world, port, dev, config.timeout)
        pipe = load_pipeline(model, dev, parallel=config, **load_kwargs)
    except BaseException:  # noqa: BLE001 - reported to rank 0, which raises it
        answers.put(("error", rank, traceback.format_exc()))
        return
    answers.put(("ready", rank, os.getpid()))
    while True:
        try:
            job = jobs.get(timeout=WATCH_INTERVAL)
        except queue.Empty:
            continue
        if job[0] == "stop":
            break
        _, method, args, kwargs = job
        try:
            args, kwargs = _unpack(args, dev), _unpack(kwargs, dev)
            with torch.no_grad():
                getattr(pipe, method)(*args, **kwargs)
        except BaseException:  # noqa: BLE001 - reported to rank 0
            answers.put(("error", rank, traceback.format_exc()))
            continue
        answers.put(("done", rank, None))
    with contextlib.suppress(Exception):
        dist.destroy_process_group()


# ---- rank 0 -------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def _spawn_without_main() -> Iterator[None]:
    """Spawned children re-run the parent's ``__main__`` unless it has no file or spec (multiprocessing's
    spawn preparation); a server's main script (ComfyUI's main.py) does work at import, and the workers only
    need this module, so hide it while the children start."""
    main = sys.modules.get("__main__")
    saved = {k: main.__dict__[k] for k in ("__file__", "__spec__") if main is not None and k in main.__dict__}
    # The children import this package by name; a host may have loaded it from a file location without
    # putting its folder on sys.path (a ComfyUI pack's copy): the children get that folder, at the end.
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    added = root not in sys.path
    if added:
        sys.path.append(root)
    try:
        if main is not None:
            main.__dict__.pop("__file__", None)
            main.__dict__["__spec__"] = None
        yield
    finally:
        if added:
            sys.path.remove(root)
        if main is not None:
            main.__dict__.pop("__spec__", None)
            main.__dict__.update(saved)


def _exit_text(proc: Any) -> str:
    code = proc.exitcode
    if code is None:
        return "is still running"
    return f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"


class WorkerPool:
    """Ranks ``1 .. N-1`` of a parallel run as persistent worker processes, this process being rank 0.

    ``model``: a name or path for :func:`vidcore.load_pipeline`; ``parallel``: a :class:`ParallelConfig`
    or its string (``"cfg=2"``, ``"ulysses=2,ring=2"``; N = its world size); ``devices``: one per rank
    (:func:`parse_devices`: ``"cpu"``, ``"cuda"``, ``"cuda:0,cuda:1"``); ``dtype`` and ``load_kwargs``
    (``text_encoder``, ``vae``, ``image_encoder``) go to ``load_pipeline`` on every rank; ``threads``: torch
    threads per worker (None: torch's default).

    The workers start on the first use (or :meth:`start`); :attr:`pipeline` is rank 0's pipeline and
    :meth:`sample` / :meth:`generate` run on every rank. Use it as a context manager or call :meth:`close`.
    """

    def __init__(
        self,
        model: str | os.PathLike,
        parallel: str | ParallelConfig,
        devices: str | list | tuple = "cpu",
        *,
        dtype: torch.dtype | None = None,
        threads: int | None = None,
        **load_kwargs: Any,
    ) -> None:
        self.config = as_parallel_config(parallel)
        self.world = self.config.world_size
        self.devices = parse_devices(devices, self.world)  # refuses missing devices before any spawn
        if self.world < 2:
            raise ValueError(
                f"parallel={self.config.spec()!r} runs on one process; a WorkerPool needs at least 2 ranks "
                "(e.g. 'cfg=2' or 'ulysses=2')"
            )
        self.model, self.dtype, self.threads, self.load_kwargs = str(model), dtype, threads, load_kwargs
        self.broken = False
        self._procs: list[Any] = []
        self._jobs: list[Any] = []
        self._answers: Any = None
        self._pipe: Any = None
        self._lock = threading.RLock()

    # -- life cycle

    @property
    def running(self) -> bool:
        return self._pipe is not None

    @property
    def worker_pids(self) -> list[int]:
        return [p.pid for p in self._procs]

    @property
    def pipeline(self) -> Any:
        """Rank 0's pipeline (starting the pool if needed). Call :meth:`sample` / :meth:`generate` of the
        pool, not of this object: they need every rank."""
        self.start()
        return self._pipe

    def start(self) -> WorkerPool:
        """Spawn the workers, make the process group and load the pipeline on every rank (once; again after
        the pool broke)."""
        with self._lock:
            if self.running and not self.broken:
                return self
            if self.broken or self._procs:
                self.close()
            if dist.is_initialized():
                raise ParallelError(
                    "this process already belongs to a torch.distributed process group (another WorkerPool, "
                    "or torchrun); close that pool first (one pool per process)"
                )
            try:
                self._start()
            except BaseException:
                self.close()
                raise
            self.broken = False
            return self

    def _start(self) -> None:
        ctx = mp.get_context("spawn")
        port = _free_port()
        self._answers = ctx.Queue()
        spec = self.config.spec()
        with _spawn_without_main():
            for rank in range(1, self.world):
                jobs = ctx.Queue()
                args = (rank, self.world, port, spec, str(self.devices[rank]), self.model)
                args += (
                    dict(self.load_kwargs, dtype=self.dtype),
                    self.threads,
                    os.getpid(),
                    jobs,
                    self._answers,
                )
                proc = ctx.Process(target=_worker_main, args=args, daemon=True, name=f"vidcore-rank{rank}")
                proc.start()
                self._procs.append(proc)
                self._jobs.append(jobs)
        self._wait("hello", START_TIMEOUT, "start")
        from ..pipelines import load_pipeline

        _init_group(0, self.world, port, self.devices[0], self.config.timeout)
        try:
            pipe = load_pipeline(
                self.model, self.devices[0], self.dtype, parallel=self.config, **self.load_kwargs
            )
        except BaseException as e:
            self._raise_with_workers(e, "load the model")
        self._wait("ready", self.config.timeout, "load the model")
        self._pipe = pipe
        log.info(
            "vidcore: worker pool for %s (%s) on %s: workers %s",
            self.model,
            spec,
            ",".join(map(str, self.devices)),
            self.worker_pids,
        )

    def _wait(self, kind: str, timeout: float, what: str) -> None:
        """One ``kind`` answer from every worker within ``timeout``, else a ParallelError naming the rank."""
        waiting = set(range(1, self.world))
        deadline = time.monotonic() + timeout
        while waiting:
            try:
                got, rank, info = self._answers.get(
                    timeout=min(WATCH_INTERVAL, max(0.01, deadline - time.monotonic()))
                )
            except queue.Empty:
                dead = [r for r in waiting if not self._procs[r - 1].is_alive()]
                if dead:
                    self._fail(self._died(dead, what))
                if time.monotonic() > deadline:
                    self._fail(
                        f"vidcore worker pool: ranks {sorted(waiting)} did not {what} within {timeout:g} s; "
                        "the pool is closed and starts again on the next use"
                    )
                continue
            if got == "error":
                self._fail(
                    f"vidcore worker pool: rank {rank} failed to {what}; the pool is closed and starts again "
                    f"on the next use. Rank {rank}'s error:\n{info}"
                )
            if got == kind:
                waiting.discard(rank)

    def _died(self, ranks: list[int], what: str) -> str:
        which = "; ".join(
            f"rank {r} (pid {self._procs[r - 1].pid}) {_exit_text(self._procs[r - 1])}" for r in sorted(ranks)
        )
        return (
            f"vidcore worker pool: a worker died while trying to {what} ({which}); nothing was returned, the "
            "pool is closed and starts again on the next use"
        )

    def _fail(self, message: str) -> None:
        self.broken = True
        self.close()
        self.broken = True
        raise ParallelError(message)

    def _raise_with_workers(self, error: BaseException, what: str) -> None:
        """Rank 0's part failed: if every worker answers within ERROR_GRACE (they failed alike, e.g. a bad
        option refused on every rank) the pool stays usable and ``error`` is raised; else the pool is closed
        and the error says which worker died or hung."""
        answers: dict[int, tuple[str, Any]] = {}
        deadline = time.monotonic() + ERROR_GRACE
        while len(answers) < self.world - 1 and time.monotonic() < deadline:
            try:
                got, rank, info = self._answers.get(timeout=0.1)
            except queue.Empty:
                if any(not p.is_alive() for p in self._procs):
                    break
                continue
            answers[rank] = (got, info)
        dead = [r for r in range(1, self.world) if not self._procs[r - 1].is_alive()]
        if dead:
            message = self._died(dead, what)
        elif len(answers) == self.world - 1 and self.running:
            raise error  # every rank stopped alike; the process group is still in step
        else:
            message = (
                f"vidcore worker pool: rank 0 failed to {what} while the workers went on (they were "
                "stopped); the pool is closed and starts again on the next use"
            )
        self.broken = True
        self.close()
        self.broken = True
        if isinstance(error, (ParallelError, dist.DistError)):
            raise ParallelError(f"{message}. Rank 0's error: {error}") from error
        log.error("vidcore: %s", message)
        raise error

    def close(self) -> None:
        """Stop the workers (they are killed if they do not exit within a few seconds) and leave the process
        group. A closed pool starts again on its next use."""
        with self._lock:
            for jobs, proc in zip(self._jobs, self._procs, strict=True):
                if proc.is_alive():
                    with contextlib.suppress(Exception):
                        jobs.put(("stop",))
            deadline = time.monotonic() + 5.0
            for proc in self._procs:
                proc.join(timeout=max(0.1, deadline - time.monotonic()))
                if proc.is_alive():
                    proc.kill()
                    proc.join(timeout=5.0)
            for q in [*self._jobs, self._answers]:
                if q is not None:
                    q.cancel_join_thread()
                    q.close()
            self._procs, self._jobs, self._answers, self._pipe = [], [], None, None
            if dist.is_initialized():
                with contextlib.suppress(Exception):
                    dist.destroy_process_group()
                from . import mesh

                mesh._GROUPS.clear()  # keyed by id() of the destroyed group, which Python may reuse

    def __enter__(self) -> WorkerPool:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- jobs

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """``pipeline.method(*args, **kwargs)`` on every rank (``callback`` / ``decode_callback`` only on
        rank 0, ``progress`` off on the workers); rank 0's result."""
        with self._lock:
            self.start()
            for r, proc in enumerate(self._procs, 1):
                if not proc.is_alive():
                    self._fail(self._died([r], f"run {method}") + " (it died between jobs)")
            wkw = {k: v for k, v in kwargs.items() if k not in ("callback", "decode_callback", "progress")}
            job = ("call", method, _pack(args), _pack(wkw))
            for jobs in self._jobs:
                jobs.put(job)
            try:
                with torch.no_grad():
                    out = getattr(self._pipe, method)(*args, **kwargs)
            except BaseException as e:
                self._raise_with_workers(e, f"run {method}")
            self._wait("done", self.config.timeout, f"run {method}")
            return out

    def sample(self, *args: Any, **kwargs: Any) -> Tensor:
        """:meth:`Pipeline.sample` on every rank; rank 0's latents."""
        return self.call("sample", *args, **kwargs)

    def generate(self, *args: Any, **kwargs: Any) -> Tensor:
        """:meth:`Pipeline.generate` on every rank; rank 0's frames."""
        return self.call("generate", *args, **kwargs)

    def pooled(self) -> PooledPipeline:
        """A pipeline-like object whose ``sample`` / ``generate`` run on the pool."""
        return PooledPipeline(self)


class PooledPipeline:
    """Rank 0's pipeline as seen by code written for one process: attributes come from the pipeline (the
    current one: a restarted pool loads a new one), ``sample`` and ``generate`` run on every rank."""

    def __init__(self, pool: WorkerPool) -> None:
        object.__setattr__(self, "pool", pool)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.pool.pipeline, name)

    def sample(self, *args: Any, **kwargs: Any) -> Tensor:
        return self.pool.sample(*args, **kwargs)

    def generate(self, *args: Any, **kwargs: Any) -> Tensor:
        return self.pool.generate(*args, **kwargs)

    def __repr__(self) -> str:
        return f"PooledPipeline({self.pool.model!r}, {self.pool.config.spec()!r}, ranks={self.pool.world})"


_SHARED: dict[str, Any] = {"key": None, "pool": None}
_SHARED_LOCK = threading.Lock()


def shared_pool(
    model: str | os.PathLike,
    parallel: str | ParallelConfig,
    devices: str | list | tuple = "cpu",
    *,
    dtype: torch.dtype | None = None,
    threads: int | None = None,
    **load_kwargs: Any,
) -> WorkerPool:
    """The process's pool for (model, parallel, devices, dtype, parts), made once and reused; asking for
    another closes the previous one first (one process group per process)."""
    config = as_parallel_config(parallel)
    devs = parse_devices(devices, config.world_size)
    key = (
        str(model),
        config,
        tuple(map(str, devs)),
        str(dtype),
        threads,
        tuple(sorted(map(str, load_kwargs.items()))),
    )
    with _SHARED_LOCK:
        if _SHARED["key"] == key:
            return _SHARED["pool"]
        old = _SHARED["pool"]
        if old is not None:
            old.close()
        _SHARED["key"], _SHARED["pool"] = None, None
        pool = WorkerPool(model, config, devs, dtype=dtype, threads=threads, **load_kwargs)
        _SHARED["key"], _SHARED["pool"] = key, pool
        return pool


def close_shared_pool() -> None:
    """Close the pool of :func:`shared_pool`, if any."""
    with _SHARED_LOCK:
        if _SHARED["pool"] is not None:
            _SHARED["pool"].close()
        _SHARED["key"], _SHARED["pool"] = None, None
