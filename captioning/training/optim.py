"""The optimizer and learning-rate schedule of a training stage."""

from __future__ import annotations

import math
from typing import Any, Iterable

import torch

LR_SCHEDULES = ("cosine", "constant", "step")


def make_optimizer(params: Iterable, stage: Any, steps_per_epoch: int):
    """AdamW (its fused implementation where the device has it) over ``params`` (parameters or param
    groups) with linear warmup then a cosine, constant or
    step learning-rate schedule (per step, scaling every group's own lr)."""
    params = list(params)
    try:  # one fused kernel per step; torch's default on CPU is a Python loop over the tensors
        opt = torch.optim.AdamW(params, lr=stage.lr, weight_decay=stage.weight_decay, fused=True)
    except (RuntimeError, ValueError):  # a device or dtype without the fused kernel
        opt = torch.optim.AdamW(params, lr=stage.lr, weight_decay=stage.weight_decay)
    total = max(1, stage.epochs * steps_per_epoch)

    def factor(step: int) -> float:
        if step < stage.warmup_steps:
            return (step + 1) / stage.warmup_steps
        if stage.lr_schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(1.0, step / total)))
        if stage.lr_schedule == "step":
            return stage.lr_gamma ** (step // max(1, stage.lr_step_epochs * steps_per_epoch))
        if stage.lr_schedule == "constant":
            return 1.0
        raise ValueError(f"Unknown lr_schedule {stage.lr_schedule!r}: choose one of {LR_SCHEDULES}")

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)
