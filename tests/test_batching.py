"""Epoch order: every caption once per epoch; bucketing groups similar lengths and stays reproducible."""

import torch

from captioning.training.batching import epoch_order


def lengths(n=1000, seed=0):
    return torch.randint(3, 17, (n,), generator=torch.Generator().manual_seed(seed))


def padded_steps(order, lens, bs):
    return sum(int(lens[b].max()) * len(b) for b in order.split(bs))


def test_plain_order_is_the_seeded_permutation():
    lens = lengths()
    expected = torch.randperm(1000, generator=torch.Generator().manual_seed(7))
    assert torch.equal(epoch_order(lens, 32, seed=7), expected)


def test_bucketed_order_visits_every_caption_once_with_less_padding():
    lens, bs = lengths(), 32
    plain, bucketed = epoch_order(lens, bs, seed=3), epoch_order(lens, bs, seed=3, bucket=True, pool_batches=8)
    assert sorted(bucketed.tolist()) == list(range(1000))
    assert padded_steps(bucketed, lens, bs) < 0.85 * padded_steps(plain, lens, bs)
    assert sum(lens.tolist()) <= padded_steps(bucketed, lens, bs)
    # only the last batch is short (1000 = 31 * 32 + 8), so slicing by batch_size gives whole batches
    sizes = [len(b) for b in bucketed.split(bs)]
    assert sizes[:-1] == [bs] * 31 and sizes[-1] == 8


def test_bucketed_order_is_reproducible_and_changes_with_the_seed():
    lens = lengths()
    a, b = epoch_order(lens, 32, seed=1, bucket=True), epoch_order(lens, 32, seed=1, bucket=True)
    assert torch.equal(a, b)
    assert not torch.equal(a, epoch_order(lens, 32, seed=2, bucket=True))
    # batches come in random order, not sorted by length over the epoch
    maxima = [int(lens[x].max()) for x in a.split(32)]
    assert maxima != sorted(maxima) and maxima != sorted(maxima, reverse=True)
