import random

import pytest

from captioning.data.coco import ImageRecord
from captioning.data.scenes import attribute_accuracy, attribute_report, error_kinds, parse_caption
from captioning.data.shape_captions import describe
from captioning.data.shapes import _pairs, resolve_params, sample_scene
from captioning.text.tokenizer import tokenize


def obj(colour, shape, size="large"):
    return {"colour": colour, "shape": shape, "size": size}


ONE = {"objects": [obj("red", "circle")], "position": "left", "relation": None}
TWO = {"objects": [obj("red", "circle"), obj("blue", "square", "small")], "position": None,
       "relation": {"axis": "horizontal", "order": [0, 1]}}  # fmt: skip
THREE = {"objects": [obj("green", "star", "small"), obj("red", "circle"), obj("blue", "cross")], "position": None,
         "relation": {"axis": "vertical", "order": [1, 0, 2]}}  # red circle top, green star middle, blue cross bottom  # fmt: skip
ALL_RIGHT_1 = {"count": True, "colour": True, "shape": True, "size": True, "position": True, "relation": None}


def test_parse_objects_relations_and_order():
    p = parse_caption("Two shapes: a big red circle to the left of a little blue square.")
    assert p["count"] == 2 and p["relations"] == [(0, "left_of", 1)] and p["positions"] == []
    assert p["objects"] == [obj("red", "circle"), obj("blue", "square", "small")]
    assert parse_caption("a red circle and a blue square below it")["relations"] == [(1, "below", 0)]
    p = parse_caption("from bottom to top , large red circle , small green star and big blue cross")
    assert p["relations"] == [(0, "below", 1), (1, "below", 2)] and len(p["objects"]) == 3
    assert parse_caption("")["objects"] == [] and parse_caption("a circle on the top")["positions"] == ["top"]


@pytest.mark.parametrize(
    "caption, wrong, kinds",
    [
        ("a large red circle on the left", [], []),
        ("there is a big red circle in the left half", [], []),
        ("a large blue circle on the left", ["colour"], ["colour"]),
        ("a large red square on the left", ["shape"], ["shape"]),
        ("a small red circle on the left", ["size"], ["size"]),
        ("a red circle on the left", ["size"], ["size"]),  # an omitted size is not a right size
        ("a large red circle on the right", ["position"], ["position"]),
        ("a large red circle", ["position"], ["position"]),
        ("two shapes , a large red circle on the left", ["count"], ["count"]),
        ("a large red circle left of a small blue square", ["count", "position"], ["count", "position", "hallucinated_object"]),
        ("", ["count", "colour", "shape", "size", "position"], ["count", "position", "missed_object"]),
    ],
)
def test_single_object_cases(caption, wrong, kinds):
    report = attribute_report(ONE, caption)
    assert report["relation"] is None
    assert sorted(k for k, ok in report.items() if ok is False) == sorted(wrong)
    assert error_kinds(ONE, caption) == kinds


@pytest.mark.parametrize(
    "caption, wrong, kinds",
    [
        ("a large red circle to the left of a small blue square", [], []),
        ("a small blue square right of a big red circle", [], []),
        ("a large red circle and a small blue square to the right of it", [], []),
        ("a small blue square left of a large red circle", ["relation"], ["relation"]),
        ("a large red circle above a small blue square", ["relation"], ["relation"]),  # wrong axis
        ("a large red circle and a small blue square", ["relation"], ["relation"]),  # no relation stated
        ("a large blue circle left of a small red square", ["colour"], ["colour"]),  # colours swapped
        ("a large red circle left of a large blue square", ["size"], ["size"]),
        ("a large red circle on the left", ["count", "colour", "shape", "size", "relation"],
         ["count", "relation", "missed_object"]),  # fmt: skip
        ("three shapes , a large red circle left of a small blue square", ["count"], ["count"]),
    ],
)
def test_two_object_cases(caption, wrong, kinds):
    report = attribute_report(TWO, caption)
    assert report["position"] is None
    assert sorted(k for k, ok in report.items() if ok is False) == sorted(wrong)
    assert error_kinds(TWO, caption) == kinds


def test_three_object_order():
    right = ["top to bottom , large red circle , small green star and large blue cross",
             "large blue cross , small green star , large red circle from bottom to top",
             "a large red circle above a small green star"]  # fmt: skip
    for caption in right:
        assert attribute_report(THREE, caption)["relation"] is True, caption
    assert attribute_report(THREE, right[2])["count"] is False
    wrong = ["top to bottom , small green star , large red circle , large blue cross",
             "left to right , large red circle , small green star , large blue cross",
             "large red circle , small green star and large blue cross"]  # fmt: skip
    for caption in wrong:
        assert attribute_report(THREE, caption)["relation"] is False, caption
    # a relation stated about a hallucinated object cannot hold
    assert error_kinds(THREE, "top to bottom , large red circle , small green star , big blue cross , small red star") == [
        "count", "relation", "hallucinated_object"]  # fmt: skip


def test_every_generated_reference_is_all_correct():
    """Generator and parser agree: each reference names every attribute of its scene rightly."""
    params = resolve_params()
    seen, novel = _pairs(params)
    n_by_count = {1: 0, 2: 0, 3: 0}
    for i in range(600):
        rng = random.Random(i)
        scene = sample_scene(rng, seen if i % 4 else novel, params["count_probs"], 128)
        n_by_count[len(scene["objects"])] += 1
        captions = describe(scene, rng, 5)
        assert len(set(captions)) == 5
        for caption in captions:
            assert len(tokenize(caption)) <= 16, caption
            report = attribute_report(scene, caption)
            assert all(ok is not False for ok in report.values()), (caption, report)
            assert error_kinds(scene, caption) == [], caption
    assert min(n_by_count.values()) > 150


def test_attribute_accuracy_aggregates_applicable_attributes():
    records = [ImageRecord(1, "a", [], ONE), ImageRecord(2, "b", [], TWO), ImageRecord(3, "c", ["x"], None)]
    hyps = {1: "a large red circle on the right", "2": "a large red circle left of a small blue square"}
    acc = attribute_accuracy(records, hyps, per_count=True)
    assert acc["count"] == 1.0 and acc["colour"] == 1.0
    assert acc["position"] == 0.0 and acc["relation"] == 1.0  # each applies to one scene only
    assert acc["all"] == 0.5 and acc["position@1"] == 0.0 and acc["relation@2"] == 1.0
    assert "position@2" not in acc
    with pytest.raises(ValueError, match="no hypothesis for 1 images"):
        attribute_accuracy(records, {1: "x"})
