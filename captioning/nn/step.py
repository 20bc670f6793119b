"""One training step, the same in every app: the forward in the run's precision, then backward, gradient
clipping, the optimizer's step and the schedule's.

    with autocast(device_type, precision):
        loss = ...                                   # the app's own forward and loss
    optimizer_step(loss, opt, params, clip, scheduler)

bf16 autocasts the forward's matrix products to bfloat16; the parameters, their gradients and the
optimizer stay fp32, so no loss scaling is needed (bfloat16 has float32's exponent range).
"""

from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler


class NonFiniteLoss(FloatingPointError):
    """The loss became NaN or infinite (``value``): the step was not taken, the weights are as before it."""

    def __init__(self, value: float) -> None:
        super().__init__(f"the loss is {value}")
        self.value = value


def autocast(device_type: str, precision: str) -> torch.autocast:
    """The forward's precision context: bf16 autocast for ``precision`` 'bf16', a no-op for 'fp32' (``auto`` is
    resolved before, by captioning.utils.precision.training_precision)."""
    return torch.autocast(device_type, dtype=torch.bfloat16, enabled=precision == "bf16")


def optimizer_step(loss: Tensor, opt: Optimizer, params: Iterable[nn.Parameter], clip: float | None = None,
                   scheduler: LRScheduler | None = None) -> float:
    """Backpropagate ``loss``, clip the gradients' global norm to ``clip`` (None or 0: no clipping), step the
    optimizer and the ``scheduler``; returns the loss. NonFiniteLoss, before any change, if it is NaN or inf."""
    value = loss.item()
    if not math.isfinite(value):
        raise NonFiniteLoss(value)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if clip:
        nn.utils.clip_grad_norm_(params, clip)
    opt.step()
    if scheduler is not None:
        scheduler.step()
    return value
