"""evaluate_split writes COCO results, per-image scores and the report; score_files scores any results file."""

import json

import pytest
from PIL import Image

from captioning import CONFIG_DIR
from captioning.data.coco import ImageRecord
from captioning.evaluation.scoring import evaluate_split, extra_metrics, score_files
from captioning.evaluation.metrics import score

BLEU_ONLY = {"cider": False, "rouge": False, "meteor": False, "spice": False, "on_missing": "warn",
             "per_image_cider": False, "rank_by": "Bleu_4", "report": {"thumb_size": 24, "columns": 3}}


def _records(tmp_path, scenes=False):
    caps = [["a red circle", "a red circle on the left"], ["a blue square", "one blue square"],
            ["two green stars", "a pair of green stars"], ["a cat on a mat", "a cat sits on a mat"]]
    records = []
    for i, c in enumerate(caps):
        Image.new("RGB", (16, 16), (60 * i, 0, 0)).save(tmp_path / f"{i}.png")
        records.append(ImageRecord(100 + i, str(tmp_path / f"{i}.png"), c, {"objects": []} if scenes else None))
    return records


HYPS = {100: "a red circle", 101: "a red square", 102: "two green stars", 103: "a dog on a mat"}


def test_evaluate_split_writes_everything(tmp_path):
    records = _records(tmp_path, scenes=True)
    out = tmp_path / "eval"
    metrics = evaluate_split(records, HYPS, out, "test", metrics_cfg=BLEU_ONLY, worst_k=2, random_k=2,
                             scene_fn=lambda scene, caption: ["colour"] if "red square" in caption else [])
    scene_metrics = {k: v for k, v in metrics.items() if k.startswith("acc_")}
    # the scenes here hold no objects: every object named is hallucinated (tests/test_measures.py)
    assert metrics["CHAIR_i"] == 1.0 and {"distinct_1", "distinct_2", "vocab_used"} <= metrics.keys()
    measures = {"CHAIR_i", "CHAIR_s", "distinct_1", "distinct_2", "vocab_used"}
    assert {k: v for k, v in metrics.items() if k not in scene_metrics and k not in measures} == score(
        {r.image_id: r.captions for r in records}, HYPS)
    # synthetic scenes: the scene-attribute accuracies come with the metrics
    from captioning.data.scenes import attribute_accuracy

    assert scene_metrics == {f"acc_{k}": v for k, v in attribute_accuracy(records, HYPS).items()}
    results = json.loads((out / "results_test.json").read_text())
    assert results == [{"image_id": i, "caption": c} for i, c in HYPS.items()]
    per_image = json.loads((out / "per_image_test.json").read_text())
    assert [p["image_id"] for p in per_image] == list(HYPS) and per_image[0]["Bleu_1"] == pytest.approx(1.0)
    page = (out / "failures_test.html").read_text()
    assert "a dog on a mat" in page and "colour" in page
    assert (out / "failures_test.png").stat().st_size > 1000
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["results_test.json", "per_image_test.json", "failures_test.html", "failures_test.png"])


def test_evaluate_split_names_missing_captions(tmp_path):
    with pytest.raises(ValueError, match="no caption for 1 of 4"):
        evaluate_split(_records(tmp_path), {k: v for k, v in HYPS.items() if k != 103}, tmp_path, "val", BLEU_ONLY)


def test_extra_metrics_follow_the_config():
    assert extra_metrics({"cider": True, "rouge": False, "meteor": True}) == ["CIDEr", "METEOR"]
    assert extra_metrics(BLEU_ONLY) == []


def test_default_metrics_give_cider_without_java(tmp_path, monkeypatch):
    """pycocoevalcap comes with the package: the default config scores CIDEr-D (overall and per image)
    and ROUGE-L on any machine; only METEOR, which needs Java, is skipped where there is none."""
    import shutil

    from hydra import compose, initialize_config_dir

    import captioning.config  # noqa: F401 (registers the schema captioning/configs/metrics/default.yaml extends)

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        default = compose(overrides=["+metrics=default"]).metrics
    monkeypatch.setattr(shutil, "which", lambda name: None)
    metrics = evaluate_split(_records(tmp_path), HYPS, tmp_path / "eval", "test", metrics_cfg=default,
                             worst_k=2, random_k=2)
    assert {"CIDEr", "ROUGE_L"} <= set(metrics) and "METEOR" not in metrics
    per_image = json.loads((tmp_path / "eval" / "per_image_test.json").read_text())
    assert all("CIDEr" in p for p in per_image)


def _write(tmp_path, results, references):
    (tmp_path / "res.json").write_text(json.dumps(results))
    anns = [{"id": k, "image_id": i, "caption": c} for k, (i, c) in enumerate(
        (i, c) for i, caps in references.items() for c in caps)]
    (tmp_path / "ann.json").write_text(json.dumps({"images": [{"id": i} for i in references], "annotations": anns}))
    return tmp_path / "res.json", tmp_path / "ann.json"


def test_score_files_matches_score_over_the_results_images(tmp_path):
    refs = {1: ["a dog runs", "a brown dog"], 2: ["a cat sleeps"], 3: ["a bird flies"]}
    res, ann = _write(tmp_path, [{"image_id": 1, "caption": "a dog runs"}, {"image_id": 2, "caption": "a cat"}], refs)
    scored = score_files(res, ann)
    # with the diversity of the results' captions (tests/test_measures.py): "a dog runs", "a cat"
    assert {k: scored.pop(k) for k in ("distinct_1", "distinct_2", "vocab_used")} == {
        "distinct_1": 4 / 5, "distinct_2": 3 / 3, "vocab_used": 4.0}
    assert scored == score({1: refs[1], 2: refs[2]}, {1: "a dog runs", 2: "a cat"})


def test_score_files_rejects_bad_files(tmp_path):
    refs = {1: ["a dog runs"]}
    res, ann = _write(tmp_path, [{"image_id": 1, "caption": "a"}, {"image_id": 1, "caption": "b"}], refs)
    with pytest.raises(ValueError, match="more than one caption"):
        score_files(res, ann)
    res, ann = _write(tmp_path, [{"image_id": 9, "caption": "a"}], refs)
    with pytest.raises(ValueError, match="no captions in"):
        score_files(res, ann)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid json"):
        score_files(tmp_path / "bad.json", ann)
    with pytest.raises(FileNotFoundError, match="results file .*nope.json not found"):
        score_files(tmp_path / "nope.json", ann)


def test_failure_report_breaks_scene_accuracy_down(tmp_path):
    """On scenes the report has accuracy per group of scenes (object count, style) and per object by place."""
    Image.new("RGB", (16, 16)).save(tmp_path / "0.png")
    big = {"colour": "red", "shape": "circle", "size": "large"}
    small = {"colour": "blue", "shape": "square", "size": "small"}
    scene = {"objects": [big, small], "position": None, "relation": {"axis": "horizontal", "order": [0, 1]},
             "style": {"kind": "texture"}}
    records = [ImageRecord(7, str(tmp_path / "0.png"), ["a large red circle left of a small blue square"], scene)]
    evaluate_split(records, {7: "a large red circle"}, tmp_path / "eval", "test_long", metrics_cfg=BLEU_ONLY)
    page = (tmp_path / "eval" / "failures_test_long.html").read_text()
    assert "Scene accuracy by group" in page and "style=texture" in page and "objects=2" in page
    assert "Objects by kind" in page and "place=2" in page
