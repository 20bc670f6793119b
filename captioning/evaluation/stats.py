"""The statistics of a results table: mean +- sd over seeds, bootstrap intervals over images.

Definitions (each tested on hand-computable cases in tests/test_stats.py):

- ``mean_sd``: the mean over seeds and the sample standard deviation (n - 1 in the denominator; NaN
  for a single seed).
- ``bootstrap_ci``: a percentile bootstrap over images. Each of ``resamples`` draws picks n images
  with replacement out of the split's n (as the count of each image in the draw) (the same draw for every seed: the seeds saw the same images),
  recomputes the metric of each seed on the drawn images, and averages over seeds; the interval is the
  (1 - level) / 2 and (1 + level) / 2 quantiles of those draws (``numpy.quantile``, linear). The
  estimate is the metric on all images, averaged over seeds. Draws come from
  ``numpy.random.default_rng(seed)``: the same call gives the same interval.
- ``paired_bootstrap``: the same for the difference A - B of two systems scored on the same images:
  each draw applies one set of images to both, so what the images share cancels. A difference is
  "significant" at that level when its interval excludes 0 (``Interval.excludes_zero``).

A metric is given per image as a row of numbers whose column sums determine it (``statistic(totals)``):
a mean is (value, 1) with ``ratio``; a metric that applies to some images only (``acc_position``) is
(value, 1) where it applies and (0, 0) elsewhere; corpus BLEU is the per-image n-gram counts
(``metrics.bleu_statistics``) with ``bleu(n)``. So the estimate is exactly the reported metric, corpus
BLEU included (which is not the mean of sentence BLEUs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

RESAMPLES = 10_000
LEVEL = 0.95
Statistic = Callable[[np.ndarray], np.ndarray]  # column totals (..., k) -> metric (...)


@dataclass(frozen=True)
class Interval:
    """A point estimate with its bootstrap interval."""

    estimate: float
    low: float
    high: float
    level: float = LEVEL

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def __str__(self) -> str:
        return f"{self.estimate:.3f} [{self.low:.3f}, {self.high:.3f}]"


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; NaN for fewer than two values) of per-seed numbers."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("mean_sd needs at least one value")
    return float(x.mean()), float(x.std(ddof=1)) if x.size > 1 else math.nan


def ratio(totals: np.ndarray) -> np.ndarray:
    """Column 0 over column 1: the mean of a per-image (value, applies) pair."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return totals[..., 0] / totals[..., 1]


def bleu(order: int) -> Statistic:
    """Corpus BLEU-``order`` from summed ``bleu_statistics`` rows (metrics.combine, vectorised)."""
    from captioning.evaluation.metrics import SMALL, TINY, BLEU_N

    def statistic(totals: np.ndarray) -> np.ndarray:
        correct, guess = totals[..., :BLEU_N], totals[..., BLEU_N : 2 * BLEU_N]
        product = np.ones(totals.shape[:-1])
        for k in range(order):
            product = product * ((correct[..., k] + TINY) / (guess[..., k] + SMALL))
        value = product ** (1.0 / order)
        r = (totals[..., 2 * BLEU_N] + TINY) / (totals[..., 2 * BLEU_N + 1] + SMALL)
        with np.errstate(divide="ignore", over="ignore"):
            return np.where(r < 1, value * np.exp(1 - 1 / r), value)

    return statistic


def _as_3d(values) -> np.ndarray:
    """(seeds, images, columns) from (images,), (images, columns) or (seeds, images, columns)."""
    x = np.asarray(values, dtype=float)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[1] == 0:
        raise ValueError(f"per-image values must be (images,), (images, k) or (seeds, images, k), got {x.shape}")
    return x


def _draws(systems: Sequence[np.ndarray], statistics: Sequence[Statistic], resamples: int, seed: int):
    """Per system, the seed-averaged statistic of ``resamples`` image draws shared by all systems."""
    n = systems[0].shape[1]
    if any(s.shape[1] != n for s in systems):
        raise ValueError(f"paired systems must be scored on the same images: {[s.shape[1] for s in systems]}")
    rng = np.random.default_rng(seed)
    chunk = max(1, int(2e6 // n))
    out = [np.empty(resamples) for _ in systems]
    for start in range(0, resamples, chunk):
        stop = min(start + chunk, resamples)
        # how many times each image is drawn in each resample of n images with replacement
        draws = stop - start
        picks = rng.integers(0, n, size=(draws, n)) + n * np.arange(draws)[:, None]
        weights = np.bincount(picks.ravel(), minlength=draws * n).reshape(draws, n).astype(float)  # (draws, n)
        for o, s, stat in zip(out, systems, statistics):
            totals = np.matmul(weights, s)  # (seeds, draws, k): the column sums of each draw
            o[start:stop] = stat(totals).mean(axis=0)
    return out


def _estimate(values: np.ndarray, statistic: Statistic) -> float:
    return float(statistic(values.sum(axis=1)).mean())


def _interval(estimate: float, draws: np.ndarray, level: float) -> Interval:
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    low, high = np.nanquantile(draws, [(1 - level) / 2, (1 + level) / 2])
    return Interval(estimate, float(low), float(high), level)


def bootstrap_ci(values, statistic: Statistic = ratio, resamples: int = RESAMPLES, level: float = LEVEL,
                 seed: int = 0) -> Interval:
    """Percentile bootstrap interval over images of a metric averaged over seeds (module doc).

    ``values``: per image, (images,) plain values (then the metric is their mean), (images, k) rows for
    ``statistic``, or (seeds, images, k) for the same images under several seeds."""
    x = _as_3d(values)
    if statistic is ratio and x.shape[2] == 1:
        x = np.concatenate([x, np.ones_like(x)], axis=2)
    (draws,) = _draws([x], [statistic], resamples, seed)
    return _interval(_estimate(x, statistic), draws, level)


def paired_bootstrap(a, b, statistic: Statistic = ratio, resamples: int = RESAMPLES, level: float = LEVEL,
                     seed: int = 0) -> Interval:
    """Percentile bootstrap interval of metric(A) - metric(B), resampling the images both were scored on
    (one draw for both systems and every seed), each averaged over its seeds (module doc)."""
    xa, xb = _as_3d(a), _as_3d(b)
    if statistic is ratio and xa.shape[2] == 1:
        xa, xb = (np.concatenate([x, np.ones_like(x)], axis=2) for x in (xa, xb))
    da, db = _draws([xa, xb], [statistic, statistic], resamples, seed)
    return _interval(_estimate(xa, statistic) - _estimate(xb, statistic), da - db, level)


def metric_rows(entries: Sequence[Mapping], metric: str) -> tuple[np.ndarray, Statistic]:
    """Per-image rows of ``metric`` from per_image_<split>.json entries, and the statistic that turns
    their column totals into the metric: ``Bleu_<n>`` from ``bleu_stats`` (corpus BLEU), anything else
    as (value, 1) where the entry has it and (0, 0) where it does not (a mean over the images it applies to)."""
    if metric.startswith("Bleu_"):
        missing = [e.get("image_id") for e in entries if "bleu_stats" not in e]
        if missing:
            raise KeyError(f"no bleu_stats for {len(missing)} images (e.g. {missing[:3]}): evaluated before the "
                           "per-image BLEU counts were written; re-evaluate the run")
        return np.array([e["bleu_stats"] for e in entries], dtype=float), bleu(int(metric.split("_")[1]))
    rows = np.array([[float(e[metric]), 1.0] if e.get(metric) is not None else [0.0, 0.0] for e in entries])
    if not rows[:, 1].any():
        raise KeyError(f"no image has a per-image {metric!r}")
    return rows, ratio
