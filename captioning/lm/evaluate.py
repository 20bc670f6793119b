"""Scoring a character model on held-out text, the same way for every model (nats per character).

``windowed_loss`` is the measure every model shares: the text cut into consecutive, non-overlapping
windows, each scored from an empty context (a recurrent model starts each window from the zero state; a
transformer sees only the window), so no prediction reads more than one window of text. With windows of
64 characters it asks of an RNN what a transformer of block size 64 (nanoGPT's shakespeare_char) can do.
``carried_loss`` is char-rnn's measure, for models that carry a state: the state runs through the text.
``evaluate`` reports both (the second only for recurrent models).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from captioning.lm.corpus import StreamBatches
from captioning.lm.model import LM


def _nll(model: LM, x: Tensor, y: Tensor, state: Any = None) -> tuple[float, Any]:
    """Summed cross-entropy of targets ``y`` given inputs ``x`` (both [T, B]), and the model's state after."""
    logits, state = model(x, state)
    return nn.functional.cross_entropy(logits.flatten(0, 1).float(), y.flatten(), reduction="sum").item(), state


@torch.no_grad()
def windowed_loss(model: LM, data: Tensor, window: int, batch_size: int) -> float:
    """Mean nats/char over every character of ``data`` after the first, in windows of ``window`` from empty context.

    Window i predicts characters i*window+1 .. (i+1)*window from the ones before them in that window only;
    the last window may be shorter, so every character is scored exactly once. ``batch_size`` windows run at once.
    """
    if model.context is not None and window > model.context:
        raise ValueError(f"evaluation windows of {window} characters exceed the model's context of "
                         f"{model.context}: lower schedule.eval_window or raise cell.block_size")
    n = len(data) - 1  # characters to predict: every one but the first
    if n < 1:
        raise ValueError(f"need at least 2 characters to score, got {len(data)}")
    was_training = model.training
    model.eval()
    full = n // window
    x = data[: full * window].view(full, window).t()  # [window, full]: column i is window i
    y = data[1: full * window + 1].view(full, window).t()
    total = sum(_nll(model, x[:, i:i + batch_size], y[:, i:i + batch_size])[0] for i in range(0, full, batch_size))
    if n > full * window:  # the shorter last window
        total += _nll(model, data[full * window: n].unsqueeze(1), data[full * window + 1:].unsqueeze(1))[0]
    model.train(was_training)
    return total / n


@torch.no_grad()
def carried_loss(model: LM, data: Tensor, batch_size: int, seq_len: int) -> float:
    """Mean nats/char over ``data`` read as ``batch_size`` contiguous streams, the state carried through each.

    Each stream starts from the zero state once and is read in chunks of ``seq_len`` (char-rnn's validation);
    only a recurrent model (``context`` None) has a state to carry.
    """
    if model.context is not None:
        raise ValueError("the carried-state measure needs a recurrent model; a transformer has no state to carry")
    was_training = model.training
    model.eval()
    batch_size = max(1, min(batch_size, (len(data) - 1) // seq_len))
    total, count, state = 0.0, 0, None
    for x, y in StreamBatches(data, batch_size, seq_len, drop_last=False):
        nll, state = _nll(model, x, y, state)
        total, count = total + nll, count + y.numel()
    model.train(was_training)
    return total / count


def evaluate(model: LM, data: Tensor, window: int, batch_size: int, carried_seq_len: int | None = None
             ) -> dict[str, float]:
    """``val_loss``: the windowed measure; ``val_loss_carried`` too for a recurrent model if ``carried_seq_len``."""
    scores = {"val_loss": windowed_loss(model, data, window, batch_size)}
    if carried_seq_len is not None and model.context is None:
        scores["val_loss_carried"] = carried_loss(model, data, batch_size, carried_seq_len)
    return scores
