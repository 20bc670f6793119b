"""BLEU known answers, the official scorer's conventions, and parity with pycocoevalcap on real COCO captions."""

import collections
import json
import math
import shutil

import pytest

from captioning.evaluation import metrics
from captioning.evaluation.metrics import MetricUnavailable, per_image_scores, score
from tests.fixtures import COCO_CAPTIONS as COCO


def _bleu(refs, hyp):
    return score({1: refs}, {1: hyp})


def test_perfect_match_is_one():
    result = _bleu(["a man rides a horse on the beach"], "A man rides a horse on the beach.")
    assert all(result[f"Bleu_{n}"] == pytest.approx(1.0, abs=1e-9) for n in range(1, 5))


def test_no_overlap_is_zero():
    result = _bleu(["a man rides a horse"], "two cats sleep quietly")
    assert all(result[f"Bleu_{n}"] < 1e-6 for n in range(1, 5))


def test_brevity_penalty_by_hand():
    # every n-gram matches; hypothesis 6 words, only reference 7 -> BP = exp(1 - 7/6)
    result = _bleu(["a cat sat on the mat today"], "a cat sat on the mat")
    assert result["Bleu_4"] == pytest.approx(math.exp(1 - 7 / 6), abs=1e-9)
    assert result["Bleu_1"] == pytest.approx(math.exp(1 - 7 / 6), abs=1e-9)


def test_closest_reference_length_prefers_the_shorter_on_ties():
    # lengths 4 and 6 are equally close to 5: the scorer takes 4, so there is no brevity penalty
    result = _bleu(["a b c d", "a b c d e f"], "a b c d e")
    assert result["Bleu_1"] == pytest.approx(1.0, abs=1e-9)


def test_counts_are_clipped_by_the_reference():
    result = _bleu(["the cat"], "the the the the")
    assert result["Bleu_1"] == pytest.approx(0.25, abs=1e-9)


def test_corpus_bleu_pools_counts_rather_than_averaging():
    refs = {1: ["a b c d"], 2: ["e f g h"]}
    hyps = {1: "a b c d", 2: "x y z w"}
    # unigrams: 4 correct of 8 guessed -> Bleu_1 = 0.5
    assert score(refs, hyps)["Bleu_1"] == pytest.approx(0.5, abs=1e-9)


def test_per_image_uses_the_scorer_epsilons():
    # a perfect 3-word caption has no 4-grams: the scorer reports (1e-15 / 1e-9) ** (1/4), not 0 or 1
    scores = per_image_scores({7: ["a red bus"]}, {7: "a red bus"}, cider=False)
    assert scores[7]["Bleu_3"] == pytest.approx(1.0, abs=1e-9)
    assert scores[7]["Bleu_4"] == pytest.approx((1e-15 / 1e-9) ** 0.25, rel=1e-6)


def test_mismatched_ids_and_bad_inputs_are_named():
    with pytest.raises(ValueError, match="same image ids"):
        score({1: ["a"], 2: ["b"]}, {1: "a"})
    with pytest.raises(ValueError, match="non-empty list"):
        score({1: []}, {1: "a"})
    with pytest.raises(ValueError, match="one string"):
        score({1: ["a"]}, {1: ["a"]})
    with pytest.raises(ValueError, match="unknown metric"):
        score({1: ["a"]}, {1: "a"}, extra=["BLEURT"])


def test_missing_java_is_named(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(MetricUnavailable, match="Java"):
        score({1: ["a dog"]}, {1: "a dog"}, extra=["METEOR"])
    assert "METEOR" not in score({1: ["a dog"]}, {1: "a dog"}, extra=["METEOR"], on_missing="warn")


def test_cider_and_rouge_need_no_java(monkeypatch):
    # pycocoevalcap is a core dependency: CIDEr and ROUGE-L run in every install, Java or not
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert metrics.missing_requirement("CIDEr") is None and metrics.missing_requirement("ROUGE_L") is None
    refs = {1: ["a dog runs on grass", "a brown dog running"], 2: ["a plate of food", "food on a plate"]}
    hyps = {1: "a dog runs on grass", 2: "a cat on a sofa"}
    result = score(refs, hyps, extra=["CIDEr", "ROUGE_L"])
    per = per_image_scores(refs, hyps)
    assert per[1]["CIDEr"] > per[2]["CIDEr"] >= 0
    assert result["CIDEr"] == pytest.approx((per[1]["CIDEr"] + per[2]["CIDEr"]) / 2)
    assert 0 < result["ROUGE_L"] < 1


def test_parity_with_official_scorer_on_real_coco():
    if shutil.which("java") is None:
        pytest.skip("needs Java (a `java` executable on PATH) for pycocoevalcap's PTBTokenizer")
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    captions = collections.defaultdict(list)
    for ann in json.loads(COCO.read_text(encoding="utf-8"))["annotations"]:
        captions[ann["image_id"]].append(ann["caption"])
    ids = sorted(captions)
    # hold one human caption out as the "hypothesis", score it against the others
    refs = {i: captions[i][1:] for i in ids}
    hyps = {i: captions[i][0] for i in ids}
    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({i: [{"caption": c} for c in refs[i]] for i in ids})
    res = tokenizer.tokenize({i: [{"caption": hyps[i]}] for i in ids})
    official, official_per_image = Bleu(4).compute_score(gts, res, verbose=0)

    ours = score(refs, hyps)
    per_image = per_image_scores(refs, hyps, cider=False)
    for n in range(4):
        assert ours[f"Bleu_{n + 1}"] == pytest.approx(official[n], abs=1e-3)
        assert ours[f"Bleu_{n + 1}"] == pytest.approx(official[n], abs=1e-9)  # in fact identical
        ours_list = [per_image[i][f"Bleu_{n + 1}"] for i in gts]
        assert ours_list == pytest.approx(official_per_image[n], abs=1e-9)
    # CIDEr-D, on by default: the official pipeline (Java PTB tokenisation, then Cider) gives the same
    official_cider, official_cider_per_image = Cider().compute_score(gts, res)
    assert score(refs, hyps, extra=["CIDEr"])["CIDEr"] == pytest.approx(official_cider, abs=1e-9)
    per_image = per_image_scores(refs, hyps)
    assert [per_image[i]["CIDEr"] for i in gts] == pytest.approx(list(official_cider_per_image), abs=1e-9)


def test_human_agreement_is_leave_one_out_bleu():
    from captioning.evaluation.metrics import human_agreement

    # identical references agree perfectly
    assert human_agreement({1: ["a red circle on the left"] * 3})["Bleu_4"] == pytest.approx(1.0)
    refs = {1: ["a red circle on the left", "a big red circle left", "there is a red circle"], 2: ["a dog", "a dog"]}
    expected = sum(
        score({i: c[:k] + c[k + 1 :] for i, c in refs.items()}, {i: c[k] for i, c in refs.items()})["Bleu_2"]
        for k in range(2)  # image 2 has two references: two rounds
    ) / 2
    assert human_agreement(refs)["Bleu_2"] == pytest.approx(expected)
    assert 0 < human_agreement(refs)["Bleu_1"] < 1
    with pytest.raises(ValueError, match="at least two"):
        human_agreement({1: ["a dog"]})
