"""Backpropagation through time: full, and truncated to chunks of k steps.

Truncated BPTT (Williams & Peng 1990; char-rnn's training loop) runs a long sequence in chunks of
``k`` steps. The recurrent state is carried from one chunk to the next, so the forward pass sees the
whole history, but it is detached between chunks, so gradients flow back at most ``k`` steps and
memory stays bounded.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import torch
from torch import Tensor

State = Any  # a tensor, a tuple of tensors (LSTM), or None


def detach_state(state: State) -> State:
    """Cut the graph behind a recurrent state (tensor, tuple/list of tensors, or None)."""
    if state is None:
        return None
    if isinstance(state, Tensor):
        return state.detach()
    return type(state)(detach_state(s) for s in state)


def chunk_slices(seq_len: int, k: int) -> Iterator[slice]:
    """Consecutive slices of at most ``k`` steps covering ``range(seq_len)``."""
    if k < 1:
        raise ValueError(f"truncation length k must be >= 1, got {k}")
    for start in range(0, seq_len, k):
        yield slice(start, min(start + k, seq_len))


def truncated_bptt(
    forward: Callable[[Tensor, State], tuple[Tensor, State]],
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    inputs: Tensor,
    targets: Tensor,
    state: State,
    k: int,
    time_dim: int = 0,
) -> tuple[float, State]:
    """Accumulate gradients of the mean per-step loss over ``inputs`` in chunks of ``k`` steps.

    ``forward(chunk, state) -> (outputs, state)`` runs the model on one chunk; ``loss_fn(outputs,
    targets_chunk)`` returns the *mean* loss over that chunk's steps. Each chunk's loss is weighted by
    its share of the sequence, so the accumulated gradient equals the full-sequence mean's gradient
    when ``k >= T``. Calls ``backward()`` once per chunk; the caller steps the optimizer. Returns the
    sequence's mean loss and the final (detached) state, ready for the next sequence.
    """
    seq_len = inputs.size(time_dim)
    total = 0.0
    for sl in chunk_slices(seq_len, k):
        x = inputs.narrow(time_dim, sl.start, sl.stop - sl.start)
        y = targets.narrow(time_dim, sl.start, sl.stop - sl.start)
        out, state = forward(x, state)
        loss = loss_fn(out, y) * ((sl.stop - sl.start) / seq_len)
        loss.backward()
        total += loss.item()
        state = detach_state(state)
    return total, state


def full_bptt(
    forward: Callable[[Tensor, State], tuple[Tensor, State]],
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    inputs: Tensor,
    targets: Tensor,
    state: State,
    time_dim: int = 0,
) -> tuple[float, State]:
    """Backpropagate through every step of the sequence at once (truncation k = T)."""
    return truncated_bptt(forward, loss_fn, inputs, targets, state, inputs.size(time_dim), time_dim)


@torch.no_grad()
def zero_state_like(state: State) -> State:
    """A state of zeros with the same structure (for resetting between unrelated sequences)."""
    if state is None:
        return None
    if isinstance(state, Tensor):
        return torch.zeros_like(state)
    return type(state)(zero_state_like(s) for s in state)
