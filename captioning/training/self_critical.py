"""Self-critical sequence training (``loss: self_critical``): optimise the evaluation metric itself.

Cross-entropy teaches the decoder to imitate each reference word by word, given the true previous
words (teacher forcing); at test time it reads its own words and is judged by BLEU. Self-critical
training (Rennie et al. 2017) closes that gap with REINFORCE: for each image sample ``samples``
captions from the decoder, score each against the image's references (``reward``: a sentence BLEU, the
metric module's own, or CIDEr-D with the training references' document frequencies, the evaluation
module's ``CIDEr`` as Rennie et al. optimise it, or a weighted sum of them such as ``{CIDEr: 1.0,
Bleu_4: 0.5}``), and raise the log-probability of the captions that beat
a baseline:

    loss = - mean_i (r(w_i) - b_i) * sum_t log p(w_i,t | w_i,<t, image)

The baseline ``b_i`` is either the reward of the greedy caption of the same image (``baseline=greedy``,
Rennie et al.) or the mean reward of the image's other samples (``baseline=mean``, Luo 2020), which
needs no extra decoding pass. A self-critical stage follows a cross-entropy stage (or starts from
``schedule.init_from=<run dir>``): sampling from a random model rarely earns any reward. Its starting
weights stay ``best`` unless a self-critical epoch beats them on val (captioning/training/loop.py).
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from captioning.evaluation.cider import CiderD, TfIdf
from captioning.evaluation.metrics import BLEU_N, combine
from captioning.models.base import CaptionModel
from captioning.nn.decoding import greedy, sample_tokens, strip
from captioning.text.tokenizer import tokenize

BLEU_REWARDS = tuple(f"Bleu_{n}" for n in range(1, BLEU_N + 1))
REWARDS = (*BLEU_REWARDS, "CIDEr")
BASELINES = ("mean", "greedy")
Reward = Callable[[int, Sequence[str]], float]  # (training image index, caption words) -> reward


def _ngrams(words: Sequence[str], n: int) -> Counter:
    return Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))


class MemoisedReward:
    """A reward that scores each distinct (image, caption) once: the samples of one image repeat (a trained
    decoder often draws the same caption several times out of ``samples``, and again in later epochs), and a
    repeat costs a dictionary look-up instead of an n-gram count. Subclasses implement ``compute``; the
    memory is emptied when it holds ``MEMO_LIMIT`` captions, so it stays bounded on large datasets."""

    MEMO_LIMIT = 1_000_000

    def __init__(self) -> None:
        self.memo: dict[tuple[int, tuple[str, ...]], float] = {}

    def __call__(self, image: int, words: Sequence[str]) -> float:
        key = (image, tuple(words))
        value = self.memo.get(key)
        if value is None:
            if len(self.memo) >= self.MEMO_LIMIT:
                self.memo.clear()
            value = self.memo[key] = self.compute(image, key[1])
        return value

    def compute(self, image: int, words: Sequence[str]) -> float:
        raise NotImplementedError


class SentenceBleu(MemoisedReward):
    """Per-image sentence BLEU against fixed references, as ``metrics.per_image_scores`` computes it
    (the COCO scorer's clipped counts, closest reference length and epsilons), with each image's
    reference n-gram counts prepared once, since a training epoch scores every sample of every image."""

    def __init__(self, references: Sequence[Sequence[str]], metric: str = "Bleu_4") -> None:
        super().__init__()
        if metric not in BLEU_REWARDS:
            raise ValueError(f"Unknown BLEU reward {metric!r}: choose one of {', '.join(BLEU_REWARDS)}")
        self.n = int(metric.split("_")[1])
        self.max_counts: list[list[Counter]] = []
        self.ref_lengths: list[list[int]] = []
        for refs in references:
            tokens = [tokenize(r) for r in refs]
            per_n = []
            for n in range(1, BLEU_N + 1):
                most: Counter = Counter()
                for t in tokens:
                    most |= _ngrams(t, n)  # max count over references (clipping)
                per_n.append(most)
            self.max_counts.append(per_n)
            self.ref_lengths.append([len(t) for t in tokens])

    def compute(self, image: int, words: Sequence[str]) -> float:
        correct, guess = [], []
        for n in range(1, BLEU_N + 1):
            counts, most = _ngrams(words, n), self.max_counts[image][n - 1]
            correct.append(sum(min(c, most[g]) for g, c in counts.items()))
            guess.append(max(0, len(words) - n + 1))
        reflen = min(self.ref_lengths[image], key=lambda r: (abs(r - len(words)), r))
        return combine(correct, guess, len(words), reflen)[self.n - 1]


class SentenceCider(MemoisedReward):
    """Per-image CIDEr-D against fixed references, with document frequencies (and N) from those same
    references, i.e. the training split's, fixed for the stage: the evaluation module's ``CIDEr``
    (``CiderD.from_references``, as the self-critical codebase's cached training df). Each image's
    reference tf-idf vectors are computed once, so a step only computes its captions' vectors."""

    def __init__(self, references: Sequence[Sequence[str]]) -> None:
        super().__init__()
        tokens = [[tokenize(r) for r in refs] for refs in references]
        self.cider = CiderD.from_references(tokens)
        shared: dict[tuple, tuple] = {}  # the cached vectors share one tuple per distinct n-gram, not one per reference

        def cached(vector: TfIdf) -> TfIdf:
            return vector._replace(vec=[{shared.setdefault(g, g): w for g, w in d.items()} for d in vector.vec])

        self.ref_vectors = [[cached(self.cider.vector(t)) for t in refs] for refs in tokens]

    def compute(self, image: int, words: Sequence[str]) -> float:
        return self.cider.score_vectors(self.cider.vector(words), self.ref_vectors[image])


class MixedReward:
    """A weighted sum of single rewards (``reward: {CIDEr: 1.0, Bleu_4: 0.5}``): each part memoises its own
    scores, so the mixture costs what its parts cost."""

    def __init__(self, parts: Sequence[tuple[float, Reward]]) -> None:
        self.parts = list(parts)

    def __call__(self, image: int, words: Sequence[str]) -> float:
        return sum(weight * reward(image, words) for weight, reward in self.parts)


def reward_weights(reward: Any) -> dict[str, float]:
    """A stage's ``reward`` as {metric: weight}: a metric name (weight 1), a list of names (1 each) or a
    mapping of names to weights."""
    if isinstance(reward, str):
        return {reward: 1.0}
    if isinstance(reward, (list, tuple)):
        return {name: 1.0 for name in reward}
    return dict(reward)


def reward_problems(reward: Any) -> list[str]:
    """What is wrong with a stage's ``reward`` (empty when it is a known metric or a valid mixture)."""
    if not isinstance(reward, (str, list, tuple, dict)) or not reward:
        return [f"must be a metric name or a mapping {{metric: weight}}, got {reward!r}"]
    weights = reward_weights(reward)
    unknown = [k for k in weights if k not in REWARDS]
    if unknown:
        return [f"Unknown reward {', '.join(map(repr, unknown))}: choose from {', '.join(REWARDS)}"]
    bad = {k: w for k, w in weights.items() if isinstance(w, bool) or not isinstance(w, (int, float))
           or not math.isfinite(w) or w < 0}
    if bad:
        return [f"weights must be finite numbers >= 0, got {bad}"]
    if not any(w > 0 for w in weights.values()):
        return [f"at least one weight must be > 0, got {weights}"]
    return []


def make_reward(references: Sequence[Sequence[str]], metric: Any) -> Reward:
    """The ``reward`` of a self-critical stage over these references (one list per training image): one metric
    by name, or a weighted mixture ({metric: weight}, or a list of names with weight 1 each)."""
    problems = reward_problems(metric)
    if problems:
        raise ValueError(f"{problems[0]} (reward {metric!r})")
    if not isinstance(metric, str):
        weights = reward_weights(metric)
        return MixedReward([(float(w), make_reward(references, name)) for name, w in weights.items() if w > 0])
    if metric == "CIDEr":
        return SentenceCider(references)
    return SentenceBleu(references, metric)


def self_critical_loss(model: CaptionModel, features: Tensor, images: list[int], reward: Reward,
                       words: Sequence[str], stage) -> tuple[Tensor, float]:
    """REINFORCE with a baseline for a batch of images (``features`` [B, D], ``images`` their training
    indices): sample ``stage.samples`` captions per image, score each, and weight its log-probability by
    how much it beats the baseline. Returns the loss and the mean reward of the samples."""
    k, max_len = stage.samples, model.max_len
    # each image encoded once, its state repeated for its k samples (they share its dropout masks there)
    tokens, log_prob = sample_tokens(model, features, max_len, stage.temperature, repeats=k)
    rewards = score([i for i in images for _ in range(k)], tokens.tolist(), reward, words, max_len)
    rewards = rewards.reshape(len(images), k)
    if stage.baseline == "greedy":  # the test-time caption, dropout off
        model.eval()
        base = score(images, greedy(model, features, max_len).tokens, reward, words, max_len)
        model.train()
        baseline = np.repeat(base[:, None], k, 1)
    else:  # the mean of the image's other samples
        baseline = (rewards.sum(1, keepdims=True) - rewards) / (k - 1)
    advantage = torch.from_numpy((rewards - baseline).reshape(-1)).float().to(features.device)
    return -(advantage * log_prob).mean(), float(rewards.mean())


def score(images: list[int], rows: list[list[int]], reward: Reward, words: Sequence[str],
          max_len: int) -> np.ndarray:
    """The reward of each caption (word ids, cut at its first <end> or <pad>) of each image."""
    return np.array([reward(image, [words[i] for i in strip(ids)][:max_len]) for image, ids in zip(images, rows)])
