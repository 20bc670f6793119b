"""Probes: how much of a synthetic scene a frozen feature vector holds, before any decoder reads it.

For scenes of ``n`` objects, the objects are put in order along the scene's relation axis (left to
right, or top to bottom) and each position ("slot") gets its colour-shape pair as a class. A probe
trained on the train split's features predicts every slot at once; on the test split it reports the
per-slot accuracy and how often all ``n`` slots are right. This is the binding a caption like "a red
circle left of a blue square" needs: a pooled vector can hold which colours and shapes are present
and still lose which goes with which, and where. ``hidden=0`` is a linear probe, ``hidden>0`` a
one-hidden-layer perceptron (``captioning-probe``).

``probe_attributes`` asks the compositional question instead: colour and shape predicted apart, and scored on
the objects whose colour-shape pair no training scene has (the shapes data's ``val_novel``/``test_novel``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from captioning.data.coco import ImageRecord


def channel_span(span, dim: int) -> slice:
    """The channels ``span`` = [start, stop] of a ``dim``-channel feature as a slice (None: all of them)."""
    if span is None:
        return slice(None)
    span = list(span)
    if len(span) != 2 or not 0 <= span[0] < span[1] <= dim:
        raise ValueError(f"probe.channels={span} is not a range of the {dim} channels of these features; "
                         f"give [start, stop] with 0 <= start < stop <= {dim}, or null for all of them")
    return slice(*span)


def _ordered(scene: dict) -> list[dict]:
    """The scene's objects along its relation axis (a lone object: itself)."""
    axis = (scene.get("relation") or {}).get("axis")
    return sorted(scene["objects"], key=lambda o: o["y"] if axis == "vertical" else o["x"])


def slot_targets(records: list[ImageRecord], n: int, pairs: list[tuple[str, str]]) -> tuple[np.ndarray, np.ndarray]:
    """(row indices of the n-object scenes, their slot classes [rows, n]) with classes indexing ``pairs``."""
    index = {p: i for i, p in enumerate(pairs)}
    rows, targets = [], []
    for row, r in enumerate(records):
        if r.scene is not None and len(r.scene["objects"]) == n:
            rows.append(row)
            targets.append([index[(o["colour"], o["shape"])] for o in _ordered(r.scene)])
    return np.asarray(rows, dtype=np.int64), np.asarray(targets, dtype=np.int64).reshape(-1, n)


def predict_slots(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, n_classes: int, hidden: int = 0,
                  epochs: int = 60, seed: int = 0) -> torch.Tensor:
    """Train a probe from features to a class per slot (``y_train`` [rows, slots]); its test predictions [rows, slots]."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    xtr, xte = torch.as_tensor(np.asarray(x_train, np.float32)), torch.as_tensor(np.asarray(x_test, np.float32))
    mean, std = xtr.mean(0), xtr.std(0) + 1e-5  # standardised with the train statistics
    xtr, xte = (xtr - mean) / std, (xte - mean) / std
    ytr = torch.as_tensor(y_train)
    slots, dim = ytr.size(1), xtr.size(1)
    out = slots * n_classes
    net = (nn.Linear(dim, out) if not hidden else
           nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(0.3), nn.Linear(hidden, out)))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-2)
    for _ in range(epochs):
        net.train()
        for batch in torch.randperm(len(xtr), generator=g).split(128):
            logits = net(xtr[batch]).view(-1, n_classes)
            loss = nn.functional.cross_entropy(logits, ytr[batch].reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        return net(xte).view(len(xte), slots, n_classes).argmax(-1)


def slot_accuracy(right: torch.Tensor) -> dict[str, float]:
    """{"slot": the share of right slots, "all": the share of rows with every slot right} of ``right`` [rows, slots]."""
    return {"slot": float(right.float().mean()), "all": float(right.all(1).float().mean())}


def style_of(record: ImageRecord) -> str | None:
    """The drawing style of a shifted split's scene (data=shapes_hard's ``*_shifted``), else None."""
    return ((record.scene or {}).get("style") or {}).get("kind")


def probe_scenes(train: list[ImageRecord], train_features, test: list[ImageRecord], test_features,
                 hidden: int = 0, epochs: int = 60, seed: int = 0) -> dict[int, dict]:
    """Probe results per object count: {n: {"slot", "all", "train", "test"}} for every n in the data. Where the test
    scenes are drawn in shifted styles (data=shapes_hard's ``*_shifted`` splits), also ``"styles"``: {kind: {"slot",
    "all", "test"}}, the same probe (trained on the clean training drawings) scored on each style's scenes apart."""
    if not train or train[0].scene is None:
        raise ValueError("probes need synthetic scenes (data=shapes or shapes_tiny): these records have none")
    pairs = sorted({(o["colour"], o["shape"]) for r in train + test for o in r.scene["objects"]})
    results = {}
    for n in sorted({len(r.scene["objects"]) for r in train}):
        rows_tr, y_tr = slot_targets(train, n, pairs)
        rows_te, y_te = slot_targets(test, n, pairs)
        if not len(rows_te):
            continue
        # region features [N, R, D] are probed as one flat vector per image, like pool=grid's cells
        x_tr = np.asarray(train_features[rows_tr], dtype=np.float32).reshape(len(rows_tr), -1)
        x_te = np.asarray(test_features[rows_te], dtype=np.float32).reshape(len(rows_te), -1)
        right = predict_slots(x_tr, y_tr, x_te, len(pairs), hidden, epochs, seed) == torch.as_tensor(y_te)
        results[n] = {**slot_accuracy(right), "train": int(len(rows_tr)), "test": int(len(rows_te))}
        styles = np.array([style_of(test[i]) or "" for i in rows_te])
        if styles.any():
            results[n]["styles"] = {kind: {**slot_accuracy(right[torch.as_tensor(styles == kind)]),
                                           "test": int((styles == kind).sum())}
                                    for kind in sorted(set(styles.tolist()))}
    return results


def probe_attributes(train: list[ImageRecord], train_features, test: list[ImageRecord], test_features,
                     hidden: int = 0, epochs: int = 60, seed: int = 0) -> dict[int, dict]:
    """Colour and shape probed apart, so a probe can name a colour-shape pair the training scenes never show.

    Per object count n, one probe predicts each slot's colour and another its shape (trained on the train split).
    Returns {n: {"colour", "shape": per-slot test accuracy; "colour_unseen", "shape_unseen": the same over the
    test objects whose (colour, shape) pair no training scene has; "unseen": their number; "train", "test":
    scenes}}. A feature that holds colour and shape separably lets the probe compose (``colour_unseen`` near
    ``colour``); one that holds them only as learnt pairs does not, whatever a decoder reading it does.
    """
    if not train or train[0].scene is None:
        raise ValueError("probes need synthetic scenes (data=shapes or shapes_tiny): these records have none")
    seen = {(o["colour"], o["shape"]) for r in train for o in r.scene["objects"]}
    everything = train + test
    values = {a: sorted({o[a] for r in everything for o in r.scene["objects"]}) for a in ("colour", "shape")}
    results = {}
    for n in sorted({len(r.scene["objects"]) for r in train}):
        rows_tr = [i for i, r in enumerate(train) if len(r.scene["objects"]) == n]
        rows_te = [i for i, r in enumerate(test) if r.scene is not None and len(r.scene["objects"]) == n]
        if not rows_te:
            continue
        x_tr = np.asarray(train_features[rows_tr], dtype=np.float32).reshape(len(rows_tr), -1)
        x_te = np.asarray(test_features[rows_te], dtype=np.float32).reshape(len(rows_te), -1)
        objects_te = [_ordered(test[i].scene) for i in rows_te]
        unseen = torch.tensor([[(o["colour"], o["shape"]) not in seen for o in objs] for objs in objects_te])
        out: dict = {"unseen": int(unseen.sum()), "train": len(rows_tr), "test": len(rows_te)}
        for attr, names in values.items():
            y_tr = np.array([[names.index(o[attr]) for o in _ordered(train[i].scene)] for i in rows_tr])
            y_te = torch.tensor([[names.index(o[attr]) for o in objs] for objs in objects_te])
            right = predict_slots(x_tr, y_tr, x_te, len(names), hidden, epochs, seed) == y_te
            out[attr] = float(right.float().mean())
            out[f"{attr}_unseen"] = float(right[unseen].float().mean()) if unseen.any() else float("nan")
        results[n] = out
    return results
