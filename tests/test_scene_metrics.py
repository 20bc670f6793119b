"""Binding-strict scene judgements (scenes.strict_report), the chance line and the split breakdown."""

import itertools
import random
from fractions import Fraction

import pytest

from captioning.data.coco import ImageRecord
from captioning.data.scene_metrics import (chance_accuracy, group_breakdown, object_breakdown, scene_description,
                                           split_breakdown, unseen_pair_colours)
from captioning.data.scenes import (COLOURS, SHAPES, attribute_accuracy, attribute_report, bound_objects,
                                    sizeless_references, strict_report)
from captioning.data.shape_captions import PAIR, RELATION_WORDS, ROW, SINGLE, SIZE_SYNONYMS, describe
from captioning.data.shapes import sample_scene
from captioning.text.tokenizer import tokenize


def obj(colour, shape, size="large"):
    return {"colour": colour, "shape": shape, "size": size}


ONE = {"objects": [obj("red", "circle")], "position": "left", "relation": None}
# large red circle left of small blue square
TWO = {"objects": [obj("red", "circle"), obj("blue", "square", "small")], "position": None,
       "relation": {"axis": "horizontal", "order": [0, 1]}}  # fmt: skip
# top to bottom: large red circle, small green star, large blue cross
THREE = {"objects": [obj("green", "star", "small"), obj("red", "circle"), obj("blue", "cross")], "position": None,
         "relation": {"axis": "vertical", "order": [1, 0, 2]}}  # fmt: skip


def judge(scene, caption, sizeless_ok=False):
    return strict_report(scene, caption, sizeless_ok), bound_objects(scene, caption, sizeless_ok)


# --- swapped bindings --------------------------------------------------------------------------------


@pytest.mark.parametrize("caption", [
    "blue circle left of red square",  # the example (no sizes)
    "a large blue circle left of a small red square",  # colours swapped
    "a large red square left of a small blue circle",  # shapes swapped
    "a large blue square left of a small red circle",  # colour and shape moved together, sizes not
    "a small red circle left of a large blue square",  # sizes swapped
    "a small red circle and a large blue square to the right of it",
])  # fmt: skip
def test_swapped_binding_binds_nothing_and_earns_no_relation(caption):
    report, bound = judge(TWO, caption)
    assert bound == [False, False] and report == {"binding": 0.0, "relation_strict": False, "scene": False}
    assert attribute_report(TWO, caption)["count"] is True


def test_swapped_colours_still_pass_the_lenient_relation():
    """What the strict scorer fixes: the old judgement counts the swap as one colour error only."""
    old = attribute_report(TWO, "a large blue circle left of a small red square")
    assert old["shape"] and old["size"] and old["relation"] and not old["colour"]


def test_matching_ignores_relations():
    # right objects, wrong order: bound, but no relation credit (the lenient matching could re-pair)
    report, bound = judge(TWO, "a small blue square left of a large red circle")
    assert bound == [True, True] and report == {"binding": 1.0, "relation_strict": False, "scene": False}
    # one object right, one with a swapped shape: only the right one is bound; the relation between them fails
    report, bound = judge(TWO, "a large red circle left of a small blue circle")
    assert bound == [True, False] and report["binding"] == 0.5 and report["relation_strict"] is False


# --- correct captions and paraphrases ----------------------------------------------------------------

CORRECT = {
    "one": (ONE, [
        "a large red circle on the left", "there is a big red circle on the left side",
        "in the left half , there is a large red circle", "the image shows a large red circle in the left half",
        "a single big red circle on the left", "one large red circle on the left",
        "a large red circle in the left part of the image",
        # paraphrases the generator does not write
        "A big, red circle at the left.", "on the left there is one large red circle",
        "the only shape is a large red circle on the left side of the image",
    ]),
    "two": (TWO, [
        "a large red circle left of a small blue square",
        "there is a big red circle to the left of a little blue square",
        "two shapes , a small blue square right of a large red circle",
        "a small blue square and a big red circle to the left of it",
        "the image shows a large red circle to the left of a small blue square",
        "two objects , a little blue square to the right of a large red circle",
        # paraphrases
        "Two shapes: a big, red circle to the left of a little, blue square.",
        "the large red circle is to the left of the small blue square",
        "a small blue square is right of a large red circle",
    ]),
    "three": (THREE, [
        "three shapes from top to bottom , large red circle , small green star and large blue cross",
        "top to bottom , big red circle , little green star , large blue cross",
        "large blue cross , small green star and large red circle from bottom to top",
        "three objects , bottom to top , large blue cross , small green star , big red circle",
        "three shapes , large red circle , small green star , large blue cross , from top to bottom",
        # paraphrases
        "a large red circle above a small green star above a large blue cross",
        "a large blue cross below a small green star and a large red circle above it",
        "From top to bottom: a large red circle, a small green star and a large blue cross.",
    ]),
}  # fmt: skip


@pytest.mark.parametrize("scene, caption", [(s, c) for s, caps in CORRECT.values() for c in caps])
def test_correct_captions_and_paraphrases(scene, caption):
    report, bound = judge(scene, caption)
    assert all(bound), caption
    assert report["binding"] == 1.0 and report["scene"] is True, (caption, report)
    assert report["relation_strict"] is (None if len(scene["objects"]) == 1 else True)


# --- hallucinated, missing, miscounted ---------------------------------------------------------------


@pytest.mark.parametrize("scene, caption, binding, relation", [
    (TWO, "a large red circle left of a small blue square and a small green star", 1.0, True),
    (TWO, "a large red circle left of a small blue square and a large red circle", 1.0, True),  # a duplicate
    (ONE, "a large red circle on the left and a small blue square", 1.0, None),
    # a relation to a hallucinated object earns nothing, even when the scene's objects are all there
    (TWO, "a large red circle left of a small green star and a small blue square", 1.0, False),
    (THREE, "top to bottom , large red circle , small green star , large blue cross , small red star", 1.0, False),
])  # fmt: skip
def test_hallucinated_objects_fail_count_and_scene_only(scene, caption, binding, relation):
    report = strict_report(scene, caption)
    assert report == {"binding": binding, "relation_strict": relation, "scene": False}
    assert attribute_report(scene, caption)["count"] is False


@pytest.mark.parametrize("scene, caption, bound, relation", [
    (TWO, "a large red circle on the left", [True, False], False),
    (TWO, "", [False, False], False),
    (ONE, "", [False], None),
    (ONE, "there is nothing on the left", [False], None),
    # a true but partial order: the neighbours star-cross are never related
    (THREE, "a large red circle above a small green star", [True, True, False], False),
    (THREE, "three shapes , a large red circle above a small green star and a large blue cross",
     [True, True, True], False),
    (THREE, "top to bottom , large red circle , large blue cross", [False, True, True], False),
])  # fmt: skip
def test_missing_objects_are_unbound(scene, caption, bound, relation):
    report, got = judge(scene, caption)
    assert got == bound and report["binding"] == pytest.approx(sum(bound) / len(bound))
    assert report["relation_strict"] is relation and report["scene"] is False


@pytest.mark.parametrize("scene, caption", [
    (ONE, "two shapes , a large red circle on the left"),
    (ONE, "three objects , a large red circle in the left half"),
    (TWO, "three shapes , a large red circle left of a small blue square"),
    (TWO, "one large red circle left of a small blue square"),
    (THREE, "two shapes from top to bottom , large red circle , small green star and large blue cross"),
])  # fmt: skip
def test_wrong_count_word_fails_scene_only(scene, caption):
    report = strict_report(scene, caption)
    assert report["binding"] == 1.0 and report["scene"] is False
    assert report["relation_strict"] is (None if len(scene["objects"]) == 1 else True)


def test_wrong_position_or_axis_fails_scene():
    assert strict_report(ONE, "a large red circle on the right")["scene"] is False
    assert strict_report(ONE, "a large red circle")["scene"] is False
    assert strict_report(TWO, "a large red circle above a small blue square")["relation_strict"] is False
    assert strict_report(TWO, "a large red circle and a small blue square")["relation_strict"] is False


# --- size omission -----------------------------------------------------------------------------------


def test_omitted_size_is_wrong_unless_the_references_never_state_size():
    assert strict_report(TWO, "a red circle left of a blue square")["binding"] == 0.0
    assert strict_report(TWO, "a red circle left of a blue square", sizeless_ok=True) == {
        "binding": 1.0, "relation_strict": True, "scene": True}  # fmt: skip
    # a caption that states some sizes is held to all of them; a stated size must be right
    assert bound_objects(TWO, "a large red circle left of a blue square", sizeless_ok=True) == [True, False]
    assert bound_objects(TWO, "a small red circle left of a blue square", sizeless_ok=True) == [False, False]
    # which phrasings the references use decides
    assert not sizeless_references(["a large red circle on the left", "a big red circle on the left"])
    assert sizeless_references(["a large red circle on the left", "a red circle on the left"])
    assert not sizeless_references([]) and not sizeless_references(["nothing here"])
    records = [ImageRecord(1, "a", ["a red circle left of a blue square"], TWO),
               ImageRecord(2, "b", ["a large red circle left of a small blue square"], TWO)]  # fmt: skip
    sizeless = "a red circle left of a blue square"
    acc = attribute_accuracy(records, {1: sizeless, 2: sizeless})
    assert acc["binding"] == 0.5 and acc["scene"] == 0.5 and acc["size"] == 0.0  # acc_size unchanged


# --- aggregation and the run's metrics ---------------------------------------------------------------


def test_attribute_accuracy_adds_strict_keys_and_keeps_the_old_ones():
    records = [ImageRecord(1, "a", [], ONE), ImageRecord(2, "b", [], TWO), ImageRecord(3, "c", [], THREE)]
    hyps = {1: "a large red circle on the left",
            2: "a large blue circle left of a small red square",
            3: "a large red circle above a small green star"}  # fmt: skip
    acc = attribute_accuracy(records, hyps, per_count=True)
    assert list(acc)[:7] == ["count", "colour", "shape", "size", "position", "relation", "all"]
    assert acc["relation"] == 1.0 and acc["colour"] == 1 / 3
    assert acc["binding"] == pytest.approx((1 + 0 + 2 / 3) / 3)
    assert acc["relation_strict"] == 0.0 and acc["scene"] == 1 / 3
    assert acc["binding@3"] == pytest.approx(2 / 3) and acc["scene@1"] == 1.0 and "relation_strict@1" not in acc


def test_run_metrics_get_strict_columns(tmp_path):
    """evaluate_split writes ``acc_<key>`` for every key of attribute_accuracy into a run's metrics."""
    from captioning.evaluation.scoring import evaluate_split

    record = ImageRecord(2, str(tmp_path / "b.png"), ["a large red circle left of a small blue square"], TWO)
    metrics = evaluate_split([record], {2: "a large red circle left of a small blue square"}, tmp_path, "test",
                             {"cider": False, "rouge": False, "per_image_cider": False, "rank_by": "Bleu_4"})
    assert {"acc_binding", "acc_relation_strict", "acc_scene", "acc_colour", "acc_relation"} <= set(metrics)
    assert metrics["acc_scene"] == 1.0


# --- ceiling: every reference phrasing parses back to its own scene ----------------------------------


def scenes_of(n, count):
    """``count`` random scenes of n objects over every colour and shape the parser knows."""
    pairs = list(itertools.product(COLOURS, SHAPES))
    probs = [1.0 if k == n else 0.0 for k in range(1, n + 1)]
    return [sample_scene(random.Random(f"ceiling/{n}/{i}"), pairs, probs, 128) for i in range(count)]


def test_every_reference_phrasing_scores_scene_one():
    templates = {1: SINGLE, 2: PAIR, 3: ROW}
    records, hyps, words = [], {}, set()
    for n, family in templates.items():
        for i, scene in enumerate(scenes_of(n, 150)):
            rng = random.Random(i)
            for caption in describe(scene, rng, 2 * len(family)):  # every template, some twice
                report = strict_report(scene, caption)
                assert report["scene"] is True and report["binding"] == 1.0, (scene, caption, report)
                image_id = len(records)
                records.append(ImageRecord(image_id, "", [caption], scene))
                hyps[image_id] = caption
                words.update(tokenize(caption))
    acc = attribute_accuracy(records, hyps, per_count=True)
    assert acc["scene"] == acc["binding"] == acc["relation_strict"] == 1.0
    assert acc["scene@1"] == acc["scene@2"] == acc["scene@3"] == 1.0
    # the synonyms were exercised too
    synonyms = {w for group in SIZE_SYNONYMS.values() for w in group}
    synonyms |= {w for group in RELATION_WORDS.values() for phrase in group for w in phrase.split()}
    assert synonyms <= words and {"top", "bottom", "left", "right", "from"} <= words


# --- chance line -------------------------------------------------------------------------------------


def toy_scene(objects, position=None, axis=None):
    relation = {"axis": axis, "order": list(range(len(objects)))} if axis else None
    return {"objects": objects, "position": position, "relation": relation}


TOY_TRAIN = [
    ImageRecord(1, "", [], toy_scene([obj("red", "circle")], position="left")),
    ImageRecord(2, "", [], toy_scene([obj("red", "square", "small"), obj("blue", "circle")], axis="horizontal")),
    ImageRecord(3, "", ["no scene"], None),
]
TOY_EVAL = [
    ImageRecord(4, "", [], toy_scene([obj("blue", "circle")], position="left")),
    ImageRecord(5, "", [], toy_scene([obj("red", "circle"), obj("blue", "circle")], axis="horizontal")),
]


def test_chance_by_training_frequencies_on_a_toy_distribution():
    """Training: 1- and 2-object scenes (1/2 each); objects red circle L, red square S, blue circle L, so
    P(red) = 2/3, P(blue) = 1/3, P(circle) = 2/3, P(large) = 2/3, each (colour, shape, size) 1/3; position
    left (1); axis horizontal (1)."""
    chance = chance_accuracy(TOY_TRAIN, TOY_EVAL)
    third = Fraction(1, 3)
    expected = {
        "count": (Fraction(1, 2) + Fraction(1, 2)) / 2,
        "colour": (third + 2 * third * third) / 2,  # blue; red and blue
        "shape": (2 * third + 4 * third * third) / 2,  # circle; circle and circle
        "size": (2 * third + 4 * third * third) / 2,
        "position": Fraction(1),
        "relation": Fraction(1, 2),  # axis 1, order 1 / 2!
        "binding": (third + third) / 2,
        "relation_strict": third * third / 2,
        "scene": (Fraction(1, 2) * third * 1 + Fraction(1, 2) * third * third / 2) / 2,
    }
    assert chance == pytest.approx({k: float(v) for k, v in expected.items()})
    assert chance["scene"] == pytest.approx(7 / 72) and chance["colour"] == pytest.approx(5 / 18)


def test_chance_by_majority_guess_on_a_toy_distribution():
    # modes: count 1 (tie with 2: the smaller), red, circle, large, object (blue, circle, large) (a
    # three-way tie: the smallest), left, horizontal
    chance = chance_accuracy(TOY_TRAIN, TOY_EVAL, guess="majority")
    assert chance == pytest.approx({"count": 0.5, "colour": 0.0, "shape": 1.0, "size": 1.0, "position": 1.0,
                                    "relation": 0.5, "binding": 0.75, "relation_strict": 0.0, "scene": 0.5})


def test_chance_needs_training_scenes_and_a_known_guess():
    with pytest.raises(ValueError, match="no training records with scenes"):
        chance_accuracy([ImageRecord(1, "", ["x"], None)], TOY_EVAL)
    with pytest.raises(ValueError, match="guess must be one of"):
        chance_accuracy(TOY_TRAIN, TOY_EVAL, guess="mode")
    # a colour-shape pair never seen in training cannot be bound by chance
    novel = [ImageRecord(9, "", [], toy_scene([obj("green", "star")], position="left"))]
    assert chance_accuracy(TOY_TRAIN, novel)["binding"] == 0.0


# --- breakdown by object count and by novelty --------------------------------------------------------


def test_split_breakdown_by_count_and_by_seen_description():
    train = [ImageRecord(1, "", [], ONE), ImageRecord(2, "", [], TWO)]
    flipped = {**TWO, "relation": {"axis": "horizontal", "order": [1, 0]}}  # same objects, other order
    records = [ImageRecord(3, "", [], ONE), ImageRecord(4, "", [], flipped), ImageRecord(5, "", [], THREE)]
    hyps = {3: "a large red circle on the left", 4: "a small blue square left of a large red circle",
            5: "a large red circle above a small green star"}  # fmt: skip
    assert scene_description(TWO) != scene_description(flipped)
    out = split_breakdown(records, hyps, train)
    assert set(out) == {"objects=1", "objects=2", "objects=3", "seen_in_train", "unseen_in_train",
                        "seen_in_train@1", "unseen_in_train@2", "unseen_in_train@3"}  # fmt: skip
    assert out["seen_in_train"]["images"] == 1 and out["seen_in_train"]["scene"] == 1.0
    assert out["unseen_in_train"]["images"] == 2 and out["unseen_in_train"]["scene"] == 0.5
    assert out["objects=3"]["binding"] == pytest.approx(2 / 3)


# --- unseen colour-shape pairs: composed or recalled -------------------------------------------------


def test_unseen_pair_colours_tell_composed_from_recalled():
    # training pairs: red circle, blue square; every other colour-shape pair below is unseen
    train = [ImageRecord(1, "", [], ONE), ImageRecord(2, "", [], TWO)]
    blue_circle = {"objects": [obj("blue", "circle")], "position": "left", "relation": None}
    pair = {"objects": [obj("red", "square"), obj("red", "circle")], "position": None,
            "relation": {"axis": "horizontal", "order": [0, 1]}}  # unseen red square beside a seen red circle
    two_circles = {"objects": [obj("green", "circle"), obj("red", "circle")], "position": None,
                   "relation": {"axis": "horizontal", "order": [0, 1]}}  # unseen green circle, seen red circle
    records = [ImageRecord(k, "", [], scene) for k, scene in
               enumerate([blue_circle, blue_circle, blue_circle, blue_circle, pair, two_circles, ONE], start=10)]
    hyps = {10: "a large blue circle on the left",   # composed
            11: "a large red circle on the left",    # recalled: the colour training pairs with circles
            12: "a large green circle on the left",  # another colour, never a circle's in training
            13: "a large blue square on the left",   # no circle named
            14: "a red circle left of a blue square",  # the square recalled as blue; the circle is seen
            15: "a red circle left of a red circle",  # red is the other circle's colour: green one not described
            16: "a large red circle on the left"}  # only seen pairs in this scene: not counted
    out = unseen_pair_colours(records, hyps, train)
    assert out["objects"] == 6
    assert out["composed"] == pytest.approx(1 / 6) and out["recalled"] == pytest.approx(2 / 6)
    assert out["other"] == pytest.approx(1 / 6) and out["not_described"] == pytest.approx(2 / 6)
    # a split with no unseen pair (test, by construction) has nothing to report
    assert unseen_pair_colours([ImageRecord(20, "", [], ONE)], {20: "a red circle"}, train) == {"objects": 0.0}


# --- where the hard splits break: groups of scenes, kinds of objects ------------------------------------


def _row(*objects, axis="horizontal", **extra):
    return {"objects": list(objects), "position": None, "relation": {"axis": axis, "order": list(range(len(objects)))},
            **extra}


LONG = _row(obj("red", "circle"), obj("blue", "square", "small"), obj("green", "star"), obj("yellow", "cross", "small"))
TWINS = _row(obj("red", "circle", "small"), obj("red", "circle"))  # small red circle left of a large one
HELD = _row(obj("red", "square", "small"), obj("blue", "circle"), style={"kind": "noise"})


def test_group_and_object_breakdown_say_where_captions_break():
    records = [ImageRecord(1, "", [], LONG), ImageRecord(2, "", [], TWINS), ImageRecord(3, "", [], HELD)]
    hyps = {1: "from left to right , large red circle , small blue square and large green star",  # stops at 3
            2: "a large red circle left of a small red circle",  # both twins named, their order swapped
            3: "a small red square left of a large blue circle"}
    seen = {("red", "circle"), ("blue", "square"), ("green", "star"), ("yellow", "cross"), ("blue", "circle")}
    groups = group_breakdown(records, hyps, seen)
    assert list(groups) == ["held_out_pair", "objects=2", "objects=4", "style=noise", "twins"]
    assert groups["objects=4"]["images"] == 1 and groups["objects=4"]["scene"] == 0.0
    assert groups["objects=4"]["binding"] == 0.75 and groups["objects=4"]["count"] == 0.0
    assert groups["twins"]["binding"] == 1.0 and groups["twins"]["relation_strict"] == 0.0  # bound, misplaced
    assert groups["held_out_pair"]["scene"] == 1.0 and groups["style=noise"]["images"] == 1
    assert groups["objects=2"]["images"] == 2 and groups["objects=2"]["scene"] == 0.5
    assert group_breakdown(records, hyps)["objects=2"] == groups["objects=2"] and "held_out_pair" not in \
        group_breakdown(records, hyps)
    objects = object_breakdown(records, hyps, seen)
    assert list(objects)[0] == "all" and objects["all"]["objects"] == 8
    assert objects["place=4"] == {"objects": 1.0, "bound": 0.0, "colour": 0.0, "shape": 0.0, "size": 0.0}
    assert objects["place=3"]["bound"] == 1.0 and objects["place=1"]["objects"] == 3
    assert objects["twin"] == {"objects": 2.0, "bound": 1.0, "colour": 1.0, "shape": 1.0, "size": 1.0}
    assert objects["held_out_pair"]["objects"] == 1 and objects["held_out_pair"]["bound"] == 1.0
    assert objects["seen_pair"]["objects"] == 7 and objects["all"]["bound"] == 7 / 8
    wrong_size = object_breakdown([records[2]], {3: "a large red square left of a large blue circle"}, seen)
    assert wrong_size["held_out_pair"] == {"objects": 1.0, "bound": 0.0, "colour": 1.0, "shape": 1.0, "size": 0.0}
    with pytest.raises(ValueError, match="no hypothesis for image 3"):
        object_breakdown(records, {1: "", 2: ""})
