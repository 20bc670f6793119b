"""The reference beam search that the fast one in captioning/nn/decoding.py is checked (tests/
test_beam_oracle.py) and timed (benchmarks/beam.py) against: the straightforward algorithm, dense over
the vocabulary. Not part of the package: it exists to be compared with."""

from __future__ import annotations

import torch
from torch import Tensor

from captioning.nn.decoding import Decoded, Decoder, strip
from captioning.text.vocab import END, PAD, START


@torch.no_grad()
def dense_beam_search(decoder: Decoder, features: Tensor, beam_size: int = 3, max_len: int = 16,
                      length_alpha: float = 0.0, keep_beams: int = 0) -> Decoded:
    """The beam search of captioning.nn.decoding before the top-K-per-beam rewrite, kept verbatim as the
    oracle: float64 bookkeeping over the whole [B, K, V] candidate tensor, one top-K over K*V per image."""
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    B, K, dev = features.size(0), beam_size, features.device
    rows = torch.arange(B, device=dev).repeat_interleave(K)  # each image's state K times, beams together
    state = decoder.select_state(decoder.init_state(features), rows)
    # only the first beam is live at the start, so the K beams don't all repeat the same words
    beam_scores = torch.full((B, K), float("-inf"), dtype=torch.float64, device=dev)
    beam_scores[:, 0] = 0.0
    word = torch.full((B * K,), START, dtype=torch.long, device=dev)
    history = torch.empty(B, K, 0, dtype=torch.long, device=dev)
    finished = torch.zeros(B, K, dtype=torch.bool, device=dev)
    lengths = torch.zeros(B, K, dtype=torch.float64, device=dev)
    for _ in range(max_len + 1):
        logp, state = decoder.step(word, state)
        logp = logp.double().view(B, K, -1)
        # a finished beam has exactly one continuation, PAD, at no cost: it keeps its score
        logp = torch.where(finished[..., None], torch.full_like(logp, float("-inf")), logp)
        logp[..., PAD] = torch.where(finished, 0.0, float("-inf"))
        vocab = logp.size(-1)
        cand = (beam_scores[..., None] + logp).view(B, K * vocab)
        beam_scores, flat = cand.topk(K, dim=1)
        parent, word2d = flat // vocab, flat % vocab
        history = torch.cat([history.gather(1, parent[..., None].expand(-1, -1, history.size(2))),
                             word2d[..., None]], dim=2)
        was_finished = finished.gather(1, parent)
        lengths = lengths.gather(1, parent) + (~was_finished).double()
        finished = was_finished | (word2d == END)
        index = (parent + torch.arange(B, device=dev)[:, None] * K).view(-1)
        state = decoder.select_state(state, index)
        word = word2d.view(-1)
        if finished.all():
            break
    final = beam_scores / lengths.clamp(min=1).pow(length_alpha) if length_alpha else beam_scores.clone()
    final = torch.where(torch.isfinite(beam_scores), final, torch.full_like(final, float("-inf")))
    order = final.argsort(dim=1, descending=True)
    hist, raw = history.tolist(), beam_scores.tolist()
    tokens, scores, beams = [], [], []
    for b in range(B):
        ranked = [(strip(hist[b][k])[:max_len], raw[b][k]) for k in order[b].tolist()]
        tokens.append(ranked[0][0])
        scores.append(ranked[0][1])
        beams.append(ranked[:keep_beams])
    return Decoded(tokens, scores, beams if keep_beams else None)
