"""Batch-norm folding: a frozen network's BatchNorm2d layers merged into the convolutions before them.

``folded_if_equal`` is what the Encoder calls on a frozen backbone: it folds a copy and keeps it only where
the features come out the same (the "registered just before" rule of ``fold_batchnorm`` can misread a network
that applies a BatchNorm before the conv registered ahead of it).
"""

from __future__ import annotations

import copy
import logging
from typing import Iterator

import torch
from torch import nn

log = logging.getLogger(__name__)


def _leaves(module: nn.Module) -> Iterator[tuple[nn.Module, str, nn.Module]]:
    """(parent, name, child) for every conv, batch norm and other leaf, in registration order."""
    for name, child in module.named_children():
        if isinstance(child, (nn.Conv2d, nn.BatchNorm2d)) or next(child.children(), None) is None:
            yield module, name, child
        else:
            yield from _leaves(child)


@torch.no_grad()
def fold_batchnorm(module: nn.Module) -> int:
    """Fold each eval-mode BatchNorm2d into the Conv2d registered just before it, in place; returns the count.

    A frozen BatchNorm is an affine map per channel, so conv + BN = one conv with scaled weights and a
    bias; it saves a full pass over every activation (~1.4x faster EfficientNet-Lite0 on CPU). The
    "registered just before" rule fits conv-BN networks; callers check the result numerically."""
    folded, prev = 0, None
    for parent, name, child in list(_leaves(module)):
        if (isinstance(child, nn.BatchNorm2d) and isinstance(prev, nn.Conv2d) and child.running_var is not None
                and prev.out_channels == child.num_features):
            scale = (child.running_var + child.eps).rsqrt()
            scale = scale * child.weight if child.weight is not None else scale
            bias = prev.bias if prev.bias is not None else torch.zeros_like(child.running_mean)
            shift = child.bias if child.bias is not None else 0.0
            prev.weight.mul_(scale.view(-1, 1, 1, 1))
            prev.bias = nn.Parameter((bias - child.running_mean) * scale + shift, requires_grad=False)
            # timm's BatchNormAct2d also holds the activation (and a dropout), which must stay.
            rest = [m for m in (getattr(child, "drop", None), getattr(child, "act", None)) if m is not None]
            setattr(parent, name, nn.Sequential(*rest) if rest else nn.Identity())
            folded += 1
        prev = child
    return folded


def folded_if_equal(backbone: nn.Module, size: int) -> nn.Module:
    """The backbone (``feature_map``/``pool``, as captioning/features/backbones.py gives them) with its
    BatchNorms folded when that gives the same features on a random ``size`` x ``size`` batch, else unchanged."""
    if not any(isinstance(m, nn.BatchNorm2d) for m in backbone.modules()):
        return backbone
    folded = copy.deepcopy(backbone)
    fold_batchnorm(folded)
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = backbone.pool(backbone.feature_map(x))
        got = folded.pool(folded.feature_map(x))
    if torch.allclose(got, expected, rtol=1e-3, atol=1e-4 * float(expected.abs().max()) + 1e-6):
        return folded
    log.warning("BatchNorm folding changed the features of this network; keeping it unfolded")
    return backbone
