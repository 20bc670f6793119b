"""The grammar of synthetic-scene captions: parse a caption back into objects and check it against a scene.

A scene (as written by ``captioning.data.shapes``) is a dict with ``objects`` (each with ``colour``,
``shape``, ``size``), ``position`` (left/right/top/bottom, single-object scenes) and ``relation``
(``{"axis": "horizontal"|"vertical", "order": [object indices left-to-right or top-to-bottom]}``,
multi-object scenes).

How a caption is judged (``attribute_report``): caption objects (a shape word with the size and colour
words before it) are matched one to one to scene objects so that the most attributes agree (ties: the
matching under which more stated relations hold). Then

- count:    the caption describes exactly as many objects as the scene has, and any count word
            ("one", "single", "two", "three") says the same number.
- colour, shape, size: every scene object is matched and its caption object names the scene's value
            (an omitted size or colour is wrong). Extra, hallucinated objects do not affect these.
- position: single-object scenes only (None otherwise): the caption names a position and every
            position word equals the scene's.
- relation: multi-object scenes only (None otherwise): the caption states at least one relation
            ("left of", "above", "below it", "from left to right: ...") and every stated relation
            holds between the matched scene objects along the scene's arrangement axis.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from typing import Any, Iterable, Mapping, Sequence

COLOURS = ("red", "green", "blue", "yellow", "purple", "orange", "pink", "cyan", "white", "brown")
SHAPES = ("circle", "square", "triangle", "star", "cross", "diamond")
SIZE_WORDS = {"large": "large", "big": "large", "small": "small", "little": "small"}
COUNT_WORDS = {"one": 1, "single": 1, "two": 2, "three": 3, "four": 4}
POSITIONS = ("left", "right", "top", "bottom")
AXIS_OF = {"left": "horizontal", "right": "horizontal", "top": "vertical", "bottom": "vertical"}
# relation words: subject REL object; "left of"/"right of" need the following "of"
RELATIONS = {"left": "left_of", "right": "right_of", "above": "above", "below": "below", "under": "below"}
ATTRIBUTES = ("count", "colour", "shape", "size", "position", "relation")
MATCH_SLACK = 3  # caption objects beyond the scene's count considered when matching
ERROR_KINDS = ATTRIBUTES + ("hallucinated_object", "missed_object")
# "from left to right": consecutive listed objects stand in this relation
ORDER_RELATION = {("left", "right"): "left_of", ("right", "left"): "right_of",
                  ("top", "bottom"): "above", ("bottom", "top"): "below"}  # fmt: skip


def parse_caption(caption: str) -> dict[str, Any]:
    """Objects, count word, position words and relations ``(i, rel, j)`` stated by a caption."""
    from captioning.text.tokenizer import tokenize

    toks = tokenize(caption)
    out: dict[str, Any] = {"count": None, "objects": [], "positions": [], "relations": []}
    pending: dict[str, str] = {}
    waiting: tuple[int, str] | None = None  # (subject index, relation) until its object is named
    order: str | None = None
    i = 0
    while i < len(toks):
        t, nxt = toks[i], toks[i + 1] if i + 1 < len(toks) else None
        step = 1
        if t in COUNT_WORDS:
            out["count"] = out["count"] if out["count"] is not None else COUNT_WORDS[t]
        elif t in SIZE_WORDS:
            pending["size"] = SIZE_WORDS[t]
        elif t in COLOURS:
            pending["colour"] = t
        elif t in SHAPES:
            out["objects"].append({"size": pending.get("size"), "colour": pending.get("colour"), "shape": t})
            pending = {}
            if waiting is not None:
                out["relations"].append((waiting[0], waiting[1], len(out["objects"]) - 1))
                waiting = None
        elif t in AXIS_OF and nxt == "to" and i + 2 < len(toks) and toks[i + 2] in AXIS_OF:
            order, step = ORDER_RELATION.get((t, toks[i + 2])), 3  # an invalid order states nothing
        elif t in RELATIONS and (nxt == "of" or t not in AXIS_OF):
            subject = len(out["objects"]) - 1
            step = 2 if nxt == "of" else 1
            after = toks[i + step] if i + step < len(toks) else None
            if after == "it" and subject >= 1:  # "X and Y below it": Y below X
                out["relations"].append((subject, RELATIONS[t], subject - 1))
                step += 1
            elif subject >= 0:
                waiting = (subject, RELATIONS[t])
        elif t in AXIS_OF:
            out["positions"].append(t)
        i += step
    if order is not None:  # the order phrase applies to all listed objects, wherever it stands
        out["relations"] += [(a, order, a + 1) for a in range(len(out["objects"]) - 1)]
    return out


def relation_holds(scene: Mapping[str, Any], a: int, rel: str, b: int) -> bool:
    """Whether scene object ``a`` is ``rel`` (left_of/right_of/above/below) of object ``b``."""
    arrangement = scene.get("relation") or {}
    axis = "horizontal" if rel in ("left_of", "right_of") else "vertical"
    if arrangement.get("axis") != axis or a == b:
        return False
    order = list(arrangement["order"])
    if a not in order or b not in order:
        return False
    before = order.index(a) < order.index(b)
    return before if rel in ("left_of", "above") else not before


def _matching(scene: Mapping[str, Any], parsed: Mapping[str, Any]) -> dict[int, int]:
    """Scene index -> caption index, one to one, maximising agreeing attributes, then true relations."""
    objs = scene["objects"]
    # A babbling caption may name a dozen objects; matching only the first few keeps this cheap and
    # changes nothing that matters: such a caption is wrong on count and hallucinates objects anyway.
    caps = parsed["objects"][: len(objs) + MATCH_SLACK]
    pairs_options: Iterable[list[tuple[int, int]]]
    if len(objs) <= len(caps):
        perms = itertools.permutations(range(len(caps)), len(objs))
        pairs_options = ([(s, c) for s, c in enumerate(p)] for p in perms)
    else:
        perms = itertools.permutations(range(len(objs)), len(caps))
        pairs_options = ([(s, c) for c, s in enumerate(p)] for p in perms)
    best, best_score = {}, (-1, -1)
    for pairs in pairs_options:
        agree = sum(objs[s][k] == caps[c][k] for s, c in pairs for k in ("colour", "shape", "size"))
        inverse = {c: s for s, c in pairs}
        true_rels = sum(_stated_relation_holds(scene, inverse, r) for r in parsed["relations"])
        if (agree, true_rels) > best_score:
            best, best_score = dict(pairs), (agree, true_rels)
    return best


def _stated_relation_holds(scene: Mapping[str, Any], inverse: Mapping[int, int], rel: Sequence) -> bool:
    a, name, b = rel
    return a in inverse and b in inverse and relation_holds(scene, inverse[a], name, inverse[b])


def _judge(scene: Mapping[str, Any], caption: str) -> tuple[dict, dict[int, int], dict[str, bool | None]]:
    """(parsed caption, scene->caption matching, attribute report)."""
    parsed = parse_caption(caption)
    objs, caps = scene["objects"], parsed["objects"]
    n = len(objs)
    match = _matching(scene, parsed)
    report: dict[str, bool | None] = {"count": len(caps) == n and parsed["count"] in (None, n)}
    for attr in ("colour", "shape", "size"):
        report[attr] = len(match) == n and all(caps[c][attr] == objs[s][attr] for s, c in match.items())
    report["position"] = None
    if n == 1:
        report["position"] = bool(parsed["positions"]) and set(parsed["positions"]) == {scene["position"]}
    report["relation"] = None
    if n >= 2:
        inverse = {c: s for s, c in match.items()}
        rels = parsed["relations"]
        report["relation"] = bool(rels) and all(_stated_relation_holds(scene, inverse, r) for r in rels)
    return parsed, match, report


def attribute_report(scene: Mapping[str, Any], caption: str) -> dict[str, bool | None]:
    """Per attribute: is the caption right about the scene (None: not applicable); see module doc."""
    return _judge(scene, caption)[2]


def error_kinds(scene: Mapping[str, Any], caption: str) -> list[str]:
    """What went wrong: count/position/relation as in the report; colour/shape/size for a described
    object with a wrong or missing value; hallucinated_object/missed_object for extra/absent objects."""
    parsed, match, report = _judge(scene, caption)
    objs, caps = scene["objects"], parsed["objects"]
    kinds = ["count"] if report["count"] is False else []
    kinds += [a for a in ("colour", "shape", "size") if any(caps[c][a] != objs[s][a] for s, c in match.items())]
    kinds += [k for k in ("position", "relation") if report[k] is False]
    if len(caps) > len(objs):
        kinds.append("hallucinated_object")
    if len(caps) < len(objs):
        kinds.append("missed_object")
    return kinds


def attribute_accuracy(
    records: Sequence[Any], hypotheses: Mapping[Any, str], per_count: bool = False
) -> dict[str, float]:
    """Fraction of captions right per attribute over the records that have a scene (applicable ones only).

    ``all`` is the fraction whose every applicable attribute is right; with ``per_count`` also
    ``<attr>@<n>`` restricted to scenes of n objects.
    """
    hits: dict[str, list[bool]] = defaultdict(list)
    missing = []
    for r in records:
        if r.scene is None:
            continue
        hyp = hypotheses.get(r.image_id, hypotheses.get(str(r.image_id)))
        if hyp is None:
            missing.append(r.image_id)
            continue
        report = attribute_report(r.scene, hyp)
        n = len(r.scene["objects"])
        for attr, ok in report.items():
            if ok is not None:
                hits[attr].append(ok)
                if per_count:
                    hits[f"{attr}@{n}"].append(ok)
        hits["all"].append(all(ok is not False for ok in report.values()))
    if missing:
        raise ValueError(f"no hypothesis for {len(missing)} images with scenes, e.g. ids {missing[:5]}")
    keys = [a for a in (*ATTRIBUTES, "all") if a in hits] + sorted(k for k in hits if "@" in k)
    return {k: sum(hits[k]) / len(hits[k]) for k in keys}
