"""Sampling text from a character model: temperature, priming text, length, seed."""

from __future__ import annotations

import torch
from torch import Tensor

from captioning.lm.model import CharRNN
from captioning.lm.vocab import CharVocab

# Below this temperature, sampling is argmax: dividing logits by ~0 would overflow to inf/nan.
GREEDY_BELOW = 1e-6


def next_id(logits: Tensor, temperature: float, generator: torch.Generator | None = None,
            top_k: int | None = None) -> int:
    """Draw one id from softmax(logits / temperature); temperature -> 0 is argmax."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if temperature < GREEDY_BELOW:
        return int(logits.argmax())
    logits = logits.double() / temperature
    if top_k is not None and 0 < top_k < logits.numel():
        cutoff = logits.topk(top_k).values[-1]
        logits = logits.masked_fill(logits < cutoff, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    return int(torch.multinomial(probs, 1, generator=generator))


@torch.no_grad()
def sample(model: CharRNN, vocab: CharVocab, length: int, prime: str = "\n", temperature: float = 1.0,
           seed: int | None = None, top_k: int | None = None) -> str:
    """Generate ``length`` characters after ``prime`` (the prime itself is not returned)."""
    if not prime:
        raise ValueError("prime must hold at least one character (e.g. a newline) to start from")
    if length < 0:
        raise ValueError(f"length must be >= 0, got {length}")
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    model.eval()
    # run the whole prime at once, then feed back one character at a time
    logits, state = model(vocab.encode(prime).unsqueeze(1))
    ids: list[int] = []
    for _ in range(length):
        ids.append(next_id(logits[-1, 0], temperature, generator, top_k))
        logits, state = model(torch.tensor([[ids[-1]]]), state)
    return vocab.decode(ids)

