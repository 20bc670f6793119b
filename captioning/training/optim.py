"""The optimizer and learning-rate schedule of a caption training stage: the shared factory
(captioning/nn/optim.py) with the stage's options."""

from __future__ import annotations

from typing import Any, Iterable

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from captioning.nn.optim import make_optimizer as shared_optimizer
from captioning.nn.optim import step_scheduler


def make_optimizer(params: Iterable, stage: Any, steps_per_epoch: int) -> tuple[Optimizer, LambdaLR]:
    """AdamW (fused where the device has it) over ``params`` (parameters or param groups) with linear warmup
    then the stage's cosine, constant or step schedule, stepped per optimizer step."""
    opt = shared_optimizer(params, "adamw", lr=stage.lr, weight_decay=stage.weight_decay, fused=True)
    sched = step_scheduler(opt, stage.epochs * steps_per_epoch, stage.warmup_steps, stage.lr_schedule,
                           gamma=stage.lr_gamma, step_every=stage.lr_step_epochs * steps_per_epoch)
    return opt, sched
