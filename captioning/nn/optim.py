"""The optimizer and learning-rate schedule of every app: caption stages, the char-LM, the sequence tasks.

Adam (Kingma & Ba 2015) or AdamW (decoupled weight decay, Loshchilov & Hutter 2019), and a learning rate
that warms up linearly for ``warmup_steps``, then follows a cosine from the peak down to ``floor`` (SGDR,
Loshchilov & Hutter 2017, without restarts), stays constant, or decays by ``gamma`` every ``step_every``
steps. The cosine's progress is a fraction in [0, 1]: steps done over steps planned, or (the char-LM's time
budget) the larger of that and seconds used over seconds allowed.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

OPTIMIZERS = ("adam", "adamw")
LR_SCHEDULES = ("cosine", "constant", "step")


def make_optimizer(params: Iterable, name: str = "adamw", lr: float = 1e-3, weight_decay: float = 0.0,
                   betas: tuple[float, float] = (0.9, 0.999), fused: bool = False) -> Optimizer:
    """Adam or AdamW over ``params`` (parameters or param groups, each group's own options kept).

    ``fused``: torch's one-kernel implementation where the device and dtype have it (else its default);
    it rounds differently from the default in the last bit, so each app keeps the one its results used."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}: choose one of {OPTIMIZERS}")
    cls = torch.optim.AdamW if name == "adamw" else torch.optim.Adam
    params = list(params)
    if fused:
        try:  # one fused kernel per step; torch's default on CPU is a Python loop over the tensors
            return cls(params, lr=lr, betas=tuple(betas), weight_decay=weight_decay, fused=True)
        except (RuntimeError, ValueError):  # a device or dtype without the fused kernel
            pass
    return cls(params, lr=lr, betas=tuple(betas), weight_decay=weight_decay)


def decay_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two param groups: the matrices (embeddings, weights) with ``weight_decay``, the vectors (biases, layer
    norms) without (as nanoGPT): decaying a bias or a gain towards zero only fights the fit."""
    params = list(model.parameters())
    return [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]


def learning_rate(peak: float, step: int, progress: float, warmup_steps: int = 0, schedule: str = "cosine",
                  floor: float = 0.0, gamma: float = 1.0, step_every: int = 1) -> float:
    """The learning rate at optimizer step ``step`` (0-based) and ``progress`` in [0, 1] (the cosine's)."""
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    if schedule == "cosine":
        cosine = 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
        return floor + (peak - floor) * cosine
    if schedule == "step":
        return peak * gamma ** (step // max(1, step_every))
    if schedule == "constant":
        return peak
    raise ValueError(f"unknown lr_schedule {schedule!r}: choose one of {LR_SCHEDULES}")


def step_scheduler(opt: Optimizer, total_steps: int, warmup_steps: int = 0, schedule: str = "cosine",
                   gamma: float = 1.0, step_every: int = 1) -> LambdaLR:
    """A scheduler stepped once per optimizer step that scales every group's own lr by ``learning_rate``
    with peak 1 over ``total_steps`` (its state goes into checkpoints, so a resumed run continues it)."""
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"unknown lr_schedule {schedule!r}: choose one of {LR_SCHEDULES}")
    total = max(1, total_steps)
    return LambdaLR(opt, lambda step: learning_rate(1.0, step, step / total, warmup_steps, schedule,
                                                    gamma=gamma, step_every=step_every))


def set_learning_rate(opt: Optimizer, lr: float) -> None:
    """Every group's learning rate to ``lr`` (a schedule computed by the caller, e.g. on a time budget)."""
    for group in opt.param_groups:
        group["lr"] = lr
