"""What the project does, in one picture: a grid of test images, each with its generated caption.

``pick_examples`` chooses images deterministically (a seed), mixing 1-, 2- and 3-object scenes where
the records carry one; ``render_gallery`` captions them with any captioner (``Captioner`` from
``captioning.captioner``: it is passed in, as this layer sits below it) and draws the grid, one block
of rows per split: the image, the generated caption under it, one reference caption in grey, and on
synthetic scenes a check or a cross for whether the caption gets the whole scene right (the strict
judgement ``captioning.data.scenes.strict_report``, as acc_scene), so the figure shows failures too.

Drawn on a matplotlib ``Figure`` (no pyplot) at a fixed size, written atomically.
"""

from __future__ import annotations

import logging
import random
import re
import textwrap
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence

from matplotlib.figure import Figure
from omegaconf import OmegaConf

from captioning.data.datasets import load_dataset
from captioning.data.scenes import sizeless_references, strict_report
from captioning.evaluation.failures import thumbnail
from captioning.models.checkpoint import CheckpointError, load_checkpoint
from captioning.utils.io import atomic_write

log = logging.getLogger(__name__)

SPLITS = ("test", "test_novel")
SPLIT_NOTES = {"test": "held-out images", "test_novel": "colour-shape pairs never seen in training"}
# the grid's geometry, in inches (at DPI dots per inch): every cell is CELL_W x CELL_H
DPI = 100
MARGIN, TITLE_H, HEADER_H = 0.2, 0.85, 0.35
CELL_W, IMAGE_H, CAPTION_H = 2.5, 2.1, 1.3
CELL_H = IMAGE_H + CAPTION_H
CAPTION_CHARS, REFERENCE_CHARS, MAX_LINES = 34, 40, 4
CAPTION_PT, REFERENCE_PT = 8.5, 7.5
RIGHT, WRONG = ("\u2713", "tab:green"), ("\u2717", "tab:red")


class CaptionsImages(Protocol):
    """What the gallery needs of a captioner: ``captioning.captioner.Captioner.caption``."""

    def caption(self, images: Sequence[Any], **kwargs: Any) -> Sequence[Any]: ...


@dataclass
class Example:
    """One drawn image: where it came from, what the model said, and whether that is right."""

    split: str
    image_id: int
    path: str
    caption: str
    reference: str
    objects: int | None  # scene objects; None without a scene
    correct: bool | None  # the whole scene right (strict judgement); None without a scene


@dataclass
class Gallery:
    """The written figure: its path, the examples in drawing order, and its grid."""

    path: Path
    examples: list[Example]
    columns: int
    rows: dict[str, int]  # image rows per split
    size: tuple[int, int]  # (width, height) in pixels

    def pairs(self) -> list[tuple[int, str]]:
        """(image id, caption) of every drawn image, in drawing order."""
        return [(e.image_id, e.caption) for e in self.examples]


def run_records(checkpoint: str | Path, splits: Sequence[str] = SPLITS) -> dict[str, list]:
    """The records of ``splits`` under the data config the checkpoint's run was trained with."""
    ckpt = load_checkpoint(checkpoint)
    if "config" not in ckpt or "data" not in (ckpt["config"] or {}):
        raise CheckpointError(f"{ckpt['path']} holds no training config, so its data is unknown; caption your "
                              "own images with captioning-caption instead")  # a ValueError
    return load_dataset(OmegaConf.create(ckpt["config"]).data, list(splits))


def scene_objects(record: Any) -> int | None:
    """How many objects the record's scene has (None without a scene)."""
    scene = getattr(record, "scene", None)
    return len(scene["objects"]) if scene else None


def pick_examples(records: Sequence[Any], k: int, seed: int = 0) -> list[Any]:
    """``k`` records chosen by ``seed`` alone: shuffled within each scene size (1, 2, 3 objects; one
    group without scenes), then taken in turn from each size, so the sizes mix evenly."""
    groups: dict[int, list] = defaultdict(list)
    for r in sorted(records, key=lambda r: r.image_id):
        groups[scene_objects(r) or 0].append(r)
    rng = random.Random(seed)
    for n in sorted(groups):
        rng.shuffle(groups[n])
    picked, queues = [], [groups[n] for n in sorted(groups)]
    while len(picked) < k and any(queues):
        for queue in queues:
            if queue and len(picked) < k:
                picked.append(queue.pop(0))
    return picked


def judge(record: Any, caption: str) -> bool | None:
    """Whether a caption gets the record's whole scene right (``strict_report``'s ``scene``, as acc_scene);
    None without a scene."""
    scene = getattr(record, "scene", None)
    if not scene:
        return None
    return bool(strict_report(scene, caption, sizeless_references(record.captions))["scene"])


def caption_examples(captioner: CaptionsImages, picked: Mapping[str, Sequence[Any]],
                     **decoding: Any) -> list[Example]:
    """Caption the picked records of every split (one batch per split) and judge them."""
    examples = []
    for split, records in picked.items():
        if not records:
            continue
        captions = captioner.caption([r.path for r in records], **decoding)
        for r, cap in zip(records, captions):
            text = getattr(cap, "text", cap)
            examples.append(Example(split, r.image_id, str(r.path), text, r.captions[0] if r.captions else "",
                                    scene_objects(r), judge(r, text)))
    return examples


def _lines(text: str, width: int) -> list[str]:
    lines = textwrap.wrap(re.sub(r" ([,.;:])", r"\1", text), width) or [""]  # "a , b" (tokenised) -> "a, b"
    if len(lines) > MAX_LINES:
        lines = lines[: MAX_LINES - 1] + [textwrap.shorten(" ".join(lines[MAX_LINES - 1 :]), width, placeholder=" ...")]
    return lines


def grid(examples: Sequence[Example], columns: int) -> tuple[dict[str, int], tuple[float, float]]:
    """(image rows per split, figure size in inches) of the gallery of ``examples``."""
    counts: dict[str, int] = {}
    for e in examples:
        counts[e.split] = counts.get(e.split, 0) + 1
    rows = {s: -(-n // columns) for s, n in counts.items()}
    width = 2 * MARGIN + columns * CELL_W
    height = TITLE_H + sum(HEADER_H + r * CELL_H for r in rows.values()) + MARGIN
    return rows, (width, height)


def gallery_figure(examples: Sequence[Example], columns: int, title: str = "", decoding: str = "beam search") -> Figure:
    """The grid as a Figure of fixed size (``grid``): per split a header, then its images in rows.
    ``decoding``: how the captions were decoded, for the legend."""
    if not examples:
        raise ValueError("no examples to draw")
    rows, (width, height) = grid(examples, columns)
    fig = Figure(figsize=(width, height), dpi=DPI)
    fx, fy = 1 / width, 1 / height  # inches -> figure fractions
    fig.text(MARGIN * fx, 1 - 0.15 * fy, title or "Generated captions on held-out images", fontsize=13,
             weight="bold", va="top")
    judged = any(e.correct is not None for e in examples)
    legend = f"black: the model's caption ({decoding}),  grey: one of the image's reference captions"
    if judged:
        legend += (f"\n{RIGHT[0]}: the count, every object's colour, shape and size, and where they are, all right;"
                   f"  {WRONG[0]}: not")
    fig.text(MARGIN * fx, 1 - 0.42 * fy, legend, fontsize=8.5, color="0.3", va="top", linespacing=1.4)
    top = TITLE_H
    for split in rows:
        mine = [e for e in examples if e.split == split]
        note = SPLIT_NOTES.get(split, "")
        right = sum(e.correct is True for e in mine)
        tally = f"  ({right} of {len(mine)} right)" if any(e.correct is not None for e in mine) else ""
        fig.text(MARGIN * fx, 1 - (top + 0.08) * fy, f"{split}" + (f": {note}" if note else "") + tally,
                 fontsize=11, weight="bold", va="top")
        top += HEADER_H
        for k, e in enumerate(mine):
            row, col = divmod(k, columns)
            x0, y0 = MARGIN + col * CELL_W, top + row * CELL_H  # the cell's top-left corner, from the top
            side = IMAGE_H - 0.1
            ax = fig.add_axes(((x0 + (CELL_W - side) / 2) * fx, 1 - (y0 + side) * fy, side * fx, side * fy))
            ax.imshow(thumbnail(e.path, 256))
            ax.set_xticks([])
            ax.set_yticks([])
            if e.correct is not None:
                mark, colour = RIGHT if e.correct else WRONG
                ax.text(0.96, 0.96, mark, transform=ax.transAxes, ha="right", va="top", fontsize=15,
                        color=colour, weight="bold", bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": colour})
            cap = _lines(e.caption, CAPTION_CHARS)
            text_y = y0 + IMAGE_H
            fig.text((x0 + CELL_W / 2) * fx, 1 - text_y * fy, "\n".join(cap), fontsize=CAPTION_PT, ha="center",
                     va="top")
            text_y += len(cap) * CAPTION_PT * 1.25 / 72 + 0.05
            fig.text((x0 + CELL_W / 2) * fx, 1 - text_y * fy, "\n".join(_lines(e.reference, REFERENCE_CHARS)),
                     fontsize=REFERENCE_PT, ha="center", va="top", color="0.5", style="italic")
        top += rows[split] * CELL_H
    return fig


def render_gallery(captioner: CaptionsImages, records: Mapping[str, Sequence[Any]], path: str | Path,
                   per_split: int = 6, seed: int = 0, columns: int | None = None, title: str = "",
                   **decoding: Any) -> Gallery:
    """Pick ``per_split`` images of every split (``pick_examples``), caption them with ``captioner``
    (``decoding``: its keyword arguments, e.g. method, beam_size) and write the grid as a PNG."""
    if per_split < 1:
        raise ValueError(f"per_split must be >= 1, got {per_split}")
    columns = columns or per_split
    picked = {split: pick_examples(recs, per_split, seed) for split, recs in records.items()}
    for split, chosen in picked.items():
        if len(chosen) < per_split:
            log.warning("split %s has %d images, fewer than the %d asked for", split, len(chosen), per_split)
    examples = caption_examples(captioner, picked, **decoding)
    method = decoding.get("method", "beam")
    how = f"beam search, beam {decoding.get('beam_size', 3)}" if method == "beam" else f"{method} decoding"
    fig = gallery_figure(examples, columns, title, how)
    rows, (width, height) = grid(examples, columns)
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=DPI)  # no tight bounding box: the size is the grid's
    return Gallery(Path(path), examples, columns, rows, (round(width * DPI), round(height * DPI)))
