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

The options of ``DecodingConfig`` work for every method that they name, batched, through the same contract:
diverse beam search (``method=diverse_beam``: groups of beams, each penalised for the words earlier groups
chose at the same step; Vijayakumar et al. 2018), n-gram blocking and bad endings (``forbid``: a word set to
-inf before the choice), top-k / nucleus sampling (``filter_top``) and several captions per image
(``num_captions``). tests/test_decoding_options.py checks each against a per-image reference. A reported
score is always the caption's log-probability under the model, whatever restricted the choice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

import numpy as np
import torch
from torch import Tensor

from captioning.text.vocab import END, PAD, START, Vocabulary
from captioning.utils.progress import progress
from captioning.utils.schema import option, problems

log = logging.getLogger(__name__)
WARNED: set[tuple[int, int]] = set()  # (limit, max_len) pairs already logged by word_limit

METHODS = ("greedy", "sample", "beam", "diverse_beam")
BEAMS = ("beam", "diverse_beam")


@dataclass
class DecodingConfig:
    """How captions are generated for evaluation (the ``decoding`` options of configs/train.yaml)."""

    method: str = option("beam", "greedy | sample | beam | diverse_beam", choices=METHODS)
    beam_size: int = option(3, "hypotheses kept per image (method=beam, diverse_beam: all groups together)", ge=1)
    length_alpha: float = option(0.0, "beam ranking: log-probability / length**alpha (0 = raw log-probability)")
    temperature: float = option(1.0, "softmax temperature for method=sample (0 = greedy)", ge=0)
    batch_size: int = option(500, "images decoded at once", ge=1)
    groups: int = option(0, "method=diverse_beam: groups the beam_size beams are split into (they must divide "
                         "it); 0 = beam_size groups of one beam", ge=0)
    diversity: float = option(0.5, "method=diverse_beam: a group's step score loses diversity x the times "
                              "earlier groups chose the word at this step (Hamming diversity)", ge=0)
    block_ngram: int = option(0, "a caption never repeats an n-gram it contains (n = this; 3 = no repeated "
                              "trigram); 0 = off", ge=0)
    # a sensible list (the words a caption should not stop on): [a, an, the, of, and, in, on, with, to, at,
    # for, from, by, near, is, are, its, their]; the default stays empty so that captions don't change
    bad_endings: list[str] = option([], "words a caption may not end on (<end> is forbidden right after "
                                    "them); words the vocabulary lacks are ignored; [] = off")
    top_k: int = option(0, "method=sample: draw among the k most probable words only; 0 = off", ge=0)
    top_p: float = option(1.0, "method=sample: draw among the most probable words whose probabilities (after "
                          "temperature and top_k) add up to top_p (nucleus sampling); 1 = off", gt=0, le=1)
    num_captions: int = option(1, "captions per image: the top beams (beam, diverse_beam; <= beam_size) or "
                               "independent samples (sample); the first is the one scored", ge=1)
    max_len: int = option(0, "words a caption may have at most (the <end> aside); 0 = the training captions' "
                          "limit (data.max_caption_len, a checkpoint's max_len); a decoder with learned positions "
                          "stops at its own limit (with a warning)", ge=0)

    @staticmethod
    def cross_problems(values: dict, prefix: str) -> list[str]:
        """The combinations of options that cannot work (see ``decoding_problems``)."""
        return decoding_problems(values, prefix)


def decoding_problems(values: dict, prefix: str = "decoding") -> list[str]:
    """One line per impossible combination of decoding options (``values``: all of them)."""
    key = f"{prefix.lstrip('.')}." if prefix.lstrip(".") else ""
    method, beam, out = values["method"], values["beam_size"], []
    if method == "diverse_beam" and values["groups"] and beam % values["groups"]:
        out.append(f"{key}groups={values['groups']} must divide {key}beam_size={beam} (each group keeps "
                   "beam_size / groups beams)")
    if method != "diverse_beam" and values["groups"]:
        out.append(f"{key}groups={values['groups']} applies to method=diverse_beam only (method={method})")
    for name, off in (("top_k", 0), ("top_p", 1.0)):
        if method != "sample" and values[name] != off:
            out.append(f"{key}{name}={values[name]} applies to method=sample only (method={method})")
    n = values["num_captions"]
    if method in BEAMS and n > beam:
        out.append(f"{key}num_captions={n} must be <= {key}beam_size={beam} (the top beams are returned)")
    if method == "greedy" and n > 1:
        out.append(f"{key}num_captions={n}: greedy decoding has one caption per image; use method=sample "
                   "or beam")
    return out


class Decoder(Protocol):
    """What decoding needs of a model: an initial state from a condition, one step at a time, and the
    rows of a state. Every caption model (captioning.models.base.CaptionModel) and the
    sequence-to-sequence model of captioning/sequence provide it. A decoder that cannot write past some length
    (learned positions) says so with an attribute ``max_words``: decoding then stops there (``word_limit``)."""

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
    # num_captions > 1: that many per image (beams best first, samples as drawn); tokens/scores: the first
    captions: list[list[tuple[list[int], float]]] | None = None


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


def forbid(logp: Tensor, prev: Tensor, history: Tensor | None = None, block_ngram: int = 0,
           bad_endings: Tensor | None = None) -> Tensor:
    """``logp`` [N, V] with -inf at the words each row may not take next: <end> right after one of
    ``bad_endings`` (word ids; ``prev`` [N]: the word just fed), and, with ``block_ngram`` = n > 0, every
    word that would complete an n-gram the row's ``history`` [N, t] (its words so far) already contains.
    Where this leaves a row no word at all, <end> stays allowed, so that a caption can always finish."""
    banned = torch.zeros(logp.shape, dtype=torch.bool, device=logp.device)
    if bad_endings is not None and len(bad_endings):
        banned[:, END] = torch.isin(prev, bad_endings)
    n = block_ngram
    if n and history is not None and history.size(1) >= n:
        grams = history.unfold(1, n, 1)  # [N, t-n+1, n]: every n-gram so far
        tail = history[:, history.size(1) - n + 1 :]  # the last n-1 words: the prefix being extended
        repeat = (grams[..., : n - 1] == tail[:, None]).all(-1)  # [N, t-n+1]: n-grams with that prefix
        hits = torch.zeros(logp.shape, dtype=torch.int32, device=logp.device)
        banned |= hits.scatter_add_(1, grams[..., n - 1], repeat.int()) > 0
    if not banned.any():
        return logp
    # <pad> is never a word, whether or not the caller has masked it already
    stuck = (banned | torch.isneginf(logp)).index_fill(1, torch.tensor([PAD], device=logp.device), True).all(-1)
    banned[:, END] &= ~stuck
    return logp.masked_fill(banned, float("-inf"))


def filter_top(scaled: Tensor, top_k: int = 0, top_p: float = 1.0) -> Tensor:
    """Temperature-scaled log-probabilities [N, V] with -inf outside each row's ``top_k`` most probable
    words (ties with the k-th kept) and then outside its nucleus: the most probable words whose
    probabilities, renormalised over those left, first add up to ``top_p`` (the most probable always stays)."""
    if top_k and top_k < scaled.size(-1):
        kth = scaled.topk(top_k, dim=-1).values[:, -1:]
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    if top_p < 1.0:
        probs, order = torch.softmax(scaled.double(), dim=-1).sort(dim=-1, descending=True)
        # the probability of the words ranked above each word (summed in rank order, as a loop would)
        above = torch.cat([torch.zeros_like(probs[:, :1]), probs[:, :-1].cumsum(-1)], dim=1)
        drop = torch.zeros_like(above, dtype=torch.bool).scatter(1, order, above >= top_p)
        scaled = scaled.masked_fill(drop, float("-inf"))
    return scaled


def sample_tokens(decoder: Decoder, features: Tensor, max_len: int = 16, temperature: float = 1.0,
                  generator: torch.Generator | None = None, repeats: int = 1, top_k: int = 0, top_p: float = 1.0,
                  block_ngram: int = 0, bad_endings: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Sample one caption per row of ``features`` (temperature 0: greedy): word ids [B, T], ``PAD`` after
    the first <end> (which is kept), and each caption's summed log-probability [B] under the model's own
    distribution, <end> included (differentiable when gradients are on). <pad> is never chosen (it is no
    word; beam search never continues with it either): the choice is among the other words.

    ``top_k`` / ``top_p`` restrict each draw to the most probable words of the temperature-scaled
    distribution (``filter_top``); ``block_ngram`` and ``bad_endings`` forbid words (``forbid``). The score
    stays the model's own log-probability of the words drawn.

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
    constrained = block_ngram > 0 or (bad_endings is not None and len(bad_endings) > 0)
    for t in range(max_len + 1):  # +1: room for <end> after max_len words
        logp, state = decoder.step(word, state)
        with torch.no_grad():  # a caption never continues with <pad>, as in beam search
            allowed = logp.index_fill(1, pad, float("-inf"))
            if constrained:
                allowed = forbid(allowed, word, words[rows, :t], block_ngram, bad_endings)
            if temperature == 0:
                word = allowed.argmax(-1)
            else:  # logp / 1.0 is logp, bit for bit: one [B, V] pass fewer at the usual temperature
                scaled = allowed if temperature == 1 else allowed / temperature
                if top_k or top_p < 1.0:
                    scaled = filter_top(scaled, top_k, top_p)
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
           generator: torch.Generator | None = None, num_captions: int = 1, **constraints: Any) -> Decoded:
    """Greedy (temperature 0) or temperature sampling for a batch of features [B, D]; ``num_captions``
    independent samples per image (``captions``, in the order drawn; the first is ``tokens``);
    ``constraints``: top_k, top_p, block_ngram, bad_endings of ``sample_tokens``."""
    words, total = sample_tokens(decoder, features, max_len, temperature, generator, num_captions, **constraints)
    drawn = [(strip(row)[:max_len], s) for row, s in zip(words.tolist(), total.tolist())]
    per_image = [drawn[i : i + num_captions] for i in range(0, len(drawn), num_captions)]
    return Decoded([c[0][0] for c in per_image], [c[0][1] for c in per_image],
                   captions=per_image if num_captions > 1 else None)


def greedy(decoder: Decoder, features: Tensor, max_len: int = 16, **constraints: Any) -> Decoded:
    """The most probable word at every step (``constraints``: block_ngram, bad_endings)."""
    return sample(decoder, features, max_len, temperature=0.0, **constraints)


def pick(scores: Tensor, done: Tensor, logp: Tensor, width: int) -> tuple[Tensor, Tensor, Tensor]:
    """One step of a beam search over ``width`` beams per image: beam scores and finished flags [A, K],
    step scores [A, K, V] -> the best ``width`` continuations' scores, parents and words [A, width].

    The best K continuations of K beams are among the best K of each beam, so each beam first keeps its
    K+1 best words (+1: PAD, which only a finished beam may emit, can be one of them), in the step scores'
    own dtype, and the image keeps the best K of those K*(K+1) candidates, scored in float64 (beam score +
    step score) exactly as a search over the whole vocabulary would score them. A finished beam has one
    continuation, PAD, at no cost; its words are never looked at."""
    A, K, V = logp.shape
    per_beam = min(K + 1, V)
    top, ids = logp.reshape(A * K, V).topk(per_beam, dim=-1)  # best first
    top, ids = top.view(A, K, per_beam).double(), ids.view(A, K, per_beam)
    top = top.masked_fill((ids == PAD) | done[..., None], float("-inf"))  # a live beam never pads
    # a finished beam's one continuation: PAD at no cost, in its first slot
    top[..., 0] = torch.where(done, 0.0, top[..., 0])
    ids[..., 0] = torch.where(done, PAD, ids[..., 0])
    cand = (scores[..., None] + top).view(A, K * per_beam)
    best, flat = cand.topk(width, dim=1)
    return best, flat // per_beam, ids.view(A, K * per_beam).gather(1, flat)


def pick_groups(scores: Tensor, logprobs: Tensor, done: Tensor, logp: Tensor, groups: int,
                diversity: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One step of diverse beam search: ``pick`` for each group of beams in turn, group g's step scores
    lowered by ``diversity`` x the times groups 0..g-1 chose each word at this step. Also returns the
    beams' own log-probabilities (``logprobs`` [A, K] carried along with their new words)."""
    A, K, V = logp.shape
    W = K // groups
    chosen = torch.zeros(A, V, dtype=torch.float64, device=logp.device)  # words earlier groups chose
    parts = []
    for g in range(groups):
        beams = slice(g * W, (g + 1) * W)
        own = logp[:, beams]
        step = own if g == 0 or not diversity else own.double() - diversity * chosen[:, None]
        best, parent, word = pick(scores[:, beams], done[:, beams], step, W)
        was_done = done[:, beams].gather(1, parent)
        gain = own.reshape(A, W * V).gather(1, parent * V + word).double()
        mine = logprobs[:, beams].gather(1, parent) + torch.where(was_done, 0.0, gain)
        chosen.scatter_add_(1, word, (~was_done).double())  # a finished beam's PAD is no choice
        parts.append((best, parent + g * W, word, mine))
    return tuple(torch.cat(p, dim=1) for p in zip(*parts))  # type: ignore[return-value]


@dataclass
class Beams:
    """A beam search's bookkeeping for B images x K beams, kept between steps.

    ``scores`` rank the beams inside the search (with the diversity penalty), ``logprobs`` are their own
    log-probabilities; ``active`` are the images still searched (the decoder state holds their K rows each,
    in this order); ``parents`` and ``words`` record per step [B, K] the beam each hypothesis extends and its
    new word; ``history`` holds the beams' words when words are forbidden (n-grams, endings)."""

    scores: Tensor
    logprobs: Tensor
    finished: Tensor
    lengths: Tensor
    active: Tensor
    stay: Tensor  # a frozen image's step: every beam its own parent
    history: Tensor
    parents: list[Tensor]
    words: list[Tensor]


def start_beams(B: int, K: int, G: int, device: torch.device) -> Beams:
    """The search before its first step: only the first beam of each group is live, so a group's beams don't
    all repeat the same words."""
    scores = torch.full((B, G, K // G), float("-inf"), dtype=torch.float64, device=device)
    scores[:, :, 0] = 0.0
    scores = scores.view(B, K)
    return Beams(scores=scores, logprobs=scores.clone(), finished=torch.zeros(B, K, dtype=torch.bool, device=device),
                 lengths=torch.zeros(B, K, dtype=torch.float64, device=device), active=torch.arange(B, device=device),
                 stay=torch.arange(K, device=device).expand(B, K),
                 history=torch.empty(B, K, 0, dtype=torch.long, device=device), parents=[], words=[])


def extend_beams(beams: Beams, logp: Tensor, G: int, diversity: float,
                 constrained: bool) -> tuple[Tensor, Tensor, Tensor]:
    """One step of bookkeeping on the active images' [A, K, V] log-probabilities: choose each beam's parent and
    word, update ``beams`` in place; returns (parent, word, done), each [A, K]."""
    active, K = beams.active, beams.stay.size(1)
    scores, done = beams.scores[active], beams.finished[active]
    if G == 1:
        new_scores, parent, word2d = pick(scores, done, logp, K)
        new_logprobs = new_scores
    else:
        new_scores, parent, word2d, new_logprobs = pick_groups(scores, beams.logprobs[active], done, logp, G, diversity)
    was_finished = done.gather(1, parent)
    beams.scores[active] = new_scores
    beams.logprobs[active] = new_logprobs
    beams.lengths[active] = beams.lengths[active].gather(1, parent) + (~was_finished).double()
    done = was_finished | (word2d == END)
    beams.finished[active] = done
    beams.parents.append(beams.stay.index_put((active,), parent))
    beams.words.append(torch.full_like(beams.stay, PAD).index_put((active,), word2d))
    if constrained:  # the active images' beams' words, reordered along their parents
        history, (B, _, steps) = beams.history, beams.history.shape
        grown = torch.full((B, K, steps + 1), PAD, dtype=torch.long, device=history.device)
        past = history[active].gather(1, parent[..., None].expand(-1, -1, steps))
        grown[active] = torch.cat([past, word2d[..., None]], dim=2)
        beams.history = grown
    return parent, word2d, done


def ranked_beams(beams: Beams, max_len: int, length_alpha: float, keep_beams: int, num_captions: int) -> Decoded:
    """Each final beam's words read back along its parents, ranked per image by log-probability / length**alpha."""
    B, K = beams.stay.shape
    beam = torch.arange(K, device=beams.stay.device).expand(B, K)
    back = []
    for parent, word2d in zip(reversed(beams.parents), reversed(beams.words)):
        back.append(word2d.gather(1, beam))
        beam = parent.gather(1, beam)
    back = torch.stack(back[::-1], dim=2)  # [B, K, steps]
    logprobs = beams.logprobs
    final = logprobs / beams.lengths.clamp(min=1).pow(length_alpha) if length_alpha else logprobs.clone()
    final = torch.where(torch.isfinite(logprobs), final, torch.full_like(final, float("-inf")))
    order = final.argsort(dim=1, descending=True)
    hist, raw = back.tolist(), logprobs.tolist()
    tokens, scores, kept, captions = [], [], [], []
    for b in range(B):
        ranked = [(strip(hist[b][k])[:max_len], raw[b][k]) for k in order[b].tolist()]
        tokens.append(ranked[0][0])
        scores.append(ranked[0][1])
        kept.append(ranked[:keep_beams])
        captions.append(ranked[:num_captions])
    return Decoded(tokens, scores, kept if keep_beams else None, captions if num_captions > 1 else None)


@torch.no_grad()
def beam_search(decoder: Decoder, features: Tensor, beam_size: int = 3, max_len: int = 16,
                length_alpha: float = 0.0, keep_beams: int = 0, groups: int = 1, diversity: float = 0.0,
                block_ngram: int = 0, bad_endings: Tensor | None = None, num_captions: int = 1) -> Decoded:
    """Batched beam search over images x beams; ``keep_beams`` > 0 also returns the top beams (and
    ``num_captions`` > 1 that many as ``captions``).

    ``groups`` > 1 is diverse beam search (Vijayakumar et al. 2018): the beams are split into ``groups`` of
    beam_size / groups, each searched as a beam search of its own on the same model step, the groups in
    turn; group g's step scores lose ``diversity`` x the number of times groups 0..g-1 chose each word at
    this step (Hamming diversity), and its beams keep that penalised score for the search. Captions are
    ranked, and reported, by their own log-probability (/ length**alpha), all groups together.

    Per step: the model's step on [B*K] rows, then bookkeeping on [B, K, K+1] candidates only (``pick``).
    An image whose beams have all finished leaves the batch, so the model steps only the images still
    searched. ``block_ngram`` and ``bad_endings`` forbid words as in ``forbid``."""
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    if groups < 1 or beam_size % groups:
        raise ValueError(f"groups={groups} must divide beam_size={beam_size}")
    B, K, dev = features.size(0), beam_size, features.device
    rows = torch.arange(B, device=dev).repeat_interleave(K)  # each image's state K times, beams together
    state = decoder.select_state(decoder.init_state(features), rows)
    beams = start_beams(B, K, groups, dev)
    word = torch.full((B * K,), START, dtype=torch.long, device=dev)
    constrained = block_ngram > 0 or (bad_endings is not None and len(bad_endings) > 0)
    for _ in range(max_len + 1):
        logp, state = decoder.step(word, state)
        A = len(beams.active)
        if constrained:
            past = beams.history[beams.active].reshape(A * K, beams.history.size(2))
            logp = forbid(logp, word, past, block_ngram, bad_endings)
        parent, word2d, done = extend_beams(beams, logp.view(A, K, -1), groups, diversity, constrained)
        index = parent + torch.arange(A, device=dev)[:, None] * K  # rows of the state, in the [A*K] batch
        # an image whose K beams have all finished only ever continues them with PAD at no cost (the
        # search above would give it that step), so it leaves the batch: the model steps only live images
        live = ~done.all(1)
        if not live.any():
            break
        if not live.all():
            beams.active, index, word2d = beams.active[live], index[live], word2d[live]
        state = decoder.select_state(state, index.view(-1))
        word = word2d.reshape(-1)
    return ranked_beams(beams, max_len, length_alpha, keep_beams, num_captions)


def ending_ids(bad_endings: Sequence[str | int], vocab: Vocabulary | None) -> Tensor | None:
    """The word ids of ``bad_endings`` (words, looked up in ``vocab``, or ids); words it lacks are skipped."""
    if not bad_endings:
        return None
    if any(isinstance(w, str) for w in bad_endings):
        if vocab is None:
            raise ValueError("bad_endings given as words needs the vocabulary (vocab=) to find their ids")
        ids = [vocab.stoi[w] if isinstance(w, str) else w for w in bad_endings if not isinstance(w, str) or w in vocab]
    else:
        ids = list(bad_endings)
    return torch.tensor(ids, dtype=torch.long)


def word_limit(decoder: Decoder, max_len: int) -> int:
    """``max_len``, or the decoder's ``max_words`` where that is shorter (logged): a Transformer's positions are
    learned up to the training captions' length, so on longer scenes its captions end there."""
    limit = getattr(decoder, "max_words", None)
    if limit is None or max_len <= limit:
        return max_len
    if (limit, max_len) not in WARNED:  # once per process, not once per batch
        WARNED.add((limit, max_len))
        log.warning("captions stop at %d words, not max_len=%d: the model's positions are learned up to there",
                    limit, max_len)
    return int(limit)


def decode(decoder: Decoder, features: Tensor, method: str = "greedy", max_len: int = 16,
           beam_size: int = 3, length_alpha: float = 0.0, temperature: float = 1.0, keep_beams: int = 0,
           generator: torch.Generator | None = None, groups: int = 0, diversity: float = 0.5,
           block_ngram: int = 0, bad_endings: Sequence[str | int] = (), top_k: int = 0, top_p: float = 1.0,
           num_captions: int = 1, vocab: Vocabulary | None = None) -> Decoded:
    """Dispatch on ``method`` (greedy | sample | beam | diverse_beam) with the options of ``DecodingConfig``;
    ``bad_endings``: words (looked up in ``vocab``) or word ids."""
    found = problems(DecodingConfig, dict(method=method, beam_size=beam_size, length_alpha=length_alpha,
                                          temperature=temperature, groups=groups, diversity=diversity,
                                          block_ngram=block_ngram, top_k=top_k, top_p=top_p,
                                          num_captions=num_captions), "")
    if found:  # the config check's words, for a caller of the Python API
        raise ValueError(found[0].lstrip("."))
    max_len = word_limit(decoder, max_len)
    ends = ending_ids(bad_endings, vocab)
    if ends is not None:
        ends = ends.to(features.device)
    constraints = dict(block_ngram=block_ngram, bad_endings=ends)
    if method == "greedy":
        return greedy(decoder, features, max_len, **constraints)
    if method == "sample":
        return sample(decoder, features, max_len, temperature, generator, num_captions, top_k=top_k, top_p=top_p,
                      **constraints)
    return beam_search(decoder, features, beam_size, max_len, length_alpha, keep_beams,
                       groups=(groups or beam_size) if method == "diverse_beam" else 1,
                       diversity=diversity if method == "diverse_beam" else 0.0, num_captions=num_captions,
                       **constraints)


def decode_batched(decoder: Decoder, features, batch_size: int = 500, **kwargs) -> Decoded:
    """``decode`` over a large feature array (e.g. a memory-mapped cache) in batches."""
    decoder.eval()
    tokens, scores, beams, captions = [], [], [], []
    bar = progress(None, desc=f"captions ({kwargs.get('method', 'greedy')})", total=len(features), unit="img")
    for start in range(0, len(features), batch_size):
        chunk = torch.as_tensor(np.asarray(features[start : start + batch_size], dtype=np.float32).copy())
        chunk = chunk.to(next(decoder.parameters()).device)
        out = decode(decoder, chunk, **kwargs)
        tokens += out.tokens
        scores += out.scores
        beams += out.beams or []
        captions += out.captions or []
        bar.update(len(chunk))
    bar.close()
    return Decoded(tokens, scores, beams or None, captions or None)
