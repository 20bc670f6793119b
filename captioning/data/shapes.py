"""Synthetic shapes scenes: the offline default dataset, written in COCO format with PIL-drawn PNGs.

Each image holds 1-3 objects with a colour, a shape and a size (small/large). A lone object sits at
the left, right, top or bottom of the canvas; two or three objects stand in a row or a column, so
"left of" / "above" (and "from left to right") are unambiguous. ``test_novel`` and ``val_novel`` scenes
use only colour-shape pairs that never occur in train/val/test (compositional generalisation):
``val_novel`` is where choices about composition are made, so that ``test_novel`` stays sealed
(docs/results.md, protocol).

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
import math
import multiprocessing
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from PIL import Image, ImageDraw

from captioning.data.scenes import COLOURS, SHAPES
from captioning.data.shape_captions import describe
from captioning.utils.io import save_json
from captioning.utils.locks import exclusive
from captioning.utils.progress import progress
from captioning.utils.schema import option, problems

log = logging.getLogger(__name__)

GENERATOR_VERSION = 1  # bump whenever drawing or captions change, so old sets are not mistaken for new
MARKER = "finished.json"
# Visual constants, as fractions of the canvas where geometric; they keep every attribute unambiguous.
PALETTE = {
    "red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 90, 235), "yellow": (240, 220, 40),
    "purple": (150, 60, 205), "orange": (245, 140, 20), "pink": (245, 130, 200), "cyan": (40, 210, 220),
    "white": (240, 240, 240), "brown": (140, 85, 40),
}  # fmt: skip
RADIUS = {"small": 0.07, "large": 0.135}  # half-extent of an object; large is about twice small
RADIUS_JITTER = 0.006
COLOUR_JITTER = 12  # per RGB channel
ANGLE_JITTER = 10.0  # degrees; squares stay squares, not diamonds
BACKGROUND = (30, 80)  # dark grey level range; tint of a few levels per channel on top
SUPERSAMPLE = 2  # draw at 2x and box-downsample: anti-aliased edges
MARGIN = 0.04

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


@dataclass
class GeneratorConfig(GeneratorParams):
    """The ``generator`` options of configs/data/shapes.yaml: the parameters plus how to render them."""

    workers: int | None = option(None, "rendering processes: null = the CPUs available (at most 8), 0 or 1 = "
                                 "in-process", ge=0)


DEFAULTS: dict[str, Any] = dataclasses.asdict(GeneratorParams())


class GeneratorSettingsError(ValueError):
    """A folder holds a finished shapes set generated with other parameters than the ones asked for."""


# --- scene sampling ---------------------------------------------------------------------------------


def _layout(n: int, rng: random.Random, radii: Sequence[float], size: int) -> tuple[list, str | None, dict | None]:
    """Centres for n objects, plus the lone object's position or the row/column arrangement."""
    s = float(size)
    if n == 1:
        position = rng.choice(("left", "right", "top", "bottom"))
        along = rng.uniform(radii[0] + MARGIN * s, 0.32 * s)  # distance from the named edge
        across = s / 2 + rng.uniform(-0.1, 0.1) * s
        centre = {"left": (along, across), "right": (s - along, across),
                  "top": (across, along), "bottom": (across, s - along)}[position]  # fmt: skip
        return [centre], position, None
    axis = rng.choice(("horizontal", "vertical"))
    if n == 2:
        along = [rng.uniform(0.2, 0.34) * s, rng.uniform(0.66, 0.8) * s]
        spread = 0.05
    else:
        along = [(k + 0.5) / n * s + rng.uniform(-0.015, 0.015) * s for k in range(n)]
        spread = 0.04
    base = rng.uniform(0.3, 0.7) * s
    centres = [(a, base + rng.uniform(-spread, spread) * s) for a in along]
    if axis == "vertical":
        centres = [(y, x) for x, y in centres]
    return centres, None, {"axis": axis, "order": list(range(n))}


def sample_scene(rng: random.Random, pairs: Sequence[tuple[str, str]], count_probs: Sequence[float], size: int) -> dict:
    """One random scene: objects (distinct colour-shape pairs from ``pairs``), geometry, background."""
    n = rng.choices(range(1, len(count_probs) + 1), weights=count_probs)[0]
    chosen = rng.sample(list(pairs), n)
    sizes = [rng.choice(("small", "large")) for _ in range(n)]
    radii = [(RADIUS[z] + rng.uniform(-RADIUS_JITTER, RADIUS_JITTER)) * size for z in sizes]
    centres, position, relation = _layout(n, rng, radii, size)
    objects = []
    for (colour, shape), z, r, (x, y) in zip(chosen, sizes, radii, centres):
        rgb = [max(0, min(255, c + rng.randint(-COLOUR_JITTER, COLOUR_JITTER))) for c in PALETTE[colour]]
        angle = rng.uniform(-ANGLE_JITTER, ANGLE_JITTER)
        objects.append({"colour": colour, "shape": shape, "size": z, "x": round(x, 2), "y": round(y, 2),
                        "r": round(r, 2), "angle": round(angle, 1), "rgb": rgb})  # fmt: skip
    grey = rng.randint(*BACKGROUND)
    background = [max(0, grey + rng.randint(-6, 6)) for _ in range(3)]
    return {"n_objects": n, "objects": objects, "position": position, "relation": relation, "background": background}


# --- drawing ------------------------------------------------------------------------------------------


def _polygon(shape: str, r: float) -> list[tuple[float, float]]:
    """Outline of a shape centred at 0 with every point within radius ~r (y grows downwards)."""
    if shape == "square":
        h = 0.8 * r
        return [(-h, -h), (h, -h), (h, h), (-h, h)]
    if shape == "triangle":  # equilateral, inscribed in the circle of radius r, apex up
        return [(r * math.cos(a), r * math.sin(a)) for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]
    if shape == "diamond":
        return [(0, -r), (0.7 * r, 0), (0, r), (-0.7 * r, 0)]
    if shape == "star":  # five points, inner radius 0.45 r
        radii = [r if k % 2 == 0 else 0.45 * r for k in range(10)]
        angles = [-math.pi / 2 + k * math.pi / 5 for k in range(10)]
        return [(q * math.cos(a), q * math.sin(a)) for q, a in zip(radii, angles)]
    if shape == "cross":  # a plus sign with arms 0.6 r wide: one arm, turned four times
        w = 0.3 * r
        arm = [(-w, -r), (w, -r), (w, -w)]
        return [(x * c - y * s, x * s + y * c) for c, s in ((1, 0), (0, 1), (-1, 0), (0, -1)) for x, y in arm]
    raise ValueError(f"unknown shape {shape!r}; known: {SHAPES}")


def render(scene: Mapping[str, Any], size: int) -> Image.Image:
    """Draw a scene as an RGB image of ``size`` x ``size`` pixels."""
    k = SUPERSAMPLE
    img = Image.new("RGB", (size * k, size * k), tuple(scene["background"]))
    draw = ImageDraw.Draw(img)
    for o in scene["objects"]:
        x, y, r, fill = o["x"] * k, o["y"] * k, o["r"] * k, tuple(o["rgb"])
        if o["shape"] == "circle":
            draw.ellipse((x - r, y - r, x + r, y + r), fill=fill)
            continue
        t = math.radians(o["angle"])
        c, s = math.cos(t), math.sin(t)
        draw.polygon([(x + px * c - py * s, y + px * s + py * c) for px, py in _polygon(o["shape"], r)], fill=fill)
    return img.reduce(k)


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
    return p


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


def params_hash(p: Mapping[str, Any]) -> str:
    """Fingerprint of everything that determines the generated files."""
    blob = json.dumps({"version": GENERATOR_VERSION, **p}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# --- writing --------------------------------------------------------------------------------------------


def _split_scenes(p: Mapping[str, Any], split: str) -> tuple[list[dict], list[list[str]]]:
    """Scenes and captions of one split; each image's RNG depends only on (seed, split, index)."""
    seen, novel = _pairs(p)
    pool = novel if split in p["novel_splits"] else seen
    scenes, captions = [], []
    for i in range(p["splits"][split]):
        rng = random.Random(f"{p['seed']}/{split}/{i}")
        scene = sample_scene(rng, pool, p["count_probs"], p["image_size"])
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
    here = _flat(p)
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
        scenes, captions = _split_scenes(p, split)
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
    marker = {"hash": digest, "version": GENERATOR_VERSION, "params": p,
              "annotations": {s: os.path.relpath(x, root) for s, x in paths.items()},
              "images": len(jobs), "seconds": round(seconds, 2)}  # fmt: skip
    save_json(marker, root / MARKER)
    log.info("generated %d shapes images in %s in %.1f s", len(jobs), root, seconds)
    return paths
