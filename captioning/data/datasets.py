"""One entry point from a ``configs/data/*.yaml`` config to ImageRecords per split.

Kinds: ``shapes`` (generated on first use), ``coco`` (one COCO captions json + image folder per
split), ``karpathy`` (one Karpathy-split json for all splits); each declares its options in a schema
below (``DATA_SCHEMAS``), which configs/data/*.yaml extend. Relative paths are taken from the
directory the program was started in (Hydra's original working directory) and, for per-split files,
from ``root``. ``data_problems`` names every bad value before any work starts.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Mapping

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from captioning.data.coco import KARPATHY_SPLITS, ImageRecord, check_image_files, load_coco_captions, load_karpathy
from captioning.data.shapes import GeneratorConfig, generate_shapes, params_hash, resolve_params
from captioning.utils.schema import build, option, problems

KINDS = ("shapes", "coco", "karpathy")
ON_MISSING = ("fail", "skip")


@dataclass
class DataConfig:
    """The options every kind of dataset has (the ``data`` group, configs/data/*.yaml)."""

    kind: str = option("shapes", "shapes | coco | karpathy: where images and captions come from", choices=KINDS)
    name: str = option("???", "dataset key: names the feature cache and runs (change it per dataset)")
    root: str = option("???", "directory the dataset's paths are relative to (absolute paths work too)")
    min_word_count: int = option(5, "words seen fewer times in the train captions become <unk>", ge=1)
    max_caption_len: int = option(16, "caption tokens kept, plus <start> and <end>", ge=1)
    train_split: str = option("train", "split the model and the vocabulary learn from")
    val_split: str | None = option("val", "split that picks the best checkpoint; null = none")
    eval_splits: list[str] = option(["test"], "splits evaluated at the end of training")
    check_files: bool = option(True, "check every image file exists before any work starts")
    on_missing: str = option("fail", "fail | skip: images whose file is missing stop the run or are dropped",
                             choices=ON_MISSING)


@dataclass
class ShapesDataConfig(DataConfig):
    """``kind: shapes``: synthetic scenes generated on first use (captioning/data/shapes.py)."""

    name: str = option("shapes", "dataset key: names the feature cache and runs (change it per dataset)")
    root: str = option("${oc.env:CAPTIONING_DATA,data}/shapes", "where the set is generated; env CAPTIONING_DATA "
                       "moves data/ (relative to where you start)")
    eval_splits: list[str] = option(["val"], "splits evaluated at the end of training: val (or val and "
                                    "val_novel), so that the test splits stay sealed (docs/results.md, protocol); "
                                    "make_results scores test and test_novel for the final configurations")
    generator: GeneratorConfig = option(GeneratorConfig(), "the generator's parameters (others need another root)")


@dataclass
class CocoSplitConfig:
    """One split of ``kind: coco``: a COCO captions json, its image folder and an optional slice of its images."""

    annotations: str = option("???", "the COCO captions json (relative to root)")
    images: str = option("???", "the folder its file_names are relative to (relative to root)")
    skip: int = option(0, "images sorted by id: skip the first `skip`", ge=0)
    take: int | None = option(None, "then keep `take` of them; null = all", ge=0)


@dataclass
class CocoDataConfig(DataConfig):
    """``kind: coco``: per split a COCO captions json and its image folder."""

    kind: str = option("coco", "shapes | coco | karpathy: where images and captions come from", choices=KINDS)
    splits: dict[str, CocoSplitConfig] = option({}, "our split name -> its COCO captions json and images")


@dataclass
class KarpathyDataConfig(DataConfig):
    """``kind: karpathy``: one Karpathy-split json (dataset_coco.json, dataset_flickr8k.json, ...) for all splits."""

    kind: str = option("karpathy", "shapes | coco | karpathy: where images and captions come from", choices=KINDS)
    dataset_json: str = option("dataset.json", "Karpathy's json, relative to root")
    image_root: str = option(".", "images are at <root>/<image_root>/<filepath>/<filename>")
    splits: dict[str, str] = option({"train": "train", "val": "val", "test": "test"},
                                    f"our split name -> a Karpathy split {KARPATHY_SPLITS}")
    restval_to_train: bool = option(True, "Karpathy's 'restval' images join train, as is the convention")


DATA_SCHEMAS: dict[str, type] = {"shapes": ShapesDataConfig, "coco": CocoDataConfig, "karpathy": KarpathyDataConfig}


class DataConfigError(ValueError):
    """A data config value that cannot work."""


def data_key(key: str) -> str:
    """A key of the data config as the command line spells it (``data.root``), whether ``key`` was read from the
    data node itself (``root``) or from the whole run config (``data.root``)."""
    return key if key.startswith("data.") else f"data.{key}"


def _plain(node: Any) -> dict[str, Any]:
    """A resolved plain dict from a DictConfig or a mapping; a missing (???) value is an error."""
    if not isinstance(node, DictConfig):
        return dict(node)
    try:
        return OmegaConf.to_container(node, resolve=True, throw_on_missing=True)  # type: ignore[return-value]
    except MissingMandatoryValue as e:
        raise DataConfigError(f"{data_key(e.full_key)}: no value given; set it on the command line or in the config") from e


def _absolute(path: str) -> str:
    """Absolute path, relative ones taken from where the program started (not Hydra's run dir)."""
    from hydra.utils import to_absolute_path

    return to_absolute_path(os.path.expanduser(str(path)))


def _under(root: str, path: str) -> str:
    return path if os.path.isabs(path) else os.path.join(root, path)


def data_problems(data_cfg: Any) -> list[str]:
    """One line per bad value of a data config: its kind's schema, then what a schema cannot say (the
    generator's combinations, the Karpathy splits, split names that must be one of the dataset's)."""
    try:
        cfg = _plain(data_cfg)
        kind = _kind(cfg)
        if kind not in DATA_SCHEMAS:
            return [f"data.kind must be one of {KINDS}, got {kind!r}"]
        splits = cfg["splits"] if "splits" in cfg else {}
        if kind == "coco" and isinstance(splits, dict):  # each split must be a mapping to check it
            bad = [n for n, source in splits.items() if not isinstance(source, dict)]
            if bad:
                return [f"data.splits.{n}: needs 'annotations' (a COCO captions json) and 'images' (a folder)"
                        for n in bad]
        found = problems(DATA_SCHEMAS[kind], cfg, "data")
        if found:
            return found
        data = _build(cfg)
    except DataConfigError as e:
        return [str(e)]
    if isinstance(data, ShapesDataConfig):
        try:
            names = list(resolve_params(**generator_params(data))["splits"])
        except ValueError as e:
            return [f"data.generator: {e}"]
    else:
        names = list(data.splits)
        if not names:
            found.append("data.splits: must map split names to their sources")
    if isinstance(data, KarpathyDataConfig):
        found += [f"data.splits.{name}: must name a Karpathy split {KARPATHY_SPLITS}, got {source!r}"
                  for name, source in data.splits.items() if source not in KARPATHY_SPLITS]
    for key in ("train_split", "val_split"):
        value = getattr(data, key)
        if value not in names and not (key == "val_split" and value is None):
            found.append(f"data.{key}: {value!r} is not one of the splits {names}")
    found += [f"data.eval_splits: {name!r} is not one of the splits {names}" for name in data.eval_splits
              if name not in names]
    return found


def validate_data_config(data_cfg: Any) -> DataConfig:
    """The typed config of its kind (``DATA_SCHEMAS``); raises DataConfigError naming every bad value."""
    found = data_problems(data_cfg)
    if found:
        raise DataConfigError("; ".join(found))
    return _build(_plain(data_cfg))


def _kind(cfg: Mapping[str, Any]) -> str:
    return cfg["kind"] if "kind" in cfg else DataConfig.kind  # the declared default kind


def _build(cfg: Mapping[str, Any]) -> DataConfig:
    try:
        return build(DATA_SCHEMAS[_kind(cfg)], cfg)
    except MissingMandatoryValue as e:
        raise DataConfigError(f"{data_key(e.full_key)}: no value given; set it on the command line or in the config") from e


def generator_params(data: ShapesDataConfig) -> dict[str, Any]:
    """The parameters that decide the generated images: the generator's options but ``workers``."""
    return {k: v for k, v in dataclasses.asdict(data.generator).items() if k != "workers"}


def load_dataset(data_cfg: Any, splits: list[str] | None = None) -> dict[str, list[ImageRecord]]:
    """ImageRecords for every split of the config (or just ``splits``); generates shapes if needed."""
    data = validate_data_config(data_cfg)
    root = _absolute(data.root)
    check, on_missing = data.check_files, data.on_missing
    if isinstance(data, ShapesDataConfig):
        files = generate_shapes(root, workers=data.generator.workers, **generator_params(data))
        wanted = splits or list(files)
        _known(wanted, files)
        return {s: load_coco_captions(files[s], root, check, on_missing) for s in wanted}
    wanted = splits or list(data.splits)
    _known(wanted, data.splits)
    if isinstance(data, CocoDataConfig):
        return {s: _load_coco_split(root, data.splits[s], check, on_missing) for s in wanted}
    dataset_json, image_root = _under(root, data.dataset_json), _under(root, data.image_root)
    return {s: load_karpathy(dataset_json, image_root, data.splits[s], check, on_missing, data.restval_to_train)
            for s in wanted}  # fmt: skip


def _known(wanted: list[str], available: Mapping[str, Any]) -> None:
    unknown = [s for s in wanted if s not in available]
    if unknown:
        raise DataConfigError(f"unknown split(s) {unknown}; this dataset has {list(available)}")


def _load_coco_split(root: str, source: CocoSplitConfig, check: bool, on_missing: str) -> list[ImageRecord]:
    """One COCO-format split, optionally a slice (``skip``, ``take``) of its images sorted by id."""
    records = load_coco_captions(_under(root, source.annotations), _under(root, source.images), False)
    skip, take = source.skip, source.take
    records = records[skip : None if take is None else skip + take]
    if check:
        records = check_image_files(records, source.annotations, on_missing)
    return records


def dataset_key(data_cfg: Any, split: str) -> str:
    """A feature-cache key for one split that changes whenever its images may change.

    Image paths alone are not enough for the generated shapes: a new seed or generator setting
    redraws every PNG under the same names, so the generator's parameter hash is part of the key.
    """
    data = validate_data_config(data_cfg)
    if not isinstance(data, ShapesDataConfig):
        return f"{data.name}/{split}"
    return f"{data.name}-{params_hash(resolve_params(**generator_params(data)))}/{split}"
