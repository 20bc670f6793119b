import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from captioning import CONFIG_DIR
from captioning.data.coco import load_coco_captions
from captioning.data.shapes import (DEFAULTS, MARKER, GeneratorSettingsError, generate_shapes, lock_path,
                                     resolve_params)

SPLITS = {"train": 40, "val": 8, "test": 8, "test_novel": 16, "val_novel": 8}
CONFIG = CONFIG_DIR / "data" / "shapes.yaml"


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    return root, generate_shapes(root, splits=SPLITS)


def _digest(root: Path) -> dict[str, str]:
    """Hash of every generated file except the marker (which records the time taken)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != MARKER
    }


def test_coco_format_through_the_loader(generated):
    root, files = generated
    assert list(files) == list(SPLITS)
    records = {s: load_coco_captions(f, root) for s, f in files.items()}  # checks every PNG exists
    assert {s: len(r) for s, r in records.items()} == SPLITS
    ids = [r.image_id for rs in records.values() for r in rs]
    assert len(set(ids)) == len(ids)  # unique across splits
    for r in records["train"][:5]:
        assert len(r.captions) == 5 and len(set(r.captions)) == 5 and r.scene is not None
        with Image.open(r.path) as img:
            assert img.format == "PNG" and img.mode == "RGB" and img.size == (128, 128)


def test_scenes_have_the_promised_structure(generated):
    root, files = generated
    counts = set()
    for split, f in files.items():
        for scene in json.loads(Path(f).read_text())["scenes"].values():
            objs = scene["objects"]
            counts.add(len(objs))
            assert len({(o["colour"], o["shape"]) for o in objs}) == len(objs)  # distinct pairs
            assert (scene["position"] in ("left", "right", "top", "bottom")) == (len(objs) == 1)
            assert (scene["relation"] is None) == (len(objs) == 1)
    assert counts == {1, 2, 3}


def test_novel_split_uses_only_held_out_pairs(generated):
    root, files = generated
    novel = {tuple(p) for p in DEFAULTS["novel_pairs"]}
    pairs = {}
    for split, f in files.items():
        scenes = json.loads(Path(f).read_text())["scenes"].values()
        pairs[split] = {(o["colour"], o["shape"]) for s in scenes for o in s["objects"]}
    assert pairs["test_novel"] <= novel and len(pairs["test_novel"]) >= 4
    assert pairs["val_novel"] <= novel and len(pairs["val_novel"]) >= 3  # where composition choices are made
    assert not pairs["train"] & novel and not pairs["val"] & novel and not pairs["test"] & novel
    scenes = {s: json.loads(Path(files[s]).read_text())["scenes"] for s in ("val_novel", "test_novel")}
    drawn = {s: [json.dumps(v["objects"], sort_keys=True) for v in scenes[s].values()] for s in scenes}
    assert not set(drawn["val_novel"]) & set(drawn["test_novel"])  # other scenes of the same pairs


def test_pixels_match_the_scene(generated):
    """Each object's colour is at its centre, on the side of the canvas its scene says."""
    root, files = generated
    for record in load_coco_captions(files["train"], root):
        img = np.asarray(Image.open(record.path), dtype=int)
        for o in record.scene["objects"]:
            centre = img[int(round(o["y"])), int(round(o["x"]))]
            assert np.abs(centre - o["rgb"]).max() <= 3, (record.path, o)
        if record.scene["position"] in ("left", "right"):
            xs = [o["x"] for o in record.scene["objects"]]
            assert (xs[0] < 64) == (record.scene["position"] == "left")
        arrangement = record.scene["relation"]
        if arrangement:
            key = "x" if arrangement["axis"] == "horizontal" else "y"
            along = [record.scene["objects"][i][key] for i in arrangement["order"]]
            assert along == sorted(along) and min(np.diff(along)) > 30


def test_deterministic_from_the_seed(generated, tmp_path):
    root, _ = generated
    generate_shapes(tmp_path / "again", splits=SPLITS, workers=1)
    assert _digest(tmp_path / "again") == _digest(root)
    generate_shapes(tmp_path / "other", splits=SPLITS, seed=1)
    assert _digest(tmp_path / "other") != _digest(root)


def test_idempotent_and_redraws_only_a_deleted_image(tmp_path):
    small = {"train": 6, "val": 2, "test": 2, "test_novel": 2, "val_novel": 2}
    files = generate_shapes(tmp_path, splits=small)
    png = tmp_path / "images" / "train" / "train_000005.png"
    stamp = png.stat().st_mtime_ns
    assert generate_shapes(tmp_path, splits=small) == files and png.stat().st_mtime_ns == stamp
    os.unlink(tmp_path / "images" / "val" / "val_000001.png")  # a deleted image is noticed and redrawn
    assert generate_shapes(tmp_path, splits=small) == files
    assert (tmp_path / "images" / "val" / "val_000001.png").exists()
    assert png.stat().st_mtime_ns == stamp  # the others keep their bytes and times: cached features stay valid
    marker = json.loads((tmp_path / MARKER).read_text())
    assert marker["params"]["splits"] == small and marker["images"] == 14 and marker["version"] >= 1


@pytest.mark.parametrize("change, said", [
    ({"splits": {"train": 4}}, "generator.splits.train: 6 there, 4 here"),
    ({"seed": 1}, "generator.seed: 0 there, 1 here"),
    ({"splits": {"extra": 2}, "captions_per_image": 2},
     "generator.captions_per_image: 5 there, 2 here; generator.splits.extra: null there, 2 here"),
])  # fmt: skip
def test_other_settings_stop_with_one_line_and_leave_the_folder_as_it_is(tmp_path, change, said):
    """A finished set is never regenerated in place (another run may be reading it): the error names the
    folder, every differing setting and the two ways out."""
    small = {"train": 6, "val": 2, "test": 2, "test_novel": 2, "val_novel": 2}
    generate_shapes(tmp_path / "set", splits=small)
    before = _digest(tmp_path / "set")
    other = {**change, "splits": {**small, **change.get("splits", {})}}
    with pytest.raises(GeneratorSettingsError) as info:
        generate_shapes(tmp_path / "set", **other)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{tmp_path / 'set'} holds shapes data generated with other")
    assert re.search(said, message) and "data.root=" in message and f"delete {tmp_path / 'set'}" in message
    assert _digest(tmp_path / "set") == before
    generate_shapes(tmp_path / "own", **other)  # the fix it names works


def test_a_killed_generation_is_finished_with_the_settings_asked_for(tmp_path):
    small = {"train": 6, "val": 2, "test": 2, "test_novel": 2, "val_novel": 2}
    generate_shapes(tmp_path, splits=small)
    (tmp_path / MARKER).unlink()  # as a kill before the marker leaves it: no set is finished there
    generate_shapes(tmp_path, splits={**small, "train": 4})
    assert not (tmp_path / "images" / "train" / "train_000005.png").exists()  # no image of the old set stays
    assert json.loads((tmp_path / MARKER).read_text())["params"]["splits"]["train"] == 4


def test_the_lock_file_sits_beside_the_folder(tmp_path):
    assert lock_path(tmp_path / "data" / "shapes") == tmp_path / "data" / "shapes.lock"
    generate_shapes(tmp_path / "data" / "shapes", splits={"train": 3, "val": 0, "test": 0, "test_novel": 1,
                                                          "val_novel": 1})
    assert (tmp_path / "data" / "shapes.lock").exists() and not list((tmp_path / "data" / "shapes").glob("*.lock"))


@pytest.mark.parametrize(
    "override, match",
    [
        ({"colour": ["red"]}, "unknown shapes generator parameter"),
        ({"splits": {"train": -1}}, "splits.train"),
        ({"colours": ["red", "mauve"]}, "colours"),
        ({"novel_pairs": [["red", "hexagon"]]}, r"novel_pairs\[0\]"),
        ({"novel_splits": ["nope"]}, "novel_splits: .nope. is not one of the splits.*0 for none"),
        ({"count_probs": [1, 1, 1, 1]}, "count_probs"),
        ({"colours": ["red"], "shapes": ["circle", "square"], "novel_pairs": [["red", "circle"]]}, "fewer than"),
    ],
)
def test_bad_parameters_fail_before_any_work(tmp_path, override, match):
    with pytest.raises(ValueError, match=match):
        generate_shapes(tmp_path, **override)
    assert not any(tmp_path.iterdir())


def test_default_config_matches_code_defaults():
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    import captioning.config  # noqa: F401 (registers the schema captioning/configs/data/shapes.yaml extends)

    with initialize_config_dir(config_dir=str(CONFIG.parents[1]), version_base="1.3"):
        generator = OmegaConf.to_container(compose(overrides=["+data=shapes"]).data.generator)
    generator.pop("workers")
    assert resolve_params(**generator) == resolve_params()
