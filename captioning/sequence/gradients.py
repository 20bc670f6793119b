"""How far back does the gradient reach? ||d loss_T / d h_{T-k}|| for k = 0 .. T.

The recurrence is unrolled one step at a time, so every hidden state h_t is a node of the graph, and
one ``torch.autograd.grad`` call returns d loss / d h_t for all t at once. The tool takes any step
function, so a pure linear recurrence h' = w h + x (whose answer is exactly w^k) can check it;
``module_stepper`` turns one of our RNN/LSTM/GRU modules into such a step using the very cell
equations of ``captioning.nn.cells``, whatever backend the module trains with.

For an LSTM the differentiated state is h_t (with c_t held as a separate node), i.e. the partial
derivative through the hidden output: the quantity that the lecture's vanishing-gradient argument is
about. Loss per example is summed over the batch, so each example's gradient is its own (not scaled
by 1/B); the reported norm is the batch mean of the per-example norms.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn

from captioning.nn.cells import GRU, LSTM, RNN, gru_step, lstm_step, rnn_step

State = Any
Step = Callable[[Tensor, State], State]


def unroll(step: Step, inputs: Tensor, state: State) -> list[State]:
    """States [s_0, s_1, ..., s_T] from running ``step`` over inputs [B, T, ...] (batch first)."""
    states = [state]
    for t in range(inputs.size(1)):
        states.append(step(inputs[:, t], states[-1]))
    return states


def hidden_gradient_norms(step: Step, hidden: Callable[[State], Sequence[Tensor]],
                          loss_fn: Callable[[State], Tensor], inputs: Tensor, state0: State) -> Tensor:
    """norms[k] = mean over the batch of ||d loss_b(s_T) / d h_{T-k}||, for k = 0 .. T.

    ``hidden(state)`` lists the tensors (each [B, ...], inside the graph) that make up h in a state;
    ``loss_fn(final_state)`` returns one loss per example [B].
    """
    states = unroll(step, inputs, state0)
    per_step = [list(hidden(s)) for s in states]
    flat = [h for hs in per_step for h in hs]
    grads = torch.autograd.grad(loss_fn(states[-1]).sum(), flat, allow_unused=True)
    norms, i = [], 0
    for hs in per_step:
        sq = sum((g.flatten(1).pow(2).sum(1) if g is not None else h.new_zeros(h.size(0)))
                 for g, h in zip(grads[i : i + len(hs)], hs))
        norms.append(sq.sqrt().mean())
        i += len(hs)
    return torch.stack(norms).flip(0).detach()  # index k: k steps before the end


def module_stepper(rnn: nn.Module) -> tuple[Step, Callable[[State], list[Tensor]], Callable[[int], State]]:
    """(step, hidden, initial_state) for one of our multi-layer RNN/LSTM/GRU modules (no dropout).

    A state is a tuple with one entry per layer: h, or (h, c) for an LSTM; ``hidden`` lists every
    layer's h; ``initial_state(batch)`` gives zeros that require grad (so h_0 is a graph node too).
    """
    if not isinstance(rnn, (RNN, LSTM, GRU)):
        raise TypeError(f"module_stepper needs captioning.nn.cells.RNN/LSTM/GRU, got {type(rnn).__name__}")
    is_lstm = isinstance(rnn, LSTM)

    def step(x: Tensor, state: State) -> State:
        new, inp = [], x
        for layer in range(rnn.num_layers):
            w_ih, w_hh, b_ih, b_hh = rnn.layer_weights(layer)
            gi = nn.functional.linear(inp, w_ih, b_ih)
            if is_lstm:
                h, c, _ = lstm_step(gi, *state[layer], w_hh, b_hh)
                new.append((h, c))
            elif isinstance(rnn, GRU):
                h, _ = gru_step(gi, state[layer], w_hh, b_hh)
                new.append(h)
            else:
                h = rnn_step(gi, state[layer], w_hh, b_hh, rnn.nonlinearity)
                new.append(h)
            inp = h
        return tuple(new)

    def hidden(state: State) -> list[Tensor]:
        return [s[0] if is_lstm else s for s in state]

    def initial_state(batch: int) -> State:
        p = next(rnn.parameters())
        zeros = lambda: torch.zeros(batch, rnn.hidden_size, dtype=p.dtype, device=p.device, requires_grad=True)  # noqa: E731
        return tuple((zeros(), zeros()) if is_lstm else zeros() for _ in range(rnn.num_layers))

    return step, hidden, initial_state


def model_gradient_norms(model: nn.Module, inputs: Tensor, targets: Tensor) -> Tensor:
    """Gradient norms through a ``ManyToOne`` model's recurrence for its own loss (MSE or cross-entropy).

    Sequences are taken as unpadded (every one runs all T steps), as in the adding problem.
    """
    step, hidden, initial_state = module_stepper(model.rnn)
    x = model.embed(inputs) if model.embed is not None else inputs

    def loss_fn(final: State) -> Tensor:
        pred = model.head(hidden(final)[-1])
        if model.output_size == 1:
            return (pred.squeeze(-1) - targets).pow(2)
        return nn.functional.cross_entropy(pred, targets, reduction="none")

    with torch.enable_grad():
        return hidden_gradient_norms(step, hidden, loss_fn, x, initial_state(inputs.size(0)))
