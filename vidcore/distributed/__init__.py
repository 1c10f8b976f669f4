"""Multi-process inference on torch.distributed: sequence parallelism (Ulysses x Ring), CFG parallelism and
FSDP2 weight sharding, for every vidcore denoiser without per-model code.

Usage: under ``torchrun --nproc-per-node N``, ``vidcore.load_pipeline(name, parallel="ulysses=2,ring=2")``
(or ``vidcore generate ... --parallel ulysses=2,ring=2``); every rank gets the full frames, the CLI writes
them on rank 0. By hand: ``mesh = init_parallel("ulysses=2")``, then ``with sequence_parallel(mesh): out =
model(...)`` on every rank with the same inputs.

Several machines use torchrun's rendezvous flags; ranks are numbered machine by machine, and a Ulysses group
is ``ulysses`` consecutive ranks, so ``ulysses`` = GPUs per machine keeps the all-to-alls on NVLink and only
the ring's key/value blocks cross the network, e.g. on each of 2 machines with 8 GPUs::

    torchrun --nnodes 2 --nproc-per-node 8 --node-rank 0|1 --rdzv-backend c10d --rdzv-endpoint HOST:29500 \
        -m vidcore.cli generate "a fox in the snow" -o fox.mp4 --model WAN_FOLDER --device cuda \
        --parallel ulysses=8,ring=2,fsdp
"""

from .comm import CommCounter, ParallelError, count_comm
from .config import ParallelConfig, as_parallel_config
from .fsdp import shard_weights
from .mesh import ParallelMesh, init_parallel
from .run import ParallelDenoiser, ParallelRun, check_agreement, parallelize
from .sequence import SequenceParallelRun, sequence_parallel
from .workers import PooledPipeline, WorkerPool, close_shared_pool, parse_devices, shared_pool

__all__ = [
    "CommCounter",
    "ParallelConfig",
    "ParallelDenoiser",
    "ParallelError",
    "ParallelMesh",
    "ParallelRun",
    "PooledPipeline",
    "SequenceParallelRun",
    "WorkerPool",
    "as_parallel_config",
    "check_agreement",
    "close_shared_pool",
    "count_comm",
    "init_parallel",
    "parallelize",
    "parse_devices",
    "sequence_parallel",
    "shard_weights",
    "shared_pool",
]
