"""vidcore.distributed.WorkerPool on CPU / gloo with the built-in tiny model: a 2-rank pool (this process
rank 0, one spawned worker) samples what one process samples, keeps its worker across jobs, fails clearly
and without hanging when the worker dies mid-job (and starts again on the next use), refuses devices the
machine lacks before spawning anything, and its workers exit when their parent dies."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

torch.set_num_threads(1)

TOL = 1e-5
TIMEOUT = 30  # the process-group timeout of these pools: no test may wait longer on a dead rank


@pytest.fixture(scope="module")
def job():
    """The single-process reference: (tiny pipeline, sample arguments, options, latents)."""
    import vidcore

    pipe = vidcore.load_pipeline("tiny", "cpu")
    opts = pipe.default_options().replace(steps=3, guidance=3.0, seed=1, sampler="euler", schedule="flow")
    cond, uncond = pipe.encode_prompts("a red circle moving right", "")
    shape = (1, *pipe.latent_shape(9, 40, 24))
    prep = pipe.prepare_latents(shape, 1)
    with torch.no_grad():
        ref = pipe.sample(prep.noise, cond, uncond, opts, generator=prep.generator)
    return pipe, (prep.noise, cond, uncond, opts), ref


@pytest.fixture(scope="module")
def pool():
    from vidcore.distributed import WorkerPool

    p = WorkerPool("tiny", f"cfg=2,timeout={TIMEOUT}", "cpu", threads=1)
    yield p
    p.close()
    assert not torch.distributed.is_initialized()


def _run(pool, job, **kwargs):
    pipe, (noise, cond, uncond, opts), _ = job
    gen = pipe.prepare_latents(tuple(noise.shape), opts.seed).generator
    return pool.sample(noise, cond, uncond, opts, generator=gen, **kwargs)


def test_pool_equals_one_process_and_keeps_its_worker(pool, job):
    ref = job[2]
    out = _run(pool, job)
    pids = pool.worker_pids
    assert len(pids) == 1 and pids[0] != os.getpid()
    assert out.shape == ref.shape
    assert float((out - ref).abs().max()) <= TOL
    # A second job runs on the same worker (no respawn, no reload).
    out2 = pool.pooled().sample(job[1][0], job[1][1], job[1][2], job[1][3])
    assert pool.worker_pids == pids
    assert float((out2 - ref).abs().max()) <= TOL


def test_an_error_raised_on_every_rank_keeps_the_pool(pool, job):
    _, (noise, cond, _, opts), _ = job
    pids = pool.worker_pids or pool.start().worker_pids
    with pytest.raises(ValueError, match="unconditional"):  # guidance 3 without uncond: refused on all ranks
        pool.sample(noise, cond, None, opts)
    assert not pool.broken and pool.worker_pids == pids
    assert float((_run(pool, job) - job[2]).abs().max()) <= TOL


def test_a_killed_worker_fails_clearly_without_hanging_and_the_pool_restarts(pool, job):
    from vidcore.distributed import ParallelError

    pool.start()
    (victim,) = pool.worker_pids

    def kill(info):
        if info["i"] == 0:
            os.kill(victim, signal.SIGKILL)
            time.sleep(0.5)

    start = time.monotonic()
    with pytest.raises(ParallelError) as err:
        _run(pool, job, callback=kill)
    elapsed = time.monotonic() - start
    assert elapsed < TIMEOUT + 10, f"rank 0 waited {elapsed:.0f} s"
    message = str(err.value)
    assert "rank 1" in message and str(victim) in message and "signal 9" in message, message
    assert "starts again on the next use" in message
    assert pool.broken and not torch.distributed.is_initialized()
    out = _run(pool, job)  # the next use starts a new worker
    assert not pool.broken and pool.worker_pids != [victim]
    assert float((out - job[2]).abs().max()) <= TOL


def test_too_many_devices_are_refused_before_spawning():
    from vidcore.distributed import WorkerPool

    have = torch.cuda.device_count() if torch.cuda.is_available() else 0
    before = set(multiprocessing.active_children())
    with pytest.raises(ValueError, match=f"asks for {have + 3} CUDA devices, this machine has {have}"):
        WorkerPool("tiny", f"cfg={have + 3}", ",".join(f"cuda:{i}" for i in range(have + 3)))
    with pytest.raises(ValueError, match=f"asks for {have + 2} CUDA devices, this machine has {have}"):
        WorkerPool("tiny", f"ring={have + 2}", "cuda")  # "cuda": one GPU per rank, cuda:0 .. cuda:N-1
    with pytest.raises(ValueError, match="names 3 devices but the parallel run has 2 ranks"):
        WorkerPool("tiny", "cfg=2", "cpu,cpu,cpu")
    with pytest.raises(ValueError, match="at least 2 ranks"):
        WorkerPool("tiny", "ulysses=1", "cpu")
    assert set(multiprocessing.active_children()) == before


def test_workers_exit_when_the_parent_dies(tmp_path):
    script = textwrap.dedent(
        """
        import os, sys, torch
        torch.set_num_threads(1)
        from vidcore.distributed import WorkerPool
        pool = WorkerPool("tiny", "cfg=2,timeout=30", "cpu", threads=1).start()
        print(pool.worker_pids[0], flush=True)
        os._exit(0)  # no close(): the worker must notice by itself
        """
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    pid = int(proc.stdout.strip().splitlines()[-1])
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        # A zombie would also pass os.kill; the orphan is reparented and reaped by init.
        time.sleep(0.2)
    pytest.fail(f"worker {pid} still runs 15 s after its parent died")
