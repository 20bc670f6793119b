"""Object hallucination on COCO (CHAIR, Rohrbach et al. 2018): which of the 80 COCO object categories a
caption names, and which of those the image does not have.

A caption mentions a category when one of its words, or two neighbouring words, is one of the
category's names in ``SYNONYMS`` (after the scorer's tokenisation and a plural-to-singular step,
``singular``); two-word names are matched before one-word ones, so "hot dog" is food and "teddy bear"
a toy, not a dog or a bear. A caption's mentions are its distinct categories. The image has a category
when its instance annotations (``instances_*.json``) hold an object of it or, as in the paper, one of
its reference captions mentions it. A mentioned category the image does not have is hallucinated.

``SYNONYMS`` is written for this module from the paper's idea: each category's own name and the
common words annotators use for it (the paper's published list is longer). Known limits of a word list:
"orange" is always the fruit, "glass" alone is no wine glass, and a word like "plant" or "table" counts
as the category whatever it refers to.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Mapping, Sequence

from captioning.text.tokenizer import tokenize

SYNONYMS: dict[str, tuple[str, ...]] = {
    "person": ("person", "people", "man", "woman", "boy", "girl", "child", "kid", "baby", "guy", "lady",
               "adult", "toddler", "teenager", "player", "skier", "surfer", "skateboarder", "snowboarder",
               "rider", "pedestrian", "gentleman", "worker"),
    "bicycle": ("bicycle", "bike", "cycle"),
    "car": ("car", "automobile", "sedan", "taxi", "cab", "jeep"),
    "motorcycle": ("motorcycle", "motorbike", "motor bike", "scooter", "moped"),
    "airplane": ("airplane", "plane", "jet", "aircraft", "airliner", "aeroplane"),
    "bus": ("bus",),
    "train": ("train", "locomotive", "tram"),
    "truck": ("truck", "pickup", "lorry"),
    "boat": ("boat", "ship", "canoe", "kayak", "sailboat", "yacht", "ferry"),
    "traffic light": ("traffic light", "stop light", "stoplight", "traffic signal"),
    "fire hydrant": ("fire hydrant", "hydrant"),
    "stop sign": ("stop sign",),
    "parking meter": ("parking meter", "meter"),
    "bench": ("bench",),
    "bird": ("bird", "pigeon", "seagull", "gull", "duck", "goose", "parrot", "swan", "eagle", "owl"),
    "cat": ("cat", "kitten", "kitty"),
    "dog": ("dog", "puppy", "pup"),
    "horse": ("horse", "pony", "foal"),
    "sheep": ("sheep", "lamb", "ram"),
    "cow": ("cow", "cattle", "bull", "calf", "ox"),
    "elephant": ("elephant",),
    "bear": ("bear", "polar bear", "grizzly"),
    "zebra": ("zebra",),
    "giraffe": ("giraffe",),
    "backpack": ("backpack", "knapsack"),
    "umbrella": ("umbrella", "parasol"),
    "handbag": ("handbag", "hand bag", "purse"),
    "tie": ("tie", "necktie"),
    "suitcase": ("suitcase", "suit case", "luggage"),
    "frisbee": ("frisbee",),
    "skis": ("ski", "skis"),
    "snowboard": ("snowboard",),
    "sports ball": ("ball", "soccer ball", "tennis ball", "football", "basketball", "volleyball"),
    "kite": ("kite",),
    "baseball bat": ("baseball bat", "bat"),
    "baseball glove": ("baseball glove", "glove", "mitt"),
    "skateboard": ("skateboard", "skate board"),
    "surfboard": ("surfboard", "surf board"),
    "tennis racket": ("tennis racket", "racket", "racquet"),
    "bottle": ("bottle",),
    "wine glass": ("wine glass",),
    "cup": ("cup", "mug"),
    "fork": ("fork",),
    "knife": ("knife",),
    "spoon": ("spoon",),
    "bowl": ("bowl",),
    "banana": ("banana",),
    "apple": ("apple",),
    "sandwich": ("sandwich", "burger"),
    "orange": ("orange",),
    "broccoli": ("broccoli",),
    "carrot": ("carrot",),
    "hot dog": ("hot dog", "hotdog"),
    "pizza": ("pizza",),
    "donut": ("donut", "doughnut"),
    "cake": ("cake", "cupcake"),
    "chair": ("chair", "stool"),
    "couch": ("couch", "sofa"),
    "potted plant": ("potted plant", "houseplant", "house plant", "plant"),
    "bed": ("bed",),
    "dining table": ("dining table", "table"),
    "toilet": ("toilet", "urinal"),
    "tv": ("tv", "television"),
    "laptop": ("laptop",),
    "mouse": ("mouse",),
    "remote": ("remote", "remote control", "controller"),
    "keyboard": ("keyboard",),
    "cell phone": ("cell phone", "cellphone", "phone", "smartphone"),
    "microwave": ("microwave",),
    "oven": ("oven", "stove"),
    "toaster": ("toaster",),
    "sink": ("sink",),
    "refrigerator": ("refrigerator", "fridge"),
    "book": ("book",),
    "clock": ("clock",),
    "vase": ("vase",),
    "scissors": ("scissors",),
    "teddy bear": ("teddy bear", "teddy", "stuffed animal"),
    "hair drier": ("hair drier", "hair dryer", "hairdryer", "blow dryer"),
    "toothbrush": ("toothbrush", "tooth brush"),
}
CATEGORY_OF = {name: category for category, names in SYNONYMS.items() for name in names}
IRREGULAR = {"people": "person", "men": "man", "women": "woman", "children": "child", "mice": "mouse",
             "knives": "knife", "geese": "goose", "oxen": "ox", "calves": "calf", "teeth": "tooth"}


def singular(word: str) -> str:
    """A plural noun's singular by English rules (irregulars first); other words come back unchanged."""
    if word in IRREGULAR:
        return IRREGULAR[word]
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("ches", "shes", "xes", "sses", "uses")):
        return word[:-2]
    if word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def _name(word: str) -> str:
    """The word as ``SYNONYMS`` spells it: itself when listed ("skis", "bus"), else its singular."""
    return word if word in CATEGORY_OF else singular(word)


def mentioned_categories(caption: str) -> list[str]:
    """The distinct COCO categories a caption names, in caption order (two-word names first)."""
    words = [_name(w) for w in tokenize(caption)]
    found: list[str] = []
    i = 0
    while i < len(words):
        pair = " ".join(words[i:i + 2]) if i + 1 < len(words) else None
        if pair in CATEGORY_OF:
            found.append(CATEGORY_OF[pair])
            i += 2
            continue
        if words[i] in CATEGORY_OF:
            found.append(CATEGORY_OF[words[i]])
        i += 1
    return list(dict.fromkeys(found))


@functools.lru_cache(maxsize=4)
def load_instances(paths: tuple[str, ...]) -> dict[int, frozenset[str]]:
    """{image id: categories of its annotated objects} over COCO instances_*.json files (merged by id);
    every image listed in a file's ``images`` is present, those without objects with none."""
    present: dict[int, set[str]] = {}
    for path in map(Path, paths):
        if not path.is_file():
            raise FileNotFoundError(f"COCO instances file not found: {path}; give metrics.instances=[...] the "
                                    "paths of instances_<split>.json files (COCO 2014/2017 annotations)")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            names = {c["id"]: c["name"] for c in data["categories"]}
            for img in data["images"]:
                present.setdefault(img["id"], set())
            for ann in data["annotations"]:
                present.setdefault(ann["image_id"], set()).add(names[ann["category_id"]])
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{path} is not a COCO instances file (images, annotations with category_id, "
                             f"categories): {err!r}") from err
    return {i: frozenset(c) for i, c in present.items()}


def coco_hallucinations(caption: str, annotated: frozenset[str] | set[str],
                        references: Sequence[str]) -> tuple[int, list[str]]:
    """(categories the caption mentions, those the image does not have): the image has what its instance
    annotations hold and what its references mention (module doc)."""
    has = set(annotated).union(*(mentioned_categories(r) for r in references))
    mentioned = mentioned_categories(caption)
    return len(mentioned), [c for c in mentioned if c not in has]


def coco_hallucinations_split(records: Sequence, hypotheses: Mapping, instances: Mapping[int, frozenset[str]]
                              ) -> dict[int, tuple[int, list[str]]]:
    """``coco_hallucinations`` of each record the instance annotations cover (records they miss are left out)."""
    return {r.image_id: coco_hallucinations(hypotheses[r.image_id], instances[r.image_id], r.captions)
            for r in records if r.image_id in instances}
