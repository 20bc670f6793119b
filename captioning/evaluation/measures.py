"""Measures beyond overlap with the references: object hallucination, caption diversity, and recall of
held-out colour-shape pairs. Each is a function of a split's captions; ``evaluate_split`` adds them to
every evaluation's metrics.

- **Hallucination** (CHAIR, Rohrbach et al. 2018), from each caption's mentioned objects and the ones
  among them the image does not have (``hallucinations``: exact per scene on the shapes data,
  ``scene_metrics.scene_hallucinations``; on COCO from instance annotations, ``chair``):
  ``CHAIR_i`` = hallucinated mentions / all mentions over the split (0 when nothing is mentioned),
  ``CHAIR_s`` = captions with at least one hallucinated mention / captions.
- **Diversity** of the generated captions, tokenised as the scorer does (``diversity``):
  ``distinct_n`` = distinct n-grams / all n-grams (n-grams within a caption, pooled over the split;
  0 when there are none), ``vocab_used`` = distinct words, ``copied_from_train`` = share of captions
  whose tokens equal those of some training caption (``TrainingReference``).
- **Diversity of each image's captions**, with ``decoding.num_captions`` n > 1 (``caption_set_diversity``):
  ``div_1``, ``div_2`` = distinct n-grams among the image's n captions / the words of those captions (Shetty
  et al. 2017's Div-1/Div-2), ``captions_unique`` = distinct captions / n; each a mean over images.
- **Held-out-pair recall@k** (Nikolaus et al. 2019), on scenes whose objects include colour-shape pairs
  no training scene has (``val_novel``/``test_novel``): the share of those images where every such pair
  is named (that colour word on that shape word) by at least one of the top-k beam-search captions
  (``pair_recall``). With one unseen pair per image this is the paper's measure.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Hashable, Mapping, Sequence

from captioning.data.scene_metrics import names_pair, scene_hallucinations, scene_pairs
from captioning.evaluation.chair import coco_hallucinations_split
from captioning.text.tokenizer import tokenize

log = logging.getLogger(__name__)
DISTINCT_N = (1, 2)

# per caption: (objects it mentions, names of those the image does not have)
Hallucinations = Mapping[Hashable, tuple[int, Sequence[str]]]
Pairs = frozenset[tuple[str, str]] | set[tuple[str, str]]  # (colour, shape) pairs


@dataclass(frozen=True)
class TrainingReference:
    """What the measures take from the training split: its captions (tokenised, joined by spaces) and
    the colour-shape pairs of its scenes (empty without scenes)."""

    captions: frozenset[str]
    pairs: frozenset[tuple[str, str]]


def normalised(caption: str) -> str:
    """A caption as the scorer reads it: its tokens joined by single spaces."""
    return " ".join(tokenize(caption))


def training_reference(records: Sequence[Any]) -> TrainingReference:
    """The ``TrainingReference`` of training records (``captions`` and, for synthetic scenes, ``scene``)."""
    captions = frozenset(normalised(c) for r in records for c in r.captions)
    pairs = frozenset(p for r in records if getattr(r, "scene", None) is not None for p in scene_pairs(r.scene))
    return TrainingReference(captions, pairs)


def diversity(captions: Sequence[str], train: TrainingReference | None = None) -> dict[str, float]:
    """``distinct_1``, ``distinct_2``, ``vocab_used`` and, given the training captions, ``copied_from_train``
    of a split's generated captions (one per image; definitions in the module doc)."""
    tokens = [tokenize(c) for c in captions]
    out: dict[str, float] = {}
    for n in DISTINCT_N:
        grams = [tuple(t[i:i + n]) for t in tokens for i in range(len(t) - n + 1)]
        out[f"distinct_{n}"] = len(set(grams)) / len(grams) if grams else 0.0
    out["vocab_used"] = float(len({w for t in tokens for w in t}))
    if train is not None:
        out["copied_from_train"] = (sum(" ".join(t) in train.captions for t in tokens) / len(tokens)
                                    if tokens else 0.0)
    return out


def caption_set_diversity(caption_sets: Sequence[Sequence[str]]) -> dict[str, float]:
    """``div_1``, ``div_2`` and ``captions_unique`` of each image's captions (module doc), means over the
    images; {} when no image has more than one caption."""
    sets = [[tokenize(c) for c in captions] for captions in caption_sets if len(captions) > 1]
    if not sets:
        return {}
    out: dict[str, float] = {}
    for n in DISTINCT_N:
        ratios = []
        for tokens in sets:
            words = sum(len(t) for t in tokens)
            grams = {tuple(t[i:i + n]) for t in tokens for i in range(len(t) - n + 1)}
            ratios.append(len(grams) / words if words else 0.0)
        out[f"div_{n}"] = sum(ratios) / len(ratios)
    out["captions_unique"] = sum(len({" ".join(t) for t in tokens}) / len(tokens) for tokens in sets) / len(sets)
    return out


def chair(per_caption: Hallucinations) -> dict[str, float]:
    """``CHAIR_i`` and ``CHAIR_s`` from each caption's (mentioned objects, hallucinated names)."""
    mentioned = sum(n for n, _ in per_caption.values())
    hallucinated = sum(len(names) for _, names in per_caption.values())
    with_any = sum(bool(names) for _, names in per_caption.values())
    return {"CHAIR_i": hallucinated / mentioned if mentioned else 0.0,
            "CHAIR_s": with_any / len(per_caption) if per_caption else 0.0}


def hallucinations(records: Sequence[Any], hypotheses: Mapping[Hashable, str],
                   instances: Mapping[int, frozenset[str]] | None = None
                   ) -> dict[Hashable, tuple[int, list[str]]] | None:
    """Per caption (mentioned objects, hallucinated names): from the scenes when the records have them,
    else from COCO ``instances`` ({image id: categories}, ``chair.load_instances``); None when neither
    applies. Records the instances do not cover are left out; none covered is an error."""
    if records and getattr(records[0], "scene", None) is not None:
        return {r.image_id: scene_hallucinations(r.scene, hypotheses[r.image_id]) for r in records
                if r.scene is not None}
    if instances is None:
        return None
    found = coco_hallucinations_split(records, hypotheses, instances)
    if records and not found:
        raise ValueError(f"the COCO instances files cover none of these {len(records)} images (e.g. id "
                         f"{records[0].image_id}): give metrics.instances the instances_*.json of their COCO split")
    if len(found) < len(records):
        log.warning("CHAIR over the %d of %d images the instances files cover", len(found), len(records))
    return found


def unseen_pairs(scene: Mapping[str, Any], seen: Pairs) -> set[tuple[str, str]]:
    """The (colour, shape) pairs of a scene's objects that no training scene has."""
    return scene_pairs(scene) - set(seen)


def has_unseen_pairs(records: Sequence[Any], train: TrainingReference) -> bool:
    """Whether some scene of these records holds a colour-shape pair the training scenes lack."""
    return bool(train.pairs) and any(getattr(r, "scene", None) is not None and unseen_pairs(r.scene, train.pairs)
                                     for r in records)


def pair_recall(records: Sequence[Any], beams: Mapping[Hashable, Sequence[str]], seen: Pairs,
                k: int) -> dict[str, float]:
    """``pair_recall@k`` (module doc) over the images with unseen pairs, and ``pair_recall_images`` (their
    number); empty when no image has an unseen pair. ``beams``: each image's captions, best first."""
    if k < 1:
        raise ValueError(f"pair recall needs k >= 1 captions per image, got k={k}")
    hits, images = 0, 0
    for r in records:
        pairs = unseen_pairs(r.scene, seen) if getattr(r, "scene", None) is not None else set()
        if not pairs:
            continue
        top = beams[r.image_id][:k]
        images += 1
        hits += all(any(names_pair(c, colour, shape) for c in top) for colour, shape in pairs)
    return {f"pair_recall@{k}": hits / images, "pair_recall_images": float(images)} if images else {}
