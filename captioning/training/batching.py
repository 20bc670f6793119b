"""The order in which an epoch visits the training captions, optionally bucketed by length.

Each batch is trimmed to its longest caption, so a batch of short captions costs fewer recurrent steps.
With bucketing, a random permutation is cut into pools of ``pool_batches`` batches, each pool is sorted by
caption length and cut into batches, and the batches are shuffled: every caption still comes once per
epoch, in random company of similar length (the "bucket iterator" of torchtext and fairseq). The
order is a pure function of the seed and the epoch, so a resumed run sees the same batches.
"""

from __future__ import annotations

import torch
from torch import Tensor


def epoch_order(lengths: Tensor, batch_size: int, seed: int, bucket: bool = False, pool_batches: int = 50) -> Tensor:
    """Indices of all captions; consecutive ``batch_size`` slices are the epoch's batches (the last may be short)."""
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(lengths), generator=g)
    if not bucket:
        return order
    pool = batch_size * pool_batches
    pools = [chunk[torch.argsort(lengths[chunk], stable=True)] for chunk in order.split(pool)]
    batches = list(torch.cat(pools).split(batch_size))
    full, rest = (batches[:-1], batches[-1:]) if len(batches[-1]) < batch_size else (batches, [])
    shuffled = [full[i] for i in torch.randperm(len(full), generator=g).tolist()]
    return torch.cat(shuffled + rest)
