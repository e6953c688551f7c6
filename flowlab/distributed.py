"""Data-parallel training over several processes with ``torch.distributed`` (``docs/distributed.md``).

``flowlab train --nproc N ...`` (:func:`launch`) re-runs the same command line, ``python -m flowlab train ...``, in
``N`` local worker processes through torch's elastic launcher (``torch.distributed.launcher.api.elastic_launch``,
what ``torchrun --standalone`` runs), each with ``OMP_NUM_THREADS=1`` unless set. A ``flowlab train`` started by
a launcher (``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` in its environment, :func:`launched`) is a worker: that is
also how a run spans several machines (``torchrun --nnodes ... --rdzv-endpoint HOST:PORT -m flowlab train ...``).

A worker trains a :class:`DistributedTrainer`: the process group on ``gloo`` (CPU) or ``nccl`` (CUDA, one GPU per
local rank), the trainer's :class:`~flowlab.training.ObjectiveLoss` (a module whose forward is the objective's loss
of the flow on a batch: for ``mle``, ``−mean Flow.log_prob``) wrapped in ``DistributedDataParallel``, and each
step's **global** batch (the one a single process would draw from the stream ``(seed, "batch", k)``) split into
``W`` equal contiguous shards, rank ``r`` taking shard ``r``. DDP averages the ranks' gradients, and the mean of
``W`` shard means of equal size is the global mean, so every rank takes the single-process step, up to the order
of floating-point sums (``tests/test_distributed.py``: 2 processes against 1). Held-out evaluations are computed
on every rank (same points, same result); only rank 0 writes the checkpoint, atomically as always, so ``--resume``
works with any number of processes.

Limits: the batch size must be divisible by ``W``; only the ``mle`` objective (the flow-matching objectives draw
their base points and couplings per batch from the step's generator: every rank would draw the same ones for its
shard); flows whose randomness is per row (Hutchinson probes of ODE flows) draw their probes per shard, so they
match a single process in distribution, not bit for bit.
"""

from __future__ import annotations

import atexit
import os
import sys
from collections.abc import Sequence

import torch
from torch import Tensor

from flowlab.errors import OptionError
from flowlab.runconfig import TrainConfig
from flowlab.training import Trainer

#: what torchrun / the elastic agent sets in every worker
WORKER_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


def launched() -> bool:
    """Whether this process was started by torch's launcher (torchrun, elastic): a worker of a distributed run."""
    return all(name in os.environ for name in WORKER_ENV)


def launch(argv: Sequence[str], nproc: int) -> int:
    """Run ``python -m flowlab ARGV`` (the command line as given, e.g. ``["train", "--nproc", "2", ...]``) in
    ``nproc`` local worker processes; their exit status (0, or the failing rank's). Each worker parses the command
    itself and, being :func:`launched`, trains its rank instead of launching again."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise OptionError(f"train: expected --nproc >= 1, got {nproc!r}")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=f"flowlab-{os.getpid()}",
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",  # a free port, as torchrun --standalone
        max_restarts=0,
        monitor_interval=0.1,
        start_method="spawn",
    )
    try:
        elastic_launch(config, sys.executable)("-m", "flowlab", *argv)
    except ChildFailedError as exc:
        rank, failure = min(exc.failures.items())
        code = failure.exitcode if failure.exitcode and failure.exitcode > 0 else 1
        print(f"train --nproc {nproc}: worker rank {rank} exited with status {failure.exitcode}", file=sys.stderr)
        return code
    return 0


def setup(device: str) -> tuple[int, int, str]:
    """Join the process group (once per process): ``(rank, world size, this rank's device)``. Ranks other than 0
    print nothing on stdout (every rank computes the same reports)."""
    import torch.distributed as dist

    rank, world, local = (int(os.environ[name]) for name in WORKER_ENV)
    cuda = torch.device(device).type == "cuda"
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
        atexit.register(dist.destroy_process_group)
        if rank != 0:
            sys.stdout = open(os.devnull, "w")  # for the life of the worker
    if cuda:
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    return rank, world, device


class DistributedTrainer(Trainer):
    """A :class:`~flowlab.training.Trainer` that takes this rank's shard of every global batch, computes its loss
    through ``DistributedDataParallel`` (which averages the gradients) and checkpoints on rank 0 only."""

    def __init__(self, config: TrainConfig, device: str | torch.device = "cpu") -> None:
        from torch.nn.parallel import DistributedDataParallel

        self.rank, self.world, device = setup(str(device))
        if config.batch_size % self.world:
            raise OptionError(
                f"train --nproc {self.world}: the global batch ({config.batch_size}) must split into {self.world} "
                "equal shards: choose a --batch-size divisible by the number of processes"
            )
        if config.objective != "mle":
            raise OptionError(
                f"train --nproc: only the mle objective trains on several processes, got {config.objective!r}"
            )
        super().__init__(config, device)
        ids = [self.device.index] if self.device.type == "cuda" else None
        self.objective_loss = DistributedDataParallel(self.objective_loss, device_ids=ids)

    def draw(self, n: int, *keys: object) -> Tensor:
        """The stream's points; for a training batch, this rank's contiguous shard of the global batch."""
        points = super().draw(n, *keys)
        return points.chunk(self.world)[self.rank] if keys[:1] == ("batch",) else points

    def batch(self) -> tuple[Tensor, Tensor | None]:
        """This rank's shard of the step's batch, and of its rows' contexts for a conditional flow."""
        x, condition = super().batch()
        if condition is None:
            return x, None  # draw() took the shard
        return x.chunk(self.world)[self.rank], condition.chunk(self.world)[self.rank]

    def train_step(self) -> float:
        """The step on this rank's shard; returns the global batch's loss (the mean of the ranks' shard losses), so
        that every rank reports and judges divergence alike."""
        import torch.distributed as dist

        loss = torch.tensor(super().train_step(), dtype=torch.float64, device=self.device)
        dist.all_reduce(loss)
        return float(loss) / self.world

    def save(self, path: str) -> None:
        """Rank 0 writes the checkpoint (atomically); the others only note it."""
        if self.rank == 0:
            super().save(path)
        else:
            self.saved = (path, self.step)


def trainer_class() -> type[Trainer]:
    """:class:`DistributedTrainer` in a launched worker, else :class:`~flowlab.training.Trainer`."""
    return DistributedTrainer if launched() else Trainer
