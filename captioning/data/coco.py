"""COCO-format caption data (pycocotools) and Karpathy-split jsons -> ImageRecords; caption encoding.

Structural problems in an annotation file (not json, wrong shape, missing keys) raise AnnotationError
naming the file and the path inside it. Captions that tokenise to nothing (empty, whitespace or
punctuation only) are dropped with a logged count, as are images left without captions. Missing image
files raise MissingImagesError listing a few of them, unless ``on_missing="skip"``.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch

from captioning.text.vocab import PAD, Vocabulary

log = logging.getLogger(__name__)

MISSING_SHOWN = 5  # how many missing image files an error message lists
KARPATHY_SPLITS = ("train", "val", "test", "restval")


class DataError(ValueError):
    """A problem with a dataset the user pointed us at."""


class AnnotationError(DataError):
    """An annotation file that is not json or not shaped as expected."""


class MissingImagesError(DataError):
    """Image files named by the annotations are not on disk."""


@dataclass
class ImageRecord:
    """One image with its reference captions (and, for synthetic scenes, the scene description)."""

    image_id: int
    path: str
    captions: list[str]
    scene: dict | None = None


def read_json(path: str | os.PathLike) -> Any:
    """Parse a json file, turning a missing or malformed file into a DataError naming it."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"annotation file not found: {path} (see captioning-prepare-data --help)")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise AnnotationError(f"{path}: not valid json ({e}); re-download or regenerate it") from e


def _expect(cond: bool, file: Path, where: str, what: str) -> None:
    if not cond:
        raise AnnotationError(f"{file}: {where}: {what}")


def _check_list_of_dicts(
    data: Any, key: str, file: Path, needs: dict[str, type | tuple], where: str = ""
) -> list[dict]:
    """``data[key]`` must be a list of dicts whose ``needs`` keys have the given types."""
    _expect(isinstance(data, dict), file, where or "top level", f"expected a json object, got {type(data).__name__}")
    items = data.get(key)
    path = f"{where}.{key}" if where else key
    _expect(isinstance(items, list), file, path, "missing or not a list")
    for i, item in enumerate(items):
        _expect(isinstance(item, dict), file, f"{path}[{i}]", f"expected an object, got {type(item).__name__}")
        for field, typ in needs.items():
            _expect(field in item, file, f"{path}[{i}]", f"missing key '{field}'")
            ok = isinstance(item[field], typ) and not isinstance(item[field], bool)
            _expect(ok, file, f"{path}[{i}].{field}", f"expected {_type_name(typ)}, got {repr(item[field])[:60]}")
    return items


def _type_name(typ: type | tuple) -> str:
    return " or ".join(t.__name__ for t in typ) if isinstance(typ, tuple) else typ.__name__


_ALNUM = re.compile(r"[^\W_]")


def _usable(caption: str) -> bool:
    """A caption is usable when the COCO tokenizer leaves at least one word."""
    from captioning.text.tokenizer import tokenize

    # A letter or digit always survives tokenisation; only the rest needs the (slower) tokenizer.
    return bool(_ALNUM.search(caption)) or bool(tokenize(caption))


def _keep_usable(captions: list[str], dropped: list[int]) -> list[str]:
    kept = [c.strip() for c in captions if _usable(c)]
    dropped[0] += len(captions) - len(kept)
    return kept


def _finish(
    records: list[ImageRecord], file: Path, dropped_caps: int, check_files: bool, on_missing: str
) -> list[ImageRecord]:
    """Log drops, drop caption-less images, check files exist; sort by image id."""
    if dropped_caps:
        log.warning("%s: dropped %d empty or punctuation-only captions", file, dropped_caps)
    empty = [r for r in records if not r.captions]
    if empty:
        log.warning("%s: dropped %d images that have no usable caption", file, len(empty))
    records = [r for r in records if r.captions]
    if check_files:
        records = check_image_files(records, file, on_missing)
    return sorted(records, key=lambda r: r.image_id)


def check_image_files(
    records: list[ImageRecord], source: str | os.PathLike, on_missing: str = "fail"
) -> list[ImageRecord]:
    """Fail (listing a few) or skip (logging a count) when image files are missing."""
    if on_missing not in ("fail", "skip"):
        raise ValueError(f"on_missing must be 'fail' or 'skip', got {on_missing!r}")
    missing = [r for r in records if not os.path.isfile(r.path)]
    if not missing:
        return records
    if on_missing == "skip":
        log.warning("%s: skipped %d images whose files are missing", source, len(missing))
        gone = {id(r) for r in missing}
        return [r for r in records if id(r) not in gone]
    shown = "\n  ".join(r.path for r in missing[:MISSING_SHOWN])
    more = f"\n  ... and {len(missing) - MISSING_SHOWN} more" if len(missing) > MISSING_SHOWN else ""
    raise MissingImagesError(
        f"{source}: {len(missing)} of {len(records)} image files are missing:\n  {shown}{more}\n"
        "Check the image directory (download with captioning-prepare-data), "
        "or set on_missing=skip to drop them."
    )


def load_coco_captions(
    annotation_file: str | os.PathLike,
    image_dir: str | os.PathLike,
    check_files: bool = True,
    on_missing: str = "fail",
) -> list[ImageRecord]:
    """Read a COCO captions json with pycocotools into ImageRecords (attaching ``scenes`` if present)."""
    from pycocotools.coco import COCO

    file = Path(annotation_file)
    data = read_json(file)
    images = _check_list_of_dicts(data, "images", file, {"id": int, "file_name": str})
    anns = _check_list_of_dicts(data, "annotations", file, {"id": int, "image_id": int, "caption": str})
    known = {img["id"] for img in images}
    for i, ann in enumerate(anns):
        _expect(ann["image_id"] in known, file, f"annotations[{i}].image_id", f"{ann['image_id']} is not in 'images'")
    scenes = _scenes(data, file)

    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress lines
        coco.createIndex()
    dropped = [0]
    records = []
    for img in coco.loadImgs(coco.getImgIds()):
        captions = _keep_usable([a["caption"] for a in coco.imgToAnns[img["id"]]], dropped)
        path = os.path.abspath(os.path.join(image_dir, img["file_name"]))
        records.append(ImageRecord(img["id"], path, captions, scenes.get(img["id"])))
    return _finish(records, file, dropped[0], check_files, on_missing)


def _scenes(data: dict, file: Path) -> dict[int, dict]:
    """The optional ``scenes`` mapping of synthetic datasets, keyed by int image id."""
    raw = data.get("scenes", {})
    _expect(isinstance(raw, dict), file, "scenes", "expected an object mapping image id -> scene")
    for key, scene in raw.items():
        _expect(key.lstrip("-").isdigit(), file, f"scenes.{key}", "keys must be image ids")
        _expect(isinstance(scene, dict), file, f"scenes.{key}", "expected an object describing the scene")
    return {int(k): v for k, v in raw.items()}


def load_karpathy(
    dataset_json: str | os.PathLike,
    image_root: str | os.PathLike,
    split: str,
    check_files: bool = True,
    on_missing: str = "fail",
    restval_to_train: bool = True,
) -> list[ImageRecord]:
    """Read one split of a Karpathy json (dataset_coco/flickr8k/flickr30k.json); restval joins train."""
    if split not in KARPATHY_SPLITS:
        raise ValueError(f"Karpathy split must be one of {KARPATHY_SPLITS}, got {split!r}")
    file = Path(dataset_json)
    data = read_json(file)
    images = _check_list_of_dicts(data, "images", file, {"filename": str, "split": str, "sentences": list})
    wanted = {split, "restval"} if split == "train" and restval_to_train else {split}
    dropped = [0]
    records = []
    for i, img in enumerate(images):
        if img["split"] not in wanted:
            continue
        image_id = _karpathy_id(img, file, i)
        _expect(isinstance(img.get("filepath", ""), str), file, f"images[{i}].filepath", "expected str")
        sents = _check_list_of_dicts(img, "sentences", file, {"raw": str}, where=f"images[{i}]")
        captions = _keep_usable([s["raw"] for s in sents], dropped)
        path = os.path.abspath(os.path.join(image_root, img.get("filepath", ""), img["filename"]))
        records.append(ImageRecord(image_id, path, captions))
    if not records:
        present = sorted({img["split"] for img in images})
        raise DataError(f"{file}: no images in split {split!r}; splits present: {present}")
    return _finish(records, file, dropped[0], check_files, on_missing)


def _karpathy_id(img: dict, file: Path, i: int) -> int:
    """COCO's own id (``cocoid``) when present, else Karpathy's running ``imgid`` (Flickr)."""
    for key in ("cocoid", "imgid"):
        if isinstance(img.get(key), int):
            return img[key]
    raise AnnotationError(f"{file}: images[{i}]: missing integer 'cocoid' or 'imgid'")


def encode_captions(
    records: Sequence[ImageRecord], vocab: Vocabulary, max_len: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """All captions as ``[n_caps, max_len + 2]`` ids padded with PAD, and each caption's record index."""
    from captioning.text.tokenizer import tokenize

    cache: dict[str, list[int]] = {}  # synthetic data repeats captions a lot; tokenise each once
    rows, owners = [], []
    for index, record in enumerate(records):
        for caption in record.captions:
            if caption not in cache:
                cache[caption] = vocab.encode(tokenize(caption), max_len)
            rows.append(cache[caption])
            owners.append(index)
    tokens = torch.full((len(rows), max_len + 2), PAD, dtype=torch.long)
    for r, ids in enumerate(rows):
        tokens[r, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return tokens, torch.tensor(owners, dtype=torch.long)


def all_captions(records: Iterable[ImageRecord]) -> list[str]:
    """Every reference caption of ``records``, in order (for building a vocabulary)."""
    return [c for r in records for c in r.captions]
