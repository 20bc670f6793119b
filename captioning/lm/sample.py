"""Sampling text from a character model: temperature, priming text, length, seed."""

from __future__ import annotations

import torch
from torch import Tensor

from captioning.lm.model import LM
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
def sample(model: LM, vocab: CharVocab, length: int, prime: str = "\n", temperature: float = 1.0,
           seed: int | None = None, top_k: int | None = None) -> str:
    """Generate ``length`` characters after ``prime`` (the prime itself is not returned).

    A recurrent model reads each new character into its carried state; a transformer rereads the last
    ``block_size`` characters (its ``context``) for every new one, as it has no state to carry.
    """
    if not prime:
        raise ValueError("prime must hold at least one character (e.g. a newline) to start from")
    if length < 0:
        raise ValueError(f"length must be >= 0, got {length}")
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    model.eval()
    context = model.context
    text = vocab.encode(prime)
    # run the whole prime at once (its last window for a transformer), then feed back one character at a time
    logits, state = model((text[-context:] if context else text).unsqueeze(1))
    ids: list[int] = []
    for _ in range(length):
        ids.append(next_id(logits[-1, 0], temperature, generator, top_k))
        if context:
            text = torch.cat([text, text.new_tensor(ids[-1:])])[-context:]  # the last block_size characters
            logits, _ = model(text.unsqueeze(1))
        else:
            logits, state = model(torch.tensor([[ids[-1]]]), state)
    return vocab.decode(ids)

