"""Where an attention model looked: per generated word, its attention weights over the image's regions.

A model that attends (``model=show_attend_tell``, ``model=transformer``) has ``attention(features, tokens)``
-> weights [B, T, R] while reading ``tokens`` (which start with <start>): row t is where it looked to
predict word t+1. ``caption_attention`` runs it over generated captions; ``attention_figure`` draws one
strip per image (the image, then one panel per word: the image lit by the g x g weights, upsampled, as
in Xu et al. 2015's figures: bright where the model looked); ``render_attention`` writes it atomically. Show and Tell has no such maps: it
reads the image once, through h0.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image

from captioning.text.vocab import PAD, START, UNK
from captioning.utils.io import atomic_write

PANEL = 1.45          # inches per panel
MAX_WORDS = 12        # panels after the image, per strip


def has_attention(model: Any) -> bool:
    """Whether ``model`` can say where it looked (it has an ``attention(features, tokens)`` method)."""
    return callable(getattr(model, "attention", None))


@torch.no_grad()
def caption_attention(model: Any, features: torch.Tensor, captions: Sequence[Sequence[int]]) -> list[np.ndarray]:
    """Per caption (word ids without <start>/<end>), the weights [len(caption) + 1, R]: one row per word and
    one for <end>, each summing to 1 over the regions."""
    if not has_attention(model):
        raise ValueError(f"model {type(model).__name__} has no attention maps: it reads the image once (its "
                         "pooled feature), e.g. show_tell; use model=show_attend_tell or model=transformer")
    longest = max((len(c) for c in captions), default=0) + 1
    tokens = torch.full((len(captions), longest), PAD, dtype=torch.long, device=features.device)
    tokens[:, 0] = START
    for i, caption in enumerate(captions):
        tokens[i, 1 : len(caption) + 1] = torch.as_tensor(list(caption), dtype=torch.long)
    was_training = model.training
    model.eval()
    try:
        weights = model.attention(features, tokens).float().cpu().numpy()
    finally:
        model.train(was_training)
    return [weights[i, : len(c) + 1] for i, c in enumerate(captions)]


def lit(pixels: np.ndarray, grid: np.ndarray, floor: float = 0.15) -> np.ndarray:
    """The image lit by an attention grid (as in Xu et al.'s figures): the g x g weights upsampled
    (bilinear) to the image and scaled to [floor, 1] by their maximum, multiplied into the pixels."""
    h, w = pixels.shape[:2]
    light = np.asarray(Image.fromarray(grid.astype(np.float32), mode="F").resize((w, h), Image.BILINEAR))
    light = floor + (1.0 - floor) * light / max(float(light.max()), 1e-12)
    return (pixels.astype(np.float32) * light[..., None]).clip(0, 255).astype(np.uint8)


def attention_figure(strips: Sequence[tuple[Image.Image, Sequence[str], np.ndarray]], title: str = "") -> Figure:
    """One row per (image, words, weights [>= len(words), R]): the image, then a panel per word (up to
    MAX_WORDS) with the weights of a square grid of R regions upsampled over the image."""
    columns = 1 + min(MAX_WORDS, max((len(w) for _, w, _ in strips), default=0))
    fig = Figure(figsize=(PANEL * columns, PANEL * len(strips) + (0.4 if title else 0.1)), dpi=100)
    if title:
        fig.suptitle(title, fontsize=10)
    for row, (image, words, weights) in enumerate(strips):
        side = math.isqrt(weights.shape[1])
        if side * side != weights.shape[1]:
            raise ValueError(f"{weights.shape[1]} regions are not a square grid")
        pixels = np.asarray(image.convert("RGB"))
        ax = fig.add_subplot(len(strips), columns, row * columns + 1)
        ax.imshow(pixels)
        ax.set_axis_off()
        for k, word in enumerate(list(words)[:MAX_WORDS]):
            ax = fig.add_subplot(len(strips), columns, row * columns + k + 2)
            ax.imshow(lit(pixels, weights[k].reshape(side, side)))
            ax.set_title(word, fontsize=9)
            ax.set_axis_off()
    fig.tight_layout()
    return fig


def render_attention(strips: Sequence[tuple[Image.Image, Sequence[str], np.ndarray]], path: str | Path,
                     title: str = "") -> Path:
    """Write ``attention_figure`` as a PNG, atomically; returns the path."""
    path = Path(path)
    fig = attention_figure(strips, title)
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png")
    return path


def failure_attention(model: Any, vocab: Any, records: Sequence[Any], features: Any, per_image: dict,
                      path: str | Path, k: int = 6, split: str = "") -> Path | None:
    """The attention strips of the ``k`` worst images of a split (wrong scenes first, then by sentence
    BLEU-4 from ``per_image`` {image_id: scores with "caption"}): the failure report's "where it looked".
    None (nothing written) for models without attention."""
    if not has_attention(model) or not records:
        return None
    row_of = {r.image_id: i for i, r in enumerate(records)}
    worst = sorted(per_image, key=lambda i: (per_image[i].get("acc_scene", 1), per_image[i].get("Bleu_4", 0.0), i))[:k]
    rows = [row_of[i] for i in worst]
    feats = torch.as_tensor(np.asarray(features[rows], dtype=np.float32), device=next(model.parameters()).device)
    words = [str(per_image[i]["caption"]).split() for i in worst]
    weights = caption_attention(model, feats, [[vocab.stoi.get(w, UNK) for w in ws] for ws in words])
    strips = [(Image.open(records[r].path), ws + ["<end>"], w) for r, ws, w in zip(rows, words, weights)]
    return render_attention(strips, path, title=f"{split}: where the model looked in its {len(rows)} worst captions")
