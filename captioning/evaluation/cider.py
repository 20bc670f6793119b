"""CIDEr-D with document frequencies fixed in advance: one scale for every evaluated split.

pycocoevalcap's ``Cider`` takes its document frequencies (and ``log N``) from the references of the
images it is scoring, so the same caption scores differently on ``test`` and ``test_novel``, or on a
subset of ``test``, and a corpus score is not the mean of scores that stand alone. The self-critical
codebase (Rennie et al. 2017; ruotianluo/self-critical.pytorch, ``CiderD(df='coco-train-idxs')``)
instead fixes them from the training references. ``CiderD`` does that: it keeps pycocoevalcap's
n-gram counting (``precook``) and CIDEr-D arithmetic (tf-idf vectors per n = 1..4, ``idf = log N -
log max(1, df)``, clipped cosine, Gaussian length penalty with sigma 6, mean over n and references,
times 10), with ``df`` and ``N`` given:

- ``CiderD.from_references(train_refs)``: df(g) = the number of training images whose references
  contain n-gram g, N = the number of training images (the main job's ``CIDEr``);
- ``CiderD.from_references(split_refs)``: the evaluated references themselves, which is exactly
  pycocoevalcap's ``Cider`` (the main job's ``CIDEr_official``).

Text is tokenised as for every other metric (``captioning.text.tokenizer.tokenize``).
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Hashable, Mapping, Sequence

import numpy as np
from pycocoevalcap.cider.cider_scorer import precook

N_GRAMS, SIGMA = 4, 6.0


def _counts(tokens: Sequence[str]) -> dict:
    return precook(" ".join(tokens), N_GRAMS)


class CiderD:
    """CIDEr-D against fixed document frequencies (module doc)."""

    def __init__(self, document_frequency: Mapping[tuple, float], num_documents: int, sigma: float = SIGMA):
        if num_documents < 1:
            raise ValueError("CIDEr-D needs document frequencies from at least one image's references")
        self.document_frequency = defaultdict(float, document_frequency)
        self.num_documents = int(num_documents)
        self.ref_len = np.log(float(num_documents))
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

    def _vec(self, counts: Mapping[tuple, int]):
        """pycocoevalcap's ``counts2vec``: tf-idf per n-gram order, the norms, and the bigram count it
        uses as the length (kept as the official scorer has it)."""
        vec = [defaultdict(float) for _ in range(N_GRAMS)]
        norm = [0.0] * N_GRAMS
        length = 0
        for ngram, tf in counts.items():
            df = np.log(max(1.0, self.document_frequency.get(ngram, 0.0)))
            n = len(ngram) - 1
            vec[n][ngram] = float(tf) * (self.ref_len - df)
            norm[n] += pow(vec[n][ngram], 2)
            if n == 1:
                length += tf
        return vec, [np.sqrt(v) for v in norm], length

    def _sim(self, hyp, ref) -> np.ndarray:
        (vec_h, norm_h, len_h), (vec_r, norm_r, len_r) = hyp, ref
        delta = float(len_h - len_r)
        val = np.array([0.0] * N_GRAMS)
        for n in range(N_GRAMS):
            for ngram in vec_h[n]:
                val[n] += min(vec_h[n][ngram], vec_r[n][ngram]) * vec_r[n][ngram]
            if norm_h[n] != 0 and norm_r[n] != 0:
                val[n] /= norm_h[n] * norm_r[n]
            val[n] *= np.e ** (-(delta**2) / (2 * self.sigma**2))
        return val

    def image_score(self, refs: Sequence[Sequence[str]], hyp: Sequence[str]) -> float:
        """CIDEr-D of one tokenised hypothesis against its tokenised references."""
        if not refs:
            raise ValueError("CIDEr-D needs at least one reference per image")
        h = self._vec(_counts(hyp))
        total = np.array([0.0] * N_GRAMS)
        for ref in refs:
            total += self._sim(h, self._vec(_counts(ref)))
        return float(np.mean(total) / len(refs) * 10.0)

    def score(self, refs: Mapping[Hashable, Sequence[Sequence[str]]],
              hyps: Mapping[Hashable, Sequence[str]]) -> tuple[float, dict[Hashable, float]]:
        """(corpus CIDEr-D = the mean over images, {image_id: CIDEr-D}) of tokenised text."""
        per_image = {i: self.image_score(refs[i], hyps[i]) for i in refs}
        corpus = float(np.mean(list(per_image.values()))) if per_image else math.nan
        return corpus, per_image
