"""Caption baselines reported beside every model: nearest-neighbour retrieval and the most frequent caption.

Nearest neighbour follows Devlin et al. (2015), "Exploring Nearest Neighbor Approaches for Image
Captioning": take the k training images closest to the query by cosine similarity of their CNN features,
pool their captions as candidates, and return the candidate with the highest consensus, i.e. the
highest mean similarity to the other candidates. Similarity is CIDEr's: the cosine of TF-IDF weighted
n-gram vectors (n = 1..4, IDF over training images), averaged over n; it is one matrix product per
query, where mean pairwise BLEU would need k*5 squared sentence-BLEU calls.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Sequence

import numpy as np
import torch

from captioning.text.tokenizer import tokenize

NGRAM_MAX = 4


def _as_caption_lists(train_captions: Sequence) -> list[list[str]]:
    """Accept one caption per image (``list[str]``) or several (``list[list[str]]``)."""
    return [[c] if isinstance(c, str) else list(c) for c in train_captions]


def most_frequent(train_captions: Sequence[str] | Sequence[Sequence[str]]) -> str:
    """The most frequent training caption after the scorer's normalisation (lower case, no punctuation)."""
    counts = Counter(" ".join(tokenize(c)) for caps in _as_caption_lists(train_captions) for c in caps)
    if not counts:
        raise ValueError("most_frequent needs at least one training caption")
    return counts.most_common(1)[0][0]  # ties: the caption seen first


class _CaptionVectors:
    """Every training caption as a sparse row of TF-IDF n-gram weights, L2-normalised per order n.

    Built with numpy over all captions at once (n-gram ids grow one word at a time through
    ``np.unique``), as per-caption Python Counters take tens of seconds on COCO-sized training sets.
    """

    def __init__(self, captions_per_image: list[list[str]]):
        tokens = [tokenize(c) for caps in captions_per_image for c in caps]
        image_of = np.repeat(np.arange(len(captions_per_image)), [len(c) for c in captions_per_image])
        vocab: dict[str, int] = {}
        words = np.array([vocab.setdefault(w, len(vocab)) for t in tokens for w in t], dtype=np.int64)
        lengths = np.array([len(t) for t in tokens], dtype=np.int64)
        caption = np.repeat(np.arange(len(tokens)), lengths)  # caption of each word position
        left = np.repeat(lengths, lengths) - (np.arange(len(words)) - np.repeat(np.cumsum(lengths) - lengths, lengths))
        rows, cols, weights, offset = [], [], [], 0
        gram = words  # id of the n-gram starting at each position (valid where left >= n)
        for n in range(1, NGRAM_MAX + 1):
            if n > 1:  # extend (n-1)-gram ids by the next word
                gram = gram[:-1] * (len(vocab) + 1) + words[n - 1 :]
                gram = np.unique(gram, return_inverse=True)[1] if len(gram) else gram
            start = np.flatnonzero(left[: len(gram)] >= n)
            r, c, w = self._tfidf(caption[start], gram[start], image_of, len(captions_per_image))
            rows.append(r)
            cols.append(c + offset)
            weights.append(w)
            offset += int(gram.max(initial=-1)) + 1
        order = np.argsort(np.concatenate(rows), kind="stable")
        self.cols = np.concatenate(cols)[order]
        self.weights = np.concatenate(weights)[order]
        self.indptr = np.concatenate([[0], np.cumsum(np.bincount(np.concatenate(rows), minlength=len(tokens)))])

    @staticmethod
    def _tfidf(caption: np.ndarray, gram: np.ndarray, image_of: np.ndarray, n_images: int):
        """(caption, gram, weight) triples of one order: tf * log(N / df), unit norm per caption."""
        n_grams = int(gram.max(initial=-1)) + 1
        keys, tf = np.unique(caption * n_grams + gram, return_counts=True)
        cap, grm = keys // n_grams, keys % n_grams
        df = np.bincount(np.unique(image_of[cap] * n_grams + grm) % n_grams, minlength=n_grams)
        w = tf * (math.log(max(1, n_images)) - np.log(df[grm]))
        norm = np.sqrt(np.bincount(cap, w * w, minlength=len(image_of)))
        w = w / np.where(norm[cap] > 0, norm[cap], 1.0) / math.sqrt(NGRAM_MAX)  # so dot = mean cosine over n
        return cap, grm, w

    def consensus(self, caption_ids: np.ndarray) -> np.ndarray:
        """Mean similarity of each listed caption to the other listed captions.

        With x_i the unit vectors, sum_{j != i} x_i . x_j = x_i . (sum_j x_j) - x_i . x_i: linear in the
        number of n-grams, no pairwise matrix needed.
        """
        starts, ends = self.indptr[caption_ids], self.indptr[caption_ids + 1]
        sizes = ends - starts
        take = np.repeat(starts - np.cumsum(sizes) + sizes, sizes) + np.arange(sizes.sum())  # the rows' entries
        cols, weights = self.cols[take], self.weights[take]
        rows = np.repeat(np.arange(len(caption_ids)), sizes)
        _, inverse = np.unique(cols, return_inverse=True)
        total = np.bincount(inverse, weights)  # sum_j x_j over the candidates' n-grams
        to_all = np.bincount(rows, weights * total[inverse], minlength=len(caption_ids))
        to_self = np.bincount(rows, weights * weights, minlength=len(caption_ids))
        return (to_all - to_self) / max(1, len(caption_ids) - 1)


def _unit_rows(feats: np.ndarray, start: int, stop: int) -> torch.Tensor:
    """Rows [start, stop) as an L2-normalised float32 tensor (a copy: the cache is a read-only memmap);
    region features [N, R, D] are averaged over their regions (the pooled vector) first."""
    rows = torch.from_numpy(np.array(feats[start:stop], dtype=np.float32))
    rows = rows.mean(1) if rows.dim() == 3 else rows
    return torch.nn.functional.normalize(rows, dim=1)


def _nearest(
    train_feats: np.ndarray, query_feats: np.ndarray, k: int, chunk: int = 1024, train_chunk: int = 8192
) -> np.ndarray:
    """Indices [M, k] of the k training rows with the highest cosine similarity to each query row.

    Both sides are read in chunks, so a memory-mapped training cache is never loaded whole.
    """
    out = []
    for start in range(0, len(query_feats), chunk):
        query = _unit_rows(query_feats, start, start + chunk)
        best_sims = torch.empty(len(query), 0)
        best_idx = torch.empty(len(query), 0, dtype=torch.long)
        for t0 in range(0, len(train_feats), train_chunk):
            sims = query @ _unit_rows(train_feats, t0, t0 + train_chunk).T
            top = sims.topk(min(k, sims.shape[1]), dim=1)
            best_sims = torch.cat([best_sims, top.values], dim=1)
            best_idx = torch.cat([best_idx, top.indices + t0], dim=1)
            keep = best_sims.topk(min(k, best_sims.shape[1]), dim=1)
            best_sims, best_idx = keep.values, best_idx.gather(1, keep.indices)
        out.append(best_idx.numpy())
    return np.concatenate(out) if out else np.zeros((0, k), dtype=np.int64)


def nearest_neighbour(
    train_feats: np.ndarray,
    train_captions: Sequence[Sequence[str]],
    query_feats: np.ndarray,
    k: int,
) -> list[str]:
    """Devlin et al. (2015) retrieval: per query, the consensus caption of its k nearest training images."""
    captions = _as_caption_lists(train_captions)
    if len(train_feats) != len(captions):
        raise ValueError(f"{len(train_feats)} training feature rows but {len(captions)} caption lists")
    if len(train_feats) == 0 or k < 1:
        raise ValueError(f"need training images and k >= 1 (got {len(train_feats)} images, k={k})")
    if np.shape(query_feats)[1:] != np.shape(train_feats)[1:]:
        raise ValueError(f"query features {np.shape(query_feats)} do not match training {np.shape(train_feats)}")
    vectors = _CaptionVectors(captions)
    first = np.cumsum([0] + [len(c) for c in captions])  # caption ids of image i: first[i]..first[i+1]
    flat = [c for caps in captions for c in caps]
    result = []
    for neighbours in _nearest(train_feats, query_feats, min(k, len(captions))):
        ids = np.concatenate([np.arange(first[i], first[i + 1]) for i in neighbours])  # their captions
        if len(ids) == 0:
            raise ValueError("the nearest training images have no captions")
        result.append(flat[ids[int(np.argmax(vectors.consensus(ids)))]])
    return result
