"""Hallucination (CHAIR on scenes and on COCO), diversity and held-out-pair recall, by hand-computed values."""

import json
from pathlib import Path

import pytest
import torch

from captioning.data.coco import ImageRecord
from captioning.data.scene_metrics import scene_hallucinations
from captioning.evaluation.chair import coco_hallucinations, load_instances, mentioned_categories, singular
from captioning.evaluation.failures import collect_failures
from captioning.evaluation.measures import (caption_set_diversity, chair, diversity, has_unseen_pairs, hallucinations,
                                            pair_recall, training_reference)
from captioning.evaluation.scoring import (evaluate_split, generate, generate_beams, generate_sets, load_references,
                                          metrics_problems, score_files)
from captioning.text.vocab import Vocabulary
from tests.conftest import show_tell

FIXTURE = Path(__file__).parent / "fixtures" / "chair"
BLEU_ONLY = {"cider": False, "rouge": False, "per_image_cider": False, "rank_by": "Bleu_4"}


def obj(colour, shape, size="large"):
    return {"colour": colour, "shape": shape, "size": size}


# large red circle left of small blue square
TWO = {"objects": [obj("red", "circle"), obj("blue", "square", "small")], "position": None,
       "relation": {"axis": "horizontal", "order": [0, 1]}}  # fmt: skip


# --- hallucination on scenes ---------------------------------------------------------------------------


@pytest.mark.parametrize("caption, expected", [
    ("a large red circle left of a small blue square", (2, [])),
    ("a small red circle left of a large blue square", (2, [])),  # wrong sizes: no absent object
    ("a red circle left of a blue star", (2, ["blue star"])),  # shape absent
    ("a green circle above a blue square", (2, ["green circle"])),  # the pair absent, the shape present
    ("a red circle left of a red circle", (2, ["red circle"])),  # more red circles than the scene has
    ("a circle and a red circle", (2, ["circle"])),  # the bare mention is the one left over
    ("a square left of a circle", (2, [])),  # no colour named: the shapes are there
    ("two shapes on the left", (0, [])),  # no object mentioned
])
def test_scene_hallucinations(caption, expected):
    assert scene_hallucinations(TWO, caption) == expected


def test_chair_from_per_caption_counts():
    per_caption = {1: (2, []), 2: (2, ["blue star"]), 3: (3, ["a", "b"]), 4: (0, [])}
    assert chair(per_caption) == {"CHAIR_i": 3 / 7, "CHAIR_s": 2 / 4}
    assert chair({1: (0, [])}) == {"CHAIR_i": 0.0, "CHAIR_s": 0.0}


# --- hallucination on COCO -------------------------------------------------------------------------------


def test_coco_mentions_two_word_names_plurals_and_synonyms():
    assert singular("benches") == "bench" and singular("skies") == "sky" and singular("people") == "person"
    caption = "Two men eat hot dogs beside a teddy bear, two puppies and some TVs."
    assert mentioned_categories(caption) == ["person", "hot dog", "teddy bear", "dog", "tv"]
    assert mentioned_categories("a dog and another dog") == ["dog"]  # distinct categories


def test_coco_hallucination_counts_reference_mentions_as_present():
    # the couch is in no annotation, but a reference names a sofa: present, as in the paper
    found = coco_hallucinations("a dog on a couch next to a cat", frozenset({"dog"}), ["a puppy on a sofa"])
    assert found == (3, ["cat"])


def _coco_split(tmp_path):
    refs = load_references(FIXTURE / "captions_tiny.json")
    records = [ImageRecord(i, str(tmp_path / f"{i}.jpg"), caps) for i, caps in sorted(refs.items())]
    hyps = {1: "A man and a dog on a couch with a cat.",  # person dog couch | cat
            2: "Two hot dogs and a pizza on a table.",  # hot dog | pizza dining table
            3: "A kitten on a bed."}  # cat bed: both in the references
    return records, hyps


def test_coco_chair_on_the_fixture(tmp_path):
    records, hyps = _coco_split(tmp_path)
    metrics_cfg = {**BLEU_ONLY, "instances": [str(FIXTURE / "instances_tiny.json")]}
    metrics = evaluate_split(records, hyps, tmp_path / "eval", "val", metrics_cfg, worst_k=2, random_k=1)
    assert metrics["CHAIR_i"] == pytest.approx(2 / 9) and metrics["CHAIR_s"] == pytest.approx(2 / 3)
    per_image = {e["image_id"]: e for e in json.loads((tmp_path / "eval" / "per_image_val.json").read_text())}
    assert [per_image[i]["hallucinated"] for i in (1, 2, 3)] == [["cat"], ["hot dog"], []]
    assert [per_image[i]["objects_mentioned"] for i in (1, 2, 3)] == [4, 3, 2]
    assert [per_image[i]["CHAIR_s"] for i in (1, 2, 3)] == [1.0, 1.0, 0.0]
    page = (tmp_path / "eval" / "failures_val.html").read_text()
    assert "Hallucinated objects" in page and "hot dog" in page


def test_score_files_adds_chair_and_diversity(tmp_path):
    _, hyps = _coco_split(tmp_path)
    results = tmp_path / "results.json"
    results.write_text(json.dumps([{"image_id": i, "caption": c} for i, c in hyps.items()]))
    metrics = score_files(results, FIXTURE / "captions_tiny.json", instances=[str(FIXTURE / "instances_tiny.json")])
    assert metrics["CHAIR_i"] == pytest.approx(2 / 9) and metrics["CHAIR_s"] == pytest.approx(2 / 3)
    assert metrics["vocab_used"] == 15.0  # a man and dog on couch with cat two hot dogs pizza table kitten bed
    assert "CHAIR_i" not in score_files(results, FIXTURE / "captions_tiny.json")


def test_a_missing_instances_file_is_a_config_problem(tmp_path):
    assert metrics_problems({"instances": [str(FIXTURE / "instances_tiny.json")]}) == []
    missing = tmp_path / "instances_val2014.json"
    assert metrics_problems({"instances": [str(missing)]}) == [
        f"metrics.instances: {missing} is not a file; give the paths of COCO instances_*.json files, or [] for no "
        "CHAIR on COCO"]


def test_coco_chair_needs_instances_that_cover_the_split(tmp_path):
    records, hyps = _coco_split(tmp_path)
    assert hallucinations(records, hyps) is None  # no instances, no scenes: no CHAIR
    instances = load_instances((str(FIXTURE / "instances_tiny.json"),))
    assert set(hallucinations(records[:2], hyps, instances)) == {1, 2}
    stranger = [ImageRecord(99, "x.jpg", ["a dog"])]
    with pytest.raises(ValueError, match="cover none"):
        hallucinations(stranger, {99: "a dog"}, instances)
    with pytest.raises(FileNotFoundError, match="metrics.instances"):
        load_instances((str(tmp_path / "instances_missing.json"),))


# --- diversity ----------------------------------------------------------------------------------------


def test_diversity_by_hand():
    captions = ["a red circle", "A red circle.", "a blue square on the left"]
    train = training_reference([ImageRecord(1, "x", ["a red circle", "a blue square"])])
    out = diversity(captions, train)
    # unigrams: 3 + 3 + 6 = 12, distinct {a red circle blue square on the left} = 8
    # bigrams: 2 + 2 + 5 = 9, distinct {a red, red circle, a blue, blue square, square on, on the, the left} = 7
    assert out == {"distinct_1": 8 / 12, "distinct_2": 7 / 9, "vocab_used": 8.0, "copied_from_train": 2 / 3}
    assert "copied_from_train" not in diversity(captions)
    assert diversity([""]) == {"distinct_1": 0.0, "distinct_2": 0.0, "vocab_used": 0.0}


def test_caption_set_diversity_by_hand():
    sets = [["a red circle", "A red circle.", "a blue circle"],  # words 9; unigrams {a red circle blue} 4;
            # bigrams {a red, red circle, a blue, blue circle} 4; 2 distinct captions of 3
            ["a star", "a cross"],  # words 4; unigrams {a star cross} 3; bigrams {a star, a cross} 2; 2 of 2
            ["one caption only"]]  # left out: a set of one
    out = caption_set_diversity(sets)
    assert out == pytest.approx({"div_1": (4 / 9 + 3 / 4) / 2, "div_2": (4 / 9 + 2 / 4) / 2,
                                 "captions_unique": (2 / 3 + 1) / 2})
    assert caption_set_diversity([["a"], ["b"]]) == {}


def test_num_captions_adds_the_per_image_diversity_to_an_evaluation(tmp_path):
    torch.manual_seed(0)
    vocab = Vocabulary("a red green blue circle square star".split())
    model = show_tell(6, len(vocab), max_len=6, embed_dim=8, hidden_size=16)
    records = [ImageRecord(i, "x", ["a red circle"]) for i in range(3)]
    features = torch.randn(3, 6).numpy()
    decoding = {"method": "beam", "beam_size": 3, "num_captions": 3}
    sets = generate_sets(model, vocab, records, features, decoding, max_len=6)
    assert all(len(c) == 3 for c in sets.values())
    assert {i: c[0] for i, c in sets.items()} == generate(model, vocab, records, features, decoding, max_len=6)
    metrics = evaluate_split(records, {i: c[0] for i, c in sets.items()}, tmp_path, "val", BLEU_ONLY,
                             caption_sets=sets)
    assert metrics["div_2"] == pytest.approx(caption_set_diversity(list(sets.values()))["div_2"])
    assert 0 < metrics["captions_unique"] <= 1
    one = generate_sets(model, vocab, records, features, {"method": "beam", "beam_size": 3}, max_len=6)
    assert "div_2" not in evaluate_split(records, {i: c[0] for i, c in one.items()}, tmp_path, "val", BLEU_ONLY,
                                         caption_sets=one)


# --- held-out-pair recall ------------------------------------------------------------------------------


def scene(*objects):
    if len(objects) == 1:
        return {"objects": list(objects), "position": "left", "relation": None}
    return {"objects": list(objects), "position": None, "relation": {"axis": "horizontal", "order": [0, 1]}}


def _novel_records():
    train = [ImageRecord(1, "t", ["c"], scene(obj("blue", "star"), obj("red", "circle")))]
    records = [ImageRecord(10, "a", ["c"], scene(obj("red", "star"))),  # unseen: red star
               ImageRecord(11, "b", ["c"], scene(obj("green", "cross"), obj("red", "star"))),  # two unseen
               ImageRecord(12, "c", ["c"], scene(obj("red", "circle")))]  # none unseen: not counted
    return training_reference(train), records


def test_pair_recall_at_k_by_hand():
    train, records = _novel_records()
    assert train.pairs == {("blue", "star"), ("red", "circle")} and has_unseen_pairs(records, train)
    beams = {10: ["a large blue star on the left", "a large red star on the left"],
             11: ["a green cross left of a blue star", "a red cross left of a red star"],
             12: ["a blue circle", "a blue circle"]}
    assert pair_recall(records, beams, train.pairs, 1) == {"pair_recall@1": 0.0, "pair_recall_images": 2.0}
    # image 10 names its red star in beam 2; image 11 names the green cross (beam 1) and the red star (beam 2)
    assert pair_recall(records, beams, train.pairs, 2) == {"pair_recall@2": 1.0, "pair_recall_images": 2.0}
    beams[11] = ["a green cross left of a blue star", "a red cross left of a blue star"]
    assert pair_recall(records, beams, train.pairs, 2)["pair_recall@2"] == 0.5  # the red star never named
    assert pair_recall(records[2:], beams, train.pairs, 2) == {}
    with pytest.raises(ValueError, match="k >= 1"):
        pair_recall(records, beams, train.pairs, 0)


def test_evaluate_split_adds_every_measure_on_scenes(tmp_path):
    train, records = _novel_records()
    hyps = {10: "a red star on the left", 11: "a green cross left of a blue star", 12: "a red circle"}
    beams = {10: ["a red star on the left"], 11: ["a green cross left of a blue star"], 12: ["a red circle"]}
    metrics = evaluate_split(records, hyps, tmp_path, "test_novel", {**BLEU_ONLY, "pair_recall_k": 1},
                             worst_k=2, random_k=1, train=train, beams=beams)
    assert metrics["CHAIR_i"] == pytest.approx(1 / 4) and metrics["CHAIR_s"] == pytest.approx(1 / 3)
    assert metrics["pair_recall@1"] == 0.5 and metrics["copied_from_train"] == 0.0
    assert {"distinct_1", "distinct_2", "vocab_used"} <= metrics.keys()
    per_image = {e["image_id"]: e for e in json.loads((tmp_path / "per_image_test_novel.json").read_text())}
    assert per_image[11]["hallucinated"] == ["blue star"] and per_image[10]["hallucinated"] == []
    page = (tmp_path / "failures_test_novel.html").read_text()
    assert "Hallucinated objects" in page and "blue star" in page


def test_failure_report_ranks_hallucinations(tmp_path):
    records = [ImageRecord(i, str(tmp_path / f"{i}.png"), ["a red circle"]) for i in range(4)]
    hyps = {r.image_id: "a red circle" for r in records}
    per_image = {r.image_id: {"Bleu_4": 0.5} for r in records}
    named = {0: ["blue star"], 1: ["blue star", "green cross"], 2: [], 3: ["green cross", "blue star", "red star"]}
    report = collect_failures(records, hyps, per_image, worst_k=2, random_k=0, hallucinated=named)
    assert report.hallucinations == [("blue star", 3, [0, 1, 3]), ("green cross", 2, [1, 3]), ("red star", 1, [3])]
    assert [c.image_id for c in report.most_hallucinating] == [3, 1]
    assert collect_failures(records, hyps, per_image).hallucinations is None


# --- beams for recall ----------------------------------------------------------------------------------


def test_generate_beams_gives_k_captions_best_first():
    torch.manual_seed(0)
    vocab = Vocabulary("a red green blue circle square star".split())
    model = show_tell(6, len(vocab), max_len=6, embed_dim=8, hidden_size=16)
    records = [ImageRecord(i, "x", ["a"]) for i in range(3)]
    features = torch.randn(3, 6).numpy()
    beams = generate_beams(model, vocab, records, features, {"beam_size": 3}, max_len=6, k=3)
    best = generate(model, vocab, records, features, {"method": "beam", "beam_size": 3}, max_len=6)
    assert all(len(beams[i]) == 3 and beams[i][0] == best[i] for i in best)


def test_tiny_run_metrics_have_the_measures(tiny_run):
    run_dir, _ = tiny_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for split in ("test", "test_novel"):
        keys = {"CHAIR_i", "CHAIR_s", "distinct_1", "distinct_2", "vocab_used", "copied_from_train"}
        assert keys <= metrics[split].keys()
        assert 0 <= metrics[split]["CHAIR_i"] <= 1 and 0 <= metrics[split]["copied_from_train"] <= 1
    assert "pair_recall@5" in metrics["test_novel"]  # every test_novel scene holds held-out pairs
    assert metrics["test_novel"]["pair_recall_images"] == 16
    per_image = json.loads((run_dir / "eval" / "per_image_test.json").read_text())
    assert all(isinstance(e["hallucinated"], list) for e in per_image)
