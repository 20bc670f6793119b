"""Truncated BPTT: k >= T is exactly full BPTT; k < T still carries the state across chunks."""

import pytest
import torch
from torch import nn

from captioning.nn import bptt
from captioning.nn import cells


class _TinyModel(nn.Module):
    def __init__(self, cell: str):
        super().__init__()
        self.rnn = cells.build_rnn(cell, 3, 5, num_layers=2)
        self.head = nn.Linear(5, 1)

    def forward(self, x, state):
        out, state = self.rnn(x, state)
        return self.head(out).squeeze(-1), state


def _grads(model, k, reset_each_chunk=False):
    torch.manual_seed(0)
    model.zero_grad()
    x, y = torch.randn(12, 4, 3, dtype=torch.float64), torch.randn(12, 4, dtype=torch.float64)
    mse = lambda out, target: (out - target).pow(2).mean()  # noqa: E731
    if reset_each_chunk:
        total = 0.0
        for sl in bptt.chunk_slices(12, k):
            l, _ = bptt.full_bptt(model, mse, x[sl], y[sl], None)
            total += l * (sl.stop - sl.start) / 12
    else:
        total, _ = bptt.truncated_bptt(model, mse, x, y, None, k)
    return total, {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_k_at_least_T_equals_full_bptt(cell):
    torch.manual_seed(1)
    model = _TinyModel(cell).double()
    loss_full, g_full = _grads(model, k=12)
    loss_k, g_k = _grads(model, k=50)
    # full BPTT written out by hand, with no helper at all
    model.zero_grad()
    torch.manual_seed(0)
    x, y = torch.randn(12, 4, 3, dtype=torch.float64), torch.randn(12, 4, dtype=torch.float64)
    out, _ = model(x, None)
    (out - y).pow(2).mean().backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(g_full[name], p.grad, atol=1e-12, rtol=0)
        torch.testing.assert_close(g_k[name], p.grad, atol=1e-12, rtol=0)
    assert loss_full == pytest.approx(loss_k)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_truncated_bptt_carries_state_across_chunks(cell):
    torch.manual_seed(2)
    model = _TinyModel(cell).double()
    loss_full, g_full = _grads(model, k=12)
    loss_carry, g_carry = _grads(model, k=4)
    loss_reset, _ = _grads(model, k=4, reset_each_chunk=True)
    # the forward pass sees the whole history, so the loss is the full-sequence loss ...
    assert loss_carry == pytest.approx(loss_full, abs=1e-12)
    # ... unlike resetting the state each chunk
    assert abs(loss_carry - loss_reset) > 1e-6
    # and the gradient is truncated, so it differs from the full one
    assert any((g_carry[n] - g_full[n]).abs().max() > 1e-8 for n in g_full)


def test_detach_state_cuts_graph():
    h = torch.ones(2, requires_grad=True) * 2
    c = torch.ones(2, requires_grad=True) * 3
    d = bptt.detach_state((h, c))
    assert isinstance(d, tuple) and not d[0].requires_grad and not d[1].requires_grad
    assert bptt.detach_state(None) is None
    with pytest.raises(ValueError):
        list(bptt.chunk_slices(10, 0))
