"""Probes read scene content from features: perfect on features that encode it, chance on noise."""

import numpy as np

from captioning.data.coco import ImageRecord
import pytest

from captioning.evaluation.probes import channel_span, probe_attributes, probe_scenes, slot_targets

COLOURS, SHAPES = ["red", "green", "blue"], ["circle", "square"]


def scenes(n_images, seed):
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n_images):
        n = int(rng.integers(1, 3))
        objects = [{"colour": COLOURS[rng.integers(3)], "shape": SHAPES[rng.integers(2)],
                    "x": float(rng.uniform(0, 128)), "y": float(rng.uniform(0, 128))} for _ in range(n)]
        relation = {"axis": "horizontal" if rng.random() < 0.5 else "vertical"} if n > 1 else None
        records.append(ImageRecord(image_id=i, path=f"{i}.png", captions=["x"],
                                   scene={"objects": objects, "relation": relation}))
    return records


def without(records, pair):
    """The records none of whose objects is that colour-shape pair (a training split that never shows it)."""
    return [r for r in records if all((o["colour"], o["shape"]) != pair for o in r.scene["objects"])]


def one_hot_slots(records, classes, class_of, noise, seed):
    """A feature that holds every slot's class (``class_of(object)``, one of ``classes``) one-hot, in order along
    the scene's axis (n <= 2 slots), plus noise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, noise, (len(records), 2 * len(classes))).astype(np.float32)
    for row, r in enumerate(records):
        axis = (r.scene["relation"] or {}).get("axis")
        ordered = sorted(r.scene["objects"], key=lambda o: o["y"] if axis == "vertical" else o["x"])
        for slot, o in enumerate(ordered):
            x[row, slot * len(classes) + classes.index(class_of(o))] += 1.0
    return x


def encode_colours(records, noise, seed):
    """A feature that holds every slot's colour and nothing of its shape."""
    return one_hot_slots(records, COLOURS, lambda o: o["colour"], noise, seed)


def encode(records, pairs, noise, seed):
    """A feature that holds every slot's colour-shape pair, each pair its own direction."""
    return one_hot_slots(records, pairs, lambda o: (o["colour"], o["shape"]), noise, seed)


def test_slot_targets_follow_the_relation_axis():
    pairs = [(c, s) for c in COLOURS for s in SHAPES]
    left_below = {"colour": "red", "shape": "circle", "x": 10.0, "y": 100.0}
    right_above = {"colour": "blue", "shape": "square", "x": 90.0, "y": 5.0}
    horizontal = ImageRecord(0, "a", ["x"], {"objects": [right_above, left_below], "relation": {"axis": "horizontal"}})
    vertical = ImageRecord(1, "b", ["x"], {"objects": [left_below, right_above], "relation": {"axis": "vertical"}})
    rows, y = slot_targets([horizontal, vertical], 2, pairs)
    red, blue = pairs.index(("red", "circle")), pairs.index(("blue", "square"))
    assert rows.tolist() == [0, 1] and y.tolist() == [[red, blue], [blue, red]]


def test_probes_find_what_the_feature_holds_and_nothing_more():
    train, test = scenes(600, 0), scenes(200, 1)
    pairs = sorted({(o["colour"], o["shape"]) for r in train + test for o in r.scene["objects"]})
    held = probe_scenes(train, encode(train, pairs, 0.1, 2), test, encode(test, pairs, 0.1, 3), epochs=200)
    assert set(held) == {1, 2} and all(r["all"] > 0.95 for r in held.values())
    rng = np.random.default_rng(4)
    noise = probe_scenes(train, rng.normal(size=(600, 12)), test, rng.normal(size=(200, 12)), epochs=200)
    assert noise[2]["all"] < 0.2  # 6 pairs per slot: chance for both slots is 1/36
    # the perceptron probe learns the same
    mlp = probe_scenes(train, encode(train, pairs, 0.1, 2), test, encode(test, pairs, 0.1, 3), hidden=32, epochs=200)
    assert mlp[2]["all"] > 0.9


def test_probes_score_each_shifted_style_apart():
    """A shifted split's scenes carry a drawing style: the probe trained on clean features is scored per style.
    Here the "outline" images keep the feature and the "noise" images lose it (pure noise): the outline share is
    right, the noise share near chance, and the two shares' sizes add up to the count's test scenes."""
    train, test = scenes(600, 0), scenes(200, 1)
    pairs = sorted({(o["colour"], o["shape"]) for r in train + test for o in r.scene["objects"]})
    x_test = encode(test, pairs, 0.1, 3)
    rng = np.random.default_rng(5)
    for row, r in enumerate(test):
        kind = "noise" if row % 2 else "outline"
        r.scene["style"] = {"kind": kind}
        if kind == "noise":
            x_test[row] = rng.normal(size=x_test.shape[1])
    held = probe_scenes(train, encode(train, pairs, 0.1, 2), test, x_test, epochs=200)
    for n in (1, 2):
        styles = held[n]["styles"]
        assert set(styles) == {"noise", "outline"}
        assert styles["noise"]["test"] + styles["outline"]["test"] == held[n]["test"]
        assert styles["outline"]["all"] > 0.95 and styles["noise"]["all"] < 0.5
    assert held[2]["styles"]["noise"]["all"] < 0.2  # both slots from noise: chance is 1/36
    plain = probe_scenes(train, encode(train, pairs, 0.1, 2), scenes(200, 1), encode(test, pairs, 0.1, 3), epochs=5)
    assert all("styles" not in r for r in plain.values())  # unshifted splits: no style rows


def test_attribute_probes_score_the_unseen_pairs_apart():
    """Training never shows a red square. From a feature that holds colour alone, the colour probe names the
    test's red squares' colour as well as any other (and the shape probe guesses); from one that holds each pair
    as its own direction, the red-square direction was never active in training, so the probes are right on
    the pairs training shows and wrong on the red squares."""
    pairs = [(c, s) for c in COLOURS for s in SHAPES]
    train, test = without(scenes(900, 0), ("red", "square")), scenes(300, 1)
    colours = probe_attributes(train, encode_colours(train, 0.1, 2), test, encode_colours(test, 0.1, 3), epochs=100)
    paired = probe_attributes(train, encode(train, pairs, 0.1, 2), test, encode(test, pairs, 0.1, 3), epochs=100)
    red_squares = sum((o["colour"], o["shape"]) == ("red", "square") for r in test for o in r.scene["objects"])
    assert set(colours) == {1, 2} and sum(r["unseen"] for r in colours.values()) == red_squares > 40
    for n in (1, 2):
        assert colours[n]["colour"] > 0.95 and colours[n]["colour_unseen"] > 0.95
        assert colours[n]["shape"] < 0.75  # two shapes: chance is a half
        assert paired[n]["colour"] > 0.8 and paired[n]["shape"] > 0.8  # right on the pairs training shows
    assert paired[1]["colour_unseen"] < 0.5 and paired[1]["shape_unseen"] < 0.5  # not on the one it never shows


def test_a_channel_span_probes_the_part_of_a_feature_that_composes():
    """A feature = pair-entangled channels then colour-only ones (an early layer appended to a late one, as
    encoder.hypercolumn does): probe.channels picks the colour-only part, which names the unseen pair's colour."""
    pairs = [(c, s) for c in COLOURS for s in SHAPES]
    train, test = without(scenes(900, 0), ("red", "square")), scenes(300, 1)
    both = [np.concatenate([encode(r, pairs, 0.1, seed), encode_colours(r, 0.1, seed + 1)], axis=1)
            for r, seed in ((train, 2), (test, 4))]
    span = channel_span([2 * len(pairs), 2 * len(pairs) + 2 * len(COLOURS)], both[0].shape[1])
    part = probe_attributes(train, both[0][:, span], test, both[1][:, span], epochs=100)
    assert all(part[n]["colour_unseen"] > 0.95 for n in (1, 2))
    assert channel_span(None, 5) == slice(None)
    for bad in ([3], [4, 2], [0, 6], [-1, 2]):
        with pytest.raises(ValueError, match="not a range of the 5 channels"):
            channel_span(bad, 5)


def test_attribute_probes_on_the_pipelines_records_and_features(tiny_root):
    """On the tiny shapes data's real records and cached features: every object of test_novel is an unseen
    pair (the split is drawn from the held-out pairs), none of val's, and each count's accuracies are fractions."""
    from captioning.features.prepare import prepare
    from captioning.pipeline import run_options
    from tests.conftest import tiny_cfg

    cfg = tiny_cfg(tiny_root)
    p = prepare(run_options(cfg).source, splits_needed=["train", "val", "test_novel"])
    for split, all_unseen in (("test_novel", True), ("val", False)):
        records = p.splits[split]
        results = probe_attributes(p.splits["train"], p.features["train"], records, p.features[split], epochs=2)
        for n, r in results.items():
            objects = sum(len(x.scene["objects"]) for x in records if len(x.scene["objects"]) == n)
            assert r["unseen"] == (objects if all_unseen else 0)
            assert 0 <= r["colour"] <= 1 and 0 <= r["shape"] <= 1
