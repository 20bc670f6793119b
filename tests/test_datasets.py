import copy
import functools
import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from captioning import CONFIG_DIR
from captioning.data.coco import MissingImagesError
from captioning.data.datasets import DataConfigError, load_dataset, validate_data_config

CONFIGS = CONFIG_DIR
NAMES = sorted(p.stem for p in (CONFIGS / "data").glob("*.yaml"))


@functools.lru_cache(maxsize=None)
def _composed(name: str):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base=None):
        return compose(overrides=[f"+data={name}"]).data


def data_config(name: str, *overrides: str):
    """captioning/configs/data/<name>.yaml as Hydra composes it, with ``key=value`` overrides."""
    cfg = copy.deepcopy(_composed(name))
    for override in overrides:
        key, value = override.split("=", 1)
        OmegaConf.update(cfg, key, OmegaConf.from_dotlist([f"v={value}"]).v, merge=False)
    return cfg


@pytest.mark.parametrize("name", NAMES)
def test_every_data_config_is_valid(name, monkeypatch, tmp_path):
    monkeypatch.setenv("CAPTIONING_DATA", str(tmp_path))
    cfg = data_config(name)
    if name == "custom":  # its paths must come from the user
        with pytest.raises(DataConfigError, match=r"^data\.root: no value given"):
            validate_data_config(cfg)
        return
    data = validate_data_config(cfg)
    assert data.root.startswith(str(tmp_path)) and data.max_caption_len == 16
    assert data.min_word_count == (1 if name.endswith("_tiny") else 5)
    assert {"train", "val", "test"} <= set(data.generator.splits if data.kind == "shapes" else data.splits)


def test_shapes_tiny_loads_with_scenes(monkeypatch, tmp_path):
    monkeypatch.setenv("CAPTIONING_DATA", str(tmp_path))
    data = load_dataset(data_config("shapes_tiny"))
    assert {s: len(r) for s, r in data.items()} == {"train": 64, "val": 16, "test": 16, "test_novel": 16,
                                                  "val_novel": 16}
    record = data["test_novel"][0]
    assert record.path.startswith(str(tmp_path / "shapes_tiny")) and Path(record.path).is_file()
    assert record.scene["objects"] and len(record.captions) == 5
    assert list(load_dataset(data_config("shapes_tiny"), splits=["val"])) == ["val"]
    with pytest.raises(DataConfigError, match=r"unknown split\(s\) \['dev'\]"):
        load_dataset(data_config("shapes_tiny"), splits=["dev"])


@pytest.mark.parametrize(
    "override, match",
    [
        ("kind=imagenet", "data.kind"),
        ("min_word_count=0", "data.min_word_count"),
        ("max_caption_len=-3", "data.max_caption_len"),
        ("on_missing=ignore", "data.on_missing"),
        ("generator.splits.train=-5", "data.generator.*splits.train"),
        ("generator.colours=[red,mauve]", "data.generator.*colours"),
        ("generator.workers=-1", "data.generator.workers"),
        ("eval_splits=[test,dev]", "data.eval_splits"),
        ("val_split=dev", "data.val_split"),
    ],
)
def test_impossible_values_fail_before_any_work(override, match, monkeypatch, tmp_path):
    monkeypatch.setenv("CAPTIONING_DATA", str(tmp_path))
    with pytest.raises(DataConfigError, match=match):
        load_dataset(data_config("shapes_tiny", override))
    assert not any(tmp_path.iterdir())  # nothing generated


@pytest.mark.parametrize(
    "name, override, match",
    [
        ("flickr8k", "splits.test=dev", r"data.splits.test: must name a Karpathy split"),
        ("coco2017", "splits.val.take=-1", r"data.splits.val.take must be >= 0, got -1"),
        ("coco2017", "val_split=dev", r"data.val_split: 'dev' is not one of the splits"),
    ],
)
def test_every_kind_names_its_bad_values(name, override, match, monkeypatch, tmp_path):
    monkeypatch.setenv("CAPTIONING_DATA", str(tmp_path))
    with pytest.raises(DataConfigError, match=match):
        load_dataset(data_config(name, override))


def _coco_dataset(root: Path, n: int = 5) -> None:
    (root / "imgs").mkdir(parents=True)
    images = [{"id": i, "file_name": f"{i}.jpg"} for i in range(1, n + 1)]
    anns = [{"id": i, "image_id": i, "caption": f"picture {i}"} for i in range(1, n + 1)]
    (root / "ann.json").write_text(json.dumps({"images": images, "annotations": anns}))
    for i in range(1, n + 1):
        (root / "imgs" / f"{i}.jpg").write_bytes(b"jpg")


def test_coco_kind_slices_and_checks_files(monkeypatch, tmp_path):
    _coco_dataset(tmp_path / "mine")
    paths = [f"splits.{s}.{k}={v}" for s in ("train", "val", "test") for k, v in (("annotations", "ann.json"), ("images", "imgs"))]
    cfg = data_config("custom", f"root={tmp_path / 'mine'}", *paths, "splits.val.take=2", "splits.test.skip=2")
    data = load_dataset(cfg)
    assert [[r.image_id for r in data[s]] for s in ("train", "val", "test")] == [[1, 2, 3, 4, 5], [1, 2], [3, 4, 5]]
    (tmp_path / "mine" / "imgs" / "4.jpg").unlink()
    with pytest.raises(MissingImagesError, match="4.jpg"):
        load_dataset(cfg, splits=["test"])
    cfg.on_missing = "skip"
    assert [r.image_id for r in load_dataset(cfg, splits=["test"])["test"]] == [3, 5]


def test_karpathy_kind(monkeypatch, tmp_path):
    monkeypatch.setenv("CAPTIONING_DATA", str(tmp_path))
    root = tmp_path / "flickr8k"
    (root / "images").mkdir(parents=True)
    images = [{"filename": f"{i}.jpg", "imgid": i, "split": s, "sentences": [{"raw": f"A dog {i} ."}]}
              for i, s in enumerate(["train", "train", "val", "test", "restval"])]  # fmt: skip
    (root / "dataset_flickr8k.json").write_text(json.dumps({"images": images}))
    for i in range(5):
        (root / "images" / f"{i}.jpg").write_bytes(b"jpg")
    data = load_dataset(data_config("flickr8k"))
    assert [[r.image_id for r in data[s]] for s in ("train", "val", "test")] == [[0, 1, 4], [2], [3]]
    assert data["val"][0].path == str(root / "images" / "2.jpg")


def test_dataset_key_changes_with_the_generated_images(monkeypatch, tmp_path):
    monkeypatch.setenv("CAPTIONING_DATA", str(tmp_path))
    from captioning.data.datasets import dataset_key

    base = dataset_key(data_config("shapes_tiny"), "train")
    assert base.startswith("shapes_tiny-") and base.endswith("/train")
    assert dataset_key(data_config("shapes_tiny", "generator.workers=2", "min_word_count=3"), "train") == base
    assert dataset_key(data_config("shapes_tiny", "generator.seed=1"), "train") != base
    assert dataset_key(data_config("coco2014"), "test") == "coco2014/test"
