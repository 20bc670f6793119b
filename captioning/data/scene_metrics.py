"""Reading scene accuracies against the data: the chance line, and accuracy split by kind of scene.

``chance_accuracy`` says what each ``acc_*`` would be for a blind guesser that knows only the training
distribution; ``split_breakdown`` scores a split's captions separately by object count and by whether
the scene's description occurs in training; ``unseen_pair_colours`` says what colour the captions give
the objects whose colour-shape pair no training scene has (composed, or recalled from training);
``group_breakdown`` and ``object_breakdown`` say where captions break on the hard splits (by object count,
drawing style, twins, held-out pairs; per object by its place in the row and by attribute). All are pure
functions of records (``ImageRecord``-like:
``image_id``, ``captions``, ``scene``) and are not wired into the pipeline.

``scene_hallucinations`` (which objects a caption names that its scene does not have, the per-caption
count behind CHAIR) and ``names_pair`` (does a caption name a colour-shape pair) are exact on every scene;
captioning/evaluation/measures.py turns them into CHAIR_i, CHAIR_s and held-out-pair recall@k.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, Hashable, Mapping, Sequence

from captioning.data.scenes import (OBJECT_ATTRIBUTES, attribute_accuracy, binding_matching, object_bound,
                                     parse_caption)

GUESSES = ("sample", "majority")
CHANCE_KEYS = ("count", "colour", "shape", "size", "position", "relation", "binding", "relation_strict", "scene")


def _scenes(records: Sequence[Any]) -> list[Mapping[str, Any]]:
    return [r.scene for r in records if r.scene is not None]


def object_key(obj: Mapping[str, Any]) -> tuple[str, str, str]:
    """(colour, shape, size) of a scene object: what binding asks a caption to name together."""
    return tuple(obj[k] for k in OBJECT_ATTRIBUTES)  # type: ignore[return-value]


def _probability(counts: Counter, value: Hashable, guess: str) -> float:
    """Chance that a guess of ``value`` is right: its frequency ("sample": drawn with the training
    frequencies) or whether it is the most frequent value ("majority"; ties: the smallest value)."""
    total = sum(counts.values())
    if total == 0:
        return 0.0
    if guess == "sample":
        return counts[value] / total
    mode = min(counts, key=lambda v: (-counts[v], v))
    return float(value == mode)


def training_distribution(train: Sequence[Any]) -> dict[str, Counter]:
    """Counts over the training scenes: ``count`` (objects per image), ``colour``/``shape``/``size`` and
    ``object`` (the (colour, shape, size) triple) over all objects, ``position`` over one-object scenes,
    ``axis`` over multi-object scenes."""
    scenes = _scenes(train)
    if not scenes:
        raise ValueError("no training records with scenes: the chance line needs synthetic training scenes")
    objects = [o for s in scenes for o in s["objects"]]
    dist = {attr: Counter(o[attr] for o in objects) for attr in OBJECT_ATTRIBUTES}
    dist["count"] = Counter(len(s["objects"]) for s in scenes)
    dist["object"] = Counter(object_key(o) for o in objects)
    dist["position"] = Counter(s["position"] for s in scenes if len(s["objects"]) == 1)
    dist["axis"] = Counter(s["relation"]["axis"] for s in scenes if len(s["objects"]) >= 2)
    return dist


def chance_accuracy(train: Sequence[Any], evaluation: Sequence[Any], guess: str = "sample") -> dict[str, float]:
    """Expected ``acc_*`` of a blind guesser that knows only the training scenes' frequencies.

    The guesser draws each value independently from its training frequency (``guess="sample"``; with
    ``"majority"`` it always names the most frequent value). For an evaluation scene of n objects, with
    P the training frequencies of ``training_distribution``, each key is the mean over the evaluation
    scenes where it applies of:

    - count:    P_count(n).
    - colour, shape, size: the product over the scene's objects of P_attr(object's value): the guesser
                is told how many objects there are and is compared object by object (it is scored on
                that attribute alone, as ``acc_colour`` is).
    - position: one-object scenes: P_position(position).
    - relation: multi-object scenes: P_axis(axis) / n!: the axis by frequency, the order of the n
                objects uniformly (which object comes first is not a value that frequencies can tell).
                This is the chance of naming the order; the old ``acc_relation`` of a blind caption can
                be higher, as its matching picks the pairing under which stated relations hold.
    - binding:  the mean over the scene's objects of P_object((colour, shape, size)): whole objects
                drawn from the training objects (so 0 for a colour-shape pair never seen in training).
    - relation_strict: multi-object scenes: the product of P_object over the objects (all bound)
                times P_axis(axis) / n!.
    - scene:    P_count(n) times the product of P_object over the objects times P_position(position)
                (one object) or P_axis(axis) / n! (more).

    Evaluation records without scenes are skipped; keys that apply to no scene are left out.
    """
    if guess not in GUESSES:
        raise ValueError(f"guess must be one of {GUESSES}, got {guess!r}")
    dist = training_distribution(train)
    values: dict[str, list[float]] = {k: [] for k in CHANCE_KEYS}
    for scene in _scenes(evaluation):
        objs = scene["objects"]
        n = len(objs)
        p_count = _probability(dist["count"], n, guess)
        values["count"].append(p_count)
        for attr in OBJECT_ATTRIBUTES:
            values[attr].append(math.prod(_probability(dist[attr], o[attr], guess) for o in objs))
        p_objects = [_probability(dist["object"], object_key(o), guess) for o in objs]
        values["binding"].append(sum(p_objects) / n if n else 1.0)
        if n == 1:
            p_where = _probability(dist["position"], scene["position"], guess)
            values["position"].append(p_where)
        else:
            p_where = _probability(dist["axis"], scene["relation"]["axis"], guess) / math.factorial(n)
            values["relation"].append(p_where)
            values["relation_strict"].append(math.prod(p_objects) * p_where)
        values["scene"].append(p_count * math.prod(p_objects) * p_where)
    return {k: sum(v) / len(v) for k, v in values.items() if v}


def scene_description(scene: Mapping[str, Any]) -> tuple:
    """What a perfect caption says about a scene: its objects' (colour, shape, size) in arrangement order
    (left to right / top to bottom) and the position (one object) or the axis (more)."""
    objs = scene["objects"]
    if len(objs) == 1:
        return (object_key(objs[0]),), scene["position"]
    order = scene["relation"]["order"]
    return tuple(object_key(objs[i]) for i in order), scene["relation"]["axis"]


def split_breakdown(
    records: Sequence[Any], hypotheses: Mapping[Any, str], train: Sequence[Any]
) -> dict[str, dict[str, float]]:
    """``attribute_accuracy`` over subsets of a split's scenes, each with ``images`` (its size):

    ``objects=<n>`` for scenes of n objects, and ``seen_in_train`` / ``unseen_in_train`` by whether the
    scene's ``scene_description`` is that of some training scene (a caption could be recalled, not
    composed). Nearly every one-object scene is seen and nearly every three-object one is not, so read
    the seen/unseen split within an object count as well: ``seen_in_train@<n>``, ``unseen_in_train@<n>``.
    Empty subsets are left out.
    """
    seen = {scene_description(s) for s in _scenes(train)}
    groups: dict[str, list[Any]] = {}
    for r in records:
        if r.scene is None:
            continue
        n = len(r.scene["objects"])
        novelty = "seen_in_train" if scene_description(r.scene) in seen else "unseen_in_train"
        for name in (f"objects={n}", novelty, f"{novelty}@{n}"):
            groups.setdefault(name, []).append(r)
    return {name: {"images": float(len(group)), **attribute_accuracy(group, hypotheses)}
            for name, group in sorted(groups.items())}


PAIR_OUTCOMES = ("composed", "recalled", "other", "not_described")


def unseen_pair_colours(records: Sequence[Any], hypotheses: Mapping[Any, str], train: Sequence[Any]) -> dict[str, float]:
    """What the captions call the scene objects whose (colour, shape) pair occurs in no training scene:

    - ``composed``: the caption names that shape in the object's own colour;
    - ``recalled``: it names that shape only in colours the training scenes pair with it (the pair it learnt);
    - ``other``: in some other colour, or in none;
    - ``not_described``: it names no such shape (caption shapes whose colour is that of another object of the
      same shape in the scene are taken to describe that object).

    Returns the fraction of such objects in each outcome and ``objects`` (their number; 0 and no fractions
    when the split has none, as ``test`` has by construction)."""
    seen = {(o["colour"], o["shape"]) for s in _scenes(train) for o in s["objects"]}
    counts: Counter = Counter()
    for r in records:
        if r.scene is None or r.image_id not in hypotheses:
            continue
        described = parse_caption(hypotheses[r.image_id])["objects"]
        for k, obj in enumerate(r.scene["objects"]):
            if (obj["colour"], obj["shape"]) in seen:
                continue
            others = {o["colour"] for j, o in enumerate(r.scene["objects"]) if j != k and o["shape"] == obj["shape"]}
            colours = [c["colour"] for c in described if c["shape"] == obj["shape"] and c["colour"] not in others - {obj["colour"]}]
            if not colours:
                counts["not_described"] += 1
            elif obj["colour"] in colours:
                counts["composed"] += 1
            elif any((c, obj["shape"]) in seen for c in colours):
                counts["recalled"] += 1
            else:
                counts["other"] += 1
    total = sum(counts.values())
    return {"objects": float(total), **({k: counts[k] / total for k in PAIR_OUTCOMES} if total else {})}


def mentioned_objects(caption: str) -> list[dict[str, str | None]]:
    """The objects a caption mentions: one per shape word, with the size and colour words before it
    (``scenes.parse_caption``; a repeated phrase is mentioned twice)."""
    return parse_caption(caption)["objects"]


def object_name(mention: Mapping[str, Any]) -> str:
    """'red circle' (or 'circle' when the caption names no colour): how a mentioned object is reported."""
    return " ".join(w for w in (mention.get("colour"), mention["shape"]) if w)


def _could_be(mention: Mapping[str, Any], obj: Mapping[str, Any]) -> bool:
    """A mention can stand for a scene object: same shape, and same colour where the caption names one."""
    return mention["shape"] == obj["shape"] and mention.get("colour") in (None, obj["colour"])


def scene_hallucinations(scene: Mapping[str, Any], caption: str) -> tuple[int, list[str]]:
    """(objects the caption mentions, the names of those the scene does not have), exact per scene.

    Mentioned objects: ``mentioned_objects`` (every shape word with its colour and size words). A mention
    can stand for a scene object of its shape and, if it names a colour, of that colour; size plays no
    part (a wrong size is a size error, ``acc_size``, not an absent object). Mentions are paired one to one
    with scene objects they can stand for, as many as possible (a maximum bipartite matching; mentions
    naming a colour are placed first, so that of "a circle and a red circle" with one red circle the
    bare "circle" is the one left over). A mention left unpaired is hallucinated: its shape is absent,
    its colour-shape pair is absent, or the caption names more such objects than the scene has.
    Hallucinated mentions are named by ``object_name``, in caption order."""
    mentions = mentioned_objects(caption)
    objs = scene["objects"]
    owner: dict[int, int] = {}  # scene object -> the mention paired with it

    def place(m: int, tried: set[int]) -> bool:  # Kuhn's augmenting path from mention m
        for s, obj in enumerate(objs):
            if s not in tried and _could_be(mentions[m], obj):
                tried.add(s)
                if s not in owner or place(owner[s], tried):
                    owner[s] = m
                    return True
        return False

    for m in sorted(range(len(mentions)), key=lambda m: mentions[m].get("colour") is None):
        place(m, set())
    paired = set(owner.values())
    return len(mentions), [object_name(x) for m, x in enumerate(mentions) if m not in paired]


def names_pair(caption: str, colour: str, shape: str) -> bool:
    """Whether a caption mentions a ``colour`` ``shape`` (that colour word on that shape word)."""
    return any(m["shape"] == shape and m.get("colour") == colour for m in mentioned_objects(caption))


def scene_pairs(scene: Mapping[str, Any]) -> set[tuple[str, str]]:
    """The (colour, shape) pairs of a scene's objects."""
    return {(o["colour"], o["shape"]) for o in scene["objects"]}


def scene_groups(scene: Mapping[str, Any], seen_pairs: frozenset | set | None = None) -> list[str]:
    """The groups ``group_breakdown`` reports a scene in: ``objects=<n>``; ``style=<kind>`` (the shifted
    splits' drawing); ``twins`` (two objects of one colour and shape); with ``seen_pairs`` (the training
    scenes' colour-shape pairs) ``held_out_pair`` where an object's pair is not among them."""
    objs = scene["objects"]
    groups = [f"objects={len(objs)}"]
    if scene.get("style"):
        groups.append(f"style={scene['style']['kind']}")
    pairs = [(o["colour"], o["shape"]) for o in objs]
    if len(set(pairs)) < len(pairs):
        groups.append("twins")
    if seen_pairs is not None and any(p not in seen_pairs for p in pairs):
        groups.append("held_out_pair")
    return groups


def group_breakdown(records: Sequence[Any], hypotheses: Mapping[Any, str],
                    seen_pairs: frozenset | set | None = None) -> dict[str, dict[str, float]]:
    """``attribute_accuracy`` over each group of ``scene_groups``, each with ``images`` (its size)."""
    groups: dict[str, list[Any]] = {}
    for r in records:
        if r.scene is not None:
            for name in scene_groups(r.scene, seen_pairs):
                groups.setdefault(name, []).append(r)
    return {name: {"images": float(len(group)), **attribute_accuracy(group, hypotheses)}
            for name, group in sorted(groups.items())}


OBJECT_KEYS = ("bound", *OBJECT_ATTRIBUTES)


def object_breakdown(records: Sequence[Any], hypotheses: Mapping[Any, str],
                     seen_pairs: frozenset | set | None = None) -> dict[str, dict[str, float]]:
    """Per kind of scene object, the share ``bound`` (named with its colour, shape and size together, as
    ``binding`` counts it) and the shares whose matched caption object names its ``colour``, ``shape`` and
    ``size`` (an object no caption object is matched to is wrong on all), with ``objects`` (their number).

    Kinds: ``all``; ``place=<k>``, the k-th object along the arrangement (left to right, top to bottom; a
    lone object is place=1), so a caption that stops early shows as a drop at the last places; ``twin`` (its
    colour and shape are another object's too); with ``seen_pairs`` ``held_out_pair`` / ``seen_pair``."""
    hits: dict[str, dict[str, list[bool]]] = {}
    for r in records:
        if r.scene is None:
            continue
        objs = r.scene["objects"]
        caption = hypotheses.get(r.image_id, hypotheses.get(str(r.image_id)))
        if caption is None:
            raise ValueError(f"no hypothesis for image {r.image_id!r}, which has a scene")
        caps = parse_caption(caption)["objects"]
        match = binding_matching(objs, caps)
        order = (r.scene.get("relation") or {}).get("order") or list(range(len(objs)))
        pairs = [(o["colour"], o["shape"]) for o in objs]
        for s, o in enumerate(objs):
            kinds = ["all", f"place={order.index(s) + 1}"]
            kinds += ["twin"] if pairs.count(pairs[s]) > 1 else []
            if seen_pairs is not None:
                kinds.append("seen_pair" if pairs[s] in seen_pairs else "held_out_pair")
            named = caps[match[s]] if s in match else None
            judged = {"bound": named is not None and object_bound(o, named)}
            judged.update({k: named is not None and named[k] == o[k] for k in OBJECT_ATTRIBUTES})
            for kind in kinds:
                for key, ok in judged.items():
                    hits.setdefault(kind, {}).setdefault(key, []).append(ok)
    return {kind: {"objects": float(len(h["bound"])), **{k: sum(h[k]) / len(h[k]) for k in OBJECT_KEYS}}
            for kind, h in sorted(hits.items(), key=lambda kv: (kv[0] != "all", kv[0]))}
