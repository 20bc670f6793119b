"""CIDEr on one scale: CIDEr-D with the training references' document frequencies (evaluation/cider.py)."""

import random

import pytest
from pycocoevalcap.cider.cider import Cider

from captioning.data.coco import ImageRecord
from captioning.data.shape_captions import describe
from captioning.data.shapes import sample_scene
from captioning.evaluation.cider import CiderD
from captioning.evaluation.metrics import cider_document_frequencies, per_image_scores, score
from captioning.text.tokenizer import tokenize

PAIRS = [(c, s) for c in ("red", "green", "blue", "yellow") for s in ("circle", "square", "star", "cross")]


def records(name, count, first_id):
    """Synthetic scenes with five references each, like a split of the shapes data."""
    out = []
    for i in range(count):
        rng = random.Random(f"{name}/{i}")
        scene = sample_scene(rng, PAIRS, [1 / 3] * 3, 128)
        out.append(ImageRecord(first_id + i, f"/nonexistent/{name}_{i}.png", describe(scene, rng, 5), scene))
    return out


def hypotheses(recs, seed):
    """Captions a model might write: a reference of another image half the time, of its own otherwise."""
    rng = random.Random(seed)
    return {r.image_id: rng.choice(rng.choice(recs).captions if rng.random() < 0.5 else r.captions) for r in recs}


def tokens(recs, hyps):
    return {r.image_id: [tokenize(c) for c in r.captions] for r in recs}, {i: tokenize(h) for i, h in hyps.items()}


def test_df_from_the_evaluated_references_is_pycocoevalcap_cider():
    recs = records("test", 40, 0)
    hyps = hypotheses(recs, 0)
    refs, hyp_tokens = tokens(recs, hyps)
    corpus, per_image = CiderD.from_references(refs).score(refs, hyp_tokens)
    gts = {i: [" ".join(t) for t in rs] for i, rs in refs.items()}
    res = {i: [" ".join(hyp_tokens[i])] for i in refs}
    official, official_per_image = Cider().compute_score(gts, res)
    assert corpus == pytest.approx(official, abs=1e-12)
    assert [per_image[i] for i in refs] == pytest.approx(list(official_per_image), abs=1e-12)
    # without training references, CIDEr is the official number and CIDEr_official says so
    metrics = score({r.image_id: r.captions for r in recs}, hyps, extra=["CIDEr"])
    assert metrics["CIDEr"] == metrics["CIDEr_official"] == pytest.approx(official, abs=1e-12)


def test_train_df_cider_is_per_image_and_independent_of_what_else_is_scored():
    train, test, novel = records("train", 120, 0), records("test", 30, 1000), records("novel", 30, 2000)
    df = cider_document_frequencies([r.captions for r in train])
    assert df.num_documents == 120
    refs = {r.image_id: r.captions for r in test + novel}
    hyps = hypotheses(test + novel, 1)
    both = per_image_scores(refs, hyps, cider_df=df)
    test_refs = {r.image_id: r.captions for r in test}
    alone = per_image_scores(test_refs, {i: hyps[i] for i in test_refs}, cider_df=df)
    assert all(alone[i]["CIDEr"] == both[i]["CIDEr"] for i in test_refs)
    test_cider = score(test_refs, {i: hyps[i] for i in test_refs}, extra=["CIDEr"], cider_df=df)
    assert test_cider["CIDEr"] == pytest.approx(sum(alone[i]["CIDEr"] for i in test_refs) / len(test_refs))
    # the official per-split CIDEr-D moves with the images it is computed over
    assert any(alone[i]["CIDEr_official"] != pytest.approx(both[i]["CIDEr_official"]) for i in test_refs)
    assert test_cider["CIDEr_official"] != pytest.approx(test_cider["CIDEr"])


def _evaluate_all(prepared, eval_splits, out_dir):
    """pipeline.evaluate_all with the tiny options: most_frequent baseline, CIDEr only."""
    import captioning.pipeline as pipeline
    from captioning.evaluation.scoring import EvaluateConfig, MetricsConfig
    from captioning.nn.decoding import DecodingConfig
    from captioning.utils.schema import build

    metrics = build(MetricsConfig, {"cider": True, "rouge": False, "meteor": False, "spice": False,
                                    "on_missing": "warn", "per_image_cider": True, "rank_by": "CIDEr",
                                    "report": {"thumb_size": 8, "columns": 2}})
    evaluate = EvaluateConfig(baselines=["most_frequent"], worst_k=2, random_k=2, nn_k=1)
    return pipeline.evaluate_all(prepared, None, out_dir, eval_splits, "train", 16, DecodingConfig(), evaluate, metrics)


def test_main_job_cider_of_a_split_does_not_depend_on_the_other_splits(tmp_path, monkeypatch):
    """pipeline.evaluate_all: test's CIDEr is the same number whether test_novel is evaluated or not."""
    from types import SimpleNamespace

    import captioning.pipeline as pipeline

    splits = {"train": records("train", 80, 0), "test": records("test", 20, 1000),
              "test_novel": records("novel", 20, 2000)}  # fmt: skip
    prepared = SimpleNamespace(splits=splits, features={s: None for s in splits}, vocab=None)
    monkeypatch.setattr(pipeline, "generate_sets",
                        lambda model, vocab, recs, *a: {i: [c] for i, c in hypotheses(recs, 2).items()})
    one = _evaluate_all(prepared, ["test"], tmp_path / "one")
    two = _evaluate_all(prepared, ["test", "test_novel"], tmp_path / "two")
    assert one["test"]["CIDEr"] == two["test"]["CIDEr"] and one["test"]["CIDEr_official"] == two["test"]["CIDEr_official"]
    df = cider_document_frequencies([r.captions for r in splits["train"]])
    refs, hyp_tokens = tokens(splits["test"], hypotheses(splits["test"], 2))
    assert one["test"]["CIDEr"] == pytest.approx(df.score(refs, hyp_tokens)[0], abs=1e-12)
    assert two["most_frequent/test_novel"]["CIDEr"] >= 0
