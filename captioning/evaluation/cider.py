"""CIDEr-D with document frequencies fixed in advance: one scale for every evaluated split.

pycocoevalcap's ``Cider`` takes its document frequencies (and ``log N``) from the references of the
images it is scoring, so the same caption scores differently on ``test`` and ``test_novel``, or on a
subset of ``test``, and a corpus score is not the mean of scores that stand alone. The self-critical
codebase (Rennie et al. 2017; ruotianluo/self-critical.pytorch, ``CiderD(df='coco-train-idxs')``)
instead fixes them from the training references. ``CiderD`` does that: it keeps pycocoevalcap's
n-gram counting (``precook``: the same n-grams in the same order) and CIDEr-D arithmetic (tf-idf
vectors per n = 1..4, ``idf = log N - log max(1, df)``, clipped cosine, Gaussian length penalty with
sigma 6, mean over n and references, times 10), with ``df`` and ``N`` given:

- ``CiderD.from_references(train_refs)``: df(g) = the number of training images whose references
  contain n-gram g, N = the number of training images (the main job's ``CIDEr``);
- ``CiderD.from_references(split_refs)``: the evaluated references themselves, which is exactly
  pycocoevalcap's ``Cider`` (the main job's ``CIDEr_official``).

``vector`` / ``score_vectors`` split the score so that a caller scoring many hypotheses of one image
(the self-critical ``CIDEr`` reward, captioning/training/self_critical.py) computes its references'
vectors once. Text is tokenised as for every other metric (``captioning.text.tokenizer.tokenize``).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Hashable, Mapping, NamedTuple, Sequence

import numpy as np

N_GRAMS, SIGMA = 4, 6.0


class TfIdf(NamedTuple):
    """One sentence's CIDEr-D vector: tf-idf weights per n-gram order (n = 1..4), their norms, and its length."""

    vec: list[dict[tuple, float]]
    norm: list[float]
    length: int


def _counts(tokens: Sequence[str]) -> Counter:
    """pycocoevalcap's ``precook``: the count of each n-gram (n = 1..4) of the whitespace-split sentence, in
    its order (n, then position); zip/Counter instead of its loops, as this runs for every sampled caption."""
    words = " ".join(tokens).split()
    counts: Counter = Counter()
    for n in range(1, N_GRAMS + 1):
        counts.update(zip(*(words[k:] for k in range(n))))
    return counts


class CiderD:
    """CIDEr-D against fixed document frequencies (module doc)."""

    def __init__(self, document_frequency: Mapping[tuple, float], num_documents: int, sigma: float = SIGMA):
        if num_documents < 1:
            raise ValueError("CIDEr-D needs document frequencies from at least one image's references")
        self.document_frequency = defaultdict(float, document_frequency)
        self.num_documents = int(num_documents)
        self.ref_len = float(np.log(float(num_documents)))  # a Python float: numpy scalars are slow per n-gram
        self.sigma = sigma

    @classmethod
    def from_references(cls, references: Mapping[Hashable, Sequence[Sequence[str]]] | Sequence[Sequence[Sequence[str]]],
                        sigma: float = SIGMA) -> "CiderD":
        """Document frequencies from tokenised references (per image, a list of token lists)."""
        groups = references.values() if isinstance(references, Mapping) else references
        df: dict[tuple, float] = defaultdict(float)
        n = 0
        for refs in groups:
            n += 1
            for ngram in {g for ref in refs for g in _counts(ref)}:
                df[ngram] += 1
        return cls(df, n, sigma)

    def vector(self, tokens: Sequence[str]) -> TfIdf:
        """pycocoevalcap's ``counts2vec`` of one tokenised sentence: tf-idf per n-gram order, the norms,
        and the bigram count it uses as the length (kept as the official scorer has it)."""
        vec: list[dict[tuple, float]] = [{} for _ in range(N_GRAMS)]
        norm = [0.0] * N_GRAMS
        length = 0
        for ngram, tf in _counts(tokens).items():
            n = len(ngram) - 1
            weight = float(tf) * (self.ref_len - math.log(max(1.0, self.document_frequency.get(ngram, 0.0))))
            vec[n][ngram] = weight
            norm[n] += weight * weight
            if n == 1:
                length += tf
        return TfIdf(vec, [math.sqrt(v) for v in norm], length)

    def similarity(self, hyp: TfIdf, ref: TfIdf) -> list[float]:
        """pycocoevalcap's ``sim``: per n-gram order, the clipped cosine of the two tf-idf vectors times the
        Gaussian penalty on their length difference (plain floats: this runs for every sampled caption)."""
        penalty = np.e ** (-(float(hyp.length - ref.length) ** 2) / (2 * self.sigma**2))
        val = []
        for h, r, norm_h, norm_r in zip(hyp.vec, ref.vec, hyp.norm, ref.norm):
            dot = 0.0
            for ngram, weight in h.items():
                w = r.get(ngram)  # (not r[ngram]: a cached reference vector must not grow)
                if w is not None:
                    dot += min(weight, w) * w
            if norm_h != 0 and norm_r != 0:
                dot /= norm_h * norm_r
            val.append(dot * penalty)
        return val

    def score_vectors(self, hyp: TfIdf, refs: Sequence[TfIdf]) -> float:
        """CIDEr-D of one hypothesis from tf-idf vectors (``vector``), e.g. references' vectors computed once:
        the mean over n-gram orders and references of ``similarity``, times 10."""
        if not refs:
            raise ValueError("CIDEr-D needs at least one reference per image")
        total = [0.0] * N_GRAMS
        for ref in refs:
            total = [t + v for t, v in zip(total, self.similarity(hyp, ref))]
        return sum(total) / N_GRAMS / len(refs) * 10.0

    def image_score(self, refs: Sequence[Sequence[str]], hyp: Sequence[str]) -> float:
        """CIDEr-D of one tokenised hypothesis against its tokenised references."""
        return self.score_vectors(self.vector(hyp), [self.vector(ref) for ref in refs])

    def score(self, refs: Mapping[Hashable, Sequence[Sequence[str]]],
              hyps: Mapping[Hashable, Sequence[str]]) -> tuple[float, dict[Hashable, float]]:
        """(corpus CIDEr-D = the mean over images, {image_id: CIDEr-D}) of tokenised text."""
        per_image = {i: self.image_score(refs[i], hyps[i]) for i in refs}
        corpus = float(np.mean(list(per_image.values()))) if per_image else math.nan
        return corpus, per_image
