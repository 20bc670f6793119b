"""Scenes for the systematic-generalisation splits: structure or drawing that no training scene has.

Each kind is judged against the default training set (1-3 objects of the seen colour-shape pairs, each
pair at most once per scene, drawn as in captioning/data/shape_drawing.py), so that a model trained on
the default data can be scored on it:

- ``long`` (productivity): 4 or 5 objects in a row or a column; the caption is longer than any in
  training and uses no count word (training has none beyond "three"). Sizes are drawn again until
  the row fits the canvas (at most 2 large objects of 4, 1 of 5), so most objects are small.
- ``triples``: 2 or 3 objects, one of them of a held-out colour-shape pair (so its colour-shape-size
  triple never occurs in training), beside objects of seen pairs.
- ``twins``: 2 or 3 objects, two of them of one colour and shape, one small and one large; training
  states relations only between objects of different colour-shape pairs.
- ``shifted``: scenes of the test split's kind drawn with one of ``SHIFT_STYLES``; with ``shifted_from``
  (captioning/data/shapes.py) the very scenes and captions of another split, image for image, so that
  the style's effect is a paired difference on the same scenes.

With the default training set every seen colour-shape-size triple and every (shape, axis, shape)
relation occurs there (tests/test_hard_splits.py checks both), so a held-out triple needs a held-out
pair, and a held-out relation one between objects the training scenes never pair: a twin.
"""

from __future__ import annotations

import math
import random
from typing import Sequence

from captioning.data.shape_drawing import (MARGIN, RADIUS, RADIUS_JITTER, SHIFT_STYLES, background, layout,
                                           sample_scene, scene_object)

HARD_KINDS = ("long", "triples", "twins", "shifted")
LONG_COUNTS = (4, 5)  # a row of 6 would fit only if every object were small
SMALL_COUNTS = (2, 3)  # triples and twins: objects per scene
GAP = 0.02  # least space between neighbours in a long row, as a fraction of the canvas
ROTATION = (6.0, 12.0)  # degrees the whole scene turns in the "rotated" style: order and positions stay clear
NOISE_SIGMA = 12.0  # grey levels of the "noise" style
STRIPE_PERIODS = (6, 10)  # pixels
STRIPE_CONTRAST = (14, 24)  # grey levels above the background
OUTLINE_WIDTHS = (1, 2)  # pixels; the training images have none


def sample_hard_scene(kind: str, rng: random.Random, seen: Sequence[tuple[str, str]],
                      novel: Sequence[tuple[str, str]], count_probs: Sequence[float], size: int,
                      styles: Sequence[str]) -> dict:
    """One scene of a hard split's ``kind`` (``HARD_KINDS``), drawn from the seen and held-out pairs."""
    if kind == "long":
        return _long_scene(rng, seen, size)
    if kind == "triples":
        n = rng.choice(SMALL_COUNTS)
        odd = rng.choice(list(novel))
        chosen = [odd] + rng.sample(list(seen), n - 1)
        rng.shuffle(chosen)
        return _row_scene(rng, chosen, [rng.choice(("small", "large")) for _ in chosen], size)
    if kind == "twins":
        n = rng.choice(SMALL_COUNTS)
        twin, *other = rng.sample(list(seen), n - 1)
        items = [(twin, "small"), (twin, "large")] + [(pair, rng.choice(("small", "large"))) for pair in other]
        rng.shuffle(items)
        return _row_scene(rng, [pair for pair, _ in items], [z for _, z in items], size)
    if kind == "shifted":
        scene = sample_scene(rng, seen, count_probs, size)
        return {**scene, "style": shift_style(rng, scene, styles, size)}
    raise ValueError(f"unknown hard split kind {kind!r}; known: {HARD_KINDS}")


def _row_scene(rng: random.Random, pairs: list[tuple[str, str]], sizes: list[str], size: int) -> dict:
    """2 or 3 given objects in a row or a column, laid out as a test scene of that many objects is."""
    radii = [(RADIUS[z] + rng.uniform(-RADIUS_JITTER, RADIUS_JITTER)) * size for z in sizes]
    centres, position, relation = layout(len(pairs), rng, radii, size)
    objects = [scene_object(c, s, z, r, x, y, rng) for (c, s), z, r, (x, y) in zip(pairs, sizes, radii, centres)]
    return {"n_objects": len(objects), "objects": objects, "position": position, "relation": relation,
            "background": background(rng)}  # fmt: skip


def _long_scene(rng: random.Random, seen: Sequence[tuple[str, str]], size: int) -> dict:
    """4 or 5 objects packed in a row or a column with random gaps; as many large ones as fit."""
    s = float(size)
    n = rng.choice(LONG_COUNTS)
    chosen = rng.sample(list(seen), n)
    while True:  # sizes drawn again until the row fits (deterministic: the same rng)
        sizes = [rng.choice(("small", "large")) for _ in range(n)]
        radii = [(RADIUS[z] + rng.uniform(-RADIUS_JITTER, RADIUS_JITTER)) * s for z in sizes]
        free = s * (1 - MARGIN - (n - 1) * GAP) - 2 * sum(radii)
        if free > 0:
            break
    weights = [rng.uniform(0.5, 1.5) for _ in range(n + 1)]
    gaps = [free * w / sum(weights) for w in weights]
    along, at = [], s * MARGIN / 2
    for k in range(n):
        at += gaps[k] + radii[k]
        along.append(at)
        at += radii[k] + s * GAP
    base = rng.uniform(0.3, 0.7) * s
    centres = [(a, base + rng.uniform(-0.03, 0.03) * s) for a in along]
    axis = rng.choice(("horizontal", "vertical"))
    if axis == "vertical":
        centres = [(y, x) for x, y in centres]
    objects = [scene_object(c, sh, z, r, x, y, rng) for (c, sh), z, r, (x, y) in zip(chosen, sizes, radii, centres)]
    return {"n_objects": n, "objects": objects, "position": None, "relation": {"axis": axis, "order": list(range(n))},
            "background": background(rng)}  # fmt: skip


def shift_style(rng: random.Random, scene: dict, styles: Sequence[str], size: int) -> dict:
    """One of ``styles`` with its drawn settings; "rotated" turns the scene's geometry here, in place."""
    kind = rng.choice(list(styles))
    if kind == "noise":
        return {"kind": kind, "sigma": NOISE_SIGMA, "seed": rng.randrange(2**31)}
    if kind == "texture":
        return {"kind": kind, "period": rng.randint(*STRIPE_PERIODS), "contrast": rng.randint(*STRIPE_CONTRAST),
                "direction": rng.choice((-1, 1))}  # fmt: skip
    if kind == "outline":
        return {"kind": kind, "width": rng.randint(*OUTLINE_WIDTHS)}
    if kind == "aliased":
        return {"kind": kind}
    if kind == "rotated":
        degrees = round(rng.choice((-1, 1)) * rng.uniform(*ROTATION), 1)
        _rotate(scene, degrees, size)
        return {"kind": kind, "degrees": degrees}
    raise ValueError(f"unknown shift style {kind!r}; known: {SHIFT_STYLES}")


def _rotate(scene: dict, degrees: float, size: int) -> None:
    """Turn every centre about the canvas centre and every object by ``degrees`` (as render turns
    polygons), keeping each object inside the canvas."""
    t = math.radians(degrees)
    c, s, mid = math.cos(t), math.sin(t), size / 2
    for o in scene["objects"]:
        dx, dy = o["x"] - mid, o["y"] - mid
        lo, hi = o["r"] + 1, size - o["r"] - 1
        o["x"] = round(min(hi, max(lo, mid + dx * c - dy * s)), 2)
        o["y"] = round(min(hi, max(lo, mid + dx * s + dy * c)), 2)
        o["angle"] = round(o["angle"] + degrees, 1)
