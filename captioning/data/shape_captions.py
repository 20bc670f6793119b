"""Reference captions for synthetic scenes: several phrasings per object count, all parseable by scenes.py.

Every template fits ``max_caption_len`` 16 tokens, three-object scenes included: those drop the
articles and list the objects in order ("from left to right , large red circle , small blue square
and small green star"). Each image gets captions from distinct templates, so at least
``min(k, templates)`` different phrasings, with synonyms (big/large, little/small, left of/to the
left of) and the order of mention drawn at random.

Scenes of 4 or 5 objects (the ``long`` hard split, captioning/data/hard_scenes.py) are listed in order
as three-object ones are, by ``LONG`` templates that name no count: the training captions have no count
word beyond "three", and every word of a ``LONG`` caption occurs in them. Such captions run past the
training ones (at most 16 tokens, commas not counted): 15-20 tokens for 4 objects, 18-23 for 5, so a
decoder stopped at 16 words can say a whole 5-object scene in no phrasing.
"""

from __future__ import annotations

import random
from typing import Any, Callable, Mapping, Sequence

SIZE_SYNONYMS = {"large": ("large", "big"), "small": ("small", "little")}
RELATION_WORDS = {"left_of": ("left of", "to the left of"), "right_of": ("right of", "to the right of"),
                  "above": ("above",), "below": ("below", "under")}  # fmt: skip
INVERSE = {"left_of": "right_of", "right_of": "left_of", "above": "below", "below": "above"}
ORDER_WORDS = {"horizontal": ("left", "right"), "vertical": ("top", "bottom")}


def _np(obj: Mapping[str, Any], rng: random.Random, article: bool = True) -> str:
    """Noun phrase: '[a] large red circle'."""
    words = [rng.choice(SIZE_SYNONYMS[obj["size"]]), obj["colour"], obj["shape"]]
    return " ".join((["a"] if article else []) + words)


def _where(position: str, rng: random.Random) -> str:
    """Absolute position phrase: 'on the left', 'near the top', 'in the left half'."""
    if position in ("left", "right"):
        return rng.choice((f"on the {position}", f"on the {position} side", f"in the {position} half"))
    return rng.choice((f"at the {position}", f"near the {position}", f"in the {position} half"))


Single = Callable[[Mapping[str, Any], str, random.Random], str]
SINGLE: tuple[Single, ...] = (
    lambda o, p, r: f"{_np(o, r)} {_where(p, r)}",
    lambda o, p, r: f"there is {_np(o, r)} {_where(p, r)}",
    lambda o, p, r: f"{_where(p, r)} , there is {_np(o, r)}",
    lambda o, p, r: f"the image shows {_np(o, r)} {_where(p, r)}",
    lambda o, p, r: f"a single {_np(o, r, False)} {_where(p, r)}",
    lambda o, p, r: f"one {_np(o, r, False)} {_where(p, r)}",
    lambda o, p, r: f"{_np(o, r)} in the {p} part of the image",
)

# (x, relation of x to y, y)
Pair = Callable[[Mapping[str, Any], str, Mapping[str, Any], random.Random], str]
PAIR: tuple[Pair, ...] = (
    lambda x, rel, y, r: f"{_np(x, r)} {r.choice(RELATION_WORDS[rel])} {_np(y, r)}",
    lambda x, rel, y, r: f"there is {_np(x, r)} {r.choice(RELATION_WORDS[rel])} {_np(y, r)}",
    lambda x, rel, y, r: f"two shapes , {_np(x, r)} {r.choice(RELATION_WORDS[rel])} {_np(y, r)}",
    lambda x, rel, y, r: f"{_np(y, r)} and {_np(x, r)} {r.choice(RELATION_WORDS[rel])} it",
    lambda x, rel, y, r: f"the image shows {_np(x, r)} {r.choice(RELATION_WORDS[rel])} {_np(y, r)}",
    lambda x, rel, y, r: f"two objects , {_np(x, r)} {r.choice(RELATION_WORDS[rel])} {_np(y, r)}",
)

# (objects in the order named, order phrase such as "from left to right")
Row = Callable[[Sequence[Mapping[str, Any]], str, random.Random], str]


def _list(objs: Sequence[Mapping[str, Any]], rng: random.Random) -> str:
    """'large red circle , small blue square and small green star' (no articles, to stay short)."""
    names = [_np(o, rng, article=False) for o in objs]
    last_sep = rng.choice((" and ", " , "))
    return " , ".join(names[:-1]) + last_sep + names[-1]


ROW: tuple[Row, ...] = (
    lambda objs, order, r: f"three shapes {order} , {_list(objs, r)}",
    lambda objs, order, r: f"{order} , {_list(objs, r)}",
    lambda objs, order, r: f"{_list(objs, r)} {order}",
    lambda objs, order, r: f"three objects , {order} , {_list(objs, r)}",
    lambda objs, order, r: f"three shapes , {_list(objs, r)} , {order}",
)


# four or more objects: no count word ("four" and "five" never occur in the training captions)
LONG: tuple[Row, ...] = (
    lambda objs, order, r: f"{order} , {_list(objs, r)}",
    lambda objs, order, r: f"{_list(objs, r)} {order}",
    lambda objs, order, r: f"{_list(objs, r)} , {order}",
    lambda objs, order, r: f"the image shows {_list(objs, r)} {order}",
    lambda objs, order, r: f"shapes {order} , {_list(objs, r)}",
)


def _pick(templates: Sequence, k: int, rng: random.Random) -> list:
    """k templates, all different while there are enough of them."""
    picked = rng.sample(list(templates), min(k, len(templates)))
    return picked + [rng.choice(templates) for _ in range(k - len(picked))]


def describe(scene: Mapping[str, Any], rng: random.Random, k: int) -> list[str]:
    """``k`` reference captions of a scene (1 to 5 objects), from distinct templates."""
    objs = scene["objects"]
    if len(objs) == 1:
        return [t(objs[0], scene["position"], rng) for t in _pick(SINGLE, k, rng)]
    axis, order = scene["relation"]["axis"], scene["relation"]["order"]
    first, last = ORDER_WORDS[axis]
    if len(objs) == 2:
        rel = "left_of" if axis == "horizontal" else "above"  # of order[0] relative to order[1]
        out = []
        for t in _pick(PAIR, k, rng):
            x, y = order if rng.random() < 0.5 else order[::-1]
            out.append(t(objs[x], rel if x == order[0] else INVERSE[rel], objs[y], rng))
        return out
    if len(objs) > 5:
        raise ValueError(f"captions exist for scenes of 1 to 5 objects, got {len(objs)}")
    out = []
    for t in _pick(ROW if len(objs) == 3 else LONG, k, rng):
        ordered = [objs[i] for i in order]
        words = (first, last) if rng.random() < 0.5 else (last, first)
        if words[0] == last:
            ordered = ordered[::-1]
        phrase = f"from {words[0]} to {words[1]}" if rng.random() < 0.5 else f"{words[0]} to {words[1]}"
        out.append(t(ordered, phrase, rng))
    return out
