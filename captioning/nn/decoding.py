"""Turning a condition (image features, a source sequence) into word ids: greedy, temperature sampling
and beam search, batched, through the three methods of the ``Decoder`` contract alone.

All three start from the model's initial state and <start>, and stop at <end> or ``max_len`` words.
Beam search keeps ``beam_size`` hypotheses per image, for all images at once (one [B*K] batch per
step), and ranks finished captions by log-probability / length**alpha (alpha = 0: raw log-prob). Its
bookkeeping per step is a top-(K+1) over each row's log-probabilities and then [B, K, K+1] work, so the
model's step is nearly all of its cost; it ranks exactly as a float64 search over all B x K x V
candidates does, up to the order of exact ties (tests/test_beam_oracle.py checks it against that search,
kept in tests/beam_oracle.py).
``sample_tokens`` is the one sampler: evaluation calls it without gradients, self-critical training
with them (REINFORCE needs the log-probability of each sampled caption).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol

import numpy as np
import torch
from torch import Tensor

from captioning.text.vocab import END, PAD, START
from captioning.utils.progress import progress
from captioning.utils.schema import option

METHODS = ("greedy", "sample", "beam")


@dataclass
class DecodingConfig:
    """How captions are generated for evaluation (the ``decoding`` options of configs/train.yaml)."""

    method: str = option("beam", "greedy | sample | beam", choices=METHODS)
    beam_size: int = option(3, "hypotheses kept per image (method=beam)", ge=1)
    length_alpha: float = option(0.0, "beam ranking: log-probability / length**alpha (0 = raw log-probability)")
    temperature: float = option(1.0, "softmax temperature for method=sample (0 = greedy)", ge=0)
    batch_size: int = option(500, "images decoded at once", ge=1)


class Decoder(Protocol):
    """What decoding needs of a model: an initial state from a condition, one step at a time, and the
    rows of a state. Every caption model (captioning.models.base.CaptionModel) and the
    sequence-to-sequence model of captioning/sequence provide it."""

    def init_state(self, condition: Tensor) -> Any: ...

    def step(self, tokens: Tensor, state: Any) -> tuple[Tensor, Any]: ...

    def select_state(self, state: Any, index: Tensor) -> Any: ...

    def eval(self) -> Any: ...



@dataclass
class Decoded:
    """Word ids (without <start>/<end>) and total log-probability (incl. <end>) of each caption."""

    tokens: list[list[int]]
    scores: list[float]
    beams: list[list[tuple[list[int], float]]] | None = None  # top beams per image, best first


def map_tensors(state: Any, fn: Callable[[Tensor], Tensor]) -> Any:
    """``fn`` applied to every tensor of a nested tuple / list / dict state (None stays None)."""
    if isinstance(state, Tensor):
        return fn(state)
    if isinstance(state, (tuple, list)):
        return type(state)(map_tensors(s, fn) for s in state)
    if isinstance(state, dict):
        return {k: map_tensors(v, fn) for k, v in state.items()}
    if state is None:
        return None
    raise TypeError(f"a decoding state holds tensors, tuples, lists or dicts, not {type(state).__name__}")


def strip(ids: list[int]) -> list[int]:
    """Cut a caption at its first <end> (or padding)."""
    out = []
    for i in ids:
        if i in (END, PAD):
            break
        out.append(i)
    return out


def sample_tokens(decoder: Decoder, features: Tensor, max_len: int = 16, temperature: float = 1.0,
                  generator: torch.Generator | None = None, repeats: int = 1) -> tuple[Tensor, Tensor]:
    """Sample one caption per row of ``features`` (temperature 0: greedy): word ids [B, T], ``PAD`` after
    the first <end> (which is kept), and each caption's summed log-probability [B] under the model's own
    distribution, <end> included (differentiable when gradients are on). <pad> is never chosen (it is no
    word; beam search never continues with it either): the choice is among the other words.

    Finished captions leave the batch: once at least an eighth of the rows still stepped have finished,
    the state keeps only the unfinished ones (``select_state``), so the model's steps (and, in training,
    their backward pass) cost what the captions still being written need, not what the longest one does.
    A finished row still stepped adds nothing (its log-probabilities are masked), as before.

    ``repeats`` > 1 samples that many captions of each row of ``features`` (rows i*repeats .. (i+1)*repeats - 1
    of the results are image i's): the image is encoded once and its state repeated (``select_state``), the
    same as sampling ``features.repeat_interleave(repeats, 0)`` without encoding each copy."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    batch, device = features.size(0) * repeats, features.device
    state = decoder.init_state(features)
    if repeats > 1:
        state = decoder.select_state(state, torch.arange(features.size(0), device=device).repeat_interleave(repeats))
    rows = torch.arange(batch, device=device)  # the caption each row of the state belongs to
    word = torch.full((batch,), START, dtype=torch.long, device=device)
    done = torch.zeros(batch, dtype=torch.bool, device=device)  # per row of the state
    # reported scores are summed in float64; a training step keeps the model's dtype for its gradient
    total = torch.zeros(batch, device=device, dtype=torch.float32 if torch.is_grad_enabled() else torch.float64)
    words = torch.full((batch, max_len + 1), PAD, dtype=torch.long, device=device)
    steps, pad = 0, torch.tensor([PAD], device=device)
    for t in range(max_len + 1):  # +1: room for <end> after max_len words
        logp, state = decoder.step(word, state)
        with torch.no_grad():  # a caption never continues with <pad>, as in beam search
            allowed = logp.index_fill(1, pad, float("-inf"))
            if temperature == 0:
                word = allowed.argmax(-1)
            else:  # logp / 1.0 is logp, bit for bit: one [B, V] pass fewer at the usual temperature
                scaled = allowed if temperature == 1 else allowed / temperature
                word = torch.multinomial(torch.softmax(scaled, dim=-1), 1, generator=generator).squeeze(1)
        picked = torch.where(done, 0.0, logp.gather(1, word[:, None]).squeeze(1).to(total.dtype))
        total = total.index_add(0, rows, picked)  # differentiable, each caption's own row
        word = word.masked_fill(done, PAD)
        words[rows, t] = word
        steps = t + 1
        done = done | (word == END)
        finished = int(done.sum())
        if finished == len(done):
            break
        if finished and finished * 8 >= len(done):  # drop the finished rows from the state
            keep = (~done).nonzero().squeeze(1)
            state, rows, word, done = decoder.select_state(state, keep), rows[keep], word[keep], done[keep]
    return words[:, :steps], total


@torch.no_grad()
def sample(decoder: Decoder, features: Tensor, max_len: int = 16, temperature: float = 0.0,
           generator: torch.Generator | None = None) -> Decoded:
    """Greedy (temperature 0) or temperature sampling for a batch of features [B, D]."""
    words, total = sample_tokens(decoder, features, max_len, temperature, generator)
    return Decoded([strip(row)[:max_len] for row in words.tolist()], total.tolist())


def greedy(decoder: Decoder, features: Tensor, max_len: int = 16) -> Decoded:
    """The most probable word at every step."""
    return sample(decoder, features, max_len, temperature=0.0)


@torch.no_grad()
def beam_search(decoder: Decoder, features: Tensor, beam_size: int = 3, max_len: int = 16,
                length_alpha: float = 0.0, keep_beams: int = 0) -> Decoded:
    """Batched beam search over images x beams; ``keep_beams`` > 0 also returns the top beams.

    Per step: the model's step on [B*K] rows, then bookkeeping on [B, K, K+1] candidates only. The best
    K continuations of all K beams of an image are among the best K of each beam, so each beam first
    keeps its K+1 most probable words (+1: PAD, which only a finished beam may emit, can be one of them)
    on the model's own log-probabilities, and the image keeps the best K of those K*(K+1) candidates,
    scored in float64 (beam score + log p) exactly as a search over the whole vocabulary would score
    them. A finished beam has one continuation, PAD, at no cost; its words are never looked at. An image
    whose beams have all finished leaves the batch, so the model steps only the images still searched."""
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    B, K, dev = features.size(0), beam_size, features.device
    rows = torch.arange(B, device=dev).repeat_interleave(K)  # each image's state K times, beams together
    state = decoder.select_state(decoder.init_state(features), rows)
    # only the first beam is live at the start, so the K beams don't all repeat the same words
    beam_scores = torch.full((B, K), float("-inf"), dtype=torch.float64, device=dev)
    beam_scores[:, 0] = 0.0
    word = torch.full((B * K,), START, dtype=torch.long, device=dev)
    finished = torch.zeros(B, K, dtype=torch.bool, device=dev)
    lengths = torch.zeros(B, K, dtype=torch.float64, device=dev)
    # the images still searched: those with a live beam; the state holds their K rows each, in this order
    active = torch.arange(B, device=dev)
    stay = torch.arange(K, device=dev).expand(B, K)  # a frozen image's step: every beam its own parent
    parents, words = [], []  # per step [B, K]: the beam each hypothesis extends, and its new word
    for _ in range(max_len + 1):
        logp, state = decoder.step(word, state)
        A = len(active)
        scores, done = beam_scores[active], finished[active]
        per_beam = min(K + 1, logp.size(-1))
        top, ids = logp.topk(per_beam, dim=-1)  # [A*K, K+1], in the model's dtype, best first
        top, ids = top.view(A, K, per_beam).double(), ids.view(A, K, per_beam)
        top = top.masked_fill((ids == PAD) | done[..., None], float("-inf"))  # a live beam never pads
        # a finished beam's one continuation: PAD at no cost, in its first slot
        top[..., 0] = torch.where(done, 0.0, top[..., 0])
        ids[..., 0] = torch.where(done, PAD, ids[..., 0])
        cand = (scores[..., None] + top).view(A, K * per_beam)
        scores, flat = cand.topk(K, dim=1)
        parent, word2d = flat // per_beam, ids.view(A, K * per_beam).gather(1, flat)
        was_finished = done.gather(1, parent)
        beam_scores[active] = scores
        lengths[active] = lengths[active].gather(1, parent) + (~was_finished).double()
        done = was_finished | (word2d == END)
        finished[active] = done
        parents.append(stay.index_put((active,), parent))
        words.append(torch.full_like(stay, PAD).index_put((active,), word2d))
        index = parent + torch.arange(A, device=dev)[:, None] * K  # rows of the state, in the [A*K] batch
        # an image whose K beams have all finished only ever continues them with PAD at no cost (the
        # search above would give it that step), so it leaves the batch: the model steps only live images
        live = ~done.all(1)
        if not live.any():
            break
        if not live.all():
            active, index, word2d = active[live], index[live], word2d[live]
        state = decoder.select_state(state, index.view(-1))
        word = word2d.reshape(-1)
    # the words of each final beam, read back along its parents
    beam = torch.arange(K, device=dev).expand(B, K)
    history = []
    for parent, word2d in zip(reversed(parents), reversed(words)):
        history.append(word2d.gather(1, beam))
        beam = parent.gather(1, beam)
    history = torch.stack(history[::-1], dim=2)  # [B, K, steps]
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


def decode(decoder: Decoder, features: Tensor, method: str = "greedy", max_len: int = 16,
           beam_size: int = 3, length_alpha: float = 0.0, temperature: float = 1.0, keep_beams: int = 0,
           generator: torch.Generator | None = None) -> Decoded:
    """Dispatch on ``method``: 'greedy', 'sample' or 'beam'."""
    if method == "greedy":
        return greedy(decoder, features, max_len)
    if method == "sample":
        return sample(decoder, features, max_len, temperature, generator)
    if method == "beam":
        return beam_search(decoder, features, beam_size, max_len, length_alpha, keep_beams)
    raise ValueError(f"Unknown decoding method {method!r}: choose greedy, sample or beam")


def decode_batched(decoder: Decoder, features, batch_size: int = 500, **kwargs) -> Decoded:
    """``decode`` over a large feature array (e.g. a memory-mapped cache) in batches."""
    decoder.eval()
    tokens, scores, beams = [], [], []
    bar = progress(None, desc=f"captions ({kwargs.get('method', 'greedy')})", total=len(features), unit="img")
    for start in range(0, len(features), batch_size):
        chunk = torch.as_tensor(np.asarray(features[start : start + batch_size], dtype=np.float32).copy())
        chunk = chunk.to(next(decoder.parameters()).device)
        out = decode(decoder, chunk, **kwargs)
        tokens += out.tokens
        scores += out.scores
        beams += out.beams or []
        bar.update(len(chunk))
    bar.close()
    return Decoded(tokens, scores, beams or None)
