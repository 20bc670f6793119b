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

These per-attribute judgements forgive a swapped binding: for a red circle left of a blue square,
"a blue circle left of a red square" is wrong on colour only, right on shape and on relation. The
binding-strict judgement (``strict_report``) matches each described object to at most one scene
object by its own colour, shape and size: exhaustively over one-to-one matchings, the one binding the
most scene objects exactly, then agreeing on the most attributes; remaining ties go to the first
matching in ``itertools.permutations`` order (earlier caption objects to earlier scene objects).
As for the lenient matching, only the first n + ``MATCH_SLACK`` caption objects take part.
Stated relations play no part in this matching. Then

- binding:  the fraction of the scene's objects whose matched caption object names the scene
            object's colour, shape and size (all three on that one object). Extra objects do not
            lower it; a missing object is unbound. Size omission: every phrasing of
            ``shape_captions`` states each object's size, so an omitted size is wrong, as for
            ``size``. Only where the references include a phrasing that never states size
            (``sizeless_ok``: some reference of the image names objects and no size) is a caption that
            names no size for any of its objects judged on colour and shape alone; one that names
            some sizes and omits others is still wrong on the omitted ones.
- relation_strict: multi-object scenes only: the caption states at least one relation, every stated
            relation names two bound caption objects and holds between their scene objects, and the
            stated relations fix the whole order (each pair of neighbours along the scene's axis is
            related directly: with 3 objects, "X above Y" alone is not enough).
- scene:    count right, every scene object bound, and position (1 object) or relation_strict right.
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
STRICT_METRICS = ("binding", "relation_strict", "scene")  # binding-strict judgements (strict_report)
OBJECT_ATTRIBUTES = ("colour", "shape", "size")
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


def one_to_one(n_scene: int, n_caption: int) -> Iterable[list[tuple[int, int]]]:
    """Every maximal one-to-one matching as (scene index, caption index) pairs, in a fixed order."""
    if n_scene <= n_caption:
        perms = itertools.permutations(range(n_caption), n_scene)
        return ([(s, c) for s, c in enumerate(p)] for p in perms)
    perms = itertools.permutations(range(n_scene), n_caption)
    return ([(s, c) for c, s in enumerate(p)] for p in perms)


def _matching(scene: Mapping[str, Any], parsed: Mapping[str, Any]) -> dict[int, int]:
    """Scene index -> caption index, one to one, maximising agreeing attributes, then true relations."""
    objs = scene["objects"]
    # A babbling caption may name a dozen objects; matching only the first few keeps this cheap and
    # changes nothing that matters: such a caption is wrong on count and hallucinates objects anyway.
    caps = parsed["objects"][: len(objs) + MATCH_SLACK]
    best, best_score = {}, (-1, -1)
    for pairs in one_to_one(len(objs), len(caps)):
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


def states_no_size(caption: str) -> bool:
    """Whether a caption names objects but no size for any of them (a phrasing without sizes)."""
    objects = parse_caption(caption)["objects"]
    return bool(objects) and all(o["size"] is None for o in objects)


def sizeless_references(references: Iterable[str]) -> bool:
    """Whether any reference uses a phrasing that never states size: then a caption may omit sizes."""
    return any(states_no_size(r) for r in references)


def object_bound(scene_obj: Mapping[str, Any], cap_obj: Mapping[str, Any], ignore_size: bool = False) -> bool:
    """Whether a described object names the scene object's colour, shape and (unless ignored) size."""
    keys = ("colour", "shape") if ignore_size else OBJECT_ATTRIBUTES
    return all(cap_obj[k] == scene_obj[k] for k in keys)


def binding_matching(objs: Sequence[Mapping[str, Any]], caps: Sequence[Mapping[str, Any]],
                     ignore_size: bool = False) -> dict[int, int]:
    """Scene index -> caption index, one to one, binding the most scene objects exactly, then agreeing on
    the most attributes; ties: the first in ``one_to_one`` order. Relations play no part (module doc)."""
    caps = caps[: len(objs) + MATCH_SLACK]  # as in _matching: a babbling caption is wrong on count anyway
    best: dict[int, int] = {}
    best_score = (-1, -1)
    for pairs in one_to_one(len(objs), len(caps)):
        bound = sum(object_bound(objs[s], caps[c], ignore_size) for s, c in pairs)
        agree = sum(objs[s][k] == caps[c][k] for s, c in pairs for k in OBJECT_ATTRIBUTES)
        if (bound, agree) > best_score:
            best, best_score = dict(pairs), (bound, agree)
    return best


def _relations_fix_order(scene: Mapping[str, Any], related: set[frozenset[int]]) -> bool:
    """Whether stated (true) relations between these scene-object pairs pin down the whole order: every
    pair of neighbours must be related directly, as no chain of true relations can pass between them."""
    order = list((scene.get("relation") or {}).get("order") or [])
    return all(frozenset(pair) in related for pair in zip(order, order[1:]))


def _strict(scene: Mapping[str, Any], parsed: Mapping[str, Any], sizeless_ok: bool) -> tuple[list[bool], dict]:
    """(per scene object: bound?, binding-strict report) of a parsed caption; see the module doc."""
    objs, caps = scene["objects"], parsed["objects"]
    n = len(objs)
    ignore_size = sizeless_ok and bool(caps) and all(c["size"] is None for c in caps)
    match = binding_matching(objs, caps, ignore_size)
    bound = [s in match and object_bound(objs[s], caps[match[s]], ignore_size) for s in range(n)]
    bound_caption = {match[s]: s for s in range(n) if bound[s]}  # caption index -> its bound scene object
    relation: bool | None = None
    if n >= 2:
        rels = parsed["relations"]
        holds = all(a in bound_caption and b in bound_caption
                    and relation_holds(scene, bound_caption[a], name, bound_caption[b]) for a, name, b in rels)
        related = {frozenset((bound_caption.get(a), bound_caption.get(b))) for a, _, b in rels}
        relation = bool(rels) and holds and _relations_fix_order(scene, related)
    count = len(caps) == n and parsed["count"] in (None, n)
    if n == 1:
        where = bool(parsed["positions"]) and set(parsed["positions"]) == {scene.get("position")}
    else:
        where = bool(relation)
    report = {"binding": sum(bound) / n if n else 1.0, "relation_strict": relation,
              "scene": count and all(bound) and where}
    return bound, report


def strict_report(scene: Mapping[str, Any], caption: str, sizeless_ok: bool = False) -> dict[str, Any]:
    """Binding-strict judgement of a caption: ``binding`` (fraction of scene objects bound, a float),
    ``relation_strict`` (None for one-object scenes) and ``scene`` (bool); rules in the module doc.

    ``sizeless_ok``: the image's references include a phrasing without sizes (``sizeless_references``)."""
    return _strict(scene, parse_caption(caption), sizeless_ok)[1]


def bound_objects(scene: Mapping[str, Any], caption: str, sizeless_ok: bool = False) -> list[bool]:
    """Per scene object: does one described object name its colour, shape and size (module doc)?"""
    return _strict(scene, parse_caption(caption), sizeless_ok)[0]


def attribute_accuracy(
    records: Sequence[Any], hypotheses: Mapping[Any, str], per_count: bool = False
) -> dict[str, float]:
    """Fraction of captions right per attribute over the records that have a scene (applicable ones only).

    ``all`` is the fraction whose every applicable attribute (of ``ATTRIBUTES``) is right; then the
    binding-strict ``binding`` (the mean over images of the fraction of objects bound), ``relation_strict``
    and ``scene`` (``strict_report``; a record's own references decide ``sizeless_ok``); with
    ``per_count`` also ``<key>@<n>`` restricted to scenes of n objects.
    """
    hits: dict[str, list[float]] = defaultdict(list)
    judged = scene_judgements(records, hypotheses)
    for r in records:
        if r.scene is None:
            continue
        n = len(r.scene["objects"])
        for key, ok in judged[r.image_id].items():
            hits[key].append(ok)
            if per_count:
                hits[f"{key}@{n}"].append(ok)
    keys = [a for a in (*ATTRIBUTES, "all", *STRICT_METRICS) if a in hits] + sorted(k for k in hits if "@" in k)
    return {k: sum(hits[k]) / len(hits[k]) for k in keys}


def scene_judgements(records: Sequence[Any], hypotheses: Mapping[Any, str]) -> dict[Any, dict[str, float]]:
    """Per record with a scene ({image_id: {key: 0/1, or the fraction for ``binding``}}): the judgements
    ``attribute_accuracy`` averages, the applicable ones only (no ``position`` for a multi-object scene,
    no ``relation``/``relation_strict`` for a one-object one). ``attribute_accuracy`` of a key is the
    mean of that key over the images that have it."""
    out: dict[Any, dict[str, float]] = {}
    missing = []
    for r in records:
        if r.scene is None:
            continue
        hyp = hypotheses.get(r.image_id, hypotheses.get(str(r.image_id)))
        if hyp is None:
            missing.append(r.image_id)
            continue
        parsed, _, report = _judge(r.scene, hyp)
        report = {**report, "all": all(ok is not False for ok in report.values())}
        report.update(_strict(r.scene, parsed, sizeless_references(r.captions))[1])
        out[r.image_id] = {k: float(ok) for k, ok in report.items() if ok is not None}
    if missing:
        raise ValueError(f"no hypothesis for {len(missing)} images with scenes, e.g. ids {missing[:5]}")
    return out
