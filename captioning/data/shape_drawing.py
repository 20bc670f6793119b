"""Sampling and drawing one synthetic scene: the geometry of captioning/data/shapes.py's images.

A scene is a dict (captioning/data/scenes.py says which keys the captions and the judge read):
``objects`` (colour, shape, size, centre ``x``/``y``, radius ``r``, ``angle``, jittered ``rgb``),
``position`` or ``relation``, ``background`` and, for the shifted splits only, ``style`` (how the
drawing departs from the training images: ``SHIFT_STYLES``). ``render`` is a pure function of the
scene, so every image is a pure function of (seed, split, index).
"""

from __future__ import annotations

import math
import random
from typing import Any, Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw

from captioning.data.scenes import SHAPES

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
# What the shifted splits draw differently (never in a training image): pixel noise, a striped
# background, an outline of another line width, hard (aliased) edges, or the whole scene turned.
SHIFT_STYLES = ("noise", "texture", "outline", "aliased", "rotated")


def layout(n: int, rng: random.Random, radii: Sequence[float], size: int) -> tuple[list, str | None, dict | None]:
    """Centres for n (1 to 3) objects, plus the lone object's position or the row/column arrangement."""
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


def scene_object(colour: str, shape: str, size: str, r: float, x: float, y: float, rng: random.Random) -> dict:
    """One object of a scene, its colour and angle jittered (three colour draws, then the angle)."""
    rgb = [max(0, min(255, c + rng.randint(-COLOUR_JITTER, COLOUR_JITTER))) for c in PALETTE[colour]]
    angle = rng.uniform(-ANGLE_JITTER, ANGLE_JITTER)
    return {"colour": colour, "shape": shape, "size": size, "x": round(x, 2), "y": round(y, 2),
            "r": round(r, 2), "angle": round(angle, 1), "rgb": rgb}  # fmt: skip


def background(rng: random.Random) -> list[int]:
    """A dark grey with a tint of a few levels per channel."""
    grey = rng.randint(*BACKGROUND)
    return [max(0, grey + rng.randint(-6, 6)) for _ in range(3)]


def sample_scene(rng: random.Random, pairs: Sequence[tuple[str, str]], count_probs: Sequence[float], size: int) -> dict:
    """One random scene: objects (distinct colour-shape pairs from ``pairs``), geometry, background."""
    n = rng.choices(range(1, len(count_probs) + 1), weights=count_probs)[0]
    chosen = rng.sample(list(pairs), n)
    sizes = [rng.choice(("small", "large")) for _ in range(n)]
    radii = [(RADIUS[z] + rng.uniform(-RADIUS_JITTER, RADIUS_JITTER)) * size for z in sizes]
    centres, position, relation = layout(n, rng, radii, size)
    objects = [scene_object(colour, shape, z, r, x, y, rng)
               for (colour, shape), z, r, (x, y) in zip(chosen, sizes, radii, centres)]
    return {"n_objects": n, "objects": objects, "position": position, "relation": relation,
            "background": background(rng)}  # fmt: skip


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


def _stripes(draw: ImageDraw.ImageDraw, side: int, style: Mapping[str, Any], base: Sequence[int], k: int) -> None:
    """A texture under the objects: diagonal stripes a few grey levels lighter than the background."""
    period, width = style["period"] * k, max(1, style["period"] * k // 2)
    colour = tuple(min(255, c + style["contrast"]) for c in base)
    for offset in range(-side, 2 * side, period):  # lines at 45 degrees, one way or the other
        ends = [(offset, 0), (offset + side, side)] if style["direction"] > 0 else [(offset, side), (offset + side, 0)]
        draw.line(ends, fill=colour, width=width)


def _noisy(img: Image.Image, style: Mapping[str, Any]) -> Image.Image:
    """The image plus Gaussian pixel noise; RandomState's stream is frozen across numpy versions."""
    pixels = np.asarray(img, dtype=np.float64)
    noise = np.random.RandomState(style["seed"]).normal(0.0, style["sigma"], pixels.shape)
    return Image.fromarray(np.clip(np.round(pixels + noise), 0, 255).astype(np.uint8), "RGB")


def render(scene: Mapping[str, Any], size: int) -> Image.Image:
    """Draw a scene as an RGB image of ``size`` x ``size`` pixels (a ``style``, if any, applied)."""
    style = scene.get("style") or {}
    kind = style.get("kind")
    k = 1 if kind == "aliased" else SUPERSAMPLE
    img = Image.new("RGB", (size * k, size * k), tuple(scene["background"]))
    draw = ImageDraw.Draw(img)
    if kind == "texture":
        _stripes(draw, size * k, style, scene["background"], k)
    for o in scene["objects"]:
        x, y, r, fill = o["x"] * k, o["y"] * k, o["r"] * k, tuple(o["rgb"])
        # a light rim of the object's own hue (half way to white): the object keeps its extent and colour word
        extra = {}
        if kind == "outline":
            extra = {"outline": tuple((c + 255) // 2 for c in fill), "width": style["width"] * k}
        if o["shape"] == "circle":
            draw.ellipse((x - r, y - r, x + r, y + r), fill=fill, **extra)
            continue
        t = math.radians(o["angle"])
        c, s = math.cos(t), math.sin(t)
        draw.polygon([(x + px * c - py * s, y + px * s + py * c) for px, py in _polygon(o["shape"], r)], fill=fill,
                     **extra)
    img = img.reduce(k) if k > 1 else img
    return _noisy(img, style) if kind == "noise" else img
