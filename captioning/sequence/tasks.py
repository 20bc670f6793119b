"""Synthetic sequence tasks: data generators only (models and losses live elsewhere).

* adding problem (Hochreiter & Schmidhuber 1997, experiment 4): many-to-one regression that needs
  a memory spanning the whole sequence;
* digit-string reversal: sequence-to-sequence;
* first colour of a synthetic-scene caption: many-to-one classification over caption words;
* caption paraphrase: any phrasing of a synthetic scene -> its one canonical phrasing (seq2seq).

The caption tasks reuse the shapes dataset's scene sampler and caption grammar
(``captioning.data.shapes`` / ``shape_captions``) without drawing any image.
Every generator is a pure function of its arguments and seed.
"""

from __future__ import annotations

import random
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor

from captioning.data.shape_captions import describe
from captioning.data.shapes import DEFAULTS as SHAPES_DEFAULTS
from captioning.data.shapes import sample_scene
from captioning.text.tokenizer import tokenize

PLACEMENTS = ("hochreiter", "halves")
DIGITS = tuple("0123456789")


# --- adding problem ---------------------------------------------------------------------------------


def adding_problem(n: int, seq_len: int, generator: torch.Generator,
                   placement: str = "hochreiter") -> tuple[Tensor, Tensor]:
    """``n`` sequences of (value ~ U[0,1], marker) pairs [n, T, 2] and targets [n]: the sum of the two marked values.

    ``placement`` says where the two markers go:
    * ``hochreiter`` (H&S 1997): the first among the first min(10, T/2) steps, the second anywhere
      else in the first half, so both values must be remembered for at least T/2 steps;
    * ``halves`` (Le et al. 2015): one in each half; the second may sit next to the end.
    """
    if seq_len < 4:
        raise ValueError(f"adding problem: seq_len must be >= 4 (two markers in the first half), got {seq_len}")
    if placement not in PLACEMENTS:
        raise ValueError(f"adding problem: unknown placement {placement!r}; choose one of {PLACEMENTS}")
    values = torch.rand(n, seq_len, generator=generator)
    half = seq_len // 2
    if placement == "hochreiter":
        first = torch.randint(0, min(10, half), (n,), generator=generator)
        second = torch.randint(0, half - 1, (n,), generator=generator)
        second = second + (second >= first).long()  # any first-half step except ``first``
    else:
        first = torch.randint(0, half, (n,), generator=generator)
        second = torch.randint(half, seq_len, (n,), generator=generator)
    markers = torch.zeros(n, seq_len)
    rows = torch.arange(n)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    inputs = torch.stack([values, markers], dim=-1)
    return inputs, adding_target(inputs)


def adding_target(inputs: Tensor) -> Tensor:
    """The sum of the marked values of (value, marker) sequences [n, T, 2]."""
    return (inputs[..., 0] * inputs[..., 1]).sum(dim=-1)


def adding_baseline(tolerance: float) -> dict[str, float]:
    """MSE and accuracy of always predicting the mean target, 1.

    The target is the sum of two independent U[0,1] values: triangular on [0, 2] with variance
    2 * 1/12 = 1/6, so the MSE is 1/6 ~ 0.1667; P(|S - 1| < tol) = 1 - (1 - tol)^2 (0.0784 for 0.04).
    """
    return {"mse": 1.0 / 6.0, "accuracy": 1.0 - (1.0 - tolerance) ** 2}


# --- digit-string reversal --------------------------------------------------------------------------


def digit_reversal(n: int, min_len: int, max_len: int, seed: int) -> list[tuple[list[str], list[str]]]:
    """``n`` (digits, reversed digits) token pairs, lengths uniform in [min_len, max_len]."""
    if not 1 <= min_len <= max_len:
        raise ValueError(f"digit reversal: need 1 <= min_len <= max_len, got {min_len}, {max_len}")
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        src = [rng.choice(DIGITS) for _ in range(rng.randint(min_len, max_len))]
        pairs.append((src, src[::-1]))
    return pairs


# --- caption tasks (synthetic scenes) ---------------------------------------------------------------


def scene_captions(n: int, seed: int, colours: Sequence[str] | None = None, shapes: Sequence[str] | None = None,
                   count_probs: Sequence[float] | None = None) -> list[tuple[dict, str]]:
    """``n`` (scene, caption) pairs from the shapes dataset's sampler and grammar (no images drawn)."""
    colours = list(colours or SHAPES_DEFAULTS["colours"])
    shapes = list(shapes or SHAPES_DEFAULTS["shapes"])
    probs = list(count_probs or SHAPES_DEFAULTS["count_probs"])
    pairs = [(c, s) for c in colours for s in shapes]
    out = []
    for i in range(n):
        rng = random.Random(f"sequence/{seed}/{i}")
        scene = sample_scene(rng, pairs, probs, SHAPES_DEFAULTS["image_size"])
        out.append((scene, describe(scene, rng, 1)[0]))
    return out


def first_colour(tokens: Sequence[str], colours: Sequence[str]) -> int:
    """Index in ``colours`` of the first colour word in ``tokens``; ValueError when there is none."""
    for t in tokens:
        if t in colours:
            return list(colours).index(t)
    raise ValueError(f"caption {' '.join(tokens)!r} names none of the colours {list(colours)}")


def caption_colour(n: int, seed: int, colours: Sequence[str] | None = None,
                   shapes: Sequence[str] | None = None) -> tuple[list[list[str]], list[int]]:
    """Caption token lists and the index (in ``colours``) of the first colour each one mentions."""
    colours = list(colours or SHAPES_DEFAULTS["colours"])
    tokens = [tokenize(c) for _, c in scene_captions(n, seed, colours, shapes)]
    return tokens, [first_colour(t, colours) for t in tokens]


def canonical_caption(scene: Mapping[str, Any]) -> str:
    """The one fixed phrasing of a scene: objects left to right (or top to bottom), plain words."""
    objs = scene["objects"]
    name = lambda o: f"{o['size']} {o['colour']} {o['shape']}"  # noqa: E731
    if len(objs) == 1:
        where = "on the" if scene["position"] in ("left", "right") else "at the"
        return f"a {name(objs[0])} {where} {scene['position']}"
    axis, order = scene["relation"]["axis"], scene["relation"]["order"]
    ordered = [objs[i] for i in order]
    if len(objs) == 2:
        rel = "left of" if axis == "horizontal" else "above"
        return f"a {name(ordered[0])} {rel} a {name(ordered[1])}"
    words = "from left to right" if axis == "horizontal" else "from top to bottom"
    return f"{words} , " + " , ".join(name(o) for o in ordered[:-1]) + f" and {name(ordered[-1])}"


def caption_paraphrase(n: int, seed: int, colours: Sequence[str] | None = None,
                       shapes: Sequence[str] | None = None) -> list[tuple[list[str], list[str]]]:
    """(any phrasing, canonical phrasing) token pairs of random scenes."""
    return [(tokenize(c), tokenize(canonical_caption(s))) for s, c in scene_captions(n, seed, colours, shapes)]
