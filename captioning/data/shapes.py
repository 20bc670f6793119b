"""Synthetic shapes scenes: the offline default dataset, written in COCO format with PIL-drawn PNGs.

Each image holds 1-3 objects with a colour, a shape and a size (small/large). A lone object sits at
the left, right, top or bottom of the canvas; two or three objects stand in a row or a column, so
"left of" / "above" (and "from left to right") are unambiguous. ``test_novel`` and ``val_novel`` scenes
use only colour-shape pairs that never occur in train/val/test (compositional generalisation):
``val_novel`` is where choices about composition are made, so that ``test_novel`` stays sealed
(docs/results.md, protocol). Splits named in ``hard_splits`` hold what no training scene has (longer
scenes, held-out triples, twins, shifted drawing: captioning/data/hard_scenes.py); each is drawn by its
own kind, so adding one leaves every other split's images as they were. Sampling and drawing one scene:
captioning/data/shape_drawing.py.

Layout under ``root``: ``images/<split>/<split>_000000.png``, ``annotations/captions_<split>.json``
(COCO captions format plus ``"scenes": {image_id: scene}``) and ``finished.json``, written last, whose
parameter hash makes generation idempotent. Every image is a pure function of (seed, split, index).

Generation holds the lock file ``<root>.lock``: a second process asking for the same set waits, then reuses
it. A finished set is never regenerated with other parameters in place, since another run may be reading
it: such a request raises GeneratorSettingsError, which names the differing settings and the fix.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import multiprocessing
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from captioning.data.hard_scenes import HARD_KINDS, LONG_COUNTS, SMALL_COUNTS, sample_hard_scene, shift_style
from captioning.data.scenes import SHAPES
from captioning.data.shape_captions import describe
from captioning.data.shape_drawing import PALETTE, SHIFT_STYLES, render, sample_scene
from captioning.utils.io import save_json
from captioning.utils.locks import exclusive
from captioning.utils.progress import progress
from captioning.utils.schema import option, problems

log = logging.getLogger(__name__)

GENERATOR_VERSION = 1  # bump whenever drawing or captions change, so old sets are not mistaken for new
MARKER = "finished.json"
# Options read by the hard splits only: left out of the parameter hash while no split is hard, so that a set
# without hard splits keeps the hash (folder check, feature-cache key) it had before these options existed.
HARD_OPTIONS = ("hard_splits", "shift_styles", "shifted_from")


@dataclass
class GeneratorParams:
    """What decides the generated images and captions (hashed into finished.json: a change needs another root)."""

    seed: int = option(0, "every image is a function of (seed, split, index)")
    image_size: int = option(128, "pixels per side", ge=32)
    splits: dict[str, int] = option(
        {"train": 10000, "val": 2000, "test": 1000, "test_novel": 1000, "val_novel": 1000},
        "images per split (each a count >= 0)")
    novel_splits: list[str] = option(["test_novel", "val_novel"], "splits drawn only from novel_pairs (never seen "
                                     "in training)")
    count_probs: list[float] = option([1 / 3, 1 / 3, 1 / 3], "weights of scenes with 1, 2, 3 objects (1 to 3 "
                                      "non-negative numbers)")
    colours: list[str] = option(["red", "green", "blue", "yellow", "purple", "orange"],
                                "distinct object colours", choices=tuple(PALETTE))
    shapes: list[str] = option(["circle", "square", "triangle", "star", "cross"], "distinct object shapes",
                               choices=SHAPES)
    novel_pairs: list[list[str]] = option(
        [["red", "square"], ["green", "triangle"], ["blue", "star"], ["yellow", "cross"], ["purple", "circle"],
         ["orange", "triangle"]],
        "[colour, shape] pairs held out of train/val/test, used by novel_splits only")
    captions_per_image: int = option(5, "reference captions per image, each from a different phrasing", ge=1)
    hard_splits: dict[str, str] = option(
        {}, "split -> kind, for sealed splits of what training never shows (captioning/data/hard_scenes.py): "
        f"{' | '.join(HARD_KINDS)}; {{}} = none (configs/data/shapes_hard.yaml has them)")
    shift_styles: list[str] = option(list(SHIFT_STYLES), "how the 'shifted' splits' images depart from training's",
                                     choices=SHIFT_STYLES)
    shifted_from: dict[str, str] = option({}, "shifted split -> the split whose scenes and captions it redraws, "
                                          "image for image; a shifted split not named draws scenes of its own")


@dataclass
class GeneratorConfig(GeneratorParams):
    """The ``generator`` options of configs/data/shapes.yaml: the parameters plus how to render them."""

    workers: int | None = option(None, "rendering processes: null = the CPUs available (at most 8), 0 or 1 = "
                                 "in-process", ge=0)


DEFAULTS: dict[str, Any] = dataclasses.asdict(GeneratorParams())


class GeneratorSettingsError(ValueError):
    """A folder holds a finished shapes set generated with other parameters than the ones asked for."""


def _render_chunk(jobs: list[tuple[dict, str, int]]) -> int:
    """Worker: draw and save each (scene, png path, size); a temp name + rename keeps files whole. A file that
    already holds the same bytes (finishing a killed generation, or redrawing a deleted image) is left
    untouched, so its cached features stay valid (the feature cache checks each file's size and mtime)."""
    for scene, path, size in jobs:
        buffer = io.BytesIO()
        render(scene, size).save(buffer, format="PNG", compress_level=1)
        data = buffer.getvalue()
        try:
            with open(path, "rb") as old:
                if old.read(len(data) + 1) == data:
                    continue
        except OSError:
            pass
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    return len(jobs)


# --- parameters -----------------------------------------------------------------------------------------


def resolve_params(**overrides: Any) -> dict[str, Any]:
    """DEFAULTS updated with ``overrides``, checked; raises ValueError naming the bad parameter."""
    unknown = sorted(set(overrides) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown shapes generator parameter(s) {unknown}; known: {sorted(DEFAULTS)}")
    p = json.loads(json.dumps({**DEFAULTS, **overrides}))  # plain, json-able copies (OmegaConf in, lists out)
    found = problems(GeneratorParams, p, "generator")  # types, ranges, known colours and shapes
    if found:
        raise ValueError("shapes generator parameters: " + "; ".join(found))
    # what the declared options cannot say: counts per split, splits named elsewhere, combinations
    _check(bool(p["splits"]), "splits", "must map split names to image counts")
    for name, n in p["splits"].items():
        _check(isinstance(n, int) and n >= 0, f"splits.{name}", f"must be a count >= 0, got {n!r}")
    for name in p["novel_splits"]:
        _check(name in p["splits"], "novel_splits", f"{name!r} is not one of the splits {list(p['splits'])}: give "
               f"it a count in splits (0 for none) or drop it from novel_splits")
    probs = p["count_probs"]
    _check(1 <= len(probs) <= 3 and all(q >= 0 for q in probs) and sum(probs) > 0, "count_probs",
           "must give 1 to 3 non-negative weights for scenes of 1, 2, 3 objects")  # fmt: skip
    _check(_distinct(p["colours"]), "colours", f"must be distinct names from {list(PALETTE)}")
    _check(_distinct(p["shapes"]), "shapes", f"must be distinct names from {list(SHAPES)}")
    seen, novel = _pairs(p)
    for which, pool in (("seen", seen), ("novel", novel)):
        what = f"leaves {len(pool)} {which} colour-shape pairs, fewer than the {len(probs)} objects a scene may hold"
        _check(len(pool) >= len(probs), "novel_pairs", what)
    _check_hard(p, seen, novel)
    return p


def _check_hard(p: Mapping[str, Any], seen: Sequence, novel: Sequence) -> None:
    """What the hard splits need: a count in splits, a known kind, and enough pairs for their scenes."""
    for name, kind in p["hard_splits"].items():
        key = f"hard_splits.{name}"
        _check(name in p["splits"], key, f"{name!r} is not one of the splits {list(p['splits'])}: give it a count "
               f"in splits (0 for none) or drop it from hard_splits")
        _check(name not in p["novel_splits"], key, "a split is either novel (novel_splits) or hard, not both")
        _check(kind in HARD_KINDS, key, f"unknown kind {kind!r}; choose from {list(HARD_KINDS)}")
        most = max(LONG_COUNTS) if kind == "long" else max(SMALL_COUNTS)
        _check(len(seen) >= most, key, f"a {kind} scene needs {most} seen colour-shape pairs, there are {len(seen)}")
        _check(kind != "triples" or bool(novel), key, "a triples scene needs a held-out pair (novel_pairs)")
    _check(_distinct(p["shift_styles"]), "shift_styles", f"must be distinct names from {list(SHIFT_STYLES)}")
    for name, source in p["shifted_from"].items():
        key = f"shifted_from.{name}"
        _check(p["hard_splits"].get(name) == "shifted", key, f"{name!r} is not a shifted split (hard_splits)")
        plain = [s for s in p["splits"] if s not in p["hard_splits"]]
        _check(source in plain, key, f"{source!r} must be one of the splits that are not hard {plain}")


def _check(ok: bool, key: str, what: str) -> None:
    if not ok:
        raise ValueError(f"shapes generator parameter {key}: {what}")


def _distinct(names: Sequence[str]) -> bool:
    return bool(names) and len(set(names)) == len(names)


def _pairs(p: Mapping[str, Any]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(pairs seen in train/val/test, held-out pairs for the novel splits)."""
    novel = [tuple(pair) for pair in p["novel_pairs"]]
    for i, pair in enumerate(novel):
        ok = len(pair) == 2 and pair[0] in p["colours"] and pair[1] in p["shapes"]
        _check(ok, f"novel_pairs[{i}]", f"{list(pair)} is not a [colour, shape] from colours and shapes")
    _check(len(set(novel)) == len(novel), "novel_pairs", "has duplicates")
    seen = [(c, s) for c in p["colours"] for s in p["shapes"] if (c, s) not in novel]
    return seen, novel


def hashed_params(p: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters that decide the files: all, but the hard splits' options while no split is hard."""
    return {k: v for k, v in p.items() if p.get("hard_splits") or k not in HARD_OPTIONS}


def params_hash(p: Mapping[str, Any]) -> str:
    """Fingerprint of everything that determines the generated files."""
    blob = json.dumps({"version": GENERATOR_VERSION, **hashed_params(p)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# --- writing --------------------------------------------------------------------------------------------


def split_scenes(p: Mapping[str, Any], split: str) -> tuple[list[dict], list[list[str]]]:
    """Scenes and captions of one split of resolved parameters ``p``; each image's RNG depends only on
    (seed, split, index)."""
    seen, novel = _pairs(p)
    kind, source = p["hard_splits"].get(split), p["shifted_from"].get(split)
    pool = novel if (source or split) in p["novel_splits"] else seen
    scenes, captions = [], []
    for i in range(p["splits"][split]):
        rng = random.Random(f"{p['seed']}/{split}/{i}")
        if source is not None:  # the source split's image i, its captions too, then this split's style
            scene_rng = random.Random(f"{p['seed']}/{source}/{i}")
            scene = sample_scene(scene_rng, pool, p["count_probs"], p["image_size"])
            scene["style"] = shift_style(rng, scene, p["shift_styles"], p["image_size"])
            rng = scene_rng
        elif kind is None:
            scene = sample_scene(rng, pool, p["count_probs"], p["image_size"])
        else:
            scene = sample_hard_scene(kind, rng, seen, novel, p["count_probs"], p["image_size"], p["shift_styles"])
        scenes.append(scene)
        captions.append(describe(scene, rng, p["captions_per_image"]))
    return scenes, captions


def _coco_json(split: str, first_id: int, scenes: list[dict], captions: list[list[str]], size: int) -> dict:
    images, anns, by_id = [], [], {}
    for i, (scene, caps) in enumerate(zip(scenes, captions)):
        image_id = first_id + i
        file_name = f"images/{split}/{split}_{i:06d}.png"
        images.append({"id": image_id, "file_name": file_name, "width": size, "height": size})
        anns += [{"id": image_id * 10 + k, "image_id": image_id, "caption": c} for k, c in enumerate(caps)]
        by_id[str(image_id)] = scene
    info = {"description": f"synthetic shapes scenes, split {split}", "version": str(GENERATOR_VERSION)}
    return {"info": info, "licenses": [], "type": "captions", "images": images, "annotations": anns, "scenes": by_id}


def _already_done(root: Path, digest: str, p: Mapping[str, Any]) -> dict[str, str] | None:
    """Annotation paths when ``root`` holds a finished set with these parameters and all its files; None when
    it holds no finished set (or one with files missing); GeneratorSettingsError when another set is there."""
    try:
        marker = json.loads((root / MARKER).read_text())
    except (OSError, ValueError):
        return None
    if marker.get("hash") != digest:
        raise GeneratorSettingsError(
            f"{root} holds shapes data generated with other settings ({_differences(marker, p)}): give this run "
            f"its own folder (data.root=<another folder>), or delete {root} to regenerate it there")
    paths = {s: str(root / rel) for s, rel in marker.get("annotations", {}).items()}
    if set(paths) != set(p["splits"]) or not all(os.path.isfile(x) for x in paths.values()):
        return None
    for split, n in p["splits"].items():
        folder = root / "images" / split
        names = set(os.listdir(folder)) if folder.is_dir() else set()
        if not all(f"{split}_{i:06d}.png" in names for i in range(n)):
            return None
    return paths


def _differences(marker: Mapping[str, Any], p: Mapping[str, Any]) -> str:
    """'key: X there, Y here; ...' between a finished set's marker and the parameters asked for."""
    there = _flat(marker.get("params") or {})
    here = _flat(hashed_params(p))
    keys = sorted(k for k in set(there) | set(here) if there.get(k) != here.get(k))
    said = [f"generator.{k}: {json.dumps(there.get(k))} there, {json.dumps(here.get(k))} here" for k in keys]
    if marker.get("version", GENERATOR_VERSION) != GENERATOR_VERSION or not said:
        said.append(f"generator version {marker.get('version', 'older')} there, {GENERATOR_VERSION} here")
    return "; ".join(said)


def _flat(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested parameters as {'splits.train': 64, ...}, so a difference names the leaf that differs."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, Mapping):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _remove_stale(root: Path, split: str, n: int) -> None:
    """Delete this generator's PNGs beyond the current count (left from a larger earlier set)."""
    folder = root / "images" / split
    keep = {f"{split}_{i:06d}.png" for i in range(n)}
    for name in os.listdir(folder):
        if name.startswith(f"{split}_") and (name.endswith(".png") or name.endswith(".tmp")) and name not in keep:
            os.unlink(folder / name)


def _render_all(jobs: list[tuple[dict, str, int]], workers: int) -> None:
    """Render in ``workers`` processes (1: in this process); chunks keep the IPC overhead small."""
    chunks = [jobs[i : i + 250] for i in range(0, len(jobs), 250)]
    bar = progress(None, desc="rendering shapes", total=len(jobs), unit="img")
    if workers <= 1 or len(jobs) < 500:
        for chunk in chunks:
            bar.update(_render_chunk(chunk))
    else:
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        with multiprocessing.get_context(method).Pool(workers) as pool:
            for done in pool.imap_unordered(_render_chunk, chunks):
                bar.update(done)
    bar.close()


def default_workers() -> int:
    """Processes for rendering: the CPUs this process may use, at most 8."""
    return max(1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def lock_path(root: str | os.PathLike) -> Path:
    """The lock file that serialises generating into ``root``: beside the folder, not in it."""
    root = Path(root).resolve()
    return root.with_name(root.name + ".lock")


def generate_shapes(root: str | os.PathLike, workers: int | None = None, **params: Any) -> dict[str, str]:
    """Generate (or find already generated) shapes data under ``root``; returns split -> annotation json.

    Raises GeneratorSettingsError when ``root`` holds a finished set with other parameters."""
    p = resolve_params(**params)
    root = Path(root).resolve()
    digest = params_hash(p)
    with exclusive(lock_path(root), f"shapes data generation in {root}"):
        done = _already_done(root, digest, p)
        if done is not None:
            return done
        return _generate(root, p, digest, default_workers() if workers is None else workers)


def _generate(root: Path, p: Mapping[str, Any], digest: str, workers: int) -> dict[str, str]:
    """Draw every image and write the annotations, then the marker (only ever with ``root`` locked)."""
    start = time.perf_counter()
    (root / MARKER).unlink(missing_ok=True)  # a killed run must not look finished
    paths, first_id, jobs, payloads = {}, 1, [], {}
    for split, n in p["splits"].items():
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        scenes, captions = split_scenes(p, split)
        payloads[split] = _coco_json(split, first_id, scenes, captions, p["image_size"])
        files = [str(root / img["file_name"]) for img in payloads[split]["images"]]
        jobs += [(scene, path, p["image_size"]) for scene, path in zip(scenes, files)]
        first_id += n
    _render_all(jobs, workers)
    for split, n in p["splits"].items():
        paths[split] = str(root / "annotations" / f"captions_{split}.json")
        save_json(payloads[split], paths[split], indent=None)
        _remove_stale(root, split, n)
    seconds = time.perf_counter() - start
    marker = {"hash": digest, "version": GENERATOR_VERSION, "params": hashed_params(p),
              "annotations": {s: os.path.relpath(x, root) for s, x in paths.items()},
              "images": len(jobs), "seconds": round(seconds, 2)}  # fmt: skip
    save_json(marker, root / MARKER)
    log.info("generated %d shapes images in %s in %.1f s", len(jobs), root, seconds)
    return paths
