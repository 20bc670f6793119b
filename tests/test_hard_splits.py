"""The systematic-generalisation splits (captioning/data/hard_scenes.py, configs/data/shapes_hard.yaml)."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from captioning import CONFIG_DIR
from captioning.data.coco import ImageRecord, load_coco_captions
from captioning.data.hard_scenes import HARD_KINDS
from captioning.data.scene_metrics import chance_accuracy
from captioning.data.scenes import attribute_accuracy
from captioning.data.shape_drawing import SHIFT_STYLES, render
from captioning.data.shapes import DEFAULTS, MARKER, generate_shapes, params_hash, resolve_params, split_scenes
from captioning.text.tokenizer import tokenize

DEFAULT_SPLITS = ("train", "val", "test", "test_novel", "val_novel")
HARD = {f"{prefix}_{kind}": kind for kind in HARD_KINDS for prefix in ("val", "test")}
SHIFTED_FROM = {"val_shifted": "val", "test_shifted": "test"}  # as in configs/data/shapes_hard.yaml
NOVEL = {tuple(pair) for pair in DEFAULTS["novel_pairs"]}
# Computed with the generator of commit 326fe51 (before the hard splits): the parameter hashes of
# data=shapes and data=shapes_tiny, and per default split a digest of the first 40 scenes, their
# captions and their pixels (decoded pixels, not PNG bytes, so that another zlib cannot fail the test;
# test_adding_hard_splits_leaves_every_other_file_as_it_was compares the PNG bytes).
MAIN_HASHES = {"shapes": "950e2b3c4adf870b", "shapes_tiny": "a2d06f00582d0cc1"}
MAIN_DIGESTS = {
    "train": "7ecf55bda70699b4f487de0a",
    "val": "0d5026c91219a1b6a4c0913c",
    "test": "3a9006b753474836e4a9dc5b",
    "test_novel": "ce9c739a15b25f8fdf0c27c6",
    "val_novel": "5f79ef71c8e2992787a8ef87",
}


def _compose(name: str) -> dict:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    import captioning.config  # noqa: F401 (registers the schema the data configs extend)

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        generator = OmegaConf.to_container(compose(overrides=[f"+data={name}"]).data.generator)
    generator.pop("workers")
    return resolve_params(**generator)


@pytest.fixture(scope="module")
def train():
    """The default training set's scenes and captions (all 10000, drawn without rendering)."""
    return split_scenes(resolve_params(), "train")


@pytest.fixture(scope="module")
def hard():
    """200 scenes of each hard split, as data=shapes_hard draws them."""
    p = resolve_params(splits={"train": 0, "val": 0, "test": 0, **{s: 200 for s in HARD}}, hard_splits=HARD,
                       novel_splits=[], shifted_from=SHIFTED_FROM)
    return p, {s: split_scenes(p, s) for s in HARD}


def test_existing_splits_and_hashes_are_those_of_before(train):
    assert params_hash(_compose("shapes")) == MAIN_HASHES["shapes"]
    assert params_hash(_compose("shapes_tiny")) == MAIN_HASHES["shapes_tiny"]
    p = resolve_params(splits={s: 40 for s in DEFAULT_SPLITS})
    for split in DEFAULT_SPLITS:
        h = hashlib.sha256()
        for scene, caps in zip(*split_scenes(p, split)):
            h.update(json.dumps([scene, caps], sort_keys=True).encode())
            h.update(render(scene, p["image_size"]).tobytes())
        assert h.hexdigest()[:24] == MAIN_DIGESTS[split], split
    assert train[0][:40] == split_scenes(p, "train")[0]  # an image depends on its index, not the split's size


def test_shapes_hard_config_extends_the_default_data():
    default, hard = _compose("shapes"), _compose("shapes_hard")
    assert {s: hard["splits"][s] for s in DEFAULT_SPLITS} == default["splits"]
    assert list(hard["splits"])[: len(DEFAULT_SPLITS)] == list(DEFAULT_SPLITS)  # so the same image ids
    assert hard["hard_splits"] == HARD and set(HARD) <= set(hard["splits"])
    assert hard["shifted_from"] == {"val_shifted": "val", "test_shifted": "test"}
    own = ("splits", "hard_splits", "shifted_from")
    assert {k: v for k, v in hard.items() if k not in own} == {k: v for k, v in default.items() if k not in own}
    assert params_hash(hard) != params_hash(default)  # its own folder and feature cache


def test_adding_hard_splits_leaves_every_other_file_as_it_was(tmp_path):
    small = {"train": 6, "val": 2, "test": 2, "test_novel": 2, "val_novel": 2}
    generate_shapes(tmp_path / "plain", workers=0, splits=small)
    kinds = {"test_long": "long", "val_shifted": "shifted"}
    generate_shapes(tmp_path / "hard", workers=0, splits={**small, "test_long": 3, "val_shifted": 3}, hard_splits=kinds)
    for path in sorted((tmp_path / "plain").rglob("*")):
        if path.is_file() and path.name != MARKER:
            assert path.read_bytes() == (tmp_path / "hard" / path.relative_to(tmp_path / "plain")).read_bytes(), path
    marker = json.loads((tmp_path / "plain" / MARKER).read_text())
    assert not {"hard_splits", "shift_styles", "shifted_from"} & set(marker["params"])


def test_a_shifted_split_redraws_its_source_image_for_image():
    p = resolve_params(splits={"train": 0, "test": 30, "test_shifted": 30, "val_novel": 0, "test_novel": 0, "val": 0},
                       hard_splits={"test_shifted": "shifted"}, shifted_from={"test_shifted": "test"})
    (plain, plain_caps), (shifted, shifted_caps) = split_scenes(p, "test"), split_scenes(p, "test_shifted")
    assert shifted_caps == plain_caps and {s["style"]["kind"] for s in shifted} == set(SHIFT_STYLES)
    for a, b in zip(plain, shifted):
        geometry = ("x", "y", "angle")  # only the rotated style turns the scene
        if b["style"]["kind"] != "rotated":
            assert {k: v for k, v in b.items() if k != "style"} == a
        assert [{k: v for k, v in o.items() if k not in geometry} for o in a["objects"]] == \
            [{k: v for k, v in o.items() if k not in geometry} for o in b["objects"]]
        assert _ordered(b) and _inside_and_apart(b, p["image_size"])


def test_each_hard_split_is_deterministic_and_its_own(tmp_path, hard):
    p, drawn = hard
    again = resolve_params(splits={"train": 0, "val": 0, "test": 0, **{s: 5 for s in HARD}}, hard_splits=HARD,
                           novel_splits=[], shifted_from=SHIFTED_FROM)
    for split in HARD:
        assert split_scenes(again, split) == (drawn[split][0][:5], drawn[split][1][:5]), split
    for kind in HARD_KINDS:  # the val twin holds other scenes of the same kind
        assert drawn[f"val_{kind}"][0][:20] != drawn[f"test_{kind}"][0][:20]
    kinds = {"test_long": "long", "test_shifted": "shifted"}
    files = [generate_shapes(tmp_path / name, workers=0, splits={"train": 1, "test_long": 3, "test_shifted": 4},
                             hard_splits=kinds, novel_splits=[]) for name in ("a", "b")]
    for split in kinds:
        for name in (f"{split}_{i:06d}.png" for i in range(3)):
            a, b = (tmp_path / d / "images" / split / name for d in ("a", "b"))
            assert a.read_bytes() == b.read_bytes()
        assert Path(files[0][split]).read_bytes() == Path(files[1][split]).read_bytes()


def _inside_and_apart(scene: dict, size: int) -> bool:
    objs = scene["objects"]
    inside = all(o["r"] <= o["x"] <= size - o["r"] and o["r"] <= o["y"] <= size - o["r"] for o in objs)
    apart = all(np.hypot(a["x"] - b["x"], a["y"] - b["y"]) > a["r"] + b["r"]
                for i, a in enumerate(objs) for b in objs[i + 1:])
    return inside and apart


def _ordered(scene: dict) -> bool:
    """The scene's arrangement (or lone position) agrees with its objects' coordinates."""
    objs, size = scene["objects"], 128
    if scene["relation"] is None:
        o = objs[0]
        return {"left": o["x"] < size / 2, "right": o["x"] > size / 2, "top": o["y"] < size / 2,
                "bottom": o["y"] > size / 2}[scene["position"]]  # fmt: skip
    key = "x" if scene["relation"]["axis"] == "horizontal" else "y"
    along = [objs[i][key] for i in scene["relation"]["order"]]
    return along == sorted(along)


def test_hard_scenes_have_the_promised_structure(hard):
    p, drawn = hard
    for split, kind in HARD.items():
        scenes = drawn[split][0]
        counts = {len(s["objects"]) for s in scenes}
        assert counts == {"long": {4, 5}, "triples": {2, 3}, "twins": {2, 3}, "shifted": {1, 2, 3}}[kind], split
        for s in scenes:
            assert _inside_and_apart(s, p["image_size"]) and _ordered(s), (split, s)
            pairs = [(o["colour"], o["shape"]) for o in s["objects"]]
            held_out = [pair for pair in pairs if pair in NOVEL]
            assert len(held_out) == (1 if kind == "triples" else 0), (split, s)
            repeated = [pair for pair in set(pairs) if pairs.count(pair) > 1]
            assert len(repeated) == (1 if kind == "twins" else 0), (split, s)
            if kind == "twins":
                twins = [o["size"] for o in s["objects"] if (o["colour"], o["shape"]) == repeated[0]]
                assert sorted(twins) == ["large", "small"]
            assert ("style" in s) == (kind == "shifted")
        if kind == "shifted":
            assert {s["style"]["kind"] for s in scenes} == set(SHIFT_STYLES)


def test_held_out_structure_is_absent_from_training(train, hard):
    """No training scene has 4+ objects, a held-out triple or two objects of one colour and shape; every word
    of the hard splits' captions occurs in the training captions."""
    scenes, captions = train
    assert max(len(s["objects"]) for s in scenes) == 3
    triples = {(o["colour"], o["shape"], o["size"]) for s in scenes for o in s["objects"]}
    assert all(len({(o["colour"], o["shape"]) for o in s["objects"]}) == len(s["objects"]) for s in scenes)
    vocabulary = {w for caps in captions for c in caps for w in tokenize(c)}
    _, drawn = hard
    for split, kind in HARD.items():
        objects = [o for s in drawn[split][0] for o in s["objects"]]
        unseen = [o for o in objects if (o["colour"], o["shape"], o["size"]) not in triples]
        assert len(unseen) == (len(drawn[split][0]) if kind == "triples" else 0), split
        words = {w for caps in drawn[split][1] for c in caps for w in tokenize(c)}
        assert words <= vocabulary, (split, words - vocabulary)
    # why triples need a held-out pair: every seen colour-shape-size triple is a training one
    seen = {(c, s) for c in DEFAULTS["colours"] for s in DEFAULTS["shapes"]} - NOVEL
    assert triples == {(c, s, z) for c, s in seen for z in ("small", "large")}
    # and why the held-out relation is between twins: every shape stands before every shape on both axes
    related = set()
    for s in scenes:
        if s["relation"]:
            ordered = [s["objects"][i]["shape"] for i in s["relation"]["order"]]
            related |= {(a, s["relation"]["axis"], b) for a, b in zip(ordered, ordered[1:])}
    shapes = DEFAULTS["shapes"]
    assert related == {(a, axis, b) for a in shapes for b in shapes for axis in ("horizontal", "vertical")}


def test_long_captions_name_no_count_and_outrun_training(train, hard):
    _, drawn = hard
    longest = max(len(tokenize(c)) for caps in train[1] for c in caps)
    lengths = [len(tokenize(c)) for split in ("val_long", "test_long") for caps in drawn[split][1] for c in caps]
    assert longest == 16 and max(lengths) > 20 and min(lengths) >= 15
    for split in ("val_long", "test_long"):
        assert not any(w in ("four", "five") for caps in drawn[split][1] for c in caps for w in tokenize(c))


def test_ceiling_is_one_and_chance_is_computable(train, hard):
    """Every reference phrasing, scored as the caption by the judge, is right; the chance line is defined."""
    train_records = [ImageRecord(i, "", caps, s) for i, (s, caps) in enumerate(zip(*train))]
    _, drawn = hard
    for split in HARD:
        records = [ImageRecord(i, "", caps, s) for i, (s, caps) in enumerate(zip(*drawn[split]))][:60]
        for k in (0, 4):
            acc = attribute_accuracy(records, {r.image_id: r.captions[k] for r in records})
            assert acc["scene"] == 1.0 and acc["binding"] == 1.0, (split, k, acc)
        chance = chance_accuracy(train_records, records)
        assert 0 <= chance["scene"] < 0.01 and chance["count"] == (0.0 if split.endswith("_long") else chance["count"])
    long_chance = chance_accuracy(train_records, [ImageRecord(0, "", c, s) for s, c in zip(*drawn["test_long"])])
    assert long_chance["count"] == 0.0  # no training scene has 4 or 5 objects


def test_shifted_images_differ_from_the_plain_drawing(hard):
    p, drawn = hard
    by_style = {}
    for scene in drawn["test_shifted"][0]:
        by_style.setdefault(scene["style"]["kind"], scene)
    for kind, scene in by_style.items():
        shifted = np.asarray(render(scene, 128), dtype=int)
        plain = np.asarray(render({k: v for k, v in scene.items() if k != "style"}, 128), dtype=int)
        assert (np.abs(shifted - plain).max() > 0) == (kind != "rotated"), kind  # rotated: geometry, not drawing
        for o in scene["objects"]:  # each object keeps its colour at its centre
            centre = shifted[int(round(o["y"])), int(round(o["x"]))]
            assert np.abs(centre - o["rgb"]).max() <= (50 if kind == "noise" else 3), (kind, o)


def test_hard_split_images_through_the_loader(tmp_path):
    kinds = {"test_long": "long", "test_twins": "twins"}
    files = generate_shapes(tmp_path, workers=0, splits={"train": 2, "test_long": 3, "test_twins": 3},
                            hard_splits=kinds, novel_splits=[])
    for split in kinds:
        for record in load_coco_captions(files[split], tmp_path):
            img = np.asarray(Image.open(record.path), dtype=int)
            for o in record.scene["objects"]:
                assert np.abs(img[int(round(o["y"])), int(round(o["x"]))] - o["rgb"]).max() <= 3


@pytest.mark.parametrize("override, match", [
    ({"hard_splits": {"nope": "long"}}, r"hard_splits.nope: 'nope' is not one of the splits"),
    ({"hard_splits": {"test": "longer"}}, "unknown kind 'longer'"),
    ({"hard_splits": {"test_novel": "long"}}, "either novel"),
    ({"shift_styles": ["blur"]}, "shift_styles"),
    ({"shift_styles": []}, "shift_styles"),
    ({"shifted_from": {"test": "val"}}, r"shifted_from.test: 'test' is not a shifted split"),
    ({"splits": {**DEFAULTS["splits"], "x": 2}, "hard_splits": {"x": "shifted"}, "shifted_from": {"x": "nope"}},
     r"shifted_from.x: 'nope' must be one of the splits that are not hard"),
])  # fmt: skip
def test_bad_hard_split_parameters_fail_before_any_work(tmp_path, override, match):
    with pytest.raises(ValueError, match=match):
        generate_shapes(tmp_path, **override)
    assert not any(tmp_path.iterdir())
