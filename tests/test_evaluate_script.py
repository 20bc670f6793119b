"""captioning-evaluate's two modes: a checkpoint on a split, and a results file against annotations."""

import json

from hydra import compose, initialize_config_dir

from captioning.evaluation.checkpoint import EvaluateRunConfig, evaluate_checkpoint, score_results
from captioning.utils.schema import build
from tests.conftest import CONFIGS


def eval_cfg(*overrides):
    """captioning-evaluate's typed options (configs/evaluate.yaml with ``overrides``)."""
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        return build(EvaluateRunConfig, compose("evaluate", overrides=["metrics=bleu", *overrides]))


def test_checkpoint_mode_reproduces_the_training_runs_metrics(tiny_run, tmp_path):
    run_dir, results = tiny_run
    out = evaluate_checkpoint(eval_cfg(f"checkpoint={run_dir}", "split=test_novel"), tmp_path)
    # the same checkpoint, split and decoding settings as the training run's final evaluation
    assert out["test_novel"]["Bleu_4"] == results["test_novel"]["Bleu_4"]
    # the measures too: the training captions and the held-out pairs come from the checkpoint's data
    for key in ("CHAIR_i", "CHAIR_s", "distinct_2", "copied_from_train", "pair_recall@5"):
        assert out["test_novel"][key] == results["test_novel"][key]
    assert json.loads((tmp_path / "metrics.json").read_text()) == out
    assert out["_run"]["checkpoint"].endswith("best.pt")
    captions = json.loads((tmp_path / "results_test_novel.json").read_text())
    assert {"image_id", "caption"} == set(captions[0])
    # an evaluation's folder pairs with runs: captioning-paired reads it and knows the run's seed
    from captioning.experiments.compare import paired_comparison, run_dirs

    assert out["_run"]["seed"] == 0 and run_dirs([tmp_path]) == [tmp_path]
    rows = paired_comparison([tmp_path], [run_dir], splits=["test_novel"], metrics=["Bleu_4"], resamples=200)
    assert [(r["metric"], r["difference"], r["excludes_zero"]) for r in rows] == [("Bleu_4", 0.0, False)]


def test_score_mode_scores_any_results_file(tiny_run, tiny_root, tmp_path):
    run_dir, results = tiny_run
    annotations = tiny_root / "data" / "shapes_tiny" / "annotations" / "captions_test.json"
    res = run_dir / "eval" / "results_test.json"
    out = score_results(eval_cfg("mode=score", f"results={res}", f"annotations={annotations}"), tmp_path)
    assert out["Bleu_4"] == results["test"]["Bleu_4"]
    for key in ("CHAIR_i", "CHAIR_s", "distinct_1", "vocab_used"):  # CHAIR from the annotation file's scenes
        assert out[key] == results["test"][key]


def test_a_run_on_the_default_data_is_scored_on_the_hard_splits(tiny_run, tmp_path):
    """+data=shapes_hard_tiny holds shapes_tiny's splits image for image, plus the hard ones: the tiny run's
    checkpoint is scored there, and its report breaks the scene accuracy down by object count and style."""
    run_dir, _ = tiny_run
    for split in ("test_long", "test_shifted"):
        out = evaluate_checkpoint(eval_cfg(f"checkpoint={run_dir}", "+data=shapes_hard_tiny", f"split={split}"),
                                  tmp_path / split)
        assert 0.0 <= out[split]["acc_scene"] <= 1.0 and "Bleu_4" in out[split]
        page = (tmp_path / split / f"failures_{split}.html").read_text()
        assert "Scene accuracy by group" in page and "place=1" in page
    assert "objects=4" in (tmp_path / "test_long" / "failures_test_long.html").read_text()
    assert "style=" in (tmp_path / "test_shifted" / "failures_test_shifted.html").read_text()
