"""Seeds and intervals (captioning/evaluation/stats.py) on cases whose answers are known by hand."""

import math

import numpy as np
import pytest

from captioning.evaluation.metrics import bleu_from_statistics, bleu_statistics, score
from captioning.evaluation.stats import (Interval, bleu, bootstrap_ci, mean_sd, metric_rows, paired_bootstrap,
                                         ratio)

B = 20_000  # enough draws that the quantiles below are many standard errors from any boundary


def test_mean_and_sample_sd_over_seeds():
    assert mean_sd([1.0, 2.0, 3.0]) == (2.0, 1.0)  # sd with n - 1: sqrt((1 + 0 + 1) / 2)
    assert mean_sd([0.5, 0.7]) == pytest.approx((0.6, math.sqrt(0.02)))
    mean, sd = mean_sd([0.25])
    assert mean == 0.25 and math.isnan(sd)
    with pytest.raises(ValueError):
        mean_sd([])


def test_constant_scores_have_a_zero_width_interval():
    ci = bootstrap_ci([0.7] * 10, resamples=500)
    assert (ci.estimate, ci.low, ci.high) == pytest.approx((0.7, 0.7, 0.7))


def test_two_images_zero_and_one():
    """Means of two draws from {0, 1}: 0 (1/4), 0.5 (1/2), 1 (1/4)."""
    ci = bootstrap_ci([0.0, 1.0], resamples=B)
    assert (ci.estimate, ci.low, ci.high) == (0.5, 0.0, 1.0)
    narrow = bootstrap_ci([0.0, 1.0], resamples=B, level=0.4)  # the 30% and 70% quantiles
    assert (narrow.low, narrow.high) == (0.5, 0.5)


def test_three_images_quantiles_follow_the_binomial():
    """Mean of three draws from {0, 0, 1}: k/3 with k ~ Binomial(3, 1/3): P = 8/27, 12/27, 6/27, 1/27;
    cumulative 0.296, 0.741, 0.963, 1."""
    ci = bootstrap_ci([0.0, 0.0, 1.0], resamples=B, level=0.8)  # 10% and 90% quantiles
    assert ci.estimate == pytest.approx(1 / 3) and (ci.low, ci.high) == pytest.approx((0.0, 2 / 3))
    wide = bootstrap_ci([0.0, 0.0, 1.0], resamples=B)  # 2.5% and 97.5%
    assert (wide.low, wide.high) == pytest.approx((0.0, 1.0))
    # the same seed gives the same interval; another seed gives the same quantiles here
    assert bootstrap_ci([0.0, 0.0, 1.0], resamples=100, seed=3) == bootstrap_ci([0.0, 0.0, 1.0], resamples=100, seed=3)


def test_paired_difference_of_a_constant_shift_is_exact():
    rng = np.random.default_rng(0)
    a = rng.random(50)
    b = a + 0.25
    diff = paired_bootstrap(a, b, resamples=2000)
    assert (diff.estimate, diff.low, diff.high) == pytest.approx((-0.25, -0.25, -0.25))
    assert diff.excludes_zero
    # each on its own varies with the images; the pairing removes that
    alone = bootstrap_ci(a, resamples=2000)
    assert alone.high - alone.low > 0.1
    same = paired_bootstrap(a, a.copy(), resamples=500)
    assert (same.low, same.high) == (0.0, 0.0) and not same.excludes_zero


def test_paired_difference_averages_over_seeds():
    """A's two seeds score x and x + 0.2 on every image, B's score x + 0.1: on average they tie."""
    x = np.random.default_rng(1).random(40)
    a = np.stack([x, x + 0.2])[:, :, None]  # (seeds, images, 1)
    b = np.stack([x + 0.1, x + 0.1])[:, :, None]
    diff = paired_bootstrap(a, b, resamples=1000)
    assert (diff.estimate, diff.low, diff.high) == pytest.approx((0.0, 0.0, 0.0), abs=1e-12)
    assert not diff.excludes_zero
    with pytest.raises(ValueError, match="same images"):
        paired_bootstrap(x, x[:-1], resamples=10)


def test_seed_average_interval_of_two_seeds():
    """Two images, two seeds: seed 0 scores (0, 1), seed 1 scores (1, 1). Averaged over seeds, a draw of
    images (i, j) scores ((s0_i + s0_j) / 2 + (s1_i + s1_j) / 2) / 2: 0.5 for (0, 0) [1/4], 0.75 [1/2],
    1 [1/4]."""
    values = np.array([[0.0, 1.0], [1.0, 1.0]])[:, :, None]
    ci = bootstrap_ci(values, resamples=B, level=0.4)
    assert ci.estimate == 0.75 and (ci.low, ci.high) == (0.75, 0.75)
    assert (bootstrap_ci(values, resamples=B).low, bootstrap_ci(values, resamples=B).high) == (0.5, 1.0)


def test_interval_excludes_zero():
    assert Interval(0.1, 0.01, 0.2).excludes_zero and Interval(-0.1, -0.2, -0.01).excludes_zero
    assert not Interval(0.1, 0.0, 0.2).excludes_zero and not Interval(0.0, -0.1, 0.1).excludes_zero
    assert str(Interval(0.5, 0.25, 0.75)) == "0.500 [0.250, 0.750]"


REFS = {1: ["a red circle on the left", "a big red circle"], 2: ["two blue squares", "a pair of blue squares"],
        3: ["a green star above a red cross", "a green star over a red cross"]}
HYPS = {1: "a red circle on the left", 2: "two red squares", 3: "a green star"}


def test_corpus_bleu_from_per_image_counts():
    stats = bleu_statistics(REFS, HYPS)
    # a red circle on the left: 6 words, all matched, exact reference length
    assert stats[1] == [6, 5, 4, 3, 6, 5, 4, 3, 6, 6]
    totals = np.sum([stats[i] for i in REFS], axis=0)
    official = score(REFS, HYPS)
    assert bleu_from_statistics(totals) == pytest.approx(official, abs=1e-12)
    for n in range(1, 5):
        assert float(bleu(n)(totals)) == pytest.approx(official[f"Bleu_{n}"], abs=1e-12)


def test_metric_rows_give_the_reported_metric_as_the_estimate():
    entries = [{"image_id": i, "bleu_stats": s} for i, s in bleu_statistics(REFS, HYPS).items()]
    rows, statistic = metric_rows(entries, "Bleu_4")
    assert bootstrap_ci(rows, statistic, resamples=200).estimate == pytest.approx(score(REFS, HYPS)["Bleu_4"])
    # the same image three times: every draw is that image
    one = bootstrap_ci(np.repeat(rows[:1], 3, axis=0), statistic, resamples=50)
    assert one.low == one.high == pytest.approx(1.0)
    # a metric that applies to some images only: the mean over those (acc_position: one-object scenes)
    entries = [{"acc_position": 1.0}, {"acc_relation": 0.0}, {"acc_position": 0.0}, {"acc_position": 1.0}]
    rows, statistic = metric_rows(entries, "acc_position")
    assert statistic is ratio and bootstrap_ci(rows, statistic, resamples=50).estimate == pytest.approx(2 / 3)
    with pytest.raises(KeyError, match="acc_scene"):
        metric_rows(entries, "acc_scene")
    with pytest.raises(KeyError, match="bleu_stats"):
        metric_rows(entries, "Bleu_4")
