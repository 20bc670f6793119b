"""Data-parallel training over processes that torchrun starts (gloo on CPU, NCCL on GPU).

    torchrun --standalone --nproc_per_node=2 -m captioning.commands.train trainer=ddp
    captioning-train -m hydra/launcher=slurm hydra.launcher.tasks_per_node=4 trainer=ddp  # docs/cluster.md

Every rank runs the same job. The same seed gives every rank the same caption order each epoch;
``schedule.batch_size`` is the *global* batch, and rank r takes captions r, r + N, r + 2N, ... of it
(DistributedSampler's interleaving), reading only those rows of the memory-mapped feature cache.
torch DDP averages the gradients; each rank scales its loss by N * (its words / the batch's words),
so the average is the gradient of the global batch's masked mean, as one process computes it.
Only rank 0 validates (and broadcasts the score), writes checkpoints, history, logs and metrics.
Under Hydra's submitit launcher the variables torchrun would set come from the job's environment.
With ``trainer=single`` (the default) nothing here touches torch.distributed.
"""

from __future__ import annotations

import atexit
import datetime
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn

from captioning.utils.schema import option

log = logging.getLogger(__name__)
T = TypeVar("T")
TRAINERS = ("single", "ddp")
TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
LAUNCH_HINT = "start it with torchrun, e.g. torchrun --standalone --nproc_per_node=2 -m captioning.commands.train trainer=ddp"
BACKENDS = ("auto", "gloo", "nccl")


@dataclass
class TrainerConfig:
    """Options of the `trainer` config group (configs/trainer/*.yaml): one process, or DDP under torchrun."""

    name: str = option("single", "single: one process | ddp: one process per GPU or CPU socket, started by "
                       "torchrun", choices=TRAINERS)
    backend: str = option("auto", "ddp: auto (nccl when device is cuda, one GPU per rank, else gloo) | gloo | nccl",
                          choices=BACKENDS)
    timeout_s: float = option(1800, "ddp: seconds a collective waits for a slow rank (e.g. one extracting "
                              "features)", gt=0)


@dataclass(frozen=True)
class DataParallel:
    """This process's place in the job: rank, world size and the device collectives run on."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that validates and writes files."""
        return self.rank == 0

    def wrap(self, module: nn.Module, fold_rank: bool = True) -> nn.Module:
        """``module`` wrapped in DDP (gradients averaged in backward); the module itself for one process.
        ``fold_rank=False``: this rank's generators already hold its own stream (restored on resume)."""
        if self.world_size == 1:
            return module
        from torch.nn.parallel import DistributedDataParallel

        # Every rank drew the same seeded stream so far; fold the rank in now so that
        # dropout masks differ between ranks instead of repeating on every shard.
        if fold_rank:
            torch.manual_seed(int(torch.randint(2**62, (1,))) + self.rank)
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids)

    def shard(self, idx: Tensor, tokens: Tensor, pad_id: int = 0) -> tuple[Tensor, float]:
        """(this rank's rows of the global batch ``idx``, loss scale): see the module docstring. ``tokens``:
        the caption ids, ``pad_id`` their padding (captioning.text.vocab.PAD)."""
        if self.world_size == 1:
            return idx, 1.0
        mine = idx[self.rank :: self.world_size]
        if len(mine) == 0:  # a last batch smaller than the world: join the all-reduce, add nothing
            return idx[:1], 0.0
        words = lambda rows: int((tokens[rows, 1:] != pad_id).sum())  # noqa: E731 - the targets' real words
        return mine, self.world_size * words(mine) / words(idx)

    def on_main(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` computed on rank 0 only and broadcast to every rank."""
        value = fn(*args, **kwargs) if self.is_main else None
        if self.world_size == 1:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0, device=self.device)
        return box[0]

    def gather(self, value: T) -> list[T]:
        """``value`` (any picklable object) of every rank, in rank order, on every rank."""
        if self.world_size == 1:
            return [value]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, value)
        return out

    def mean(self, value: float) -> float:
        """The mean of ``value`` over the ranks."""
        if self.world_size == 1:
            return value
        total = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(total)
        return float(total.item()) / self.world_size

    def barrier(self) -> None:
        """Wait for every rank."""
        if self.world_size > 1:
            dist.barrier()


def current() -> DataParallel:
    """The process group this process belongs to, or a single process when there is none."""
    if not (dist.is_available() and dist.is_initialized()):
        return DataParallel()
    nccl = dist.get_backend() == "nccl"
    device = torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu")
    return DataParallel(dist.get_rank(), dist.get_world_size(), device)


def setup(trainer: TrainerConfig, device: str) -> tuple[DataParallel, str]:
    """Join torchrun's process group when ``trainer.name`` is ddp; returns this process's place in the job and
    the device it runs on (``device``, or under DDP with cuda this rank's GPU)."""
    name = trainer.name
    if name not in TRAINERS:
        raise ValueError(f"unknown trainer {name!r}: choose one of {TRAINERS}")
    world = int(os.environ.get("WORLD_SIZE", 1))
    if name == "single":
        if world > 1:
            raise ValueError(f"this process is one of {world} started by torchrun, but trainer=single would make "
                             f"each train alone: add trainer=ddp")
        return DataParallel(), device
    cuda = str(device).startswith("cuda")
    if dist.is_initialized():
        return current(), f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if cuda else device
    _export_submitit_env()
    missing = [k for k in TORCHRUN_ENV if k not in os.environ]
    if missing:
        raise ValueError(f"trainer=ddp needs the process-group variables {missing} that torchrun sets: {LAUNCH_HINT}")
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = f"cuda:{local_rank}" if cuda else device
    if cuda:
        torch.cuda.set_device(local_rank)
    backend = ("nccl" if cuda else "gloo") if trainer.backend == "auto" else trainer.backend
    timeout = datetime.timedelta(seconds=trainer.timeout_s)
    dist.init_process_group(backend, timeout=timeout)
    atexit.register(teardown)
    if dist.get_rank() != 0:
        logging.getLogger().setLevel(logging.WARNING)  # rank 0 speaks for the job
    log.info("DDP: %d processes, backend %s", dist.get_world_size(), backend)
    return current(), device


def _export_submitit_env() -> None:
    """Under Hydra's submitit launcher (SLURM or local) with several tasks, set what torchrun would set."""
    if "SUBMITIT_EXECUTOR" not in os.environ or "RANK" in os.environ:
        return
    from submitit.helpers import TorchDistributedEnvironment  # present wherever submitit started us

    env = TorchDistributedEnvironment()
    if env.world_size > 1:
        # every rank sees every GPU of its node and picks cuda:LOCAL_RANK (setup below)
        env.export(set_cuda_visible_devices=False)


def teardown() -> None:
    """Leave the process group (if any)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
