"""One entry point from a ``configs/data/*.yaml`` config to ImageRecords per split.

Kinds: ``shapes`` (generated on first use), ``coco`` (one COCO captions json + image folder per
split), ``karpathy`` (one Karpathy-split json for all splits). Relative paths are taken from the
directory the program was started in (Hydra's original working directory) and, for per-split files,
from ``root``. ``validate_data_config`` checks every value before any work starts.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from captioning.data.coco import KARPATHY_SPLITS, ImageRecord, load_coco_captions, load_karpathy

KINDS = ("shapes", "coco", "karpathy")


class DataConfigError(ValueError):
    """A data config value that cannot work."""


def _plain(cfg: Any) -> dict[str, Any]:
    """A resolved plain dict from a DictConfig or a mapping; a missing (???) value is an error."""
    from omegaconf import DictConfig, OmegaConf
    from omegaconf.errors import MissingMandatoryValue

    if not isinstance(cfg, DictConfig):
        return dict(cfg)
    try:
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)  # type: ignore[return-value]
    except MissingMandatoryValue as e:
        raise DataConfigError(f"data.{e.full_key}: no value given; set it on the command line or in the config") from e


def _absolute(path: str) -> str:
    """Absolute path, relative ones taken from where the program started (not Hydra's run dir)."""
    from hydra.utils import to_absolute_path

    return to_absolute_path(os.path.expanduser(str(path)))


def _under(root: str, path: str) -> str:
    return path if os.path.isabs(path) else os.path.join(root, path)


def _need(ok: bool, key: str, what: str) -> None:
    if not ok:
        raise DataConfigError(f"data.{key}: {what}")


def validate_data_config(data_cfg: Any) -> dict[str, Any]:
    """Check a data config (raising DataConfigError naming the key); returns it as a plain dict."""
    cfg = _plain(data_cfg)
    kind = cfg.get("kind")
    _need(kind in KINDS, "kind", f"must be one of {KINDS}, got {kind!r}")
    _need(isinstance(cfg.get("root"), str) and cfg["root"] != "", "root", "must be a directory path")
    for key in ("min_word_count", "max_caption_len"):
        value = cfg.get(key)
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
        _need(ok, key, f"must be an integer >= 1, got {value!r}")
    _need(cfg.get("on_missing", "fail") in ("fail", "skip"), "on_missing", "must be 'fail' or 'skip'")
    _need(isinstance(cfg.get("check_files", True), bool), "check_files", "must be true or false")
    if kind == "shapes":
        from captioning.data.shapes import resolve_params

        params, workers = _generator(cfg)
        ok = workers is None or (isinstance(workers, int) and workers >= 0)
        _need(ok, "generator.workers", "must be null or an integer >= 0")
        try:
            names = list(resolve_params(**params)["splits"])
        except ValueError as e:
            raise DataConfigError(f"data.generator: {e}") from e
    else:
        splits = cfg.get("splits")
        _need(isinstance(splits, dict) and bool(splits), "splits", "must map split names to their sources")
        for name, source in splits.items():
            _check_source(kind, name, source)
        names = list(splits)
    for key, default in (("train_split", "train"), ("val_split", "val")):
        _need(cfg.get(key, default) in names, key, f"{cfg.get(key, default)!r} is not one of the splits {names}")
    for name in cfg.get("eval_splits", []):
        _need(name in names, "eval_splits", f"{name!r} is not one of the splits {names}")
    return cfg


def _generator(cfg: Mapping[str, Any]) -> tuple[dict[str, Any], int | None]:
    """(generator parameters, rendering processes) from the shapes config."""
    params = dict(cfg.get("generator") or {})
    return params, params.pop("workers", None)


def _check_source(kind: str, name: str, source: Any) -> None:
    if kind == "coco":
        ok = isinstance(source, dict) and all(isinstance(source.get(k), str) for k in ("annotations", "images"))
        _need(ok, f"splits.{name}", "needs 'annotations' (a COCO captions json) and 'images' (a folder)")
        for key in ("skip", "take"):
            v = source.get(key)
            _need(v is None or (isinstance(v, int) and v >= 0), f"splits.{name}.{key}", "must be an integer >= 0")
    else:
        what = f"must name a Karpathy split {KARPATHY_SPLITS}, got {source!r}"
        _need(source in KARPATHY_SPLITS, f"splits.{name}", what)


def load_dataset(data_cfg: Any, splits: list[str] | None = None) -> dict[str, list[ImageRecord]]:
    """ImageRecords for every split of the config (or just ``splits``); generates shapes if needed."""
    cfg = validate_data_config(data_cfg)
    root = _absolute(cfg["root"])
    check, on_missing = cfg.get("check_files", True), cfg.get("on_missing", "fail")
    if cfg["kind"] == "shapes":
        from captioning.data.shapes import generate_shapes

        params, workers = _generator(cfg)
        files = generate_shapes(root, workers=workers, **params)
        wanted = splits or list(files)
        _known(wanted, files)
        return {s: load_coco_captions(files[s], root, check, on_missing) for s in wanted}
    wanted = splits or list(cfg["splits"])
    _known(wanted, cfg["splits"])
    if cfg["kind"] == "coco":
        return {s: _load_coco_split(root, cfg["splits"][s], check, on_missing) for s in wanted}
    dataset_json = _under(root, cfg.get("dataset_json", "dataset.json"))
    image_root = _under(root, cfg.get("image_root", "."))
    restval = cfg.get("restval_to_train", True)
    return {
        s: load_karpathy(dataset_json, image_root, cfg["splits"][s], check, on_missing, restval) for s in wanted
    }


def _known(wanted: list[str], available: Mapping[str, Any]) -> None:
    unknown = [s for s in wanted if s not in available]
    if unknown:
        raise DataConfigError(f"unknown split(s) {unknown}; this dataset has {list(available)}")


def _load_coco_split(root: str, source: Mapping[str, Any], check: bool, on_missing: str) -> list[ImageRecord]:
    """One COCO-format split, optionally a slice (``skip``, ``take``) of its images sorted by id."""
    records = load_coco_captions(_under(root, source["annotations"]), _under(root, source["images"]), False)
    skip, take = source.get("skip") or 0, source.get("take")
    records = records[skip : None if take is None else skip + take]
    if check:
        from captioning.data.coco import check_image_files

        records = check_image_files(records, source["annotations"], on_missing)
    return records


def dataset_key(data_cfg: Any, split: str) -> str:
    """A feature-cache key for one split that changes whenever its images may change.

    Image paths alone are not enough for the generated shapes: a new seed or generator setting
    redraws every PNG under the same names, so the generator's parameter hash is part of the key.
    """
    cfg = validate_data_config(data_cfg)
    if cfg["kind"] != "shapes":
        return f"{cfg['name']}/{split}"
    from captioning.data.shapes import params_hash, resolve_params

    return f"{cfg['name']}-{params_hash(resolve_params(**_generator(cfg)[0]))}/{split}"
